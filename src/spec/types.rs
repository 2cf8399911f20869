use serde::{Deserialize, Serialize};

use super::Fps;

/// Version of the job spec format this build reads and writes.
pub const SPEC_VERSION: u32 = 1;

/// A complete, self-contained description of one render job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Format version; must be [`SPEC_VERSION`].
    pub version: u32,
    /// Job id, assigned at submission (a ULID); absent in a plan that was never submitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// What renders the frames.
    pub composition: Composition,
    /// Output picture and encoding settings.
    pub video: VideoSpec,
    /// What is written: a video (the default), a GIF, an image sequence or a still, and
    /// whether frames keep their alpha channel.
    #[serde(default, skip_serializing_if = "super::OutputSpec::is_default")]
    pub output: super::OutputSpec,
    /// Audio tracks, mixed once for the whole timeline at stitch time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audio: Vec<AudioTrack>,
    /// The frame ranges workers render, tiling `video.frames` exactly.
    pub chunks: Vec<Chunk>,
    /// Retry and timeout policy for chunks.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// How many chunks may render at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    /// URL notified (signed JSON POST) when the job succeeds, fails or is cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    /// What the job was planned from, for people (the job list): the composition's folder
    /// or page as given, or the renderer command. Workers do not read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

fn default_concurrency() -> u32 {
    2
}

impl JobSpec {
    /// A spec for `argv` over `frames`, split by `plan`, with default encoding (h264),
    /// retries and concurrency 1; no id until submitted.
    pub fn command(
        argv: &[&str],
        width: u32,
        height: u32,
        fps: Fps,
        frames: FrameRange,
        plan: super::ChunkPlan,
    ) -> Self {
        Self {
            version: SPEC_VERSION,
            id: None,
            composition: Composition::Command(CommandComposition {
                argv: argv.iter().map(|s| s.to_string()).collect(),
                bundle: None,
                pass_env: Vec::new(),
            }),
            video: VideoSpec {
                width,
                height,
                fps,
                frames,
                codec: Codec::H264,
                crf: None,
                preset: None,
                pixel_format: None,
                lossless: false,
                segments: SegmentFormat::File,
            },
            output: super::OutputSpec::default(),
            audio: Vec::new(),
            chunks: super::plan_chunks(frames, plan),
            retry: RetryPolicy::default(),
            concurrency: 1,
            webhook: None,
            source: None,
        }
    }

    /// Total number of frames in the job.
    pub fn frame_count(&self) -> u64 {
        self.video.frames.len()
    }

    /// The copy vendored at plan time of an audio track read from a URL, if there is one.
    pub fn vendored_audio(&self, track: &AudioTrack) -> Option<&Asset> {
        match (&self.composition, track.source()) {
            (Composition::Browser(b), AudioSource::Url(u)) => b.assets.get(&u),
            _ => None,
        }
    }

    /// The chunk with this index, if any.
    pub fn chunk(&self, index: u32) -> Option<&Chunk> {
        // Validated plans are numbered 0..n in order, so the index is the position; the
        // scan is for hand-written specs that are not (yet) validated.
        match self.chunks.get(index as usize) {
            Some(c) if c.index == index => Some(c),
            _ => self.chunks.iter().find(|c| c.index == index),
        }
    }
}

/// The renderer of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Composition {
    /// An HTML composition rendered in Chromium.
    Browser(BrowserComposition),
    /// An external program that renders a frame range to a file.
    Command(CommandComposition),
}

impl Composition {
    /// Storage key of the composition bundle, if the job has one.
    pub fn bundle(&self) -> Option<&str> {
        match self {
            Composition::Browser(b) => Some(&b.bundle),
            Composition::Command(c) => c.bundle.as_deref(),
        }
    }
}

/// An HTML page inside a bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrowserComposition {
    /// Page to open, relative to the bundle root.
    pub entry: String,
    /// Storage key of the bundle (`bundles/<sha256>.tar.zst`).
    pub bundle: String,
    /// Seed of the page's `Math.random` (a fixed default keeps renders reproducible).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u32>,
    /// Capture this `<canvas>` (a CSS selector) by read-back instead of screenshotting the
    /// page: faster for canvas-only compositions; the canvas must be the output size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture_canvas: Option<String>,
    /// Browser processes one worker runs side by side for a chunk (each renders contiguous
    /// blocks of it; frames merge in order into one encoder). Absent: chosen by the worker
    /// from its cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browsers: Option<u32>,
    /// Input props given to the composition before its first frame, the same in every
    /// chunk: as `window.__HELIOS_PROPS__` before the page's scripts run, and through
    /// `helios.setInputProps` (merged over its current props) once a Helios composition has
    /// loaded. `plan` records the merged, validated result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub props: Option<Props>,
    /// Remote resources (`http(s)` URLs) the page loaded when it was planned, fetched once
    /// and kept in the job's storage: workers answer the page's requests for them from these
    /// copies and never contact their origin.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub assets: std::collections::BTreeMap<String, Asset>,
    /// Let requests for remote resources that were not vendored through to the network
    /// (otherwise such a request fails the chunk).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_network: bool,
    /// The fonts the page's text rendered with when it was planned: family requested →
    /// platform font used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fonts: Vec<FontRecord>,
}

