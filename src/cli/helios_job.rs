//! Job files written by Helios' `helios render --emit-job`: `metadata`, `chunks` (each with
//! the `helios render …` command Helios' CLI would run) and a `mergeCommand`. `run` maps
//! them onto the browser renderer, so the job gets this project's determinism, retries,
//! adapters and stitching; or, when asked, runs each chunk's own command.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::spec::{
    BrowserComposition, Chunk, Codec, CommandComposition, Composition, Fps, FrameRange, JobSpec,
    RetryPolicy, SegmentFormat, VideoSpec, SPEC_VERSION,
};

/// A Helios job file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeliosJob {
    /// The whole render.
    pub metadata: Metadata,
    /// The chunks, each with its command.
    pub chunks: Vec<HeliosChunk>,
    /// Helios' own join of the chunk files; replaced by helios-infra's stitch.
    #[serde(default)]
    pub merge_command: Option<String>,
    /// Helios' job id (not used as helios-infra's: a job id names one run).
    #[serde(default)]
    pub id: Option<serde_json::Value>,
    /// Where Helios would fetch assets from; the composition's folder is the bundle here.
    #[serde(default)]
    pub assets_url: Option<String>,
}

/// `metadata` of a Helios job file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// Frames of the whole render.
    pub total_frames: u64,
    /// Frames per second.
    pub fps: f64,
    /// Pixels.
    pub width: u32,
    /// Pixels.
    pub height: u32,
    /// Seconds (informative).
    #[serde(default)]
    pub duration: Option<f64>,
}

/// One chunk of a Helios job file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeliosChunk {
    /// Helios' chunk id.
    pub id: serde_json::Value,
    /// First frame.
    pub start_frame: u64,
    /// Frames in the chunk.
    pub frame_count: u64,
    /// Where Helios' CLI would write the chunk (ignored: segments go to storage).
    #[serde(default)]
    pub output_file: Option<String>,
    /// The `helios render …` command.
    pub command: String,
}

/// Whether a JSON document is a Helios job file rather than a helios-infra spec.
pub fn is_helios_job(v: &serde_json::Value) -> bool {
    v.get("metadata").is_some_and(|m| m.is_object())
        && v.get("chunks").and_then(|c| c.as_array()).is_some_and(|c| {
            c.iter()
                .all(|c| c.get("command").is_some_and(|x| x.is_string()))
        })
        && v.get("version").is_none()
}

/// What one chunk command asks for, in helios-infra's terms.
#[derive(Debug, Clone, Default, PartialEq)]
struct Settings {
    input: String,
    start: Option<u64>,
    count: Option<u64>,
    width: Option<u32>,
    height: Option<u32>,
    fps: Option<String>,
    mode: Option<String>,
    quality: Option<u32>,
    codec: Option<String>,
}

/// What the mapping left out (said once per job, not per chunk).
#[derive(Debug, Default)]
struct Ignored {
    output: bool,
    audio_codec: bool,
    no_headless: bool,
}

/// The chunk as named in messages: its position and Helios' id.
fn chunk_name(i: usize, c: &HeliosChunk) -> String {
    format!("chunks[{i}] (id {})", c.id)
}

