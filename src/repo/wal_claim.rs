//! Claims on WAL names. Listing a directory and then storing is two steps:
//! two pushes of different content for one name, at the same instant, could
//! both see nothing and both store (the content's checksum is in the data
//! object's key, so the keys differ). A claim is keyed by the name alone and
//! created with create-if-absent before the data object: whichever push
//! creates it decides the one content the name may ever hold.

use super::identity::FORMAT_VERSION;
use super::{Repository, document, layout};
use crate::codec::ContentChecksum;
use crate::error::{Error, ErrorKind, Result};
use crate::pg::walname::WalFileName;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The document stored under `layout::wal_claim`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WalClaim {
    pub format: u32,
    pub wal: String,
    /// Checksum of the uncompressed content the name is claimed for: an
    /// XXH3-128 (`xxh128:<hex>`) from format 4, a SHA-256 in the field
    /// `sha256` before.
    #[serde(rename = "content_checksum", alias = "sha256")]
    pub content: ContentChecksum,
    pub claimed_at: DateTime<Utc>,
    /// Where the claiming push ran, for the operator facing a conflict.
    pub host: String,
}

/// A claim object as a listing shows it (not read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedClaim {
    pub key: String,
    pub name: WalFileName,
    pub size: u64,
}

pub fn listed_claim(o: &crate::storage::ObjectInfo) -> Option<ListedClaim> {
    Some(ListedClaim {
        key: o.key.clone(),
        name: layout::parse_wal_claim(&o.key)?,
        size: o.size,
    })
}

/// How a claim for this content came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimed {
    /// This push created it.
    New,
    /// It was there, for the same content: an identical push running at the
    /// same time, or an earlier one interrupted before its data was stored.
    /// `checksum` is the claim's: of another kind than the push's when an
    /// older pgproof made the claim, and then the object is named by it.
    Existing { checksum: ContentChecksum },
}

impl Repository {
    /// Claims `name` for the content with checksum `sum`. A claim for other
    /// content is a `Conflict` naming both checksums; nothing is written.
    /// `same_content` tells whether a claimed checksum is this content's,
    /// computing it if the claim's kind differs from `sum`'s.
    pub async fn claim_wal(
        &self,
        binding: &str,
        name: WalFileName,
        sum: ContentChecksum,
        same_content: &dyn Fn(&ContentChecksum) -> Result<bool>,
    ) -> Result<Claimed> {
        let key = layout::wal_claim(&self.cluster, binding, name);
        let claim = WalClaim {
            format: FORMAT_VERSION,
            wal: name.to_string(),
            content: sum,
            claimed_at: Utc::now(),
            host: hostname::get()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        let encoded = Bytes::from(document::encode(&claim)?);
        // A second round only if the claim vanished between the failed
        // create and the read (a `delete` of that WAL running at that moment).
        for _ in 0..2 {
            match self.storage.put_new(&key, encoded.clone()).await {
                Ok(()) => return Ok(Claimed::New),
                Err(e) if e.kind() == ErrorKind::Conflict => {}
                Err(e) => return Err(e),
            }
            let theirs = match self.read_wal_claim(&key).await {
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                other => other?,
            };
            if same_content(&theirs.content)? {
                return Ok(Claimed::Existing {
                    checksum: theirs.content,
                });
            }
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "{name} is already claimed in {} for different content (claimed for checksum {} at {} from host {:?}; this file has checksum {sum}); nothing was stored",
                    self.describe(),
                    theirs.content,
                    theirs.claimed_at.format("%Y-%m-%d %H:%M:%S%.3f UTC"),
                    theirs.host,
                ),
            )
            .with_hint("two different files were archived under one name: another cluster may be archiving into this prefix, or the local file is damaged; compare it with `pgproof wal-fetch` before doing anything else"));
        }
        Err(Error::new(
            ErrorKind::Storage,
            format!(
                "could not create or read the claim {key} in {}",
                self.describe()
            ),
        )
        .with_hint(
            "something is deleting from the archive while WAL is pushed; PostgreSQL will retry",
        ))
    }

    /// Reads and verifies a claim.
    pub async fn read_wal_claim(&self, key: &str) -> Result<WalClaim> {
        let bytes = self.storage.get(key).await?;
        let what = format!("WAL claim {key}");
        document::decode_readable(&bytes, &what)
    }
}
