//! The write path check: a small object written, read back and removed
//! under the cluster's prefix.

use super::{Repository, layout};
use crate::error::{Error, ErrorKind, Result};

impl Repository {
    /// Writes, reads back and removes `check_probe(token)`; fails when any
    /// step does or the bytes differ. The object is removed even when its
    /// read fails.
    pub async fn probe(&self, token: &str) -> Result<()> {
        let key = layout::check_probe(&self.cluster, token);
        let body = bytes::Bytes::from(format!("pgproof check {}\n", chrono::Utc::now()));
        self.storage.put_replace(&key, body.clone()).await?;
        let back = self.storage.get(&key).await;
        self.storage.delete(&key).await?;
        if back? != body {
            return Err(Error::new(
                ErrorKind::Storage,
                format!("{key} read back differently from what was written"),
            ));
        }
        Ok(())
    }
}
