//! The worker's file store (reports, database backups) on `object_store`: a local directory by
//! default, or an S3-compatible bucket when `NCY_WORKER_FILE_STORE` is `s3://bucket/prefix`.
//!
//! Every error names the store and the operation ("file store /x: not writable: …"), because the
//! job's error message is what an operator reads in the dead-letter queue. A local directory that
//! cannot be created does not stop the worker from starting (its other queues still work): the
//! jobs that need the store fail, retryably, with that message.
//!
//! Every error also says whether the store is down ([`FileStoreErrorKind::Unavailable`]: S3
//! unreachable, timing out or answering 5xx after `object_store`'s own retries), computed from the
//! `object_store` error's types when it is made ([`unavailable`]); the report and backup jobs wait
//! out such an outage without using their attempts.
use std::error::Error;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::TryStreamExt;
use ncy_runtime::{ConfigError, Env};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncRead, AsyncWriteExt};
use tokio::sync::OnceCell;

mod unavailable;

pub use unavailable::{FileStoreErrorKind, ServerUnavailable};

/// Default local directory of the file store.
pub const DEFAULT_FILE_STORE: &str = "./.run/files";

/// The `AWS_*` variables read through the settings' [`Env`] (so a test can give each worker its
/// own); anything else `AmazonS3Builder::from_env` knows (container or web-identity credentials…)
/// still comes from the process environment.
const AWS_VARS: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_ENDPOINT",
    "AWS_ENDPOINT_URL",
    "AWS_ALLOW_HTTP",
    "AWS_VIRTUAL_HOSTED_STYLE_REQUEST",
    "AWS_SKIP_SIGNATURE",
];

/// Where files go.
#[derive(Debug, Clone)]
pub enum FileStoreSettings {
    /// `NCY_WORKER_FILE_STORE=/dir`, `file:///dir` (default `./.run/files`, created if missing).
    Local(PathBuf),
    /// `NCY_WORKER_FILE_STORE=s3://bucket/prefix`; credentials, region and endpoint from `AWS_*`.
    S3 {
        bucket: String,
        prefix: String,
        /// `AWS_*` values (as secrets: they hold credentials).
        aws: Vec<(&'static str, SecretString)>,
    },
}

impl FileStoreSettings {
    /// Reads `NCY_WORKER_FILE_STORE`.
    pub fn load(env: &Env) -> Result<Self, ConfigError> {
        let raw = env
            .get("NCY_WORKER_FILE_STORE")
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_FILE_STORE.to_owned());
        let mut settings =
            Self::parse(raw.trim()).map_err(|m| ConfigError::new("NCY_WORKER_FILE_STORE", m))?;
        if let Self::S3 { aws, .. } = &mut settings {
            *aws = AWS_VARS
                .iter()
                .filter_map(|k| env.get(k).map(|v| (*k, SecretString::from(v))))
                .collect();
        }
        Ok(settings)
    }

    fn parse(raw: &str) -> Result<Self, String> {
        if let Some(rest) = raw.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err("expected s3://bucket/prefix".to_owned());
            }
            return Ok(Self::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.trim_matches('/').to_owned(),
                aws: Vec::new(),
            });
        }
        if let Some(path) = raw.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err("a file:// URL needs an absolute path (file:///dir)".to_owned());
            }
            return Ok(Self::Local(PathBuf::from(path)));
        }
        if raw.contains("://") {
            return Err("expected a directory, file:///dir or s3://bucket/prefix".to_owned());
        }
        Ok(Self::Local(PathBuf::from(raw)))
    }
}

/// Why a file operation failed; the message names the store.
#[derive(Debug, thiserror::Error)]
#[error("file store {store}: {message}")]
pub struct FileStoreError {
    pub store: String,
    pub message: String,
    /// Whether the store was down, told from the cause's types when this error was made.
    pub kind: FileStoreErrorKind,
}

impl FileStoreError {
    /// Whether the store was unreachable or not serving (after `object_store`'s retries): the
    /// operation would succeed once it is back.
    pub fn is_unavailable(&self) -> bool {
        self.kind == FileStoreErrorKind::Unavailable
    }
}

/// A stored file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    /// Key under the store (`backups/ncy-….dump`).
    pub key: String,
    pub size: u64,
    /// Last modification, ms since the Unix epoch.
    pub modified_ms: i64,
}

/// The file store; cheap to clone.
#[derive(Clone, Debug)]
pub struct FileStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: String,
    backend: Backend,
}

#[derive(Debug)]
enum Backend {
    /// Opened on first use, so a directory that cannot be made fails the jobs, not the worker.
    Local(PathBuf, OnceCell<Arc<dyn ObjectStore>>),
    Remote(Arc<dyn ObjectStore>),
}

