//! Uploads under the cluster's prefix that were started and never completed
//! nor aborted (a process killed mid-upload): `verify` reports them,
//! `delete --confirm` aborts the old ones.

use super::Repository;
use crate::error::Result;
pub use crate::storage::UnfinishedUpload;

impl Repository {
    /// The unfinished uploads under the cluster's prefix, oldest first.
    pub async fn unfinished_uploads(&self) -> Result<Vec<UnfinishedUpload>> {
        let mut found = self
            .storage
            .unfinished_uploads(self.cluster.as_str())
            .await?;
        found.sort_by_key(|u| u.started);
        Ok(found)
    }

    /// Aborts one, removing what it had stored.
    pub async fn abort_unfinished(&self, upload: &UnfinishedUpload) -> Result<()> {
        self.storage.abort_unfinished(upload).await
    }
}
