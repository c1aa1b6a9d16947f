//! Storage: one interface over every backend (a filesystem path, S3 and
//! S3-compatible stores, Azure Blob Storage), built on `object_store`.
//! Every request is bounded in time per attempt and retried by one policy
//! (`RetryPolicy`); failures carry the object's key and the repository's
//! URL.
//!
//! Storage knows nothing of PostgreSQL, codecs or commands: it moves named
//! bytes. Keys are relative to the repository root and are built only by
//! `repo::layout`.

mod retry;
pub mod stats;
mod unfinished;
mod upload;
pub mod url;

use crate::error::{Error, ErrorKind, Result};
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use stats::{RequestKind, count};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
pub use url::RepoUrl;

/// How long one network step may take before it counts as failed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

pub use retry::RetryPolicy;
pub use unfinished::UnfinishedUpload;
pub use upload::ObjectWriter;

/// The most keys one listing request asks for: S3's own maximum, so a
/// page is one request whatever the store's default.
const LIST_PAGE: usize = 1000;

#[derive(Debug, Clone)]
pub struct ObjectInfo {
    /// Key relative to the repository root.
    pub key: String,
    pub size: u64,
    pub last_modified: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    root: StorePath,
    /// The same store as `store`, for what only S3 offers (listing and
    /// aborting unfinished multipart uploads).
    s3: Option<Arc<object_store::aws::AmazonS3>>,
    /// The same store as `store` listed a page per request (every remote
    /// backend); `None` for a filesystem repository.
    paged: Option<Paged>,
    s3_target: Option<unfinished::S3Target>,
    url: RepoUrl,
    policy: RetryPolicy,
    /// For a filesystem repository written by root: the owner of its
    /// directory, given every file and directory pgproof creates, so that
    /// the archiver (running as the PostgreSQL user) can keep writing.
    local_owner: Option<(PathBuf, u32, u32)>,
}

/// A store's paginated listing, shared with `store`.
#[derive(Clone)]
struct Paged(Arc<dyn object_store::list::PaginatedListStore>);

impl std::fmt::Debug for Paged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Paged")
    }
}

impl Storage {
    /// Opens the repository at `url`. A filesystem repository's directory
    /// must already exist: creating it would hide an unmounted volume.
    pub fn open(url: &RepoUrl, policy: RetryPolicy) -> Result<Storage> {
        let mut s3 = None;
        let mut s3_target = None;
        let mut paged = None;
        let (store, root): (Arc<dyn ObjectStore>, StorePath) = match url {
            RepoUrl::File(path) => {
                if !path.is_dir() {
                    return Err(Error::new(
                        ErrorKind::Storage,
                        format!("repository directory {} does not exist", path.display()),
                    )
                    .with_hint(
                        "create it (and mount its volume) first, writable by the user PostgreSQL runs as; pgproof does not create it, so that an unmounted volume is never filled by mistake",
                    ));
                }
                let fs = object_store::local::LocalFileSystem::new_with_prefix(path)
                    .map_err(|e| storage_error(e, url, "opening"))?
                    .with_fsync(true)
                    // `delete` would otherwise leave an empty directory per deleted backup.
                    .with_automatic_cleanup(true);
                (Arc::new(fs), StorePath::default())
            }
            RepoUrl::S3 { bucket, prefix } => {
                // Plain http set here, in the options the listing of
                // unfinished uploads connects with too, not on the builder
                // alone (that listing was refused by an https-only client).
                let client = client_options(&policy, "AWS_ALLOW_HTTP");
                let builder = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_client_options(client.clone())
                    .with_retry(policy.object_store_config());
                s3_target = Some(unfinished::S3Target::from_builder(&builder, bucket, client));
                let built = builder.build().map_err(|e| {
                    storage_error(e, url, "configuring S3").with_hint(
                        "check AWS_REGION, AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (AWS_ALLOW_HTTP=true for a plain-http endpoint)",
                    )
                })?;
                let store = Arc::new(built);
                s3 = Some(store.clone());
                paged = Some(Paged(store.clone()));
                (store, StorePath::from(prefix.as_str()))
            }
            RepoUrl::Azure { container, prefix } => {
                let built = object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_container_name(container)
                    .with_client_options(client_options(&policy, "AZURE_ALLOW_HTTP"))
                    .with_retry(policy.object_store_config())
                    .build()
                    .map_err(|e| {
                        storage_error(e, url, "configuring Azure Blob Storage").with_hint(
                            "set AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ACCOUNT_KEY (or AZURE_STORAGE_SAS_KEY, or a managed identity); for Azurite, AZURE_STORAGE_USE_EMULATOR=true and AZURITE_BLOB_STORAGE_URL",
                        )
                    })?;
                let store = Arc::new(built);
                paged = Some(Paged(store.clone()));
                (store, StorePath::from(prefix.as_str()))
            }
        };
        let local_owner = match url {
            RepoUrl::File(path) if nix::unistd::geteuid().is_root() => {
                use std::os::unix::fs::MetadataExt;
                let meta = std::fs::metadata(path).map_err(|e| Error::io("reading", path, e))?;
                (meta.uid() != 0).then(|| (path.clone(), meta.uid(), meta.gid()))
            }
            _ => None,
        };
        Ok(Storage {
            store,
            s3,
            paged,
            s3_target,
            root,
            url: url.clone(),
            policy,
            local_owner,
        })
    }