/// Parses `helios render INPUT [flags]`; `None` with the reason when it is not that.
fn parse_command(cmd: &str, ignored: &mut Ignored) -> Result<Settings, String> {
    let argv = shlex::split(cmd).ok_or_else(|| "its command has unbalanced quotes".to_string())?;
    let mut it = argv.iter().map(String::as_str).peekable();
    let program = it.next().unwrap_or_default();
    let name = Path::new(program)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if name != "helios" {
        return Err(format!("its command runs {program:?}, not `helios render`"));
    }
    if it.next() != Some("render") {
        return Err("its command is not `helios render …`".into());
    }
    let mut s = Settings::default();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg, None),
        };
        let mut value = |flag: &str| -> Result<String, String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => it
                    .next()
                    .map(str::to_string)
                    .ok_or_else(|| format!("{flag} has no value")),
            }
        };
        let number = |flag: &str, v: String| -> Result<u64, String> {
            v.parse::<u64>()
                .map_err(|_| format!("{flag} {v:?} is not a whole number"))
        };
        match flag {
            "--start-frame" => s.start = Some(number(flag, value(flag)?)?),
            "--frame-count" => s.count = Some(number(flag, value(flag)?)?),
            "--width" => s.width = Some(number(flag, value(flag)?)? as u32),
            "--height" => s.height = Some(number(flag, value(flag)?)? as u32),
            "--fps" => s.fps = Some(value(flag)?),
            "--mode" => {
                let m = value(flag)?;
                if m != "canvas" && m != "dom" {
                    return Err(format!("--mode {m:?} is neither canvas nor dom"));
                }
                s.mode = Some(m);
            }
            "--quality" => s.quality = Some(number(flag, value(flag)?)? as u32),
            "--video-codec" => s.codec = Some(value(flag)?),
            "--audio-codec" => {
                value(flag)?;
                ignored.audio_codec = true;
            }
            "-o" | "--output" => {
                value(flag)?;
                ignored.output = true;
            }
            "--no-headless" => ignored.no_headless = true,
            f if f.starts_with('-') => {
                return Err(format!(
                    "its command has {f}, which helios-infra cannot map"
                ))
            }
            input if s.input.is_empty() => s.input = input.to_string(),
            extra => return Err(format!("its command has a second input {extra:?}")),
        }
    }
    if s.input.is_empty() {
        return Err("its command names no composition".into());
    }
    Ok(s)
}

fn codec(name: &str) -> Option<Codec> {
    Some(match name {
        "libx264" | "h264" => Codec::H264,
        "libx265" | "h265" | "hevc" => Codec::H265,
        "libvpx-vp9" | "vp9" => Codec::Vp9,
        "prores" | "prores_ks" => Codec::Prores,
        "ffv1" => Codec::Ffv1,
        "libsvtav1" | "libaom-av1" | "av1" => Codec::Av1,
        _ => return None,
    })
}

/// A spec for a Helios job file read from `path`, plus notes for people. `commands`: run
/// each chunk's own command (with `{start}`, `{count}` and `{output}` in place of its
/// range and output) instead of mapping it onto the browser renderer.
pub struct Mapped {
    /// The spec (bundle not yet uploaded: `bundle_dir` is packed by the caller).
    pub spec: JobSpec,
    /// The folder to pack as the bundle (browser compositions).
    pub bundle_dir: Option<PathBuf>,
    /// What the mapping did not carry over.
    pub notes: Vec<String>,
}

