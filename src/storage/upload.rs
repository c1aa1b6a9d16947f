//! A streaming upload written from a blocking thread, which is always
//! either completed or aborted.
//!
//! object_store's S3 multipart upload has no abort on drop: an upload
//! abandoned by an error path, a cancelled copy or a signal would leave its
//! parts in the bucket, billed and invisible, until a lifecycle rule removed
//! them. Here the upload is aborted explicitly on every path but success.

use super::Storage;
use crate::error::{Error, ErrorKind, Result};
use object_store::buffered::BufWriter;
use std::io::Write;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// How long an abort may take before the upload is left to the bucket's
/// lifecycle rule (and `verify`'s report).
const ABORT_LIMIT: Duration = Duration::from_secs(30);

pub struct ObjectWriter {
    /// `None` once completed or aborted.
    upload: Option<BufWriter>,
    storage: Storage,
    key: String,
    runtime: tokio::runtime::Handle,
    /// The first failure of the upload itself (not of what was being written).
    failure: Option<String>,
}

impl ObjectWriter {
    /// Must be called on a runtime's blocking thread (`spawn_blocking`).
    pub(super) fn new(storage: &Storage, key: &str, upload: BufWriter) -> ObjectWriter {
        ObjectWriter {
            upload: Some(upload),
            storage: storage.clone(),
            key: key.to_string(),
            runtime: tokio::runtime::Handle::current(),
            failure: None,
        }
    }

    /// The upload's own failure, as a storage error, if writing failed
    /// because of it: a write error that callers saw only as I/O.
    pub fn storage_failure(&self) -> Option<Error> {
        self.failure.as_ref().map(|why| {
            Error::new(
                ErrorKind::Storage,
                format!(
                    "uploading {} to {} failed: {why}",
                    self.key,
                    self.storage.url()
                ),
            )
            .with_hint(super::retry::UNREACHABLE_HINT)
        })
    }

    /// Completes the upload: the object appears whole, or not at all.
    pub fn finish(mut self) -> Result<()> {
        let Some(mut upload) = self.upload.take() else {
            return Err(self.storage_failure().unwrap_or_else(|| {
                Error::new(
                    ErrorKind::Storage,
                    format!("uploading {}: already ended", self.key),
                )
            }));
        };
        // A failed completion aborts the upload itself (object_store's
        // `WriteMultipart::finish`).
        self.runtime.block_on(upload.shutdown()).map_err(|e| {
            Error::new(
                ErrorKind::Storage,
                format!(
                    "completing the upload of {} to {}",
                    self.key,
                    self.storage.url()
                ),
            )
            .with_source(e)
            .with_hint(super::retry::UNREACHABLE_HINT)
        })?;
        self.storage.written(&self.key);
        Ok(())
    }

    /// Abandons the upload and removes what was uploaded of it.
    pub fn abort(mut self) {
        self.abort_now();
    }

    fn abort_now(&mut self) {
        let Some(mut upload) = self.upload.take() else {
            return;
        };
        let key = self.key.clone();
        let aborted = tokio::task::block_in_place(|| {
            self.runtime
                .block_on(tokio::time::timeout(ABORT_LIMIT, upload.abort()))
        });
        match aborted {
            Ok(Ok(())) => tracing::debug!("the upload of {key} was aborted"),
            Ok(Err(e)) => tracing::warn!(
                "the unfinished upload of {key} could not be aborted ({e}); `pgproof verify` reports it and `pgproof delete --confirm` removes it after a day"
            ),
            Err(_) => tracing::warn!(
                "aborting the unfinished upload of {key} timed out; `pgproof verify` reports it and `pgproof delete --confirm` removes it after a day"
            ),
        }
    }
}

impl Write for ObjectWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let upload = self
            .upload
            .as_mut()
            .ok_or_else(|| std::io::Error::other("the upload has ended"))?;
        let written = self.runtime.block_on(upload.write(buf));
        written.inspect_err(|e| {
            self.failure.get_or_insert_with(|| e.to_string());
        })
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let upload = self
            .upload
            .as_mut()
            .ok_or_else(|| std::io::Error::other("the upload has ended"))?;
        self.runtime.block_on(upload.flush())
    }
}

impl Drop for ObjectWriter {
    /// Neither finished nor aborted: an error path or a cancelled copy.
    fn drop(&mut self) {
        self.abort_now();
    }
}