    pub fn url(&self) -> &RepoUrl {
        &self.url
    }

    fn path(&self, key: &str) -> StorePath {
        if self.root.as_ref().is_empty() {
            StorePath::from(key)
        } else {
            StorePath::from(format!("{}/{key}", self.root))
        }
    }

    fn relative(&self, location: &StorePath) -> String {
        let full = location.as_ref();
        let root = self.root.as_ref();
        if root.is_empty() {
            full.to_string()
        } else {
            full.strip_prefix(root)
                .map(|k| k.trim_start_matches('/'))
                .unwrap_or(full)
                .to_string()
        }
    }

    /// Runs one storage call (object_store retrying within it) under the
    /// policy's backstop: however a request hangs, the call ends.
    async fn bounded<T>(
        &self,
        what: &str,
        key: &str,
        fut: impl std::future::Future<Output = object_store::Result<T>>,
    ) -> Result<T> {
        let limit = self.policy.backstop();
        match tokio::time::timeout(limit, fut).await {
            Ok(result) => result.map_err(|e| storage_error(e, &self.url, &format!("{what} {key}"))),
            Err(_) => Err(Error::new(
                ErrorKind::Storage,
                format!(
                    "{what} {key} in {} did not finish within {}",
                    self.url,
                    crate::report::duration(limit)
                ),
            )
            .with_hint(retry::UNREACHABLE_HINT)),
        }
    }

    /// Runs an idempotent storage call, retrying it whole while it fails in
    /// a way worth retrying. object_store retries a request that fails
    /// before its answer; this also covers an answer's body cut short (a
    /// small object's or a listing page's), which it hands back as an error.
    async fn retrying<T, F, Fut>(&self, what: &str, key: &str, mut call: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = object_store::Result<T>>,
    {
        let started = std::time::Instant::now();
        let mut backoff = retry::Backoff::new(&self.policy);
        loop {
            match self.bounded(what, key, call()).await {
                Err(e)
                    if self.url.is_remote()
                        && retry::transient(&e)
                        && backoff.may_retry(started) =>
                {
                    let pause = backoff.next_pause();
                    tracing::debug!("{e}; retrying in {pause:?}");
                    tokio::time::sleep(pause).await;
                }
                other => return other,
            }
        }
    }

    /// Stores `data` under `key`, replacing nothing: if the key exists the
    /// result is an error of kind `Conflict`.
    ///
    /// A conditional create is not retried by object_store once it may have
    /// reached the store (a timeout, a dropped connection). It is retried
    /// here; if the retry finds the key taken, the object is read back, and
    /// the same bytes mean the earlier attempt stored it.
    pub async fn put_new(&self, key: &str, data: Bytes) -> Result<()> {
        let path = self.path(key);
        let started = std::time::Instant::now();
        let mut backoff = retry::Backoff::new(&self.policy);
        let mut ambiguous = false;
        loop {
            count(RequestKind::Write);
            let opts = PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            };
            let attempt = self
                .bounded(
                    "storing",
                    key,
                    self.store
                        .put_opts(&path, PutPayload::from(data.clone()), opts),
                )
                .await;
            match attempt {
                Ok(_) => break,
                Err(e) if e.kind() == ErrorKind::Conflict && ambiguous => {
                    if self.get(key).await? == data {
                        tracing::debug!("{key}: an earlier attempt had stored it");
                        break;
                    }
                    return Err(e);
                }
                Err(e)
                    if self.url.is_remote()
                        && retry::transient(&e)
                        && backoff.may_retry(started) =>
                {
                    ambiguous = true;
                    let pause = backoff.next_pause();
                    tracing::debug!("{e}; retrying in {pause:?}");
                    tokio::time::sleep(pause).await;
                }
                Err(e) => return Err(e),
            }
        }
        self.written(key);
        Ok(())
    }

    /// Stores `data` under `key`, replacing any earlier object atomically.
    pub async fn put_replace(&self, key: &str, data: Bytes) -> Result<()> {
        let path = self.path(key);
        count(RequestKind::Write);
        self.retrying("storing", key, || {
            self.store.put(&path, PutPayload::from(data.clone()))
        })
        .await?;
        self.written(key);
        Ok(())
    }