impl FileStore {
    /// The store of `settings` (S3: reads the `AWS_*` variables now).
    pub fn open(settings: &FileStoreSettings) -> Result<Self, FileStoreError> {
        let (name, backend) = match settings {
            FileStoreSettings::Local(dir) => (
                dir.display().to_string(),
                Backend::Local(dir.clone(), OnceCell::new()),
            ),
            FileStoreSettings::S3 {
                bucket,
                prefix,
                aws,
            } => {
                let name = if prefix.is_empty() {
                    format!("s3://{bucket}")
                } else {
                    format!("s3://{bucket}/{prefix}")
                };
                let mut builder = AmazonS3Builder::from_env();
                for (var, value) in aws {
                    let key =
                        AmazonS3ConfigKey::from_str(&var.to_ascii_lowercase()).map_err(|e| {
                            FileStoreError {
                                store: name.clone(),
                                message: format!("{var}: {e}"),
                                kind: FileStoreErrorKind::Other,
                            }
                        })?;
                    builder = builder.with_config(key, value.expose_secret());
                }
                let s3 = builder
                    .with_bucket_name(bucket)
                    .with_http_connector(unavailable::StatusTyped)
                    .build()
                    .map_err(|e| FileStoreError {
                        store: name.clone(),
                        message: format!("bad S3 configuration: {e}"),
                        kind: FileStoreErrorKind::Other,
                    })?;
                let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
                    Arc::new(s3)
                } else {
                    Arc::new(PrefixStore::new(s3, prefix.as_str()))
                };
                (name, Backend::Remote(store))
            }
        };
        Ok(Self {
            inner: Arc::new(Inner { name, backend }),
        })
    }

    /// The store as configured (`/var/ncy/files`, `s3://bucket/prefix`).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// An error of this store that is not an outage (the local directory).
    fn err(&self, message: impl Into<String>) -> FileStoreError {
        FileStoreError {
            store: self.inner.name.clone(),
            message: message.into(),
            kind: FileStoreErrorKind::Other,
        }
    }

    /// An error of this store caused by `cause`, an outage or not by its types.
    fn failed(&self, message: impl Into<String>, cause: &(dyn Error + 'static)) -> FileStoreError {
        FileStoreError {
            kind: unavailable::kind_of(cause),
            ..self.err(message)
        }
    }

    async fn store(&self) -> Result<Arc<dyn ObjectStore>, FileStoreError> {
        match &self.inner.backend {
            Backend::Remote(s) => Ok(s.clone()),
            Backend::Local(dir, cell) => cell
                .get_or_try_init(|| async {
                    tokio::fs::create_dir_all(dir)
                        .await
                        .map_err(|e| self.err(format!("not writable: {e}")))?;
                    let fs = LocalFileSystem::new_with_prefix(dir)
                        .map_err(|e| self.err(format!("not usable: {e}")))?;
                    Ok::<_, FileStoreError>(Arc::new(fs) as Arc<dyn ObjectStore>)
                })
                .await
                .cloned(),
        }
    }

    /// Writes `bytes` at `key`; returns the size written.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<u64, FileStoreError> {
        let size = bytes.len() as u64;
        self.store()
            .await?
            .put(&Path::from(key), PutPayload::from(bytes))
            .await
            .map_err(|e| self.failed(format!("cannot write {key}: {e}"), &e))?;
        Ok(size)
    }

    /// Starts writing `key` from a stream (multipart where the store has it): nothing appears at
    /// `key` until [`FileUpload::commit`], so a producer that fails half-way leaves no file.
    pub async fn upload(&self, key: &str) -> Result<FileUpload, FileStoreError> {
        Ok(FileUpload {
            writer: BufWriter::new(self.store().await?, Path::from(key)),
            key: key.to_owned(),
            store: self.clone(),
            written: 0,
        })
    }

    /// The files whose key starts with the folder `prefix` (e.g. `backups`).
    pub async fn list(&self, prefix: &str) -> Result<Vec<StoredFile>, FileStoreError> {
        let metas: Vec<_> = self
            .store()
            .await?
            .list(Some(&Path::from(prefix)))
            .try_collect()
            .await
            .map_err(|e| self.failed(format!("cannot list {prefix}: {e}"), &e))?;
        Ok(metas
            .into_iter()
            .map(|m| StoredFile {
                key: m.location.to_string(),
                size: m.size,
                modified_ms: m.last_modified.timestamp_millis(),
            })
            .collect())
    }

    /// Deletes `key` (a missing file is not an error).
    pub async fn delete(&self, key: &str) -> Result<(), FileStoreError> {
        match self.store().await?.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.failed(format!("cannot delete {key}: {e}"), &e)),
        }
    }
}

/// A file being written; see [`FileStore::upload`].
pub struct FileUpload {
    writer: BufWriter,
    key: String,
    store: FileStore,
    written: u64,
}

impl FileUpload {
    /// Copies `reader` to the end of the file (until it ends).
    pub async fn copy_from(
        &mut self,
        reader: &mut (impl AsyncRead + Unpin + ?Sized),
    ) -> Result<u64, FileStoreError> {
        let n = tokio::io::copy(reader, &mut self.writer)
            .await
            .map_err(|e| {
                self.store
                    .failed(format!("cannot write {}: {e}", self.key), &e)
            })?;
        self.written += n;
        Ok(n)
    }