/// A font the page's text rendered with at plan time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FontRecord {
    /// The `font-family` list the text asked for, as CSS computed it.
    pub requested: String,
    /// The family name of the platform font its glyphs were drawn with.
    pub platform: String,
    /// A web font (`@font-face`, from the bundle or vendored), not one of the machine's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub web: bool,
    /// A machine font's file as fontconfig picks it for the family: its SHA-256, which
    /// every worker's must equal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_sha256: Option<String>,
}

/// A remote resource vendored at plan time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Asset {
    /// Storage key of its bytes (`assets/<sha256>`).
    pub key: String,
    /// Hex SHA-256 of its bytes.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Its `Content-Type`, as the origin sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

/// A composition's input props: a JSON object.
pub type Props = serde_json::Map<String, serde_json::Value>;

/// A program run once per chunk with placeholders substituted in its arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandComposition {
    /// Argument vector; `argv[0]` is the program. Never passed through a shell.
    pub argv: Vec<String>,
    /// Optional bundle unpacked for the program; its path is `{bundle}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<String>,
    /// Names of variables the program gets from the worker's own environment (the program
    /// otherwise sees only PATH, HOME, TMPDIR, locale, TZ and the HELIOS_* chunk variables).
    /// Names only: values, secrets included, never travel in the spec.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pass_env: Vec<String>,
}

/// A half-open frame range `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrameRange {
    /// First frame, inclusive.
    pub start: u64,
    /// Last frame, exclusive.
    pub end: u64,
}

impl FrameRange {
    /// Creates `[start, end)`.
    pub const fn new(start: u64, end: u64) -> Self {
        Self { start, end }
    }

    /// Number of frames (zero when `end <= start`).
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// True when the range holds no frame.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Video codecs a job can encode to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// H.264 (libx264).
    #[default]
    H264,
    /// H.265 (libx265).
    H265,
    /// VP9 (libvpx-vp9).
    Vp9,
    /// Apple ProRes 422 HQ (prores_ks); never lossless.
    Prores,
    /// FFV1, always lossless.
    Ffv1,
    /// AV1 (SVT-AV1 through FFmpeg; libaom where SVT-AV1 is missing). `crf` 0-63,
    /// `preset` 0 (slowest) to 13 (fastest) on SVT-AV1's scale.
    Av1,
}

impl Codec {
    /// Whether its segments can be fragmented MP4 joined by their bytes (and played as
    /// HLS fMP4).
    pub fn joins_by_bytes(self) -> bool {
        matches!(self, Codec::H264 | Codec::H265 | Codec::Vp9 | Codec::Av1)
    }

    /// Every codec, for help texts and errors.
    pub const ALL: [Codec; 6] = [
        Codec::H264,
        Codec::H265,
        Codec::Vp9,
        Codec::Prores,
        Codec::Ffv1,
        Codec::Av1,
    ];

    /// The lowercase name used in specs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Codec::H264 => "h264",
            Codec::H265 => "h265",
            Codec::Vp9 => "vp9",
            Codec::Prores => "prores",
            Codec::Ffv1 => "ffv1",
            Codec::Av1 => "av1",
        }
    }

    /// Pixel format used when the spec names none.
    pub fn default_pixel_format(self) -> &'static str {
        match self {
            Codec::Prores => "yuv422p10le",
            _ => "yuv420p",
        }
    }

    /// Output container extensions that can hold this codec (first = default).
    pub fn containers(self) -> &'static [&'static str] {
        match self {
            Codec::H264 | Codec::H265 => &["mp4", "mov", "mkv"],
            Codec::Vp9 => &["webm", "mkv", "mp4"],
            Codec::Prores => &["mov", "mkv"],
            Codec::Ffv1 => &["mkv", "mov"],
            Codec::Av1 => &["mp4", "webm", "mkv"],
        }
    }
}

impl std::str::FromStr for Codec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.to_ascii_lowercase();
        Codec::ALL
            .into_iter()
            .find(|c| c.name() == s || (s == "hevc" && *c == Codec::H265))
            .ok_or_else(|| {
                let names: Vec<_> = Codec::ALL.iter().map(|c| c.name()).collect();
                format!("unknown codec {s:?}; use one of {}", names.join(", "))
            })
    }
}

/// Picture and encoding settings shared by every segment of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoSpec {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Frame rate.
    pub fps: Fps,
    /// Frames of the composition to render.
    pub frames: FrameRange,
    /// Codec of the segments and the output.
    #[serde(default)]
    pub codec: Codec,
    /// Constant rate factor (quality) for lossy codecs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crf: Option<u32>,
    /// Encoder speed preset (x264/x265 names such as `medium`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// FFmpeg pixel format; defaults per codec (`yuv420p` for most).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pixel_format: Option<String>,
    /// Bit-exact mode: segments decode to exactly the rendered pixels.
    #[serde(default)]
    pub lossless: bool,
    /// How workers write segments; chosen from the output container when the job is planned.
    #[serde(default, skip_serializing_if = "SegmentFormat::is_file")]
    pub segments: SegmentFormat,
}