/// Maps a Helios job file onto a spec.
pub fn map(job: &HeliosJob, path: &Path, commands: bool) -> anyhow::Result<Mapped> {
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if job.chunks.is_empty() {
        bail!("{}: a Helios job file with no chunks", path.display());
    }
    let fps: Fps = job
        .metadata
        .fps
        .to_string()
        .parse()
        .map_err(|e| anyhow::anyhow!("{}: metadata.fps: {e}", path.display()))?;
    let mut chunks = Vec::with_capacity(job.chunks.len());
    for (i, c) in job.chunks.iter().enumerate() {
        chunks.push(Chunk {
            index: i as u32,
            start: c.start_frame,
            end: c.start_frame + c.frame_count,
        });
    }
    let mut notes = vec![format!(
        "{}: a Helios job file{}; {}",
        path.display(),
        job.id
            .as_ref()
            .map(|id| format!(" (Helios job {id})"))
            .unwrap_or_default(),
        match &job.merge_command {
            Some(_) => "its mergeCommand is replaced by helios-infra's stitch",
            None => "its chunks are stitched by helios-infra",
        }
    )];
    if let Some(d) = job.metadata.duration {
        let frames = (d * job.metadata.fps).round() as u64;
        if frames.abs_diff(job.metadata.total_frames) > 1 {
            notes.push(format!(
                "metadata.duration {d} s at {} fps is {frames} frames, but totalFrames is {}; rendering totalFrames",
                job.metadata.fps, job.metadata.total_frames
            ));
        }
    }
    if job.assets_url.is_some() {
        notes.push(
            "assetsUrl is not used: the composition's folder is packed as the job's bundle".into(),
        );
    }
    if commands {
        return map_commands(job, fps, chunks, notes, base);
    }

    let mut ignored = Ignored::default();
    let mut first: Option<Settings> = None;
    for (i, c) in job.chunks.iter().enumerate() {
        let s = parse_command(&c.command, &mut ignored).map_err(|why| {
            anyhow::anyhow!(
                "{}: {}: {why}; run it as a command renderer with `run {} --chunk-commands`",
                path.display(),
                chunk_name(i, c),
                path.display()
            )
        })?;
        let refuse =
            |why: String| anyhow::anyhow!("{}: {}: {why}", path.display(), chunk_name(i, c));
        if s.start.is_some_and(|v| v != c.start_frame)
            || s.count.is_some_and(|v| v != c.frame_count)
        {
            return Err(refuse(format!(
                "its command renders {}+{} but the chunk says startFrame {} frameCount {}",
                s.start.unwrap_or(c.start_frame),
                s.count.unwrap_or(c.frame_count),
                c.start_frame,
                c.frame_count
            )));
        }
        let shared = Settings {
            start: None,
            count: None,
            ..s.clone()
        };
        match &first {
            None => first = Some(shared),
            Some(f) if *f != shared => {
                return Err(refuse(format!(
                    "its command differs from the first chunk's ({}); one job renders one composition with one set of settings",
                    describe_difference(f, &shared)
                )))
            }
            Some(_) => {}
        }
    }
    let s = first.unwrap_or_default();
    if ignored.output || job.chunks.iter().any(|c| c.output_file.is_some()) {
        notes.push("the chunks' output files are not used: segments go to storage, and `run -o` names the output".into());
    }
    if ignored.audio_codec {
        notes.push(
            "--audio-codec is not used: audio is mixed and encoded once for the whole video".into(),
        );
    }
    if ignored.no_headless {
        notes.push("--no-headless is not used: workers render headless".into());
    }
    let width = s.width.unwrap_or(job.metadata.width);
    let height = s.height.unwrap_or(job.metadata.height);
    let fps = match &s.fps {
        Some(f) => f
            .parse::<Fps>()
            .map_err(|e| anyhow::anyhow!("{}: --fps: {e}", path.display()))?,
        None => fps,
    };
    let codec = match &s.codec {
        Some(c) => codec(c).ok_or_else(|| {
            anyhow::anyhow!(
                "{}: --video-codec {c:?} has no counterpart here (h264/libx264, h265/libx265, vp9/libvpx-vp9, prores, ffv1)",
                path.display()
            )
        })?,
        None => Codec::H264,
    };
    let input = base.join(&s.input);
    let (dir, entry) = if input.is_dir() {
        (input.clone(), "index.html".to_string())
    } else {
        let dir = input
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let entry = input
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("index.html")
            .to_string();
        (dir, entry)
    };
    if !dir.join(&entry).is_file() {
        bail!(
            "{}: the chunks render {}, which is not a page (paths are relative to the job file's folder)",
            path.display(),
            input.display()
        );
    }
    let capture_canvas = match s.mode.as_deref() {
        // Helios' canvas mode encodes the page's first <canvas>.
        Some("canvas") | None => Some("canvas".to_string()),
        _ => None,
    };
    let spec = job_spec(
        Composition::Browser(BrowserComposition {
            entry,
            bundle: String::new(),
            seed: None,
            capture_canvas,
            browsers: None,
            props: None,
            assets: Default::default(),
            // Helios' own renderer lets the page reach the network.
            allow_network: true,
            fonts: Vec::new(),
        }),
        (width, height, fps),
        job.metadata.total_frames,
        (codec, s.quality),
        chunks,
    );
    Ok(Mapped {
        spec,
        bundle_dir: Some(dir),
        notes,
    })
}

/// The spec of a Helios job: its chunks as they are, the orchestrator's retries.
fn job_spec(
    composition: Composition,
    (width, height, fps): (u32, u32, Fps),
    total_frames: u64,
    (codec, crf): (Codec, Option<u32>),
    chunks: Vec<Chunk>,
) -> JobSpec {
    JobSpec {
        version: SPEC_VERSION,
        id: None,
        composition,
        video: VideoSpec {
            width,
            height,
            fps,
            frames: FrameRange::new(0, total_frames),
            codec,
            crf,
            preset: None,
            pixel_format: None,
            lossless: false,
            segments: SegmentFormat::File,
        },
        output: Default::default(),
        audio: Vec::new(),
        chunks,
        retry: RetryPolicy::default(),
        concurrency: 1,
        webhook: None,
        source: None,
    }
}

