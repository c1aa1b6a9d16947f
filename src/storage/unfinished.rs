//! Uploads that were started and never completed nor aborted: an S3
//! multipart upload whose process was killed, or a filesystem repository's
//! staging file (`<key>#<n>`). Neither shows in a listing; both take space
//! (and, on S3, money) until removed. Azure keeps an interrupted block
//! blob's uncommitted blocks out of listings and discards them itself.
//!
//! object_store can abort a multipart upload but not list them, so the
//! listing (S3's ListMultipartUploads) is signed and sent here with
//! object_store's own signer and HTTP client.

use super::{RepoUrl, Storage, is_staging_name, storage_error};
use crate::error::{Error, ErrorKind, Result};
use chrono::{DateTime, Utc};
use object_store::client::HttpConnector;
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnfinishedUpload {
    /// The key the upload was for, relative to the repository root.
    pub key: String,
    /// S3's upload id, or the staging file's name.
    pub id: String,
    pub started: DateTime<Utc>,
}

/// Where S3 requests for the bucket go, as object_store computes it.
#[derive(Debug, Clone)]
pub(super) struct S3Target {
    pub bucket_endpoint: String,
    pub region: String,
    pub client_options: object_store::ClientOptions,
}

impl S3Target {
    pub(super) fn from_builder(
        builder: &object_store::aws::AmazonS3Builder,
        bucket: &str,
        client_options: object_store::ClientOptions,
    ) -> S3Target {
        use object_store::aws::AmazonS3ConfigKey as Key;
        let region = builder
            .get_config_value(&Key::Region)
            .unwrap_or_else(|| "us-east-1".to_string());
        let virtual_hosted = builder
            .get_config_value(&Key::VirtualHostedStyleRequest)
            .is_some_and(|v| v == "true");
        let bucket_endpoint = match (builder.get_config_value(&Key::Endpoint), virtual_hosted) {
            (Some(endpoint), true) => endpoint,
            (Some(endpoint), false) => format!("{}/{bucket}", endpoint.trim_end_matches('/')),
            (None, true) => format!("https://{bucket}.s3.{region}.amazonaws.com"),
            (None, false) => format!("https://s3.{region}.amazonaws.com/{bucket}"),
        };
        S3Target {
            bucket_endpoint,
            region,
            client_options,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListMultipartUploadsResult {
    #[serde(default)]
    is_truncated: bool,
    next_key_marker: Option<String>,
    next_upload_id_marker: Option<String>,
    #[serde(default, rename = "Upload")]
    uploads: Vec<ListedUpload>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListedUpload {
    key: String,
    upload_id: String,
    initiated: DateTime<Utc>,
}

impl Storage {
    /// The unfinished uploads under the directory-like prefix `dir`.
    pub async fn unfinished_uploads(&self, dir: &str) -> Result<Vec<UnfinishedUpload>> {
        match &self.url {
            RepoUrl::File(root) => staging_files(root, dir),
            RepoUrl::S3 { .. } => self.list_multipart_uploads(dir).await,
            // Azure discards uncommitted blocks by itself (after a week),
            // and they are never listed as objects: nothing to list.
            RepoUrl::Azure { .. } => Ok(Vec::new()),
        }
    }

    /// Aborts one unfinished upload, removing what it had stored.
    pub async fn abort_unfinished(&self, upload: &UnfinishedUpload) -> Result<()> {
        super::stats::count(super::stats::RequestKind::Delete);
        match (&self.url, &self.s3) {
            (RepoUrl::File(root), _) => remove_staging_file(root, upload),
            (RepoUrl::S3 { .. }, Some(s3)) => {
                use object_store::multipart::MultipartStore;
                let path = self.path(&upload.key);
                self.bounded(
                    "aborting the upload of",
                    &upload.key,
                    s3.abort_multipart(&path, &upload.id),
                )
                .await
            }
            (RepoUrl::S3 { .. }, None) | (RepoUrl::Azure { .. }, _) => Ok(()),
        }
    }

    async fn list_multipart_uploads(&self, dir: &str) -> Result<Vec<UnfinishedUpload>> {
        let (Some(s3), Some(target)) = (&self.s3, &self.s3_target) else {
            return Ok(Vec::new());
        };
        let failed = |what: &str, e: &dyn std::fmt::Display| {
            Error::new(
                ErrorKind::Storage,
                format!(
                    "listing unfinished uploads under {dir} in {}: {what}: {e}",
                    self.url
                ),
            )
            .with_hint(super::retry::UNREACHABLE_HINT)
        };
        let client = object_store::client::ReqwestConnector::default()
            .connect(&target.client_options)
            .map_err(|e| storage_error(e, &self.url, "connecting"))?;
        let prefix = {
            let p = self.path(dir);
            if p.as_ref().is_empty() {
                String::new()
            } else {
                format!("{p}/")
            }
        };
        let mut found = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            super::stats::count(super::stats::RequestKind::List);
            let credential = s3
                .credentials()
                .get_credential()
                .await
                .map_err(|e| storage_error(e, &self.url, "reading credentials"))?;
            let mut url = url::Url::parse(&format!("{}/", target.bucket_endpoint))
                .map_err(|e| failed("the endpoint is not a URL", &e))?;
            {
                let mut query = url.query_pairs_mut();
                query.append_pair("uploads", "");
                query.append_pair("max-uploads", "1000");
                query.append_pair("prefix", &prefix);
                if let Some((key, id)) = &markers {
                    query.append_pair("key-marker", key);
                    query.append_pair("upload-id-marker", id);
                }
            }
            let mut request = http::Request::builder()
                .method(http::Method::GET)
                .uri(url.as_str())
                .body(object_store::client::HttpRequestBody::empty())
                .map_err(|e| failed("building the request", &e))?;
            object_store::aws::AwsAuthorizer::new(&credential, "s3", &target.region)
                .try_authorize(&mut request, None)
                .map_err(|e| storage_error(e, &self.url, "signing"))?;
            let response = tokio::time::timeout(self.policy.attempt_timeout, async {
                let response = client.execute(request).await?;
                let status = response.status();
                let body = response.into_body().bytes().await?;
                Ok::<_, object_store::client::HttpError>((status, body))
            })
            .await
            .map_err(|_| failed("timed out", &"no answer"))?
            .map_err(|e| failed("request failed", &e))?;
            let (status, body) = response;
            if !status.is_success() {
                return Err(failed(
                    &format!("the store answered {status}"),
                    &String::from_utf8_lossy(&body),
                ));
            }
            let page: ListMultipartUploadsResult = quick_xml::de::from_reader(body.as_ref())
                .map_err(|e| failed("reading the answer", &e))?;
            for upload in page.uploads {
                found.push(UnfinishedUpload {
                    key: self.relative(&object_store::path::Path::from(upload.key.as_str())),
                    id: upload.upload_id,
                    started: upload.initiated,
                });
            }
            match (
                page.is_truncated,
                page.next_key_marker,
                page.next_upload_id_marker,
            ) {
                (true, Some(key), Some(id)) => markers = Some((key, id)),
                _ => return Ok(found),
            }
        }
    }
}

impl Storage {
    /// In a filesystem repository, the subdirectories directly inside `dir`
    /// that hold no file at any depth: what a run killed between creating
    /// an object's directory and its staging file leaves. Object storage
    /// has no directories: none.
    pub fn empty_subdirs(&self, dir: &str) -> Result<Vec<String>> {
        let RepoUrl::File(root) = &self.url else {
            return Ok(Vec::new());
        };
        let path = root.join(dir);
        let entries = match std::fs::read_dir(&path) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("listing", &path, e)),
        };
        let mut empty = Vec::new();
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) && holds_no_file(&entry.path()) {
                empty.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        empty.sort();
        Ok(empty)
    }

    /// Removes an empty directory tree `dir` (see `empty_subdirs`); one that
    /// gained a file since is left alone.
    pub fn remove_empty_dir(&self, dir: &str) -> Result<()> {
        let RepoUrl::File(root) = &self.url else {
            return Ok(());
        };
        let path = root.join(dir);
        if holds_no_file(&path) {
            remove_empty_tree(&path).map_err(|e| Error::io("removing", &path, e))?;
        }
        Ok(())
    }
}

fn holds_no_file(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .all(|e| e.file_type().is_ok_and(|t| t.is_dir()) && holds_no_file(&e.path()))
    })
}

