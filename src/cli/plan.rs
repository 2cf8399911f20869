//! Turning command-line settings into a job spec.

use std::path::Path;

use anyhow::{bail, Context};

use super::args::PlanSettings;
use crate::media;
use crate::spec::{
    plan_chunks, AudioSource, AudioTrack, BrowserComposition, ChunkPlan, CommandComposition,
    Composition, FrameRange, JobSpec, RetryPolicy, SegmentFormat, VideoSpec, SPEC_VERSION,
};
use crate::storage::{self, keys, Storage};

/// Frames per chunk below which extra chunks cost more in start-up than they save.
const MIN_DEFAULT_CHUNK_FRAMES: u64 = 30;

/// Cores one local worker of an HTML composition is planned to have: its browsers and its
/// encoder share them. Measured on 2 cores (docs/BENCHMARKS.md): one chunk on one worker
/// with three browsers beat every split into more workers or chunks, which pay for extra
/// browser start-ups, encoders and segments.
const CORES_PER_BROWSER_WORKER: u32 = 4;

/// Default concurrency: one worker per core.
pub fn default_concurrency() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(2)
}

/// Builds (and validates) a spec; uploads the bundle, if any, to `storage`. `local` says
/// that the workers will share this machine (the local adapter): the default plan of an
/// HTML composition then divides this machine's cores among workers and browsers. For
/// other adapters, each worker chooses its browsers from its own cores.
pub async fn build_spec(
    p: &PlanSettings,
    storage: &Storage,
    local: bool,
) -> anyhow::Result<JobSpec> {
    // An HTML composition (a folder or a page), or a command after `--`.
    let page = match (&p.composition, p.argv.is_empty()) {
        (Some(c), true) => Some(composition_entry(c)?),
        (None, false) => None,
        (Some(c), false) => bail!("give either a composition ({}) or a command after `--`, not both", c.display()),
        (None, true) => bail!(
            "nothing to render: give an HTML composition (a folder with index.html, or an .html file) or a renderer command after `--`"
        ),
    };
    if page.is_some() && p.bundle.is_some() {
        bail!("--bundle is for commands; an HTML composition's folder is its bundle");
    }
    if page.is_none() && p.browsers.is_some() {
        bail!("--browsers is for HTML compositions; a renderer command runs once per chunk");
    }
    if p.browsers == Some(0) {
        bail!("--browsers must be at least 1 (browser processes per worker), or left out to let each worker choose from its cores");
    }
    if page.is_some() && !p.pass_env.is_empty() {
        bail!("--pass-env is for renderer commands; an HTML composition runs in a browser that never sees the worker's environment");
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
    let cores = default_concurrency();
    // An HTML composition's worker keeps several cores busy by itself (browsers side by side
    // plus the encoder), so it gets several cores; a command gets one.
    let concurrency = p.concurrency.unwrap_or(match page {
        Some(_) if local => (cores / CORES_PER_BROWSER_WORKER).max(1),
        _ => cores,
    });
    let plan = match (p.chunks, p.frames_per_chunk) {
        (Some(n), _) => ChunkPlan::Count(n),
        (None, Some(f)) => ChunkPlan::FramesPerChunk(f),
        (None, None) => {
            let by_size = range.len().div_ceil(MIN_DEFAULT_CHUNK_FRAMES).max(1);
            // Two chunks per command worker even out uneven chunks; a browser worker
            // balances its own browsers, and every extra chunk costs a start-up.
            let per_worker = if page.is_some() { 1 } else { 2 };
            ChunkPlan::Count((u64::from(concurrency) * per_worker).min(by_size) as u32)
        }
    };
    let browsers = match p.browsers {
        Some(n) => Some(n),
        None if local && page.is_some() => Some(crate::render::browser::browsers_for_cores(
            (cores / concurrency.max(1)).max(1),
        )),
        None => None,
    };
    if matches!(plan, ChunkPlan::Count(0)) {
        bail!("--chunks must be at least 1");
    }
    if matches!(plan, ChunkPlan::FramesPerChunk(0)) {
        bail!("--frames-per-chunk must be at least 1");
    }
    let bundle_dir = page
        .as_ref()
        .map(|(dir, _)| dir.as_path())
        .or(p.bundle.as_deref());
    let bundle = match bundle_dir {
        Some(dir) => Some(upload_bundle(dir, storage).await?),
        None => None,
    };
    let mut audio: Vec<AudioTrack> = p
        .audio
        .iter()
        .map(|(file, frame)| AudioTrack::new(audio_source(file, bundle_dir), *frame))
        .collect();
    if let (Some((dir, entry)), false) = (&page, p.no_media_audio) {
        audio.extend(discovered_audio(dir, entry, p).await?);
    }
    let spec = JobSpec {
        version: SPEC_VERSION,
        id: None,
        composition: match (&page, bundle) {
            (Some((_, entry)), Some(bundle)) => Composition::Browser(BrowserComposition {
                entry: entry.clone(),
                bundle,
                seed: None,
                capture_canvas: p.capture_canvas.clone(),
                browsers,
            }),
            (_, bundle) => Composition::Command(CommandComposition {
                argv: p.argv.clone(),
                bundle,
                pass_env: p.pass_env.clone(),
            }),
        },
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
            // Chosen from the output by `render` and `run` (SegmentFormat::for_output).
            segments: SegmentFormat::File,
        },
        audio,
        chunks: plan_chunks(range, plan),
        retry: RetryPolicy {
            max_attempts: p.retries.saturating_add(1),
            timeout_s: p.timeout,
            ..RetryPolicy::default()
        },
        concurrency,
        webhook: p.webhook.clone(),
    };
    crate::spec::validate(&spec)?;
    if let (Some(n), Some(fewest)) = (p.browsers, spec.chunks.iter().map(|c| c.len()).min()) {
        if u64::from(n) > fewest {
            eprintln!(
                "note: --browsers {n} is more than the {fewest} frames of the shortest chunk; \
                 a worker starts at most one browser per {} frames of its chunk",
                crate::render::browser::MIN_FRAMES_PER_BROWSER
            );
        }
    }
    check_audio(&spec, bundle_dir).await?;
    Ok(spec)
}

