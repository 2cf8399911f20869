//! The stateless chunk runtime: fetch the spec (and bundle) → render → upload → report.
//!
//! A worker holds no state between chunks and writes only its own attempt's keys; the
//! orchestrator decides what becomes the chunk's segment. Entry points: the CLI
//! (`worker run`), and — with the cloud adapters — an HTTP server and a Lambda runtime.

pub mod assemble;
pub mod lambda;
pub mod palette;
pub mod ping;
pub mod protocol;
pub mod server;

use std::time::Instant;

use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::media::fmp4;
use crate::render::browser::BrowserRenderer;
use crate::render::command::CommandRenderer;
use crate::render::{encoder, RenderRequest, Renderer};
use crate::spec::{self, Composition, JobSpec, SegmentFormat};
use crate::storage::{self, keys, Storage, StorageError};

pub use protocol::{
    ChunkReport, ChunkRequest, FailureKind, FragmentedMedia, ImageFile, SegmentMedia, Timings,
    WorkerFailure,
};

/// Runs what a request asks: an assembly task or a chunk attempt.
pub async fn run(req: &ChunkRequest) -> Result<ChunkReport, WorkerFailure> {
    if req.ping {
        ping::answer(req).await
    } else if req.assemble {
        assemble::run_task(req).await
    } else if req.palette {
        palette::run_task(req).await
    } else {
        run_chunk(req).await
    }
}

/// What every task of a job starts from: its storage, spec, a private work directory and
/// the unpacked bundle.
pub(crate) struct Prepared {
    pub storage: Storage,
    pub spec: JobSpec,
    pub job_id: String,
    pub workdir: tempfile::TempDir,
    pub bundle_dir: Option<std::path::PathBuf>,
    pub fetch_time: std::time::Duration,
}

impl Prepared {
    /// Reads the spec and unpacks the bundle.
    pub async fn new(req: &ChunkRequest) -> Result<Self, WorkerFailure> {
        let (storage, spec_key) = Storage::open_object_url(&req.job)
            .map_err(|e| WorkerFailure::fatal(FailureKind::InvalidRequest, e.to_string()))?;
        let fetch_started = Instant::now();
        let spec = load_spec(&storage, &spec_key).await?;
        let job_id = spec
            .id
            .clone()
            .ok_or_else(|| WorkerFailure::fatal(FailureKind::InvalidSpec, "job spec has no id"))?;
        let workdir = tempfile::Builder::new()
            .prefix("helios-chunk-")
            .tempdir()
            .map_err(|e| {
                WorkerFailure::retryable(
                    FailureKind::Io,
                    format!("cannot create a work directory: {e}"),
                )
            })?;
        let bundle_dir = match spec.composition.bundle() {
            Some(key) => {
                let dir = workdir.path().join("bundle");
                let bytes = storage.get(key).await.map_err(|e| match e {
                    StorageError::NotFound { .. } => WorkerFailure::fatal(
                        FailureKind::MissingBundle,
                        format!("bundle {key} is missing from {}", storage.url()),
                    ),
                    other => storage_failure(other),
                })?;
                let d = dir.clone();
                tokio::task::spawn_blocking(move || storage::unpack(&bytes, &d))
                    .await
                    .map_err(|e| WorkerFailure::retryable(FailureKind::Internal, e.to_string()))?
                    .map_err(|e| WorkerFailure::fatal(FailureKind::MissingBundle, e.to_string()))?;
                Some(dir)
            }
            None => None,
        };
        Ok(Self {
            storage,
            spec,
            job_id,
            workdir,
            bundle_dir,
            fetch_time: fetch_started.elapsed(),
        })
    }

    /// The renderer of the job's composition. A page gets the assets vendored at plan
    /// time, read from storage and checked against their hashes, and no other remote
    /// resource unless the job allows the network.
    pub async fn renderer(&self) -> Result<Box<dyn Renderer>, WorkerFailure> {
        let b = match &self.spec.composition {
            Composition::Command(c) => return Ok(Box::new(CommandRenderer::new(c.clone()))),
            Composition::Browser(b) => b,
        };
        if b.allow_network && b.assets.is_empty() {
            return Ok(Box::new(BrowserRenderer::new(b.clone())));
        }
        let mut assets = Vec::with_capacity(b.assets.len());
        for (url, a) in &b.assets {
            let bytes = self.storage.get(&a.key).await.map_err(|e| match e {
                StorageError::NotFound { .. } => WorkerFailure::fatal(
                    FailureKind::MissingBundle,
                    format!(
                        "asset {url} (vendored at plan time as {}) is missing from {}",
                        a.key,
                        self.storage.url()
                    ),
                ),
                other => storage_failure(other),
            })?;
            let sha = hex::encode(Sha256::digest(&bytes));
            if sha != a.sha256 {
                return Err(WorkerFailure::fatal(
                    FailureKind::MissingBundle,
                    format!(
                        "asset {url} in storage ({}) has SHA-256 {sha}, the job recorded {}",
                        a.key, a.sha256
                    ),
                ));
            }
            assets.push((url.clone(), bytes.to_vec(), a.content_type.clone()));
        }
        Ok(Box::new(
            BrowserRenderer::new(b.clone()).with_assets(assets),
        ))
    }
}