/// Bottom-up `rmdir`: fails, leaving the rest, if a file appeared.
fn remove_empty_tree(dir: &std::path::Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)?.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_empty_tree(&entry.path())?;
        }
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Removes one of `staging_files`; one already gone counts as removed.
pub(super) fn remove_staging_file(root: &std::path::Path, upload: &UnfinishedUpload) -> Result<()> {
    let mut path = root.join(&upload.key);
    path.set_file_name(&upload.id);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("removing", &path, e)),
        _ => Ok(()),
    }
}

/// A filesystem repository's staging files under `dir`, each reported for
/// the key it was to become.
pub(super) fn staging_files(root: &std::path::Path, dir: &str) -> Result<Vec<UnfinishedUpload>> {
    super::stats::count(super::stats::RequestKind::List);
    let mut found = Vec::new();
    let mut stack = vec![root.join(dir)];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("listing", &d, e)),
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let meta = match entry.metadata() {
                Ok(m) => m,
                Err(_) => continue,
            };
            if meta.is_dir() {
                stack.push(path);
            } else if is_staging_name(&name) {
                let relative = path.strip_prefix(root).unwrap_or(&path);
                let key = relative
                    .with_file_name(name.split('#').next().unwrap_or_default())
                    .to_string_lossy()
                    .into_owned();
                found.push(UnfinishedUpload {
                    key,
                    id: name,
                    started: meta
                        .modified()
                        .map(DateTime::<Utc>::from)
                        .unwrap_or_default(),
                });
            }
        }
    }
    found.sort_by(|a, b| a.key.cmp(&b.key).then(a.id.cmp(&b.id)));
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_s3s_listing_of_unfinished_uploads() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>b</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker>
  <NextKeyMarker>p/c/backups/x/part-00002.tar.zst</NextKeyMarker>
  <NextUploadIdMarker>id2</NextUploadIdMarker>
  <MaxUploads>1000</MaxUploads><IsTruncated>true</IsTruncated>
  <Upload><Key>p/c/backups/x/part-00001.tar.zst</Key><UploadId>id1</UploadId>
    <Initiator><ID>x</ID></Initiator><StorageClass>STANDARD</StorageClass>
    <Initiated>2026-11-30T10:00:00.000Z</Initiated></Upload>
  <Upload><Key>p/c/backups/x/part-00002.tar.zst</Key><UploadId>id2</UploadId>
    <Initiated>2026-12-01T10:00:00.000Z</Initiated></Upload>
