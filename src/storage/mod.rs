//! Object storage for specs, bundles, segments and outputs.
//!
//! A thin wrapper over the `object_store` crate: one [`Storage`] per storage root URL, keys
//! relative to that root, the same layout on every backend (see [`keys`]).

mod bundle;
mod cloud;
pub mod gcs;
mod gcs_store;
pub mod keys;
pub mod s3;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

pub use bundle::{pack_dir, unpack, BundleError, PackedBundle};

/// Storage failures, with the key or URL involved.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The storage URL cannot be used.
    #[error("storage URL {url:?} is not usable: {reason}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// Why.
        reason: String,
    },
    /// The object does not exist.
    #[error("object {key:?} not found in {root}")]
    NotFound {
        /// Key relative to the root.
        key: String,
        /// Storage root URL.
        root: String,
    },
    /// Any other backend failure.
    #[error("storage operation on {key:?} in {root} failed: {source}")]
    Backend {
        /// Key relative to the root.
        key: String,
        /// Storage root URL.
        root: String,
        /// Underlying error.
        #[source]
        source: object_store::Error,
    },
    /// Local file I/O around a transfer.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A key that would name something outside the storage root, or nothing at all.
    #[error("storage key {key:?} is not allowed: {reason}")]
    BadKey {
        /// The key given.
        key: String,
        /// Why.
        reason: &'static str,
    },
}

/// Why a key cannot be used, if it cannot: keys are relative, `/`-separated names with no
/// empty, `.` or `..` segments, so no key (from a job spec, a report or a bug) can reach
/// outside the storage root or the job's prefix, whatever the backend.
pub fn check_key(key: &str) -> Result<(), &'static str> {
    if key.is_empty() {
        return Err("it is empty");
    }
    if key.starts_with('/') {
        return Err("it is absolute");
    }
    if key.contains('\\') || key.contains('\0') {
        return Err("it contains a backslash or a NUL byte");
    }
    if key
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err("it has an empty, '.' or '..' segment");
    }
    Ok(())
}

impl StorageError {
    /// Whether retrying the same operation may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StorageError::Backend { .. } | StorageError::Io { .. })
    }
}

/// Test crash point: an upload of `key` has its data written but is not complete.
fn mid_upload_failpoint(key: &str) {
    if crate::failpoint::enabled() {
        let name = key.rsplit('/').next().unwrap_or(key);
        crate::failpoint::hit(&format!("mid-upload:{name}"));
    }
}

/// A storage root: `file:///abs/dir`, a plain directory path, or `memory://name`.
#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    url: String,
    local_root: Option<PathBuf>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage").field("url", &self.url).finish()
    }
}

/// Part size of multipart uploads (and the size above which uploads become multipart).
pub const MULTIPART_PART_BYTES: usize = 8 * 1024 * 1024;

/// Named in-memory stores shared within one process, so `memory://x` opened twice is one store.
fn memory_stores() -> &'static Mutex<HashMap<String, Arc<InMemory>>> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<InMemory>>>> = OnceLock::new();
    STORES.get_or_init(Default::default)
}

impl Storage {
    /// Opens a storage root. Local directories are created if missing.
    pub fn open(url: &str) -> Result<Self, StorageError> {
        let bad = |reason: &str| StorageError::BadUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        if let Some(name) = url.strip_prefix("memory://") {
            let store = memory_stores()
                .lock()
                .map_err(|_| bad("memory store registry poisoned"))?
                .entry(name.to_string())
                .or_default()
                .clone();
            return Ok(Self {
                store,
                url: url.trim_end_matches('/').to_string(),
                local_root: None,
            });
        }
        if url.starts_with("s3://") || url.starts_with("gs://") {
            return cloud::open(url);
        }
        let dir = if url.starts_with("file:") {
            url::Url::parse(url)
                .ok()
                .and_then(|u| u.to_file_path().ok())
                .ok_or_else(|| bad("expected file:///absolute/path"))?
        } else if url.contains("://") {
            let scheme = url.split("://").next().unwrap_or_default();
            return Err(bad(&format!(
                "scheme {scheme}:// is not supported (use s3://bucket/prefix, gs://bucket/prefix, file:///dir, a directory path, or memory://name)"
            )));
        } else {
            PathBuf::from(url)
        };
        std::fs::create_dir_all(&dir).map_err(|e| StorageError::Io {
            context: format!("cannot create storage directory {}", dir.display()),
            source: e,
        })?;
        let dir = dir.canonicalize().map_err(|e| StorageError::Io {
            context: format!("cannot resolve storage directory {}", dir.display()),
            source: e,
        })?;
        let store = LocalFileSystem::new_with_prefix(&dir).map_err(|e| bad(&e.to_string()))?;
        let url = url::Url::from_directory_path(&dir)
            .map_err(|_| bad("not an absolute directory"))?
            .to_string()
            .trim_end_matches('/')
            .to_string();
        Ok(Self {
            store: Arc::new(store),
            url,
            local_root: Some(dir),
        })
    }