fn describe_difference(a: &Settings, b: &Settings) -> String {
    let mut d = Vec::new();
    if a.input != b.input {
        d.push(format!("input {} vs {}", a.input, b.input));
    }
    if (a.width, a.height) != (b.width, b.height) {
        d.push("size".into());
    }
    if a.fps != b.fps {
        d.push("fps".into());
    }
    if a.mode != b.mode {
        d.push("mode".into());
    }
    if a.quality != b.quality {
        d.push("quality".into());
    }
    if a.codec != b.codec {
        d.push("video codec".into());
    }
    d.join(", ")
}

/// `--chunk-commands`: every chunk runs its own command as a renderer command. The
/// commands must differ only in their range and output, which become `{start}`, `{count}`
/// and `{output}`.
fn map_commands(
    job: &HeliosJob,
    fps: Fps,
    chunks: Vec<Chunk>,
    mut notes: Vec<String>,
    base: &Path,
) -> anyhow::Result<Mapped> {
    let template = |c: &HeliosChunk| -> Option<Vec<String>> {
        let argv = shlex::split(&c.command)?;
        let mut out = Vec::with_capacity(argv.len());
        let mut it = argv.into_iter();
        while let Some(a) = it.next() {
            let placeholder = match a.as_str() {
                "--start-frame" => Some("{start}"),
                "--frame-count" => Some("{count}"),
                "-o" | "--output" => Some("{output}"),
                _ => None,
            };
            out.push(a);
            if let Some(p) = placeholder {
                it.next()?;
                out.push(p.to_string());
            }
        }
        Some(out)
    };
    let mut argv: Option<Vec<String>> = None;
    for (i, c) in job.chunks.iter().enumerate() {
        let t = template(c).ok_or_else(|| {
            anyhow::anyhow!(
                "{}: its command has unbalanced quotes or a flag without a value",
                chunk_name(i, c)
            )
        })?;
        match &argv {
            None => argv = Some(t),
            Some(a) if *a != t => bail!(
                "{}: its command differs from the first chunk's in more than its range and output; one job runs one command",
                chunk_name(i, c)
            ),
            Some(_) => {}
        }
    }
    let argv = argv.unwrap_or_default();
    notes.push(format!(
        "running each chunk's own command (from {}): {}",
        base.display(),
        argv.join(" ")
    ));
    let spec = job_spec(
        Composition::Command(CommandComposition {
            argv,
            bundle: None,
            pass_env: Vec::new(),
        }),
        (job.metadata.width, job.metadata.height, fps),
        job.metadata.total_frames,
        (Codec::H264, None),
        chunks,
    );
    Ok(Mapped {
        spec,
        bundle_dir: None,
        notes,
    })
}

/// Reads `path` as a Helios job file if it is one.
pub fn read(path: &Path, text: &str) -> anyhow::Result<Option<HeliosJob>> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return Ok(None);
    };
    if !is_helios_job(&v) {
        return Ok(None);
    }
    serde_json::from_value(v).map(Some).with_context(|| {
        format!(
            "{} looks like a Helios job file but is not a valid one",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helios_commands_map_and_unknown_flags_are_named() {
        let mut ignored = Ignored::default();
        let s = parse_command(
            "helios render composition.html -o out/temp_1_part_0.mov --start-frame 0 --frame-count 100 --width 1280 --height 720 --fps 30 --mode canvas --audio-codec pcm_s16le",
            &mut ignored,
        )
        .unwrap();
        assert_eq!(s.input, "composition.html");
        assert_eq!(
            (s.start, s.count, s.width, s.height),
            (Some(0), Some(100), Some(1280), Some(720))
        );
        assert_eq!(s.mode.as_deref(), Some("canvas"));
        assert!(ignored.output && ignored.audio_codec && !ignored.no_headless);
        let e = parse_command("helios render c.html --turbo", &mut ignored).unwrap_err();
        assert!(e.contains("--turbo"), "{e}");
        assert!(parse_command("remotion render c.html", &mut ignored).is_err());
        let s = parse_command(
            "helios render --width=640 'my comp.html' --quality 18",
            &mut ignored,
        )
        .unwrap();
        assert_eq!(
            (s.input.as_str(), s.width, s.quality),
            ("my comp.html", Some(640), Some(18))
        );
    }
}
