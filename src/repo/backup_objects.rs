//! The objects of a cluster's backups as storage holds them: listed,
//! written, read and removed here only, so that commands never build or
//! walk keys of their own.

use super::manifest::Manifest;
use super::{Repository, document, layout};
use crate::error::{Error, ErrorKind, Result};
use crate::storage::ObjectInfo;
use crate::storage::ObjectWriter;
use bytes::Bytes;

impl Repository {
    /// Every object under the cluster's backups (all bindings), from one
    /// listing: what `verify` and `delete` walk.
    pub async fn backup_objects(&self) -> Result<Vec<ObjectInfo>> {
        self.storage
            .list_all(&layout::all_backups(&self.cluster))
            .await
    }

    /// Stores a backup's manifest, which makes the backup complete; never
    /// replaces one.
    pub async fn write_manifest(&self, manifest: &Manifest) -> Result<String> {
        let key = layout::backup_manifest(&self.cluster, &manifest.binding, &manifest.name);
        self.storage
            .put_new(&key, Bytes::from(document::encode(manifest)?))
            .await?;
        Ok(key)
    }

    /// A streaming upload of one part of a backup (see `Storage::writer`):
    /// the part appears only once the writer is finished; dropped
    /// unfinished, the upload is aborted.
    pub fn backup_part_writer(&self, binding: &str, backup: &str, part: &str) -> ObjectWriter {
        self.storage
            .writer(&layout::backup_part(&self.cluster, binding, backup, part))
    }

    /// A streaming read of one part of a backup, for a blocking thread. A
    /// missing part is `NotFound`.
    pub async fn open_backup_part(
        &self,
        binding: &str,
        backup: &str,
        part: &str,
    ) -> Result<Box<dyn std::io::Read + Send>> {
        self.storage
            .blocking_reader(&layout::backup_part(&self.cluster, binding, backup, part))
            .await
    }

    /// Removes one object of this cluster's prefix, as a listing named it;
    /// an object already gone is not an error. Refuses a key outside the
    /// prefix: only objects of this cluster are ever removed.
    pub async fn remove(&self, key: &str) -> Result<()> {
        let own = key
            .strip_prefix(self.cluster.as_str())
            .is_some_and(|rest| rest.starts_with('/'));
        if !own {
            return Err(Error::new(
                ErrorKind::Config,
                format!("{key} is not under the cluster prefix {}", self.describe()),
            ));
        }
        match self.storage.delete(key).await {
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// Removes what interrupted uploads left in a backup's directory (see
    /// `Storage::remove_interrupted_uploads`); returns how many.
    pub fn remove_interrupted_uploads(&self, binding: &str, backup: &str) -> Result<usize> {
        self.storage
            .remove_interrupted_uploads(&layout::backup_dir(&self.cluster, binding, backup))
    }
}
