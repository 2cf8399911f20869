//! The Cloud Storage calls `object_store` does not make: object composition (the output
//! assembled from segment objects inside the bucket) and object metadata (the MD5 Cloud
//! Storage computed for an object), through the JSON API.
//!
//! Endpoint: `STORAGE_EMULATOR_HOST` (an emulator, no credentials) or `GOOGLE_BASE_URL`,
//! else `https://storage.googleapis.com` with an access token from the application default
//! credentials (`google-cloud-auth`: a service-account key in
//! `GOOGLE_APPLICATION_CREDENTIALS`, gcloud's user credentials, or the metadata server).

use std::time::Duration;

use base64::Engine as _;
use google_cloud_auth::credentials::{AccessTokenCredentials, Builder};
use serde::Deserialize;

use super::StorageError;

/// Sources one compose call takes (Cloud Storage's limit).
pub const MAX_COMPOSE_SOURCES: usize = 32;

/// A bucket and key prefix of a `gs://bucket/prefix` storage root.
#[derive(Clone)]
pub struct GcsBucket {
    http: reqwest::Client,
    base: String,
    bucket: String,
    prefix: String,
    creds: Option<AccessTokenCredentials>,
}

impl std::fmt::Debug for GcsBucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcsBucket")
            .field("base", &self.base)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .finish()
    }
}

fn failed(what: &str, key: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError::Io {
        context: format!("Cloud Storage {what} of {key}"),
        source: std::io::Error::other(e.to_string()),
    }
}

/// Percent-encodes an object name for a URL path segment.
pub(crate) fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len() * 3);
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Deserialize)]
struct ObjectMeta {
    #[serde(default, rename = "md5Hash")]
    md5_hash: Option<String>,
}

/// Cloud Storage's JSON API: `STORAGE_EMULATOR_HOST` (an emulator, no credentials), else
/// `GOOGLE_BASE_URL` or storage.googleapis.com with application default credentials for
/// `scope`. Returns the base URL and the credentials.
pub(crate) fn endpoint(scope: &str) -> Result<(String, Option<AccessTokenCredentials>), String> {
    let emulator = std::env::var("STORAGE_EMULATOR_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .map(|h| {
            if h.contains("://") {
                h
            } else {
                format!("http://{h}")
            }
        });
    if let Some(base) = emulator {
        return Ok((base, None));
    }
    let base = std::env::var("GOOGLE_BASE_URL")
        .unwrap_or_else(|_| "https://storage.googleapis.com".into());
    crate::net::use_ring();
    let creds = Builder::default()
        .with_scopes([scope])
        .build_access_token_credentials()
        .map_err(|e| format!("no Google credentials for Cloud Storage: {e}"))?;
    Ok((base, Some(creds)))
}

