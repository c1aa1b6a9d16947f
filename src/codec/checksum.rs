//! Checksums of stored content. Every backup part and document has a
//! SHA-256, which an operator recomputes with `sha256sum`. Content
//! checksums (a backup's files, and the WAL files whose checksum names
//! their object) are SHA-256 in older formats and XXH3-128 (`xxhsum -H2`)
//! since: eight times cheaper here; hashing every byte with SHA-256 cost
//! more CPU than compressing it (backup files from format 3, WAL from
//! format 4). Corruption is what they detect: tampering with a backup is
//! for the manifest's and the parts' SHA-256 to reveal.

use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Checksum([u8; 32]);

impl Checksum {
    pub fn of(data: &[u8]) -> Checksum {
        Checksum(Sha256::digest(data).into())
    }

    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }
}

/// Incremental hashing for streams.
#[derive(Default, Clone)]
pub struct Hasher(Sha256);

impl Hasher {
    pub fn new() -> Hasher {
        Hasher::default()
    }

    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub fn finish(self) -> Checksum {
        Checksum(self.0.finalize().into())
    }
}

/// A backup file's content checksum, of either kind; written as the
/// SHA-256's hex digits (as formats 1 and 2 wrote it) or `xxh128:` and the
/// XXH3-128's 32 hex digits, canonical (big-endian) as `xxhsum -H2` prints.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContentChecksum {
    Sha256(Checksum),
    Xxh128(u128),
    /// The XXH3-128 of the XXH3-64 with `seed` (8 bytes, little-endian)
    /// of each `block_size` bytes of the content, the last block possibly
    /// shorter: one pass of hashing gives both a file's checksum and the
    /// block hashes an incremental backup compares, and the blocks can be
    /// hashed on several threads. The seed is secret to the repository, so
    /// that nobody who can only write to the database can make a changed
    /// block hash as the old one did. Written
    /// `xxh3blocks:<block size>:<16 hex seed>:<32 hex>`.
    Blocks {
        block_size: u32,
        seed: u64,
        digest: u128,
    },
}

const XXH128_PREFIX: &str = "xxh128:";
const BLOCKS_PREFIX: &str = "xxh3blocks:";

impl ContentChecksum {
    /// The XXH3-128 of `data` (what backup-push and wal-push record).
    pub fn of(data: &[u8]) -> ContentChecksum {
        ContentChecksum::Xxh128(xxhash_rust::xxh3::xxh3_128(data))
    }

    /// The digits alone, as object and file names carry them: 64 for a
    /// SHA-256, 32 for an XXH3-128; the length tells the kind.
    pub fn to_hex(self) -> String {
        match self {
            ContentChecksum::Sha256(c) => c.to_hex(),
            ContentChecksum::Xxh128(x) | ContentChecksum::Blocks { digest: x, .. } => {
                format!("{x:032x}")
            }
        }
    }

    /// The `Blocks` checksum of content whose blocks have these hashes.
    pub fn of_block_hashes(block_size: u32, seed: u64, hashes: &[u64]) -> ContentChecksum {
        let mut tree = xxhash_rust::xxh3::Xxh3::new();
        for chunk in hashes.chunks(1024) {
            let mut bytes = [0u8; 8 * 1024];
            for (slot, h) in bytes.chunks_exact_mut(8).zip(chunk) {
                slot.copy_from_slice(&h.to_le_bytes());
            }
            tree.update(&bytes[..8 * chunk.len()]);
        }
        ContentChecksum::Blocks {
            block_size,
            seed,
            digest: tree.digest128(),
        }
    }

    /// Reads what `to_hex` writes (object names: SHA-256 or XXH3-128).
    pub fn from_hex(digits: &str) -> Result<ContentChecksum> {
        match digits.len() {
            32 if digits.bytes().all(|b| b.is_ascii_hexdigit()) => u128::from_str_radix(digits, 16)
                .map(ContentChecksum::Xxh128)
                .map_err(|_| Error::corrupt(format!("{digits:?} is not a checksum"))),
            64 => digits.parse().map(ContentChecksum::Sha256),
            _ => Err(Error::corrupt(format!("{digits:?} is not a checksum"))),
        }
    }