    /// Opens the storage that holds an object URL such as `file:///x/jobs/ID/job.json`,
    /// returning the storage root and the object's key. The root is everything before the
    /// last `/jobs/` or `/bundles/` segment.
    pub fn open_object_url(object_url: &str) -> Result<(Self, String), StorageError> {
        let split = ["/jobs/", "/bundles/"]
            .iter()
            .filter_map(|m| object_url.rfind(m))
            .max()
            .ok_or_else(|| StorageError::BadUrl {
                url: object_url.to_string(),
                reason: "expected <storage root>/jobs/<id>/job.json".into(),
            })?;
        let (root, key) = object_url.split_at(split);
        Ok((Self::open(root)?, key[1..].to_string()))
    }

    /// The root URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Full URL of a key.
    pub fn url_for(&self, key: &str) -> String {
        format!("{}/{}", self.url, key)
    }

    /// The file backing `key`, when the storage is a local directory (and the key is
    /// allowed, see [`check_key`]).
    pub fn local_path(&self, key: &str) -> Option<PathBuf> {
        check_key(key).ok()?;
        self.local_root.as_ref().map(|r| r.join(key))
    }

    fn path(&self, key: &str) -> Result<ObjPath, StorageError> {
        check_key(key).map_err(|reason| StorageError::BadKey {
            key: key.to_string(),
            reason,
        })?;
        Ok(ObjPath::from(key))
    }

    fn err(&self, key: &str, e: object_store::Error) -> StorageError {
        match e {
            object_store::Error::NotFound { .. } => StorageError::NotFound {
                key: key.to_string(),
                root: self.url.clone(),
            },
            source => StorageError::Backend {
                key: key.to_string(),
                root: self.url.clone(),
                source,
            },
        }
    }

    /// Writes an object atomically: readers see the old object or the whole new one.
    pub async fn put(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
        self.store
            .put(&self.path(key)?, PutPayload::from(data))
            .await
            .map(|_| ())
            .map_err(|e| self.err(key, e))
    }

    /// Uploads a local file. Local storage copies it into place through a temporary file
    /// and a rename (atomic, and never the whole file in memory).
    pub async fn put_file(&self, key: &str, file: &Path) -> Result<(), StorageError> {
        let path = self.path(key)?;
        if let Some(dest) = self.local_path(key) {
            let io = |context: String| move |source| StorageError::Io { context, source };
            let dir = dest.parent().unwrap_or(Path::new("/")).to_path_buf();
            tokio::fs::create_dir_all(&dir)
                .await
                .map_err(io(format!("cannot create {}", dir.display())))?;
            let tmp = dir.join(format!(
                ".{}.{}.partial",
                dest.file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("object"),
                ulid::Ulid::new()
            ));
            if let Err(e) = tokio::fs::copy(file, &tmp).await {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(io(format!("cannot copy {} into storage", file.display()))(
                    e,
                ));
            }
            mid_upload_failpoint(key);
            return tokio::fs::rename(&tmp, &dest)
                .await
                .map_err(io(format!("cannot move {} into place", dest.display())));
        }
        // Remote: streamed through a buffered writer, which switches to a multipart upload
        // once the file outgrows one part.
        let mut src = tokio::fs::File::open(file)
            .await
            .map_err(|e| StorageError::Io {
                context: format!("cannot read {}", file.display()),
                source: e,
            })?;
        let mut writer = object_store::buffered::BufWriter::with_capacity(
            self.store.clone(),
            path,
            MULTIPART_PART_BYTES,
        );
        let copied = tokio::io::copy(&mut src, &mut writer).await;
        if copied.is_ok() {
            mid_upload_failpoint(key);
        }
        let finished = match copied {
            Ok(_) => tokio::io::AsyncWriteExt::shutdown(&mut writer).await,
            Err(e) => {
                let _ = writer.abort().await;
                Err(e)
            }
        };
        finished.map_err(|e| StorageError::Io {
            context: format!("cannot upload {} to {}", file.display(), self.url_for(key)),
            source: e,
        })
    }