impl GcsBucket {
    /// Opens the bucket of a `gs://bucket/prefix` URL, or `None` for any other URL.
    pub fn open(url: &str) -> Result<Option<Self>, StorageError> {
        let Some(rest) = url.strip_prefix("gs://") else {
            return Ok(None);
        };
        let rest = rest.trim_end_matches('/');
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let (base, creds) = endpoint("https://www.googleapis.com/auth/devstorage.read_write")
            .map_err(|reason| StorageError::BadUrl {
                url: url.to_string(),
                reason,
            })?;
        // No timeout on a whole request: an output of gigabytes streams for minutes. A
        // stalled connection is caught by the read timeout instead.
        let http = crate::net::http_client()
            .connect_timeout(Duration::from_secs(20))
            .read_timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| failed("client", url, e))?;
        Ok(Some(Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            creds,
        }))
    }

    /// The same bucket with no key prefix: the [`super::gcs_store::GcsJsonStore`] under a
    /// `PrefixStore` names whole objects.
    pub(super) fn without_prefix(mut self) -> Self {
        self.prefix.clear();
        self
    }

    /// The HTTP client, the API's base URL and the bucket's name, for the object store.
    pub(super) fn parts(&self) -> (&reqwest::Client, &str, &str) {
        (&self.http, &self.base, &self.bucket)
    }

    /// A request with the bearer token, if the endpoint needs one.
    pub(super) async fn authorize(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, String> {
        match &self.creds {
            None => Ok(req),
            Some(c) => c
                .access_token()
                .await
                .map(|t| req.bearer_auth(t.token))
                .map_err(|e| format!("no access token for Cloud Storage: {e}")),
        }
    }

    fn name(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    async fn authorized(
        &self,
        req: reqwest::RequestBuilder,
        key: &str,
    ) -> Result<reqwest::RequestBuilder, StorageError> {
        self.authorize(req)
            .await
            .map_err(|e| failed("authorization", key, e))
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
        key: &str,
    ) -> Result<reqwest::Response, StorageError> {
        let resp = self
            .authorized(req, key)
            .await?
            .send()
            .await
            .map_err(|e| failed(what, key, e))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(StorageError::NotFound {
                key: key.to_string(),
                root: format!("gs://{}/{}", self.bucket, self.prefix),
            });
        }
        Err(failed(
            what,
            key,
            format!("{status}: {}", body.chars().take(500).collect::<String>()),
        ))
    }

    /// The MD5 (hex) Cloud Storage computed for an object (`None` for composite objects,
    /// which have only a CRC32C).
    pub async fn md5(&self, key: &str) -> Result<Option<String>, StorageError> {
        let url = format!(
            "{}/storage/v1/b/{}/o/{}",
            self.base,
            encode(&self.bucket),
            encode(&self.name(key))
        );
        let meta: ObjectMeta = self
            .send(
                self.http.get(url).query(&[("fields", "md5Hash")]),
                "metadata",
                key,
            )
            .await?
            .json()
            .await
            .map_err(|e| failed("metadata", key, e))?;
        Ok(match meta.md5_hash {
            Some(b64) => Some(hex::encode(
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|e| failed("metadata", key, e))?,
            )),
            None => None,
        })
    }

    /// Composes up to [`MAX_COMPOSE_SOURCES`] objects, in order, into `dest`, a video.
    pub async fn compose(&self, sources: &[String], dest: &str) -> Result<(), StorageError> {
        self.compose_typed(sources, dest, "video/mp4").await
    }

    async fn compose_typed(
        &self,
        sources: &[String],
        dest: &str,
        content_type: &str,
    ) -> Result<(), StorageError> {
        if sources.is_empty() || sources.len() > MAX_COMPOSE_SOURCES {
            return Err(failed(
                "compose",
                dest,
                format!(
                    "{} sources (1 to {MAX_COMPOSE_SOURCES} allowed)",
                    sources.len()
                ),
            ));
        }
        let url = format!(
            "{}/storage/v1/b/{}/o/{}/compose",
            self.base,
            encode(&self.bucket),
            encode(&self.name(dest))
        );
        let body = serde_json::json!({
            "sourceObjects": sources.iter().map(|k| serde_json::json!({"name": self.name(k)})).collect::<Vec<_>>(),
            "destination": {"contentType": content_type},
        });
        // Only the name back, not the whole object resource.
        let req = self.http.post(url).query(&[("fields", "name")]).json(&body);
        self.send(req, "compose", dest).await?;
        Ok(())
    }

    /// Composes any number of objects, in order, into `dest`: groups of 32 composed into
    /// intermediate objects under `scratch`, those composed again, as a tree. Returns the
    /// intermediate keys (the caller deletes them).
    pub async fn compose_tree(
        &self,
        sources: &[String],
        dest: &str,
        scratch: &str,
    ) -> Result<Vec<String>, StorageError> {
        self.compose_tree_typed(sources, dest, scratch, "video/mp4")
            .await
    }

    /// [`GcsBucket::compose_tree`] for any content type.
    pub(super) async fn compose_tree_typed(
        &self,
        sources: &[String],
        dest: &str,
        scratch: &str,
        content_type: &str,
    ) -> Result<Vec<String>, StorageError> {
        let mut level = sources.to_vec();
        let mut made = Vec::new();
        let mut depth = 0;
        while level.len() > MAX_COMPOSE_SOURCES {
            let groups: Vec<Vec<String>> = level
                .chunks(MAX_COMPOSE_SOURCES)
                .map(|c| c.to_vec())
                .collect();
            let names: Vec<String> = (0..groups.len())
                .map(|i| format!("{scratch}/{depth}-{i}"))
                .collect();
            let results = futures::future::join_all(
                groups
                    .iter()
                    .zip(&names)
                    .map(|(g, n)| self.compose_typed(g, n, content_type)),
            )
            .await;
            made.extend(names.iter().cloned());
            for r in results {
                r?;
            }
            level = names;
            depth += 1;
        }
        self.compose_typed(&level, dest, content_type).await?;
        Ok(made)
    }
}

#[cfg(test)]
mod tests {
    use super::encode;

    #[test]
    fn names_are_one_path_segment() {
        assert_eq!(encode("jobs/a b/1.m4s"), "jobs%2Fa%20b%2F1.m4s");
    }
}
