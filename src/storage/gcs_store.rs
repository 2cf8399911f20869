//! `gs://` storage through Cloud Storage's JSON API: the [`ObjectStore`] behind every call a
//! job makes there (put, multipart put, get, ranged get, head, list, delete, copy).
//!
//! Why not `object_store`'s own GCS client: it speaks the XML API, while the in-bucket
//! assembly needs the JSON API anyway (compose, MD5s). One API means one endpoint and one
//! set of credentials for everything, and a loopback peer (fake-gcs-server) that answers all
//! of it, so a whole `gs://` render with its output composed in the bucket is tested.
//!
//! A multipart upload puts each part as an object of its own under `.helios-uploads/` at the
//! bucket's root and composes them (Cloud Storage's parallel composite upload), then deletes
//! the parts. Parts of an upload that was never completed (a crash) stay there: a lifecycle
//! rule on that prefix removes them (docs/deploy-gcp.md).

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
};
use serde::Deserialize;

use super::gcs::{encode, GcsBucket};

const STORE: &str = "GCS";
/// Concurrent deletes of one `delete_stream`.
const DELETES_AT_ONCE: usize = 8;
/// Where multipart uploads keep their parts until they are composed.
const UPLOADS: &str = ".helios-uploads";
/// The parts of an object resource read back: Cloud Storage answers with the whole resource
/// (a kilobyte) unless told which fields to send.
const FIELDS: &str = "name,size,updated,etag,generation";
const LIST_FIELDS: &str = "items(name,size,updated,etag,generation),prefixes,nextPageToken";

/// A Cloud Storage bucket as an [`ObjectStore`], over the JSON API.
#[derive(Debug, Clone)]
pub(super) struct GcsJsonStore {
    bucket: GcsBucket,
}

impl fmt::Display for GcsJsonStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GcsJsonStore(gs://{})", self.bucket.parts().2)
    }
}

/// An object resource, as much of it as a listing or a metadata read needs. Cloud Storage
/// writes 64-bit numbers (size, generation) as JSON strings.
#[derive(Deserialize)]
struct Resource {
    name: String,
    #[serde(default)]
    size: Option<serde_json::Value>,
    #[serde(default)]
    updated: Option<String>,
    #[serde(default)]
    etag: Option<String>,
    #[serde(default)]
    generation: Option<serde_json::Value>,
}

fn number(v: &Option<serde_json::Value>) -> Option<u64> {
    match v {
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        _ => None,
    }
}

impl Resource {
    fn meta(&self) -> ObjectMeta {
        ObjectMeta {
            location: Path::from(self.name.as_str()),
            last_modified: self
                .updated
                .as_deref()
                .and_then(|u| DateTime::parse_from_rfc3339(u).ok())
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_default(),
            size: number(&self.size).unwrap_or(0),
            e_tag: self.etag.clone(),
            version: number(&self.generation).map(|g| g.to_string()),
        }
    }
}

#[derive(Deserialize)]
struct Listing {
    #[serde(default)]
    items: Vec<Resource>,
    #[serde(default)]
    prefixes: Vec<String>,
    #[serde(default, rename = "nextPageToken")]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct Rewrite {
    #[serde(default)]
    done: bool,
    #[serde(default, rename = "rewriteToken")]
    rewrite_token: Option<String>,
}

