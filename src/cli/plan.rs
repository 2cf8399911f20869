//! Turning command-line settings into a job spec.

use std::path::Path;

use anyhow::{bail, Context};

use super::args::PlanSettings;
use crate::media;
use crate::spec::{
    plan_chunks, AudioSource, AudioTrack, ChunkPlan, CommandComposition, Composition, FrameRange,
    JobSpec, RetryPolicy, VideoSpec, SPEC_VERSION,
};
use crate::storage::{self, keys, Storage};

/// Frames per chunk below which extra chunks cost more in start-up than they save.
const MIN_DEFAULT_CHUNK_FRAMES: u64 = 30;

/// Default concurrency: one worker per core.
pub fn default_concurrency() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(2)
}

/// Builds (and validates) a spec; uploads the bundle, if any, to `storage`.
pub async fn build_spec(p: &PlanSettings, storage: &Storage) -> anyhow::Result<JobSpec> {
    if p.argv.is_empty() {
        match &p.composition {
            Some(c) => bail!(
                "{} looks like an HTML composition, but this build has no browser renderer yet; \
                 render with an external command instead: helios-infra render -o out.mp4 --frames 0..300 -- PROGRAM ARGS… {{output}}",
                c.display()
            ),
            None => bail!("nothing to render: give a renderer command after `--` (e.g. `-- ffmpeg … {{output}}`)"),
        }
    }
    if let Some(c) = &p.composition {
        bail!(
            "give either a composition ({}) or a command after `--`, not both",
            c.display()
        );
    }
    let (start, end) = match (p.frames, p.duration) {
        (Some(r), _) => r,
        (None, Some(secs)) => {
            if !(secs.is_finite() && secs > 0.0) {
                bail!("--duration {secs} is not a positive number of seconds");
            }
            (
                0,
                (secs * p.fps.num as f64 / p.fps.den.max(1) as f64).round() as u64,
            )
        }
        (None, None) => bail!("say how much to render: --frames START..END or --duration SECONDS"),
    };
    let range = FrameRange::new(start, end);
    let concurrency = p.concurrency.unwrap_or_else(default_concurrency);
    let plan = match (p.chunks, p.frames_per_chunk) {
        (Some(n), _) => ChunkPlan::Count(n),
        (None, Some(f)) => ChunkPlan::FramesPerChunk(f),
        (None, None) => {
            let by_size = range.len().div_ceil(MIN_DEFAULT_CHUNK_FRAMES).max(1);
            ChunkPlan::Count((concurrency as u64 * 2).min(by_size) as u32)
        }
    };
    if matches!(plan, ChunkPlan::Count(0)) {
        bail!("--chunks must be at least 1");
    }
    if matches!(plan, ChunkPlan::FramesPerChunk(0)) {
        bail!("--frames-per-chunk must be at least 1");
    }
    let bundle = match &p.bundle {
        Some(dir) => Some(upload_bundle(dir, storage).await?),
        None => None,
    };
    let audio = p
        .audio
        .iter()
        .map(|(file, frame)| AudioTrack::new(audio_source(file, p.bundle.as_deref()), *frame))
        .collect();
    let spec = JobSpec {
        version: SPEC_VERSION,
        id: None,
        composition: Composition::Command(CommandComposition {
            argv: p.argv.clone(),
            bundle,
        }),
        video: VideoSpec {
            width: p.size.0,
            height: p.size.1,
            fps: p.fps,
            frames: range,
            codec: p.codec,
            crf: p.crf,
            preset: p.preset.clone(),
            pixel_format: p.pix_fmt.clone(),
            lossless: p.lossless,
        },
        audio,
        chunks: plan_chunks(range, plan),
        retry: RetryPolicy {
            max_attempts: p.retries.saturating_add(1),
            timeout_s: p.timeout,
            ..RetryPolicy::default()
        },
        concurrency,
    };
    crate::spec::validate(&spec)?;
    check_audio(&spec, p.bundle.as_deref()).await?;
    Ok(spec)
}

/// The spec's `source` for a command-line audio file: URLs as they are, files inside the
/// bundle folder relative to it, other files as absolute paths.
fn audio_source(file: &str, bundle: Option<&Path>) -> String {
    if file.starts_with("http://") || file.starts_with("https://") || file.starts_with("file://") {
        return file.to_string();
    }
    let path = std::path::absolute(file).unwrap_or_else(|_| Path::new(file).to_path_buf());
    if let Some(root) = bundle.and_then(|b| std::path::absolute(b).ok()) {
        if let Ok(rel) = path.strip_prefix(&root) {
            return rel.to_string_lossy().into_owned();
        }
    }
    path.to_string_lossy().into_owned()
}

/// Fails at plan time, naming the file, when an audio source is missing or unreadable.
/// Sources inside a bundle are checked in the bundle folder when it is at hand.
pub async fn check_audio(spec: &JobSpec, bundle: Option<&Path>) -> anyhow::Result<()> {
    for (i, t) in spec.audio.iter().enumerate() {
        let location = match t.source() {
            AudioSource::Url(u) => u,
            AudioSource::Path(p) => {
                if !p.is_file() {
                    bail!(
                        "audio track {i}: {} does not exist or is not a file",
                        p.display()
                    );
                }
                p.display().to_string()
            }
            AudioSource::Bundle(rel) => match bundle {
                Some(dir) => {
                    let p = dir.join(&rel);
                    if !p.is_file() {
                        bail!(
                            "audio track {i}: {rel} is not a file in the bundle {}",
                            dir.display()
                        );
                    }
                    p.display().to_string()
                }
                None => continue,
            },
        };
        media::probe_audio(&location)
            .await
            .with_context(|| format!("audio track {i}: {} cannot be used as audio", t.source))?;
    }
    Ok(())
}

/// Packs a folder and uploads it unless a bundle with the same content is already stored.
async fn upload_bundle(dir: &Path, storage: &Storage) -> anyhow::Result<String> {
    if !dir.is_dir() {
        bail!("--bundle {} is not a directory", dir.display());
    }
    let d = dir.to_path_buf();
    let packed = tokio::task::spawn_blocking(move || storage::pack_dir(&d)).await??;
    let key = keys::bundle(&packed.sha256);
    if storage.size(&key).await?.is_none() {
        storage
            .put(&key, packed.bytes.into())
            .await
            .context("uploading the bundle")?;
    }
    Ok(key)
}

/// Checks that the output's container can hold the job's codec.
pub fn check_output(output: &Path, spec: &JobSpec) -> anyhow::Result<()> {
    let codec = spec.video.codec;
    let ext = output
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .unwrap_or_default();
    let ok = codec.containers();
    let fits = ok.contains(&ext.as_str()) || (ext == "m4v" && ok.contains(&"mp4"));
    if !fits {
        bail!(
            "-o {}: a .{ext} file cannot hold {} video; use one of: {}",
            output.display(),
            codec.name(),
            ok.iter()
                .map(|e| format!(".{e}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}