/// The form of a job's segments, which decides how they are stitched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SegmentFormat {
    /// Whole MP4/MOV files, joined by FFmpeg's concat demuxer (any container).
    #[default]
    File,
    /// Fragmented MP4 media placed on the job's timeline by the worker, joined by bytes
    /// (locally, or inside the bucket) behind one init segment.
    Fragmented,
}

impl SegmentFormat {
    /// Whether this is [`SegmentFormat::File`].
    pub fn is_file(&self) -> bool {
        *self == SegmentFormat::File
    }

    /// The format for an output file: fragmented for `.mp4`/`.m4v` (and HLS `.m3u8`) outputs
    /// of H.264, H.265, VP9 or AV1; whole files (concat) for other containers and for
    /// lossless jobs.
    pub fn for_output(output: &std::path::Path, video: &VideoSpec) -> Self {
        let ext = output
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .unwrap_or_default();
        if matches!(ext.as_str(), "mp4" | "m4v" | "m3u8")
            && video.codec.joins_by_bytes()
            && !video.lossless
        {
            SegmentFormat::Fragmented
        } else {
            SegmentFormat::File
        }
    }

    /// Name for people (`status`).
    pub fn describe(self) -> &'static str {
        match self {
            SegmentFormat::File => "concat (FFmpeg concat demuxer, -c copy)",
            SegmentFormat::Fragmented => "byte join (fragmented MP4)",
        }
    }
}

impl VideoSpec {
    /// The pixel format in effect.
    pub fn pixel_format(&self) -> &str {
        self.pixel_format
            .as_deref()
            .unwrap_or(self.codec.default_pixel_format())
    }
}

/// One contiguous frame range rendered by one worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chunk {
    /// Position of the chunk in the job, from 0.
    pub index: u32,
    /// First frame, inclusive.
    pub start: u64,
    /// Last frame, exclusive.
    pub end: u64,
}

impl Chunk {
    /// Number of frames in the chunk.
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// True when the chunk holds no frame (never true for a valid spec).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How failed chunks are retried and how long an attempt may take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts per chunk, first one included.
    pub max_attempts: u32,
    /// First backoff delay, in milliseconds (doubles per attempt, with full jitter).
    pub base_backoff_ms: u64,
    /// Upper bound of a backoff delay, in milliseconds.
    pub max_backoff_ms: u64,
    /// Wall-clock limit of one attempt, in seconds.
    pub timeout_s: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_backoff_ms: 500,
            max_backoff_ms: 30_000,
            timeout_s: 600.0,
        }
    }
}

/// One audio track on the job's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudioTrack {
    /// An `http(s)://` URL, an absolute path (or `file://` URL) on the orchestrator's
    /// machine, or a relative path to a file in the job's bundle.
    pub source: String,
    /// Composition frame at which the track starts playing.
    #[serde(default)]
    pub at_frame: u64,
    /// Seconds skipped at the start of the source.
    #[serde(default)]
    pub trim_start_s: f64,
    /// Seconds of the track to play (default: to the end of the source, or of the video when looping).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f64>,
    /// Linear gain (1.0 = unchanged).
    #[serde(default = "unity")]
    pub volume: f64,
    /// Fade-in length in seconds.
    #[serde(default)]
    pub fade_in_s: f64,
    /// Fade-out length in seconds, ending where the track ends.
    #[serde(default)]
    pub fade_out_s: f64,
    /// Repeat the source until `duration_s` or the end of the video.
    #[serde(default, rename = "loop")]
    pub looped: bool,
}

fn unity() -> f64 {
    1.0
}

/// Where an audio track's samples come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioSource {
    /// Read by FFmpeg over HTTP(S).
    Url(String),
    /// A file on the orchestrator's machine.
    Path(std::path::PathBuf),
    /// A file inside the job's bundle (relative path).
    Bundle(String),
}

impl AudioTrack {
    /// A track playing `source` from `at_frame` at full volume.
    pub fn new(source: impl Into<String>, at_frame: u64) -> Self {
        Self {
            source: source.into(),
            at_frame,
            trim_start_s: 0.0,
            duration_s: None,
            volume: 1.0,
            fade_in_s: 0.0,
            fade_out_s: 0.0,
            looped: false,
        }
    }

    /// Classifies `source`.
    pub fn source(&self) -> AudioSource {
        let s = self.source.as_str();
        if s.starts_with("http://") || s.starts_with("https://") {
            AudioSource::Url(s.to_string())
        } else if let Some(rest) = s.strip_prefix("file://") {
            AudioSource::Path(std::path::PathBuf::from(rest))
        } else if s.starts_with('/') {
            AudioSource::Path(std::path::PathBuf::from(s))
        } else {
            AudioSource::Bundle(s.to_string())
        }
    }
}