    pub async fn get(&self, key: &str) -> Result<Bytes> {
        let path = self.path(key);
        count(RequestKind::Read);
        self.retrying("reading", key, || async {
            self.store.get(&path).await?.bytes().await
        })
        .await
    }

    pub async fn head(&self, key: &str) -> Result<Option<ObjectInfo>> {
        let path = self.path(key);
        count(RequestKind::Lookup);
        match self
            .retrying("looking up", key, || self.store.head(&path))
            .await
        {
            Ok(meta) => Ok(Some(ObjectInfo {
                key: key.to_string(),
                size: meta.size,
                last_modified: meta.last_modified,
            })),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Objects directly inside the directory-like prefix `dir` (not recursive).
    pub async fn list_dir(&self, dir: &str) -> Result<Vec<ObjectInfo>> {
        let listing = self.list_pages(dir, true).await?;
        Ok(listing.objects.into_iter().map(|m| self.info(m)).collect())
    }

    /// The names of the directory-like prefixes directly inside `dir`
    /// (`""` for the repository's root).
    pub async fn list_subdirs(&self, dir: &str) -> Result<Vec<String>> {
        let listing = self.list_pages(dir, true).await?;
        Ok(listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect())
    }

    /// Every object under `prefix`, recursively.
    pub async fn list_all(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let listing = self.list_pages(prefix, false).await?;
        Ok(listing.objects.into_iter().map(|m| self.info(m)).collect())
    }

    fn info(&self, meta: object_store::ObjectMeta) -> ObjectInfo {
        ObjectInfo {
            key: self.relative(&meta.location),
            size: meta.size,
            last_modified: meta.last_modified,
        }
    }

    /// A listing of `dir`, one request per page of at most `LIST_PAGE`
    /// keys, each page under its own time limit: a listing of any size
    /// completes as long as each page does. With `delimited`, only what is
    /// directly inside `dir` (its objects and subdirectory names).
    async fn list_pages(&self, dir: &str, delimited: bool) -> Result<object_store::ListResult> {
        let path = self.path(dir);
        let Some(Paged(paged)) = &self.paged else {
            return self.list_local(&path, dir, delimited).await;
        };
        use object_store::list::PaginatedListOptions;
        // Paginated listings take the prefix as given: a directory's ends in its delimiter.
        let prefix = (!path.as_ref().is_empty()).then(|| format!("{path}/"));
        let mut all = object_store::ListResult {
            common_prefixes: Vec::new(),
            objects: Vec::new(),
            extensions: Default::default(),
        };
        let mut page_token = None;
        loop {
            count(RequestKind::List);
            let opts = PaginatedListOptions {
                delimiter: delimited.then_some("/".into()),
                max_keys: Some(LIST_PAGE),
                page_token: page_token.take(),
                ..Default::default()
            };
            let page = self
                .retrying("listing", dir, || {
                    paged.list_paginated(prefix.as_deref(), opts.clone())
                })
                .await?;
            all.common_prefixes.extend(page.result.common_prefixes);
            all.objects.extend(page.result.objects);
            match page.page_token {
                Some(token) => page_token = Some(token),
                None => return Ok(all),
            }
        }
    }

    /// A filesystem repository's listing: one directory read, or a walk
    /// whose every step is bounded.
    async fn list_local(
        &self,
        path: &StorePath,
        dir: &str,
        delimited: bool,
    ) -> Result<object_store::ListResult> {
        count(RequestKind::List);
        if delimited {
            return self
                .bounded("listing", dir, self.store.list_with_delimiter(Some(path)))
                .await;
        }
        let mut stream = self.store.list(Some(path));
        let mut objects = Vec::new();
        while let Some(meta) = self
            .bounded("listing", dir, async { stream.try_next().await })
            .await?
        {
            objects.push(meta);
        }
        // A walk reads every directory it passes: counted as a listing
        // each, as object storage would answer it a page at a time at best.
        let directories: std::collections::HashSet<&str> = objects
            .iter()
            .map(|m| m.location.as_ref().rsplit_once('/').map_or("", |(d, _)| d))
            .collect();
        for _ in 1..directories.len() {
            count(RequestKind::List);
        }
        Ok(object_store::ListResult {
            common_prefixes: Vec::new(),
            objects,
            extensions: Default::default(),
        })
    }

    /// A streaming upload (multipart once past the buffer), written from a
    /// blocking thread: memory stays at the buffer and the parts in flight,
    /// whatever the object's size. The object appears when the writer is
    /// finished, never half-written; dropped unfinished, the upload is
    /// aborted.
    ///
    /// 5 MiB is S3's smallest part. Two parts in flight keep a link busy;
    /// object_store's default of eight let a slow disk hold 64 MiB per
    /// writer (backups peaked at 88 MiB).
    pub fn writer(&self, key: &str) -> ObjectWriter {
        count(RequestKind::Write);
        let upload = object_store::buffered::BufWriter::with_capacity(
            self.store.clone(),
            self.path(key),
            5 << 20,
        )
        .with_max_concurrency(2);
        ObjectWriter::new(self, key, upload)
    }

    /// To be called once an object is complete (the `put` methods do it):
    /// hands what root created in a filesystem repository to the
    /// repository's owner.
    pub fn written(&self, key: &str) {
        let Some((root, uid, gid)) = &self.local_owner else {
            return;
        };
        let mut path = root.clone();
        for part in key.split('/') {
            path.push(part);
            let _ = std::os::unix::fs::lchown(&path, Some(*uid), Some(*gid));
        }
    }

    /// A streaming download to be read on a blocking thread. A filesystem
    /// repository's file is read directly in large reads (object_store's
    /// stream of a local file comes in 8 KiB pieces); a remote object is
    /// bridged from its HTTP stream.
    pub async fn blocking_reader(&self, key: &str) -> Result<Box<dyn std::io::Read + Send>> {
        let path = self.path(key);
        count(RequestKind::Read);
        let result = self
            .retrying("reading", key, || self.store.get(&path))
            .await?;
        match result.payload {
            object_store::GetResultPayload::File(file, _) => {
                Ok(Box::new(std::io::BufReader::with_capacity(1 << 20, file)))
            }
            object_store::GetResultPayload::Stream(stream) => {
                let url = self.url.clone();
                let key = key.to_string();
                let reader = tokio_util::io::StreamReader::new(stream.map_err(move |e| {
                    std::io::Error::other(ReadFailed(storage_error(
                        e,
                        &url,
                        &format!("reading {key}"),
                    )))
                }));
                Ok(Box::new(tokio_util::io::SyncIoBridge::new(reader)))
            }
        }
    }

    /// Removes what interrupted uploads left under the directory-like
    /// prefix `dir`: in a filesystem repository, the staging files
    /// (`<key>#<n>`) an object is written to before it is moved into place,
    /// which listings never show. S3 keeps an interrupted multipart upload's
    /// parts out of sight until a lifecycle rule
    /// (`AbortIncompleteMultipartUpload`) removes them: nothing to do here.
    /// Returns how many files were removed.
    pub fn remove_interrupted_uploads(&self, dir: &str) -> Result<usize> {
        let RepoUrl::File(root) = &self.url else {
            return Ok(0);
        };
        let staged = unfinished::staging_files(root, dir)?;
        for upload in &staged {
            unfinished::remove_staging_file(root, upload)?;
        }
        // Emptied: object_store's clean-up ran before, while they were there.
        let _ = std::fs::remove_dir(root.join(dir));
        Ok(staged.len())
    }

    pub async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key);
        count(RequestKind::Delete);
        self.retrying("deleting", key, || self.store.delete(&path))
            .await
    }
}