fn generic(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> object_store::Error {
    object_store::Error::Generic {
        store: STORE,
        source: e.into(),
    }
}

/// What a failed response means for `name`: not found, a failed precondition (which the
/// caller may read as "already exists"), or a plain failure with the server's words.
async fn failure(resp: reqwest::Response, what: &str, name: &str) -> object_store::Error {
    let status = resp.status();
    let body: String = resp
        .text()
        .await
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect();
    let source = format!("Cloud Storage {what} of {name}: {status}: {body}").into();
    match status.as_u16() {
        404 => object_store::Error::NotFound {
            path: name.to_string(),
            source,
        },
        412 => object_store::Error::Precondition {
            path: name.to_string(),
            source,
        },
        304 => object_store::Error::NotModified {
            path: name.to_string(),
            source,
        },
        _ => object_store::Error::Generic {
            store: STORE,
            source,
        },
    }
}

impl GcsJsonStore {
    /// The store of a `gs://bucket[/prefix]` URL's bucket (the prefix is the caller's).
    pub(super) fn new(bucket: GcsBucket) -> Self {
        Self {
            bucket: bucket.without_prefix(),
        }
    }

    fn object_url(&self, name: &str) -> String {
        let (_, base, bucket) = self.bucket.parts();
        format!("{base}/storage/v1/b/{}/o/{}", encode(bucket), encode(name))
    }

    /// Sends a request (with the token, if any); a non-success status is an error.
    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
        name: &str,
    ) -> object_store::Result<reqwest::Response> {
        let resp = self
            .bucket
            .authorize(req)
            .await
            .map_err(generic)?
            .send()
            .await
            .map_err(|e| generic(format!("Cloud Storage {what} of {name}: {e}")))?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(failure(resp, what, name).await)
        }
    }

    async fn json<T: serde::de::DeserializeOwned>(
        resp: reqwest::Response,
        what: &str,
        name: &str,
    ) -> object_store::Result<T> {
        resp.json()
            .await
            .map_err(|e| generic(format!("Cloud Storage {what} of {name}: {e}")))
    }

    /// Uploads one object in a single request.
    async fn upload(
        &self,
        name: &str,
        data: Bytes,
        mode: &PutMode,
    ) -> object_store::Result<PutResult> {
        let (http, base, bucket) = self.bucket.parts();
        let mut query = vec![
            ("uploadType", "media".to_string()),
            ("name", name.into()),
            ("fields", FIELDS.into()),
        ];
        match mode {
            PutMode::Overwrite => {}
            PutMode::Create => query.push(("ifGenerationMatch", "0".into())),
            PutMode::Update(v) => {
                let generation = v.version.clone().ok_or_else(|| {
                    generic("an update of a Cloud Storage object needs its generation")
                })?;
                query.push(("ifGenerationMatch", generation));
            }
        }
        let req = http
            .post(format!("{base}/upload/storage/v1/b/{}/o", encode(bucket)))
            .query(&query)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(data);
        let create = matches!(mode, PutMode::Create);
        let resp = self.send_creating(req, "upload", name, create).await?;
        let meta = Self::json::<Resource>(resp, "upload", name).await?.meta();
        Ok(put_result(meta))
    }

    /// [`GcsJsonStore::send`] of a request that, with `create`, carries
    /// `ifGenerationMatch=0`: its failed precondition means the object already exists.
    async fn send_creating(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
        name: &str,
        create: bool,
    ) -> object_store::Result<reqwest::Response> {
        match self.send(req, what, name).await {
            Err(object_store::Error::Precondition { path, source }) if create => {
                Err(object_store::Error::AlreadyExists { path, source })
            }
            r => r,
        }
    }

    async fn metadata(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> object_store::Result<ObjectMeta> {
        let (http, ..) = self.bucket.parts();
        let mut req = http.get(self.object_url(name)).query(&[("fields", FIELDS)]);
        if let Some(g) = version {
            req = req.query(&[("generation", g)]);
        }
        let resp = self.send(req, "metadata read", name).await?;
        Ok(Self::json::<Resource>(resp, "metadata read", name)
            .await?
            .meta())
    }

    async fn delete_one(&self, name: &str) -> object_store::Result<()> {
        let (http, ..) = self.bucket.parts();
        self.send(http.delete(self.object_url(name)), "delete", name)
            .await
            .map(|_| ())
    }

    /// One page of a listing under `prefix` (a whole path segment), with `/` as the
    /// delimiter or recursively.
    async fn page(
        &self,
        prefix: &str,
        delimiter: bool,
        token: Option<String>,
    ) -> object_store::Result<Listing> {
        let (http, base, bucket) = self.bucket.parts();
        let mut query = vec![
            ("prefix", prefix.to_string()),
            ("fields", LIST_FIELDS.into()),
        ];
        if delimiter {
            query.push(("delimiter", "/".into()));
        }
        if let Some(t) = token {
            query.push(("pageToken", t));
        }
        let req = http
            .get(format!("{base}/storage/v1/b/{}/o", encode(bucket)))
            .query(&query);
        let resp = self.send(req, "listing", prefix).await?;
        Self::json(resp, "listing", prefix).await
    }
}