/// The sound of a composition's `<audio>`/`<video>` elements, as audio tracks.
async fn discovered_audio(
    dir: &Path,
    entry: &str,
    p: &PlanSettings,
) -> anyhow::Result<Vec<AudioTrack>> {
    let media = crate::render::browser::discover_media(dir, entry, p.size.0, p.size.1)
        .await
        .with_context(|| {
            format!(
                "looking for <audio>/<video> in {} (skip with --no-media-audio)",
                dir.join(entry).display()
            )
        })?;
    let fps = p.fps.as_f64();
    Ok(media
        .into_iter()
        .map(|m| {
            tracing::info!(source = %m.source, offset_s = m.offset_s, "audio from a media element");
            let mut t = AudioTrack::new(m.source, (m.offset_s * fps).round().max(0.0) as u64);
            t.trim_start_s = m.seek_s.max(0.0);
            t.fade_in_s = m.fade_in_s.max(0.0);
            t.fade_out_s = m.fade_out_s.max(0.0);
            t.volume = m.volume.clamp(0.0, 100.0);
            t.looped = m.looped;
            t
        })
        .collect())
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

/// The bundle folder and entry page of an HTML composition given as a folder (its
/// `index.html`) or as a page.
fn composition_entry(c: &Path) -> anyhow::Result<(std::path::PathBuf, String)> {
    if c.is_dir() {
        if !c.join("index.html").is_file() {
            bail!(
                "{} has no index.html; give the page itself (e.g. {}/main.html)",
                c.display(),
                c.display()
            );
        }
        return Ok((c.to_path_buf(), "index.html".to_string()));
    }
    let is_html = c
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("html") || e.eq_ignore_ascii_case("htm"));
    if !c.is_file() || !is_html {
        bail!(
            "{} is neither a folder with index.html nor an .html file",
            c.display()
        );
    }
    let dir = c
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let entry = c
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("index.html")
        .to_string();
    Ok((dir, entry))
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

/// Fails now, not after the render, when `-o` cannot be written: a directory, a parent
/// folder that cannot be made, a folder without write permission.
pub fn check_writable(output: &Path) -> anyhow::Result<()> {
    if output.is_dir() {
        bail!(
            "-o {}: is a directory; give the output file's name, e.g. -o {}",
            output.display(),
            output.join("output.mp4").display()
        );
    }
    let parent = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| {
        anyhow::anyhow!(
            "-o {}: cannot create the folder {}: {e}; choose another path",
            output.display(),
            parent.display()
        )
    })?;
    tempfile::Builder::new()
        .prefix(".helios-check-")
        .tempfile_in(parent)
        .map_err(|e| {
            anyhow::anyhow!(
                "-o {}: cannot write in {}: {e}; choose a folder you can write to",
                output.display(),
                parent.display()
            )
        })?;
    Ok(())
}

/// Refuses an output whose container cannot hold the job's video codec.
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