/// A download that failed mid-way after object_store's retries (which
/// resume from the last byte received): the storage's failure, not the
/// data's, carried through readers that see only `std::io::Error`.
#[derive(Debug)]
pub struct ReadFailed(pub Error);

impl std::fmt::Display for ReadFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for ReadFailed {}

/// The storage failure inside `err`, if reading from storage is what failed.
pub fn read_failure(err: &std::io::Error) -> Option<&Error> {
    err.get_ref()
        .and_then(|inner| inner.downcast_ref::<ReadFailed>())
        .map(|f| &f.0)
}

/// object_store's staging file names: `<name>#<digits>`.
fn is_staging_name(name: &str) -> bool {
    name.split_once('#')
        .is_some_and(|(_, suffix)| !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit()))
}

/// The HTTP client's options for a remote backend: each attempt bounded,
/// plain http only where `allow_http_variable` (the backend's own, as
/// object_store names it) says so.
fn client_options(policy: &RetryPolicy, allow_http_variable: &str) -> object_store::ClientOptions {
    let allow_http = std::env::var_os(allow_http_variable).is_some_and(|v| v == "true" || v == "1");
    object_store::ClientOptions::new()
        .with_timeout(policy.attempt_timeout)
        .with_connect_timeout(policy.attempt_timeout.min(Duration::from_secs(10)))
        .with_allow_http(allow_http)
}

fn storage_error(err: object_store::Error, url: &RepoUrl, what: &str) -> Error {
    let kind = match &err {
        object_store::Error::NotFound { .. } => ErrorKind::NotFound,
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. } => {
            ErrorKind::Conflict
        }
        _ => ErrorKind::Storage,
    };
    let error = Error::new(kind, format!("{what} in {url}")).with_source(err);
    if kind == ErrorKind::Storage {
        error.with_hint(retry::UNREACHABLE_HINT)
    } else {
        error
    }
}