    /// The checksum of `data` computed as this one was, to compare with it.
    pub fn recompute(&self, data: &[u8]) -> ContentChecksum {
        let mut hasher = ContentHasher::like(self);
        hasher.update(data);
        hasher.finish()
    }

    /// Whether `other` was computed the same way, so that equality means
    /// equal content and inequality different content.
    pub fn same_kind(&self, other: &ContentChecksum) -> bool {
        match (self, other) {
            (
                ContentChecksum::Blocks {
                    block_size: a,
                    seed: s,
                    ..
                },
                ContentChecksum::Blocks {
                    block_size: b,
                    seed: t,
                    ..
                },
            ) => a == b && s == t,
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

impl From<Checksum> for ContentChecksum {
    fn from(c: Checksum) -> ContentChecksum {
        ContentChecksum::Sha256(c)
    }
}

impl fmt::Display for ContentChecksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContentChecksum::Sha256(c) => write!(f, "{c}"),
            ContentChecksum::Xxh128(x) => write!(f, "{XXH128_PREFIX}{x:032x}"),
            ContentChecksum::Blocks {
                block_size,
                seed,
                digest,
            } => write!(f, "{BLOCKS_PREFIX}{block_size}:{seed:016x}:{digest:032x}"),
        }
    }
}

impl fmt::Debug for ContentChecksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentChecksum({self})")
    }
}

impl FromStr for ContentChecksum {
    type Err = Error;

    fn from_str(s: &str) -> Result<ContentChecksum> {
        if let Some(rest) = s.strip_prefix(BLOCKS_PREFIX) {
            let bad = || Error::corrupt(format!("{s:?} is not a block-tree checksum"));
            let (size, rest) = rest.split_once(':').ok_or_else(bad)?;
            let (seed, digits) = rest.split_once(':').ok_or_else(bad)?;
            let block_size: u32 = size.parse().map_err(|_| bad())?;
            if seed.len() != 16 {
                return Err(bad());
            }
            let seed = u64::from_str_radix(seed, 16).map_err(|_| bad())?;
            if block_size == 0
                || digits.len() != 32
                || !digits.bytes().all(|b| b.is_ascii_hexdigit())
            {
                return Err(bad());
            }
            let digest = u128::from_str_radix(digits, 16).map_err(|_| bad())?;
            return Ok(ContentChecksum::Blocks {
                block_size,
                seed,
                digest,
            });
        }
        match s.strip_prefix(XXH128_PREFIX) {
            Some(digits) => {
                if digits.len() != 32 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(Error::corrupt(format!("{s:?} is not an XXH3-128 checksum")));
                }
                u128::from_str_radix(digits, 16)
                    .map(ContentChecksum::Xxh128)
                    .map_err(|_| Error::corrupt(format!("{s:?} is not an XXH3-128 checksum")))
            }
            None => s.parse().map(ContentChecksum::Sha256),
        }
    }
}

impl serde::Serialize for ContentChecksum {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for ContentChecksum {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Incremental content hashing of either kind.
pub enum ContentHasher {
    Sha256(Hasher),
    Xxh128(Box<xxhash_rust::xxh3::Xxh3>),
    Blocks(Box<BlockTree>),
}

/// The hash of one block that a `Blocks` checksum is made of, and that an
/// incremental backup compares: XXH3-64 with the repository's seed.
pub fn block_hash(block: &[u8], seed: u64) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(block, seed)
}

/// Whole blocks out of data however it arrives: a block split between two
/// pieces is put together, whole blocks are handed over where they lie.
#[derive(Debug, Default)]
pub struct Blocks {
    pending: Vec<u8>,
}

impl Blocks {
    /// Hands each whole block of `data` (after what earlier calls left) to `f`.
    pub fn feed(&mut self, block_size: usize, mut data: &[u8], mut f: impl FnMut(&[u8])) {
        if !self.pending.is_empty() {
            let take = (block_size - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() < block_size {
                return;
            }
            f(&self.pending);
            self.pending.clear();
        }
        let whole = data.len() / block_size * block_size;
        data[..whole].chunks_exact(block_size).for_each(&mut f);
        self.pending.extend_from_slice(&data[whole..]);
    }

    /// What is left: a last block shorter than the others, or nothing.
    pub fn rest(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.pending)
    }
}

/// Streaming `ContentChecksum::Blocks`: blocks however the data arrives.
pub struct BlockTree {
    block_size: usize,
    seed: u64,
    pending: Blocks,
    hashes: Vec<u64>,
    tree: xxhash_rust::xxh3::Xxh3,
}

impl BlockTree {
    fn block(&mut self, block: &[u8]) {
        self.hashes.push(block_hash(block, self.seed));
        if self.hashes.len() == 1024 {
            self.flush();
        }
    }

