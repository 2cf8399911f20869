//! The palette task of a GIF job: a sample of the job's frames (up to
//! [`PALETTE_SAMPLES`](crate::spec::PALETTE_SAMPLES), spread over the whole video) is
//! rendered and FFmpeg's `palettegen` makes the one 256-colour palette every chunk then draws
//! with, so that all chunks quantize alike and their parts join under one header. The
//! orchestrator runs it once per job, before the chunks, through the job's adapter.

use std::time::Instant;

use super::{digest_file, storage_failure, ChunkReport, ChunkRequest, FailureKind, Prepared};
use super::{Timings, WorkerFailure};
use crate::media::{self, Tool};
use crate::render::RenderRequest;
use crate::spec::{palette_samples, Chunk, ImageFormat, JobSpec, OutputKind, OutputSpec};
use crate::storage::keys;

/// Renders the sample and writes `jobs/<id>/palette/<attempt>.png`; reports it like a
/// segment (key, size, hash; `frames` = frames sampled).
pub async fn run_task(req: &ChunkRequest) -> Result<ChunkReport, WorkerFailure> {
    let total = Instant::now();
    let p = Prepared::new(req).await?;
    if p.spec.output.kind != OutputKind::Gif {
        return Err(WorkerFailure::fatal(
            FailureKind::InvalidRequest,
            format!("job {} is not a GIF job: it has no palette", p.job_id),
        ));
    }
    let frames = p.spec.video.frames;
    let samples = palette_samples(frames);
    // The sample is rendered as opaque PNG images of the job's size.
    let sample_spec = JobSpec {
        output: OutputSpec {
            kind: OutputKind::Images,
            format: Some(ImageFormat::Png),
            pattern: Some("%d.png".into()),
            ..OutputSpec::default()
        },
        ..p.spec.clone()
    };
    let first = Chunk {
        index: 0,
        start: frames.start,
        end: frames.start + 1,
    };
    let started = Instant::now();
    let renderer = p.renderer().await?;
    let req_render = RenderRequest {
        spec: &sample_spec,
        chunk: first,
        workdir: p.workdir.path(),
        bundle_dir: p.bundle_dir.as_deref(),
    };
    let images = renderer
        .render_frames(&req_render, &samples)
        .await
        .map_err(|e| WorkerFailure {
            retryable: e.is_retryable(),
            kind: FailureKind::from_render(&e),
            message: format!("rendering the GIF's palette sample: {e}"),
            chunk: None,
        })?;
    let render_time = started.elapsed();

    // Numbered 0.. for FFmpeg's image reader.
    let dir = p.workdir.path().join("palette-sample");
    std::fs::create_dir_all(&dir).map_err(|e| io("cannot make the sample folder", e))?;
    for (i, image) in images.iter().enumerate() {
        std::fs::rename(image, dir.join(format!("{i}.png")))
            .map_err(|e| io("cannot gather the sample", e))?;
    }
    let encoding = Instant::now();
    let palette = p.workdir.path().join("palette.png");
    let mut cmd = Tool::Ffmpeg.command().map_err(missing)?;
    cmd.args(["-v", "error", "-y", "-f", "image2", "-i"])
        .arg(dir.join("%d.png"))
        .args([
            "-vf",
            "palettegen=stats_mode=full:max_colors=256",
            "-frames:v",
            "1",
            "-fflags",
            "+bitexact",
            "-flags:v",
            "+bitexact",
        ])
        .arg(&palette);
    media::run(Tool::Ffmpeg, cmd, "computing the GIF's palette")
        .await
        .map_err(|e| WorkerFailure::retryable(FailureKind::Encode, e.to_string()))?;
    let encode_time = encoding.elapsed();

    let uploading = Instant::now();
    let (sha256, md5, bytes) = digest_file(&palette)
        .await
        .map_err(|e| io("cannot read the palette", e))?;
    let key = keys::palette_attempt(&p.job_id, req.attempt);
    p.storage
        .put_file(&key, &palette)
        .await
        .map_err(storage_failure)?;
    Ok(ChunkReport {
        job: p.job_id.clone(),
        chunk: req.chunk,
        attempt: req.attempt,
        start: frames.start,
        end: frames.end,
        frames: samples.len() as u64,
        segment: key,
        bytes,
        sha256,
        md5: Some(md5),
        timings: Timings {
            fetch_ms: p.fetch_time.as_millis() as u64,
            render_ms: render_time.as_millis() as u64,
            encode_ms: encode_time.as_millis() as u64,
            upload_ms: uploading.elapsed().as_millis() as u64,
            total_ms: total.elapsed().as_millis() as u64,
        },
        stats: Default::default(),
        stages: None,
        media: None,
        ping: None,
    })
}

fn io(what: &str, e: std::io::Error) -> WorkerFailure {
    WorkerFailure::retryable(FailureKind::Io, format!("{what}: {e}"))
}

fn missing(e: media::MediaError) -> WorkerFailure {
    WorkerFailure::fatal(FailureKind::MissingTool, e.to_string())
}