/// Runs one chunk attempt end to end and returns its report.
pub async fn run_chunk(req: &ChunkRequest) -> Result<ChunkReport, WorkerFailure> {
    let total = Instant::now();
    let prepared = Prepared::new(req).await?;
    let Prepared {
        storage,
        spec,
        job_id,
        workdir,
        bundle_dir,
        fetch_time,
    } = &prepared;
    let (storage, spec, job_id, fetch_time) = (storage, spec, job_id.clone(), *fetch_time);
    let chunk = spec.chunk(req.chunk).ok_or_else(|| {
        WorkerFailure::fatal(
            FailureKind::InvalidRequest,
            format!(
                "job {job_id} has no chunk {} (it has {})",
                req.chunk,
                spec.chunks.len()
            ),
        )
    })?;
    if spec.output.kind == crate::spec::OutputKind::Gif {
        // Every chunk draws with the one palette the orchestrator had made first.
        let key = keys::palette(&job_id);
        let png = storage.get(&key).await.map_err(|e| match e {
            StorageError::NotFound { .. } => WorkerFailure::fatal(
                FailureKind::InvalidRequest,
                format!(
                    "the GIF's palette {} is missing: the orchestrator makes it before any chunk",
                    storage.url_for(&key)
                ),
            ),
            other => storage_failure(other),
        })?;
        let at = encoder::palette_path(&encoder::chunk_output(workdir.path(), spec));
        tokio::fs::write(&at, &png).await.map_err(|e| {
            WorkerFailure::retryable(FailureKind::Io, format!("cannot write the palette: {e}"))
        })?;
    }

    let renderer = prepared.renderer().await?;
    let render_req = RenderRequest {
        spec,
        chunk: *chunk,
        workdir: workdir.path(),
        bundle_dir: bundle_dir.as_deref(),
    };
    let segment = renderer
        .render(&render_req)
        .await
        .map_err(|e| WorkerFailure {
            retryable: e.is_retryable(),
            kind: FailureKind::from_render(&e),
            message: format!(
                "chunk {} (frames {}..{}): {e}",
                chunk.index, chunk.start, chunk.end
            ),
            chunk: None,
        })?;

    let upload_started = Instant::now();
    let (segment_key, sha256, md5, bytes, media) = match &segment.artifact {
        encoder::Artifact::Segment(info) => {
            let mut media = SegmentMedia {
                params: info.codec_parameters(),
                frames: info.frames,
                keyframe_first: info.starts_with_keyframe,
                md5: None,
                fragmented: None,
                gif_header: None,
                files: None,
            };
            let stored = match spec.video.segments {
                SegmentFormat::File => segment.path.clone(),
                SegmentFormat::Fragmented => {
                    let (path, layout) = place_fragments(&segment.path, spec, chunk).await?;
                    media.fragmented = Some(layout);
                    path
                }
            };
            let (sha256, md5, bytes) = digest_file(&stored).await.map_err(|e| {
                WorkerFailure::retryable(FailureKind::Io, format!("cannot read the segment: {e}"))
            })?;
            media.md5 = Some(md5.clone());
            let ext = encoder::stored_extension(spec);
            let segment_key = keys::attempt_segment(&job_id, chunk.index, req.attempt, ext);
            storage
                .put_file(&segment_key, &stored)
                .await
                .map_err(storage_failure)?;
            (segment_key, sha256, Some(md5), bytes, media)
        }
        encoder::Artifact::Gif(part) => {
            use base64::Engine as _;
            let stored = segment.path.with_extension("gifpart");
            tokio::fs::write(&stored, &part.blocks).await.map_err(|e| {
                WorkerFailure::retryable(FailureKind::Io, format!("cannot write the GIF part: {e}"))
            })?;
            let (sha256, md5, bytes) = digest_file(&stored).await.map_err(|e| {
                WorkerFailure::retryable(FailureKind::Io, format!("cannot read the GIF part: {e}"))
            })?;
            let header_sha = hex::encode(Sha256::digest(&part.header));
            let media = SegmentMedia {
                // Equal headers: equal size and palette, so the parts join by their bytes.
                params: format!("gif header={header_sha}"),
                frames: part.frames,
                keyframe_first: true,
                md5: Some(md5.clone()),
                fragmented: None,
                gif_header: Some(base64::engine::general_purpose::STANDARD.encode(&part.header)),
                files: None,
            };
            let key = keys::attempt_segment(
                &job_id,
                chunk.index,
                req.attempt,
                encoder::stored_extension(spec),
            );
            storage
                .put_file(&key, &stored)
                .await
                .map_err(storage_failure)?;
            (key, sha256, Some(md5), bytes, media)
        }
        encoder::Artifact::Images(files) => {
            let files =
                upload_images(storage, spec, &job_id, chunk.index, req.attempt, files).await?;
            let media = SegmentMedia {
                params: image_params(spec),
                frames: files.len() as u64,
                keyframe_first: true,
                md5: None,
                fragmented: None,
                gif_header: None,
                files: Some(files),
            };
            let listed = media.files.as_deref().unwrap_or_default();
            (
                keys::attempt_files(&job_id, chunk.index, req.attempt),
                ImageFile::digest_of(listed),
                None,
                listed.iter().map(|f| f.bytes).sum(),
                media,
            )
        }
    };
    let report = ChunkReport {
        job: job_id.clone(),
        chunk: chunk.index,
        attempt: req.attempt,
        start: chunk.start,
        end: chunk.end,
        frames: segment.frames,
        segment: segment_key,
        bytes,
        sha256,
        md5,
        timings: Timings {
            fetch_ms: fetch_time.as_millis() as u64,
            render_ms: segment.render_time.as_millis() as u64,
            encode_ms: segment.encode_time.as_millis() as u64,
            upload_ms: upload_started.elapsed().as_millis() as u64,
            total_ms: total.elapsed().as_millis() as u64,
        },
        stats: segment.stats,
        stages: segment.stages.map(Box::new),
        media: Some(Box::new(media)),
        ping: None,
    };
    let json = serde_json::to_vec(&report)
        .map_err(|e| WorkerFailure::retryable(FailureKind::Internal, e.to_string()))?;
    storage
        .put(
            &keys::attempt_report(&job_id, chunk.index, req.attempt),
            json.into(),
        )
        .await
        .map_err(storage_failure)?;
    Ok(report)
}