    fn flush(&mut self) {
        let mut bytes = Vec::with_capacity(8 * self.hashes.len());
        for h in self.hashes.drain(..) {
            bytes.extend_from_slice(&h.to_le_bytes());
        }
        self.tree.update(&bytes);
    }

    fn update(&mut self, data: &[u8]) {
        let mut pending = std::mem::take(&mut self.pending);
        pending.feed(self.block_size, data, |block| self.block(block));
        self.pending = pending;
    }

    fn finish(mut self) -> ContentChecksum {
        let last = self.pending.rest();
        if !last.is_empty() {
            self.block(&last);
        }
        self.flush();
        ContentChecksum::Blocks {
            block_size: self.block_size as u32,
            seed: self.seed,
            digest: self.tree.digest128(),
        }
    }
}

impl ContentHasher {
    /// What backup-push hashes files with.
    pub fn new() -> ContentHasher {
        ContentHasher::Xxh128(Box::default())
    }

    /// A hasher of the same kind as `checksum`, to compare with it.
    pub fn like(checksum: &ContentChecksum) -> ContentHasher {
        match checksum {
            ContentChecksum::Sha256(_) => ContentHasher::Sha256(Hasher::new()),
            ContentChecksum::Xxh128(_) => ContentHasher::new(),
            ContentChecksum::Blocks {
                block_size, seed, ..
            } => ContentHasher::Blocks(Box::new(BlockTree {
                block_size: (*block_size).max(1) as usize,
                seed: *seed,
                pending: Blocks::default(),
                hashes: Vec::with_capacity(1024),
                tree: xxhash_rust::xxh3::Xxh3::new(),
            })),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            ContentHasher::Sha256(h) => h.update(data),
            ContentHasher::Xxh128(h) => h.update(data),
            ContentHasher::Blocks(t) => t.update(data),
        }
    }

    pub fn finish(self) -> ContentChecksum {
        match self {
            ContentHasher::Sha256(h) => ContentChecksum::Sha256(h.finish()),
            ContentHasher::Xxh128(h) => ContentChecksum::Xxh128(h.digest128()),
            ContentHasher::Blocks(t) => t.finish(),
        }
    }
}

/// What is written is hashed: a stream (a decoder, say) copied into it.
impl std::io::Write for ContentHasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Default for ContentHasher {
    fn default() -> ContentHasher {
        ContentHasher::new()
    }
}

impl FromStr for Checksum {
    type Err = Error;

    fn from_str(s: &str) -> Result<Checksum> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)
            .map_err(|_| Error::corrupt(format!("{s:?} is not a SHA-256 checksum")))?;
        Ok(Checksum(out))
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Checksum({})", self.to_hex())
    }
}

impl serde::Serialize for Checksum {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Checksum {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_sha256sum() {
        // printf abc | sha256sum
        let c = Checksum::of(b"abc");
        assert_eq!(
            c.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let mut h = Hasher::new();
        h.update(b"a");
        h.update(b"bc");
        assert_eq!(h.finish(), c);
        assert_eq!(c.to_hex().parse::<Checksum>().unwrap(), c);
        assert!("abc".parse::<Checksum>().is_err());
    }