</ListMultipartUploadsResult>"#;
        let page: ListMultipartUploadsResult = quick_xml::de::from_str(xml).unwrap();
        assert!(page.is_truncated);
        assert_eq!(page.uploads.len(), 2);
        assert_eq!(page.uploads[1].upload_id, "id2");
        assert_eq!(page.next_upload_id_marker.as_deref(), Some("id2"));
        assert_eq!(
            page.uploads[0].initiated.to_rfc3339(),
            "2026-11-30T10:00:00+00:00"
        );
        let empty: ListMultipartUploadsResult = quick_xml::de::from_str(
            "<ListMultipartUploadsResult><IsTruncated>false</IsTruncated></ListMultipartUploadsResult>",
        )
        .unwrap();
        assert!(empty.uploads.is_empty());
    }

    #[test]
    fn empty_directory_trees_are_found_and_removed() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("c/backups/b/20000101T000000Z/pg_tblspc"))
            .unwrap();
        std::fs::create_dir_all(root.path().join("c/backups/b/20000102T000000Z")).unwrap();
        std::fs::write(
            root.path().join("c/backups/b/20000102T000000Z/claim.json"),
            b"x",
        )
        .unwrap();
        let url = RepoUrl::File(root.path().to_path_buf());
        let storage = Storage::open(&url, Default::default()).unwrap();
        assert_eq!(
            storage.empty_subdirs("c/backups/b").unwrap(),
            ["20000101T000000Z"]
        );
        storage
            .remove_empty_dir("c/backups/b/20000101T000000Z")
            .unwrap();
        storage
            .remove_empty_dir("c/backups/b/20000102T000000Z")
            .unwrap();
        assert!(!root.path().join("c/backups/b/20000101T000000Z").exists());
        assert!(
            root.path()
                .join("c/backups/b/20000102T000000Z/claim.json")
                .exists()
        );
    }

    #[test]
    fn staging_files_are_reported_for_their_key() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("c/backups/b")).unwrap();
        std::fs::write(root.path().join("c/backups/b/part-1.tar#12"), b"x").unwrap();
        std::fs::write(root.path().join("c/backups/b/manifest.json"), b"x").unwrap();
        let found = staging_files(root.path(), "c").unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].key, "c/backups/b/part-1.tar");
        assert_eq!(found[0].id, "part-1.tar#12");
    }
}