/// What must be equal across an image job's chunks: format, size, alpha.
fn image_params(spec: &JobSpec) -> String {
    let o = &spec.output;
    format!(
        "images {} {}x{} alpha={} quality={}",
        o.format.map(|f| f.extension()).unwrap_or("png"),
        spec.video.width,
        spec.video.height,
        o.alpha,
        o.quality()
    )
}

/// Uploads an attempt's images under its folder, a few at a time, each under its output
/// file name; returns them with their sizes and hashes, in frame order.
async fn upload_images(
    storage: &Storage,
    spec: &JobSpec,
    job: &str,
    chunk: u32,
    attempt: u32,
    files: &[(u64, std::path::PathBuf)],
) -> Result<Vec<ImageFile>, WorkerFailure> {
    use futures::{StreamExt, TryStreamExt};
    let folder = keys::attempt_files(job, chunk, attempt);
    let work: Vec<(u64, std::path::PathBuf, String, Storage)> = files
        .iter()
        .map(|(frame, path)| {
            (
                *frame,
                path.clone(),
                spec.output.file_name(*frame),
                storage.clone(),
            )
        })
        .collect();
    futures::stream::iter(work.into_iter().map(|(frame, path, name, storage)| {
        let key = format!("{folder}/{name}");
        async move {
            let (sha256, md5, bytes) = digest_file(&path).await.map_err(|e| {
                WorkerFailure::retryable(
                    FailureKind::Io,
                    format!("cannot read the image of frame {frame}: {e}"),
                )
            })?;
            storage
                .put_file(&key, &path)
                .await
                .map_err(storage_failure)?;
            Ok::<_, WorkerFailure>(ImageFile {
                frame,
                name,
                bytes,
                sha256,
                md5,
            })
        }
    }))
    .buffered(8)
    .try_collect()
    .await
}