    /// Completes the file; returns its size. A failed completion cleans up after itself (a
    /// multipart upload is aborted by `object_store`); the writer may not be aborted after its
    /// shutdown began (it panics), so it is not.
    pub async fn commit(mut self) -> Result<u64, FileStoreError> {
        if let Err(e) = self.writer.shutdown().await {
            return Err(self
                .store
                .failed(format!("cannot write {}: {e}", self.key), &e));
        }
        Ok(self.written)
    }

    /// Drops what was written.
    pub async fn abort(mut self) {
        if let Err(e) = self.writer.abort().await {
            tracing::warn!(store = self.store.name(), key = %self.key, error = %e, "cannot abort an upload");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_paths_file_urls_and_s3() {
        let p = |s: &str| FileStoreSettings::parse(s);
        assert!(
            matches!(p("/a/b"), Ok(FileStoreSettings::Local(d)) if d == std::path::Path::new("/a/b"))
        );
        assert!(
            matches!(p("file:///a/b"), Ok(FileStoreSettings::Local(d)) if d == std::path::Path::new("/a/b"))
        );
        assert!(matches!(p("s3://bkt/x/y/"),
            Ok(FileStoreSettings::S3 { bucket, prefix, .. }) if bucket == "bkt" && prefix == "x/y"));
        assert!(p("s3:///x").is_err());
        assert!(p("file://rel").is_err());
        assert!(p("gs://b").is_err());
    }

    #[test]
    fn s3_settings_take_the_aws_variables_of_the_env_and_hide_them() {
        let env = Env::from_pairs([
            ("NCY_WORKER_FILE_STORE", "s3://bkt"),
            ("AWS_ACCESS_KEY_ID", "id"),
            ("AWS_SECRET_ACCESS_KEY", "very-secret"),
            ("AWS_ENDPOINT", "http://127.0.0.1:9"),
        ]);
        let settings = FileStoreSettings::load(&env).expect("settings");
        assert!(!format!("{settings:?}").contains("very-secret"));
        let FileStoreSettings::S3 { aws, .. } = &settings else {
            panic!("{settings:?}")
        };
        let names: Vec<&str> = aws.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            names,
            ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT"]
        );
        let store = FileStore::open(&settings).expect("open");
        assert_eq!(store.name(), "s3://bkt");
    }

    #[tokio::test]
    async fn put_list_delete_in_a_local_directory_it_creates() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("new/files");
        let store = FileStore::open(&FileStoreSettings::Local(dir.clone())).expect("open");
        assert_eq!(
            store.put("a/one.txt", Bytes::from("1")).await.expect("put"),
            1
        );
        let mut up = store.upload("a/two.txt").await.expect("upload");
        let mut r: &[u8] = b"two!";
        up.copy_from(&mut r).await.expect("copy");
        assert!(!dir.join("a/two.txt").exists(), "not before the commit");
        assert_eq!(up.commit().await.expect("commit"), 4);
        let up = store.upload("a/three.txt").await.expect("upload");
        up.abort().await;
        assert_eq!(std::fs::read(dir.join("a/two.txt")).expect("read"), b"two!");
        let mut keys: Vec<_> = store
            .list("a")
            .await
            .expect("list")
            .into_iter()
            .map(|f| f.key)
            .collect();
        keys.sort();
        assert_eq!(keys, ["a/one.txt", "a/two.txt"]);
        store.delete("a/one.txt").await.expect("delete");
        store.delete("a/one.txt").await.expect("missing is fine");
        assert_eq!(store.list("a").await.expect("list").len(), 1);
    }

    #[tokio::test]
    async fn a_directory_that_cannot_be_made_names_the_store() {
        let tmp = tempfile::tempdir().expect("tmp");
        let file = tmp.path().join("plain");
        std::fs::write(&file, "x").expect("write");
        let dir = file.join("files");
        let store = FileStore::open(&FileStoreSettings::Local(dir.clone())).expect("open");
        let err = store
            .put("k", Bytes::from("1"))
            .await
            .expect_err("not a dir");
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("file store {}: not writable:", dir.display())),
            "{msg}"
        );
        assert_eq!(err.kind, FileStoreErrorKind::Other, "not an outage: {msg}");
    }

    #[tokio::test]
    async fn a_local_write_that_fails_is_not_an_outage() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store =
            FileStore::open(&FileStoreSettings::Local(tmp.path().to_owned())).expect("open");
        store.put("a", Bytes::from("1")).await.expect("put");
        // `a` is a file: nothing can be written under it (an object_store error, from the disk).
        let err = store
            .put("a/b", Bytes::from("2"))
            .await
            .expect_err("under a file");
        assert!(err.message.starts_with("cannot write a/b:"), "{err}");
        assert_eq!(err.kind, FileStoreErrorKind::Other, "{err}");
        let mut up = store.upload("a/c").await.expect("upload");
        let mut r: &[u8] = b"c";
        up.copy_from(&mut r).await.expect("buffered");
        let err = up.commit().await.expect_err("under a file");
        assert_eq!(err.kind, FileStoreErrorKind::Other, "{err}");
    }
}
