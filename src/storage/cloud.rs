//! S3 and GCS roots: `s3://bucket/prefix`, `gs://bucket/prefix`, configured from the
//! standard environment.
//!
//! S3: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` /
//! `AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL` (S3-compatible stores
//! such as R2 or MinIO; plain `http://` endpoints are allowed), and the usual web-identity and
//! container credentials. GCS: the application default credentials
//! (`GOOGLE_APPLICATION_CREDENTIALS`, gcloud's, or the metadata server), and
//! `STORAGE_EMULATOR_HOST` or `GOOGLE_BASE_URL` for an emulator or custom endpoint.

use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::prefix::PrefixStore;
use object_store::ObjectStore;

use super::{Storage, StorageError};

/// Opens an `s3://` or `gs://` root.
pub(super) fn open(url: &str) -> Result<Storage, StorageError> {
    let bad = |reason: String| StorageError::BadUrl {
        url: url.to_string(),
        reason,
    };
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| bad("no scheme".into()))?;
    let rest = rest.trim_end_matches('/');
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(bad("no bucket name".into()));
    }
    // object_store's HTTPS client takes rustls' process default.
    crate::net::use_ring();
    let store: Arc<dyn ObjectStore> = match scheme {
        "s3" => {
            let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
            // The SDKs' names for region and endpoint, beside object_store's own.
            if let Ok(region) = std::env::var("AWS_REGION") {
                b = b.with_region(region);
            }
            let endpoint = std::env::var("AWS_ENDPOINT_URL_S3")
                .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
                .ok();
            if let Some(ep) = endpoint.filter(|e| !e.is_empty()) {
                b = b
                    .with_allow_http(ep.starts_with("http://"))
                    .with_endpoint(ep);
            }
            Arc::new(b.build().map_err(|e| bad(e.to_string()))?)
        }
        // Cloud Storage's JSON API, the one the in-bucket assembly composes with (see
        // gcs_store.rs for why not object_store's XML client).
        "gs" => match super::gcs::GcsBucket::open(url)? {
            Some(b) => Arc::new(super::gcs_store::GcsJsonStore::new(b)),
            None => return Err(bad("expected gs://bucket/prefix".into())),
        },
        other => return Err(bad(format!("unknown scheme {other}://"))),
    };
    let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
        store
    } else {
        Arc::new(PrefixStore::new(store, prefix))
    };
    Ok(Storage {
        store,
        url: url.trim_end_matches('/').to_string(),
        local_root: None,
    })
}
