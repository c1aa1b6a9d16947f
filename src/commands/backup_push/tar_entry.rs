//! A file's entry in a part's tar stream, named by the bytes of its path.
//!
//! The tar crate's `append_data` takes any byte name up to the header's 100
//! bytes, but for a longer one it also writes a cut-down copy of the name
//! that must be UTF-8, and fails when the first 100 bytes hold none (a
//! long name starting with a Latin-1 byte). So names are written here as
//! GNU tar writes them: up to 100 bytes in the header, a longer one in a GNU
//! long-name entry (type `L`) just before the file's header, with the
//! header keeping the name's first 100 bytes. GNU tar and the tar crate's
//! reader read both (tested below).

use crate::repo::path_bytes::PathBytes;
use std::io::{Read, Write};

/// What GNU readers take for a long-name entry's own name.
const LONG_LINK: &[u8] = b"././@LongLink";

/// Writes the entry's header for `path` (after a long-name entry when the
/// name needs one); the caller writes the header's size of content and
/// then `padding(size)` zeros. `header` has everything but the name (and
/// its checksum) set.
pub fn append_header<W: Write>(
    tar: &mut tar::Builder<W>,
    header: &mut tar::Header,
    path: &PathBytes,
) -> std::io::Result<()> {
    let bytes = path.as_bytes();
    let name = &mut header.as_old_mut().name;
    let room = name.len();
    name.fill(0);
    // A name of exactly 100 bytes would have no terminating NUL: readers
    // take that, but the long form leaves no doubt (as the tar crate does).
    if bytes.len() < room {
        name[..bytes.len()].copy_from_slice(bytes);
    } else {
        name.copy_from_slice(&bytes[..room]);
        let mut long = tar::Header::new_gnu();
        long.as_old_mut().name[..LONG_LINK.len()].copy_from_slice(LONG_LINK);
        long.set_mode(0o644);
        long.set_uid(0);
        long.set_gid(0);
        long.set_mtime(0);
        // With its terminating NUL, as GNU tar writes it.
        long.set_size(bytes.len() as u64 + 1);
        long.set_entry_type(tar::EntryType::GNULongName);
        long.set_cksum();
        tar.append(&long, bytes.chain(&[0u8][..]))?;
    }
    header.set_cksum();
    // Written directly rather than with `tar.append`, whose copy of the
    // content goes through an 8 KiB buffer: the caller reads the content
    // straight into the compressor's memory instead.
    tar.get_mut().write_all(header.as_bytes())
}

/// Zeros after `size` bytes of content, up to the next 512-byte block.
pub fn padding(size: u64) -> usize {
    ((512 - size % 512) % 512) as usize
}

pub const ZEROS: [u8; 512] = [0; 512];

#[cfg(test)]
mod tests {
    use super::*;

    /// A whole entry, header, content and padding, as a part writes it.
    fn append<W: Write>(
        tar: &mut tar::Builder<W>,
        header: &mut tar::Header,
        path: &PathBytes,
        mut data: impl Read,
    ) -> std::io::Result<()> {
        append_header(tar, header, path)?;
        let size = std::io::copy(&mut data, tar.get_mut())?;
        tar.get_mut().write_all(&ZEROS[..padding(size)])
    }

    fn names() -> Vec<Vec<u8>> {
        vec![
            b"PG_VERSION".to_vec(),
            b"notes-\xe9t\xe9.txt".to_vec(),
            // Around the header's 100 bytes, starting with a byte that is
            // not UTF-8 (the tar crate's own long-name path fails on it).
            [b"\xff".as_slice(), &[b'n'; 98]].concat(),
            [b"\xff".as_slice(), &[b'n'; 99]].concat(),
            [b"\xff".as_slice(), &[b'n'; 100]].concat(),
            // Past a ustar prefix and name's 255 bytes, in directories.
            [
                b"d\xe9p\xf4t/".as_slice(),
                &b"\xe9x/".repeat(40),
                b"\xe9".as_slice(),
            ]
            .concat(),
            ("été/".repeat(40) + "fin").into_bytes(),
        ]
    }

    fn archive(names: &[Vec<u8>]) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        for (i, name) in names.iter().enumerate() {
            let data = vec![i as u8; 513 * i];
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o600);
            header.set_entry_type(tar::EntryType::Regular);
            append(
                &mut tar,
                &mut header,
                &PathBytes::new(name.clone()),
                &data[..],
            )
            .unwrap();
        }
        tar.into_inner().unwrap()
    }

    #[test]
    fn every_name_reads_back_byte_for_byte_with_its_content() {
        let names = names();
        let bytes = archive(&names);
        let mut tar = tar::Archive::new(&bytes[..]);
        let mut read = Vec::new();
        for entry in tar.entries().unwrap() {
            let mut entry = entry.unwrap();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            read.push((entry.path_bytes().into_owned(), data));
        }
        let want: Vec<(Vec<u8>, Vec<u8>)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), vec![i as u8; 513 * i]))
            .collect();
        assert_eq!(read, want);
    }

    #[test]
    fn gnu_tar_lists_the_same_names() {
        // An operator restores a part by hand with tar (docs/FORMAT.md).
        let names = names();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("part.tar");
        std::fs::write(&file, archive(&names)).unwrap();
        let out = std::process::Command::new("tar")
            .args(["--list", "--quoting-style=literal", "--file"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listed: Vec<&[u8]> = out
            .stdout
            .split(|&b| b == b'\n')
            .filter(|n| !n.is_empty())
            .collect();
        let want: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
        assert_eq!(listed, want);
    }
}
