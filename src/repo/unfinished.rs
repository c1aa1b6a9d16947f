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

    /// The backup directories of `binding` that hold nothing at all (a
    /// filesystem repository's; object storage has no directories).
    pub fn empty_backup_dirs(&self, binding: &str) -> Result<Vec<String>> {
        self.storage
            .empty_subdirs(&super::layout::backups_root(&self.cluster, binding))
    }

    pub fn remove_empty_backup_dir(&self, binding: &str, backup: &str) -> Result<()> {
        self.storage
            .remove_empty_dir(&super::layout::backup_dir(&self.cluster, binding, backup))
    }

    /// Aborts one, removing what it had stored.
    pub async fn abort_unfinished(&self, upload: &UnfinishedUpload) -> Result<()> {
        self.storage.abort_unfinished(upload).await
    }
}