/// Records a failed attempt in storage (`attempt_error`), for batch engines whose tasks
/// have no answer channel. Best effort: if storage itself is what failed, the orchestrator
/// still learns of the failure when the execution ends without a report.
pub async fn record_failure(req: &ChunkRequest, failure: &WorkerFailure) {
    let Ok((storage, key)) = Storage::open_object_url(&req.job) else {
        return;
    };
    let Some(job) = keys::job_of_spec_key(&key) else {
        return;
    };
    let Ok(json) = serde_json::to_vec(failure) else {
        return;
    };
    if let Err(e) = storage
        .put(
            &keys::attempt_error(job, req.chunk, req.attempt),
            json.into(),
        )
        .await
    {
        tracing::warn!(error = %e, "cannot record the failure in storage");
    }
}

/// Splits a fragmented segment into its init and its media, placed at the chunk's frames
/// on the job's timeline; writes the media next to the segment and returns its path and
/// layout. A segment that is not what the job's encoder settings produce is a failure of
/// the encode, worth another attempt.
async fn place_fragments(
    path: &std::path::Path,
    spec: &JobSpec,
    chunk: &crate::spec::Chunk,
) -> Result<(std::path::PathBuf, FragmentedMedia), WorkerFailure> {
    let io = |e: std::io::Error| {
        WorkerFailure::retryable(FailureKind::Io, format!("cannot read the segment: {e}"))
    };
    let mut bytes = tokio::fs::read(path).await.map_err(io)?;
    let fps = spec.video.fps;
    let first_frame = chunk.start - spec.video.frames.start;
    let tick = fps.ticks_per_frame();
    let (bytes, prepared) = tokio::task::spawn_blocking(move || {
        let p = fmp4::prepare_segment(&mut bytes, first_frame, tick);
        (bytes, p)
    })
    .await
    .map_err(|e| WorkerFailure::retryable(FailureKind::Internal, e.to_string()))?;
    let bad = |m: String| {
        WorkerFailure::retryable(
            FailureKind::Encode,
            format!("chunk {}: the encoder's fragmented MP4 {m}", chunk.index),
        )
    };
    let p = prepared.map_err(|e| bad(e.to_string()))?;
    if p.info.timescale != fps.timescale() {
        return Err(bad(format!(
            "has timescale {}, expected {}",
            p.info.timescale,
            fps.timescale()
        )));
    }
    if p.scan.samples != chunk.len() {
        return Err(bad(format!(
            "holds {} frames, expected {}",
            p.scan.samples,
            chunk.len()
        )));
    }
    let out = path.with_extension("m4s");
    tokio::fs::write(&out, &bytes[p.media.clone()])
        .await
        .map_err(io)?;
    use base64::Engine as _;
    Ok((
        out,
        FragmentedMedia {
            init: base64::engine::general_purpose::STANDARD.encode(&bytes[p.init.clone()]),
            timescale: p.info.timescale,
            decode_start: p.scan.decode_start,
            decode_end: p.scan.decode_end,
            presentation_delay: p.scan.presentation_delay,
            fragments: p.scan.fragments,
        },
    ))
}

async fn load_spec(storage: &Storage, key: &str) -> Result<JobSpec, WorkerFailure> {
    let bytes = storage.get(key).await.map_err(|e| match e {
        StorageError::NotFound { .. } => WorkerFailure::fatal(
            FailureKind::InvalidRequest,
            format!("no job spec at {}", storage.url_for(key)),
        ),
        other => storage_failure(other),
    })?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| WorkerFailure::fatal(FailureKind::InvalidSpec, "job spec is not UTF-8"))?;
    spec::parse(text).map_err(|e| WorkerFailure::fatal(FailureKind::InvalidSpec, e.to_string()))
}

pub(crate) fn storage_failure(e: StorageError) -> WorkerFailure {
    WorkerFailure {
        retryable: e.is_retryable(),
        kind: FailureKind::Storage,
        message: e.to_string(),
        chunk: None,
    }
}

/// SHA-256 and MD5 (hex) and size of a file, streamed.
pub async fn digest_file(path: &std::path::Path) -> std::io::Result<(String, String, u64)> {
    use md5::Md5;
    let mut f = tokio::fs::File::open(path).await?;
    let mut sha = Sha256::new();
    let mut md5 = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        md5.update(&buf[..n]);
        total += n as u64;
    }
    Ok((
        hex::encode(sha.finalize()),
        hex::encode(md5.finalize()),
        total,
    ))
}

/// SHA-256 (hex) and size of a file, streamed.
pub async fn hash_file(path: &std::path::Path) -> std::io::Result<(String, u64)> {
    let mut f = tokio::fs::File::open(path).await?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), total))
}