/// What a finished upload tells its caller: the object's etag and generation.
fn put_result(meta: ObjectMeta) -> PutResult {
    PutResult {
        e_tag: meta.e_tag,
        version: meta.version,
        extensions: Default::default(),
    }
}

/// A listing prefix for a path: whole segments only (`a/b` lists `a/b/…`, not `a/bc`).
fn list_prefix(prefix: Option<&Path>) -> String {
    match prefix.map(|p| p.as_ref()) {
        None | Some("") => String::new(),
        Some(p) => format!("{p}/"),
    }
}

#[async_trait]
impl ObjectStore for GcsJsonStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.upload(location.as_ref(), Bytes::from(payload), &opts.mode)
            .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        _opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        Ok(Box::new(Composite {
            store: self.clone(),
            dest: location.to_string(),
            parts: format!("{UPLOADS}/{}", ulid::Ulid::new()),
            count: 0,
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let name = location.as_ref();
        let meta = self.metadata(name, options.version.as_deref()).await?;
        options.check_preconditions(&meta)?;
        let range = match &options.range {
            Some(r) => r.as_range(meta.size).map_err(generic)?,
            None => 0..meta.size,
        };
        let payload = if options.head || range.is_empty() {
            GetResultPayload::Stream(stream::empty().boxed())
        } else {
            let (http, ..) = self.bucket.parts();
            // The generation just read: the bytes are that object's even if it is replaced
            // meanwhile.
            let mut query = vec![("alt", "media".to_string())];
            if let Some(g) = &meta.version {
                query.push(("generation", g.clone()));
            }
            let mut req = http.get(self.object_url(name)).query(&query);
            if options.range.is_some() {
                req = req.header(
                    reqwest::header::RANGE,
                    format!("bytes={}-{}", range.start, range.end - 1),
                );
            }
            let resp = self.send(req, "read", name).await?;
            let what = name.to_string();
            GetResultPayload::Stream(
                stream::try_unfold(resp, move |mut resp| {
                    let what = what.clone();
                    async move {
                        match resp.chunk().await {
                            Ok(Some(b)) => Ok(Some((b, resp))),
                            Ok(None) => Ok(None),
                            Err(e) => Err(generic(format!("Cloud Storage read of {what}: {e}"))),
                        }
                    }
                })
                .boxed(),
            )
        };
        Ok(GetResult {
            payload,
            meta,
            range,
            attributes: Default::default(),
            extensions: Default::default(),
        })
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let store = self.clone();
        locations
            .map(move |p| {
                let store = store.clone();
                async move {
                    let p = p?;
                    store.delete_one(p.as_ref()).await?;
                    Ok(p)
                }
            })
            .buffered(DELETES_AT_ONCE)
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let store = self.clone();
        let prefix = list_prefix(prefix);
        // Pages until there is no next page token; `None` as the state means "done".
        stream::try_unfold(Some(None::<String>), move |state| {
            let (store, prefix) = (store.clone(), prefix.clone());
            async move {
                let Some(token) = state else {
                    return Ok::<_, object_store::Error>(None);
                };
                let page = store.page(&prefix, false, token).await?;
                let next = page.next_page_token.filter(|t| !t.is_empty()).map(Some);
                let metas: Vec<_> = page.items.iter().map(Resource::meta).collect();
                Ok(Some((stream::iter(metas.into_iter().map(Ok)), next)))
            }
        })
        .try_flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let prefix = list_prefix(prefix);
        let mut out = ListResult {
            common_prefixes: Vec::new(),
            objects: Vec::new(),
            extensions: Default::default(),
        };
        let mut token = None;
        loop {
            let page = self.page(&prefix, true, token).await?;
            out.objects.extend(page.items.iter().map(Resource::meta));
            out.common_prefixes.extend(
                page.prefixes
                    .iter()
                    .map(|p| Path::from(p.trim_end_matches('/'))),
            );
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        let (http, base, bucket) = self.bucket.parts();
        let url = format!(
            "{base}/storage/v1/b/{b}/o/{}/rewriteTo/b/{b}/o/{}",
            encode(from.as_ref()),
            encode(to.as_ref()),
            b = encode(bucket)
        );
        let create = matches!(options.mode, object_store::CopyMode::Create);
        let mut token: Option<String> = None;
        // A large rewrite may take several calls, each carrying the token of the last.
        loop {
            let mut query = vec![("fields", "done,rewriteToken".to_string())];
            if create {
                query.push(("ifGenerationMatch", "0".to_string()));
            }
            if let Some(t) = &token {
                query.push(("rewriteToken", t.clone()));
            }
            let req = http.post(&url).query(&query).json(&serde_json::json!({}));
            let resp = self.send_creating(req, "copy", to.as_ref(), create).await?;
            let step: Rewrite = Self::json(resp, "copy", to.as_ref()).await?;
            match (step.done, step.rewrite_token) {
                (true, _) => return Ok(()),
                (false, Some(t)) => token = Some(t),
                (false, None) => {
                    return Err(generic(format!(
                        "Cloud Storage copy to {to} stopped without finishing or a token to go on"
                    )))
                }
            }
        }
    }
}

/// A multipart upload: each part an object of its own, composed into the destination when
/// the upload completes.
#[derive(Debug)]
struct Composite {
    store: GcsJsonStore,
    dest: String,
    parts: String,
    count: usize,
}

impl Composite {
    fn part_names(&self) -> Vec<String> {
        (0..self.count)
            .map(|i| format!("{}/{i:06}", self.parts))
            .collect()
    }

    async fn delete_parts(&self, extra: Vec<String>) {
        let names: Vec<String> = self.part_names().into_iter().chain(extra).collect();
        let _ = stream::iter(names.into_iter().map(|n| {
            let store = self.store.clone();
            async move { store.delete_one(&n).await }
        }))
        .buffer_unordered(DELETES_AT_ONCE)
        .collect::<Vec<_>>()
        .await;
    }
}

#[async_trait]
impl MultipartUpload for Composite {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let name = format!("{}/{:06}", self.parts, self.count);
        self.count += 1;
        let store = self.store.clone();
        Box::pin(async move {
            store
                .upload(&name, Bytes::from(data), &PutMode::Overwrite)
                .await
                .map(|_| ())
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        if self.count == 0 {
            return self
                .store
                .upload(&self.dest, Bytes::new(), &PutMode::Overwrite)
                .await;
        }
        let scratch = format!("{}/compose", self.parts);
        let made = self
            .store
            .bucket
            .compose_tree_typed(
                &self.part_names(),
                &self.dest,
                &scratch,
                "application/octet-stream",
            )
            .await;
        self.delete_parts(made.as_ref().cloned().unwrap_or_default())
            .await;
        made.map_err(generic)?;
        Ok(put_result(self.store.metadata(&self.dest, None).await?))
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.delete_parts(Vec::new()).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_prefixes_are_whole_segments() {
        assert_eq!(list_prefix(None), "");
        assert_eq!(list_prefix(Some(&Path::from("team/jobs"))), "team/jobs/");
    }

    #[test]
    fn sizes_and_generations_read_as_strings_or_numbers() {
        let r: Resource = serde_json::from_str(
            r#"{"name":"a/b","size":"12345","generation":1700000000000001,"updated":"2026-12-03T10:00:00.5Z","etag":"CAE="}"#,
        )
        .unwrap();
        let m = r.meta();
        assert_eq!(m.size, 12345);
        assert_eq!(m.version.as_deref(), Some("1700000000000001"));
        assert_eq!(m.location.as_ref(), "a/b");
        assert_eq!(m.last_modified.timestamp(), 1_796_292_000);
    }
}