    #[test]
    fn block_tree_checksums_stream_and_match_their_definition() {
        let data: Vec<u8> = (0..3 * 4096 + 100).map(|i| (i * 7 % 251) as u8).collect();
        // By definition: the XXH3-128 of each block's seeded XXH3-64, little-endian.
        let seed = 0x1234_5678_9abc_def0;
        let mut leaves = Vec::new();
        for block in data.chunks(4096) {
            let leaf = xxhash_rust::xxh3::xxh3_64_with_seed(block, seed);
            leaves.extend_from_slice(&leaf.to_le_bytes());
        }
        let want = ContentChecksum::Blocks {
            block_size: 4096,
            seed,
            digest: xxhash_rust::xxh3::xxh3_128(&leaves),
        };
        let mut h = ContentHasher::like(&want);
        for piece in data.chunks(1000) {
            h.update(piece);
        }
        assert_eq!(h.finish(), want);
        let whole: Vec<u64> = data[..3 * 4096]
            .chunks(4096)
            .map(|b| block_hash(b, seed))
            .collect();
        assert_eq!(
            ContentChecksum::of_block_hashes(4096, seed, &whole),
            want.recompute(&data[..3 * 4096])
        );
        assert_ne!(want.recompute(&data[..3 * 4096]), want);
        let text = want.to_string();
        assert!(
            text.starts_with("xxh3blocks:4096:123456789abcdef0:"),
            "{text}"
        );
        let other_seed = ContentChecksum::of_block_hashes(4096, seed + 1, &whole);
        assert!(!want.same_kind(&other_seed), "another seed is another kind");
        assert_eq!(text.parse::<ContentChecksum>().unwrap(), want);
        assert!(want.same_kind(&ContentChecksum::Blocks {
            block_size: 4096,
            seed,
            digest: 1
        }));
        assert!(!want.same_kind(&ContentChecksum::Blocks {
            block_size: 8192,
            seed,
            digest: 1
        }));
        assert!(!want.same_kind(&ContentChecksum::of(b"x")));
        for bad in [
            "xxh3blocks:0:0000000000000000:00",
            "xxh3blocks:8192:0000000000000000:zz",
            "xxh3blocks:8192:00:00000000000000000000000000000000",
            "xxh3blocks:8192",
        ] {
            assert!(bad.parse::<ContentChecksum>().is_err(), "{bad}");
        }
    }

    #[test]
    fn content_checksums_of_both_kinds_read_and_write_back() {
        let sha = ContentChecksum::from(Checksum::of(b"abc"));
        // Formats 1 and 2 wrote bare SHA-256 digits: they still read.
        assert_eq!(
            sha.to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(sha.to_string().parse::<ContentChecksum>().unwrap(), sha);
        // XXH3-128 of "abc", as `printf abc | xxhsum -H2` prints it.
        let xxh = ContentChecksum::of(b"abc");
        assert_eq!(xxh.to_string(), "xxh128:06b05ab6733a618578af5f94892f3950");
        assert_eq!(xxh.to_string().parse::<ContentChecksum>().unwrap(), xxh);
        let mut h = ContentHasher::like(&xxh);
        h.update(b"a");
        h.update(b"bc");
        assert_eq!(h.finish(), xxh);
        let mut h = ContentHasher::like(&sha);
        std::io::Write::write_all(&mut h, b"abc").unwrap();
        assert_eq!(h.finish(), sha);
        assert_eq!(sha.recompute(b"abc"), sha);
        assert_eq!(xxh.recompute(b"abc"), xxh);
        assert_ne!(sha.recompute(b"abd"), sha);
        for c in [sha, xxh] {
            assert_eq!(ContentChecksum::from_hex(&c.to_hex()).unwrap(), c);
        }
        assert_eq!(xxh.to_hex(), "06b05ab6733a618578af5f94892f3950");
        assert!(sha.same_kind(&ContentChecksum::from(Checksum::of(b"x"))));
        assert!(!sha.same_kind(&xxh));
        for bad in [
            "",
            "06b0",
            "zzb05ab6733a618578af5f94892f3950",
            &"0".repeat(48),
        ] {
            assert!(ContentChecksum::from_hex(bad).is_err(), "{bad}");
        }
        for bad in [
            "xxh128:06b0",
            "xxh128:zzb05ab6733a618578af5f94892f3950",
            "sha1:00",
        ] {
            assert!(bad.parse::<ContentChecksum>().is_err(), "{bad}");
        }
    }
}
