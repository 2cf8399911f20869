//! The S3 calls `object_store` does not make: multipart uploads whose parts are copied
//! server-side from other objects (UploadPartCopy), listing and aborting abandoned
//! uploads, and presigned URLs — through `aws-sdk-s3`, configured from the same
//! environment as the rest of storage (`AWS_REGION`, `AWS_ENDPOINT_URL_S3` /
//! `AWS_ENDPOINT_URL`, the standard credential chain). A custom endpoint (MinIO, R2, a test
//! server) is addressed path-style.

use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

use super::StorageError;

/// A bucket and key prefix of an `s3://bucket/prefix` storage root.
#[derive(Debug, Clone)]
pub struct S3Bucket {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    url: String,
}

/// The failure of an S3 call, naming the call and the key.
fn failed(what: &str, key: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError::Io {
        context: format!("S3 {what} of {key}"),
        source: std::io::Error::other(e.to_string()),
    }
}

fn sdk_error<E, R>(e: &aws_sdk_s3::error::SdkError<E, R>) -> String
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    crate::error_chain(e)
}

impl S3Bucket {
    /// Opens the bucket of an `s3://bucket/prefix` URL, or `None` for any other URL.
    pub async fn open(url: &str) -> Result<Option<Self>, StorageError> {
        Self::open_in(url, None).await
    }

    /// [`S3Bucket::open`] in `region` (else the environment's).
    pub async fn open_in(url: &str, region: Option<&str>) -> Result<Option<Self>, StorageError> {
        let Some(rest) = url.strip_prefix("s3://") else {
            return Ok(None);
        };
        let rest = rest.trim_end_matches('/');
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let region = region.map(str::to_string).or_else(|| {
            std::env::var("AWS_REGION")
                .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
                .ok()
        });
        let shared = crate::net::aws_config(region.as_deref()).await;
        let mut config = aws_sdk_s3::config::Builder::from(&shared);
        let endpoint = std::env::var("AWS_ENDPOINT_URL_S3")
            .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
            .ok()
            .filter(|e| !e.is_empty());
        if let Some(ep) = endpoint {
            config = config.endpoint_url(ep).force_path_style(true);
        }
        Ok(Some(Self {
            client: aws_sdk_s3::Client::from_conf(config.build()),
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            url: url.trim_end_matches('/').to_string(),
        }))
    }

    /// The S3 client (deploy uses the storage's own client).
    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The object key of a storage key.
    fn key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    /// The storage root URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Aborts every unfinished multipart upload of `key` (left by a crash); returns how many.
    pub async fn abort_uploads(&self, key: &str) -> Result<usize, StorageError> {
        let full = self.key(key);
        let listed = self
            .client
            .list_multipart_uploads()
            .bucket(&self.bucket)
            .prefix(&full)
            .send()
            .await
            .map_err(|e| failed("ListMultipartUploads", key, sdk_error(&e)))?;
        let mut aborted = 0;
        for u in listed.uploads() {
            if u.key() != Some(full.as_str()) {
                continue;
            }
            if let Some(id) = u.upload_id() {
                self.abort(key, id).await?;
                aborted += 1;
            }
        }
        Ok(aborted)
    }

    /// Starts a multipart upload of `key`; returns its upload id.
    pub async fn create_upload(
        &self,
        key: &str,
        content_type: &str,
    ) -> Result<String, StorageError> {
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(self.key(key))
            .content_type(content_type)
            .send()
            .await
            .map_err(|e| failed("CreateMultipartUpload", key, sdk_error(&e)))?;
        out.upload_id()
            .map(str::to_string)
            .ok_or_else(|| failed("CreateMultipartUpload", key, "no upload id in the answer"))
    }

    /// Copies the whole object `source` server-side as part `number` of an upload; returns
    /// the part's ETag (unquoted): the MD5 of its bytes on buckets without KMS encryption.
    pub async fn copy_part(
        &self,
        key: &str,
        upload: &str,
        number: i32,
        source: &str,
    ) -> Result<String, StorageError> {
        let copy_source = format!("{}/{}", self.bucket, self.key(source));
        let out = self
            .client
            .upload_part_copy()
            .bucket(&self.bucket)
            .key(self.key(key))
            .upload_id(upload)
            .part_number(number)
            .copy_source(copy_source)
            .send()
            .await
            .map_err(|e| failed("UploadPartCopy", source, sdk_error(&e)))?;
        out.copy_part_result()
            .and_then(|r| r.e_tag())
            .map(|t| t.trim_matches('"').to_string())
            .ok_or_else(|| failed("UploadPartCopy", source, "no ETag in the answer"))
    }

    /// Completes an upload from its parts' numbers and ETags.
    pub async fn complete(
        &self,
        key: &str,
        upload: &str,
        parts: &[(i32, String)],
    ) -> Result<(), StorageError> {
        let parts: Vec<CompletedPart> = parts
            .iter()
            .map(|(n, tag)| {
                CompletedPart::builder()
                    .part_number(*n)
                    .e_tag(format!("\"{tag}\""))
                    .build()
            })
            .collect();
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(self.key(key))
            .upload_id(upload)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| failed("CompleteMultipartUpload", key, sdk_error(&e)))?;
        Ok(())
    }

    /// Aborts an upload (its copied parts are freed; no object appears).
    pub async fn abort(&self, key: &str, upload: &str) -> Result<(), StorageError> {
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(self.key(key))
            .upload_id(upload)
            .send()
            .await
            .map_err(|e| failed("AbortMultipartUpload", key, sdk_error(&e)))?;
        Ok(())
    }

    /// A presigned GET URL for `key`, valid for `valid`.
    pub async fn presign_get(&self, key: &str, valid: Duration) -> Result<String, StorageError> {
        let config =
            PresigningConfig::expires_in(valid).map_err(|e| failed("presigning", key, e))?;
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.key(key))
            .presigned(config)
            .await
            .map_err(|e| failed("presigning", key, sdk_error(&e)))?;
        Ok(req.uri().to_string())
    }
}
