//! Codecs: how bytes are compressed and checksummed on their way to storage.
//! They know nothing of PostgreSQL, storage or commands.

pub mod checksum;
pub mod compression;
pub mod frames;

pub use checksum::{Checksum, ContentChecksum, ContentHasher, Hasher, block_hash};
pub use compression::Compression;
