//! The tar entry in which an incremental backup stores some blocks of a
//! relation file: its changed blocks, at most `CHUNK_BLOCKS` to an entry,
//! in ascending order. Shaped like PostgreSQL 17's `INCREMENTAL.` files so
//! that it can be read with `dd`:
//!
//! - magic `PGPRFBLK`, then little-endian u32s: version, block size, n;
//! - n u32 block numbers (from the start of the file), ascending;
//! - zeros up to a multiple of the block size;
//! - the n blocks.
//!
//! The entry is named `<dir>/INCREMENTAL.<name>` and typed `7` (a GNU tar
//! "contiguous file", which tar extracts as a regular file): by the type
//! pgproof never takes it for a file of the cluster, whatever the cluster
//! holds; by the name `tar -x` never overwrites the file it patches.

use super::path_bytes::PathBytes;

pub const MAGIC: &[u8; 8] = b"PGPRFBLK";
pub const VERSION: u32 = 1;
pub const ENTRY_TYPE: tar::EntryType = tar::EntryType::Continuous;
/// Blocks read at once, and the most one entry holds (8 MiB of 8 KiB blocks).
pub const CHUNK_BLOCKS: usize = 1024;
const PREFIX: &[u8] = b"INCREMENTAL.";
const FIXED: usize = 8 + 4 + 4 + 4;

/// `base/5/16384` → `base/5/INCREMENTAL.16384`.
pub fn entry_name(path: &PathBytes) -> PathBytes {
    let bytes = path.as_bytes();
    let cut = bytes.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
    PathBytes::new([&bytes[..cut], PREFIX, &bytes[cut..]].concat())
}

/// The file an entry patches: the inverse of `entry_name`.
pub fn target_of(entry: &PathBytes) -> Option<PathBytes> {
    let bytes = entry.as_bytes();
    let cut = bytes.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
    let name = bytes[cut..].strip_prefix(PREFIX)?;
    if name.is_empty() {
        return None;
    }
    let target = PathBytes::new([&bytes[..cut], name].concat());
    // Round trip, so that one entry names one file.
    (entry_name(&target) == *entry).then_some(target)
}

/// Bytes before the first block.
pub fn header_len(block_size: usize, n: usize) -> usize {
    (FIXED + 4 * n).div_ceil(block_size) * block_size
}

pub fn header(block_size: u32, numbers: &[u32]) -> Vec<u8> {
    let mut h = Vec::with_capacity(header_len(block_size as usize, numbers.len()));
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&VERSION.to_le_bytes());
    h.extend_from_slice(&block_size.to_le_bytes());
    h.extend_from_slice(&(numbers.len() as u32).to_le_bytes());
    for n in numbers {
        h.extend_from_slice(&n.to_le_bytes());
    }
    h.resize(header_len(block_size as usize, numbers.len()), 0);
    h
}

/// A whole entry's content, checked: its block numbers and where the
/// blocks start.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed {
    pub numbers: Vec<u32>,
    pub data_offset: usize,
}

pub fn parse(content: &[u8], block_size: u32) -> Result<Parsed, String> {
    if content.len() < FIXED || &content[..8] != MAGIC {
        return Err("not a blocks entry (no PGPRFBLK magic)".into());
    }
    let u32_at = |at: usize| u32::from_le_bytes(content[at..at + 4].try_into().expect("4 bytes"));
    let (version, size, n) = (u32_at(8), u32_at(12), u32_at(16) as usize);
    if version != VERSION {
        return Err(format!("blocks entry version {version}, not {VERSION}"));
    }
    if size != block_size {
        return Err(format!(
            "blocks of {size} bytes, where the backup's are {block_size}"
        ));
    }
    let bs = block_size as usize;
    let data_offset = header_len(bs, n);
    if n == 0 || n > CHUNK_BLOCKS || content.len() != data_offset + n * bs {
        return Err(format!("{n} blocks declared in {} bytes", content.len()));
    }
    let numbers: Vec<u32> = (0..n).map(|i| u32_at(FIXED + 4 * i)).collect();
    if numbers.windows(2).any(|w| w[0] >= w[1]) {
        return Err("block numbers out of order".into());
    }
    Ok(Parsed {
        numbers,
        data_offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_go_and_come_back() {
        for (file, entry) in [
            ("base/5/16384", "base/5/INCREMENTAL.16384"),
            ("16384.1", "INCREMENTAL.16384.1"),
            ("PG_15_1/5/16384_vm", "PG_15_1/5/INCREMENTAL.16384_vm"),
        ] {
            let e = entry_name(&PathBytes::from(file));
            assert_eq!(e, PathBytes::from(entry));
            assert_eq!(target_of(&e), Some(PathBytes::from(file)));
        }
        assert_eq!(target_of(&PathBytes::from("base/5/16384")), None);
        assert_eq!(target_of(&PathBytes::from("base/5/INCREMENTAL.")), None);
    }

    #[test]
    fn an_entry_parses_back_and_damage_is_refused() {
        let numbers = [3u32, 7, 1000];
        let mut content = header(8192, &numbers);
        assert_eq!(content.len(), 8192);
        for n in numbers {
            content.extend(std::iter::repeat_n(n as u8, 8192));
        }
        let parsed = parse(&content, 8192).unwrap();
        assert_eq!(parsed.numbers, numbers);
        assert_eq!(parsed.data_offset, 8192);
        assert!(parse(&content, 4096).is_err(), "another block size");
        assert!(parse(&content[..content.len() - 1], 8192).is_err(), "short");
        let mut bad = content.clone();
        bad[0] = b'X';
        assert!(parse(&bad, 8192).is_err(), "magic");
        let mut unordered = header(8192, &[7, 3]);
        unordered.extend(vec![0u8; 2 * 8192]);
        assert!(parse(&unordered, 8192).is_err(), "order");
    }

    #[test]
    fn a_full_chunk_of_numbers_fits_one_block() {
        assert_eq!(header_len(8192, CHUNK_BLOCKS), 8192);
        assert_eq!(header_len(8192, 2100), 16384);
        assert_eq!(header(1024, &[1; 300]).len(), 2048);
    }
}