    /// Keeps a local file as an object: in local storage on the same file system as a hard
    /// link (no copy: the object and the file are then one file, so the file must not be
    /// changed in place afterwards), otherwise as [`Storage::put_file`].
    pub async fn put_file_linked(&self, key: &str, file: &Path) -> Result<(), StorageError> {
        if let Some(dest) = self.local_path(key) {
            let dir = dest.parent().unwrap_or(Path::new("/")).to_path_buf();
            if tokio::fs::create_dir_all(&dir).await.is_ok() {
                let tmp = dir.join(format!(".{}.link", ulid::Ulid::new()));
                if tokio::fs::hard_link(file, &tmp).await.is_ok() {
                    mid_upload_failpoint(key);
                    return match tokio::fs::rename(&tmp, &dest).await {
                        Ok(()) => Ok(()),
                        Err(e) => {
                            let _ = tokio::fs::remove_file(&tmp).await;
                            Err(StorageError::Io {
                                context: format!("cannot move {} into place", dest.display()),
                                source: e,
                            })
                        }
                    };
                }
            }
        }
        self.put_file(key, file).await
    }

    /// Reads a whole object.
    pub async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        let r = self
            .store
            .get(&self.path(key)?)
            .await
            .map_err(|e| self.err(key, e))?;
        r.bytes().await.map_err(|e| self.err(key, e))
    }

    /// Makes an object available as a local file: the backing file itself for local
    /// storage, otherwise a download into `dir`.
    pub async fn fetch_to_dir(&self, key: &str, dir: &Path) -> Result<PathBuf, StorageError> {
        let path = self.path(key)?;
        if let Some(p) = self.local_path(key) {
            if tokio::fs::metadata(&p).await.is_ok() {
                return Ok(p);
            }
            return Err(StorageError::NotFound {
                key: key.to_string(),
                root: self.url.clone(),
            });
        }
        let dest = dir.join(key.replace('/', "_"));
        let io = |e| StorageError::Io {
            context: format!("cannot write {}", dest.display()),
            source: e,
        };
        let r = self.store.get(&path).await.map_err(|e| self.err(key, e))?;
        let mut stream = r.into_stream();
        let mut out = tokio::fs::File::create(&dest).await.map_err(io)?;
        while let Some(chunk) = stream.try_next().await.map_err(|e| self.err(key, e))? {
            tokio::io::AsyncWriteExt::write_all(&mut out, &chunk)
                .await
                .map_err(io)?;
        }
        tokio::io::AsyncWriteExt::flush(&mut out)
            .await
            .map_err(io)?;
        Ok(dest)
    }

    /// Bytes `range` of an object.
    pub async fn get_range(
        &self,
        key: &str,
        range: std::ops::Range<u64>,
    ) -> Result<Bytes, StorageError> {
        self.store
            .get_range(&self.path(key)?, range)
            .await
            .map_err(|e| self.err(key, e))
    }

    /// Downloads an object to `dest` (streamed, written next to it and renamed, so `dest`
    /// is never a partial file).
    pub async fn download(&self, key: &str, dest: &Path) -> Result<(), StorageError> {
        let dir = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let io = |context: String| move |source| StorageError::Io { context, source };
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(io(format!("cannot create {}", dir.display())))?;
        let tmp = dir.join(format!(".helios-download-{}", ulid::Ulid::new()));
        let result = async {
            let r = self
                .store
                .get(&self.path(key)?)
                .await
                .map_err(|e| self.err(key, e))?;
            let mut stream = r.into_stream();
            let file = tokio::fs::File::create(&tmp)
                .await
                .map_err(io(format!("cannot write {}", tmp.display())))?;
            let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
            while let Some(chunk) = stream.try_next().await.map_err(|e| self.err(key, e))? {
                tokio::io::AsyncWriteExt::write_all(&mut out, &chunk)
                    .await
                    .map_err(io(format!("cannot write {}", tmp.display())))?;
            }
            tokio::io::AsyncWriteExt::flush(&mut out)
                .await
                .map_err(io(format!("cannot write {}", tmp.display())))?;
            tokio::fs::rename(&tmp, dest).await.map_err(io(format!(
                "cannot move the download to {}",
                dest.display()
            )))
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }

    /// Size of an object, or `None` if it does not exist.
    pub async fn size(&self, key: &str) -> Result<Option<u64>, StorageError> {
        match self.store.head(&self.path(key)?).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err(key, e)),
        }
    }

    /// Keys under a prefix (recursive), sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let p = if prefix.is_empty() {
            ObjPath::default()
        } else {
            self.path(prefix.trim_end_matches('/'))?
        };
        let mut keys: Vec<String> = self
            .store
            .list(Some(&p))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .map_err(|e| self.err(prefix, e))?;
        keys.sort();
        Ok(keys)
    }

    /// Copies an object to another key, inside the store (server-side for S3 and Cloud
    /// Storage: no bytes pass through this machine).
    pub async fn copy(&self, from: &str, to: &str) -> Result<(), StorageError> {
        self.store
            .copy(&self.path(from)?, &self.path(to)?)
            .await
            .map_err(|e| self.err(from, e))
    }

    /// The MD5 (hex) the store keeps for an object, when it has one without reading the
    /// object: S3's ETag of a single-part upload, Cloud Storage's `md5Hash`. `None` for
    /// local and memory storage and for multipart or composite objects.
    pub async fn stored_md5(&self, key: &str) -> Result<Option<String>, StorageError> {
        if let Some(gcs) = gcs::GcsBucket::open(&self.url)? {
            return gcs.md5(key).await;
        }
        if !self.url.starts_with("s3://") {
            return Ok(None);
        }
        let meta = self
            .store
            .head(&self.path(key)?)
            .await
            .map_err(|e| self.err(key, e))?;
        Ok(meta
            .e_tag
            .map(|t| t.trim_matches('"').to_ascii_lowercase())
            .filter(|t| t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit())))
    }

    /// Deletes an object; a missing object is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match self.store.delete(&self.path(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(key, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_cannot_leave_the_root() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "jobs/../../x",
            "jobs//x",
            "jobs/./x",
            "a\\b",
        ] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
        assert!(check_key("jobs/J/attempts/0/1.mp4").is_ok());
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(dir.path().join("secret"), "s").unwrap();
        let s = Storage::open(root.to_str().unwrap()).unwrap();
        assert!(matches!(
            s.get("../secret").await,
            Err(StorageError::BadKey { .. })
        ));
        assert!(matches!(
            s.fetch_to_dir("../secret", dir.path()).await,
            Err(StorageError::BadKey { .. })
        ));
        assert!(s.local_path("../secret").is_none());
        assert!(s.put("../escape", Bytes::from_static(b"x")).await.is_err());
        assert!(!dir.path().join("escape").exists());
    }

    async fn put_get_list(s: &Storage) {
        s.put("jobs/a/job.json", Bytes::from_static(b"{}"))
            .await
            .unwrap();
        s.put("jobs/a/attempts/0/1.mp4", Bytes::from_static(b"x"))
            .await
            .unwrap();
        assert_eq!(&s.get("jobs/a/job.json").await.unwrap()[..], b"{}");
        s.put("jobs/a/job.json", Bytes::from_static(b"{1}"))
            .await
            .unwrap();
        assert_eq!(&s.get("jobs/a/job.json").await.unwrap()[..], b"{1}");
        assert_eq!(s.size("jobs/a/attempts/0/1.mp4").await.unwrap(), Some(1));
        assert_eq!(s.size("nope").await.unwrap(), None);
        assert_eq!(
            s.list("jobs/a").await.unwrap(),
            vec!["jobs/a/attempts/0/1.mp4", "jobs/a/job.json"]
        );
        assert!(matches!(
            s.get("missing").await,
            Err(StorageError::NotFound { .. })
        ));
        s.delete("jobs/a/job.json").await.unwrap();
        s.delete("jobs/a/job.json").await.unwrap();
        assert_eq!(s.size("jobs/a/job.json").await.unwrap(), None);
    }

    #[tokio::test]
    async fn file_storage_conforms() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path().to_str().unwrap()).unwrap();
        assert!(s.url().starts_with("file:///"));
        put_get_list(&s).await;
        let (again, key) = Storage::open_object_url(&s.url_for("jobs/x/job.json")).unwrap();
        assert_eq!(again.url(), s.url());
        assert_eq!(key, "jobs/x/job.json");
    }

    #[tokio::test]
    async fn memory_storage_conforms() {
        let s = Storage::open("memory://conformance").unwrap();
        put_get_list(&s).await;
    }

    #[test]
    fn unknown_scheme_is_explained() {
        let e = Storage::open("ftp://x/y").unwrap_err().to_string();
        assert!(e.contains("ftp://"), "{e}");
    }
}
