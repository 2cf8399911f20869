//! The worker invocation contract, identical for every adapter (see ARCHITECTURE.md).

use serde::{Deserialize, Serialize};

use crate::render::RenderError;

/// What a worker is asked to do: one attempt at one chunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkRequest {
    /// Storage URL of the job's `job.json` (empty for a ping).
    #[serde(default)]
    pub job: String,
    /// Chunk index.
    #[serde(default)]
    pub chunk: u32,
    /// Attempt number (from 1); names the attempt's storage keys.
    #[serde(default = "first_attempt")]
    pub attempt: u32,
    /// An assembly task instead of a chunk: join the objects that
    /// `jobs/<id>/assembly/<chunk>.json` lists into one part of the output (in-bucket
    /// stitching; see `worker::assemble`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub assemble: bool,
    /// The palette task of a GIF job instead of a chunk: render a sample of the job's
    /// frames and compute the one palette every chunk draws with (see `worker::palette`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub palette: bool,
    /// A ping (`{"ping": true}`): answer with the worker's versions and capabilities
    /// ([`super::ping::PingInfo`]) and do nothing else.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ping: bool,
}

impl ChunkRequest {
    /// A request to render `chunk`.
    pub fn render(job: impl Into<String>, chunk: u32, attempt: u32) -> Self {
        Self {
            job: job.into(),
            chunk,
            attempt,
            assemble: false,
            palette: false,
            ping: false,
        }
    }

    /// A ping: `{"ping": true}`.
    pub fn ping() -> Self {
        Self {
            ping: true,
            ..Self::render("", 0, 1)
        }
    }
}

fn first_attempt() -> u32 {
    1
}

/// What a successful attempt produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkReport {
    /// Job id.
    pub job: String,
    /// Chunk index.
    pub chunk: u32,
    /// Attempt number.
    pub attempt: u32,
    /// First frame, inclusive.
    pub start: u64,
    /// Last frame, exclusive.
    pub end: u64,
    /// Frames in the segment.
    pub frames: u64,
    /// Storage key of the segment.
    pub segment: String,
    /// Segment size in bytes.
    pub bytes: u64,
    /// Hex SHA-256 of the segment.
    pub sha256: String,
    /// Hex MD5 of the segment: what S3 reports as the ETag of a part copied from it, so
    /// in-bucket assembly checks every byte it never reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    /// Where the time went.
    pub timings: Timings,
    /// Renderer counters, e.g. the page work before the first frame (browser).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub stats: std::collections::BTreeMap<String, u64>,
    /// Per-stage breakdown of a browser chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stages: Option<Box<crate::render::StageTimings>>,
    /// What the worker found in its own segment, so the orchestrator never probes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<Box<SegmentMedia>>,
    /// The answer to a ping: the worker's versions and capabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping: Option<Box<super::ping::PingInfo>>,
}

/// A segment as its worker verified it: probed, and for fragmented media parsed and placed
/// on the job's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentMedia {
    /// Parameters that must be equal across a job's segments: codec, profile, size, pixel
    /// format, frame rate, time base and a hash of the codec's extradata.
    pub params: String,
    /// Frames (video packets) counted.
    pub frames: u64,
    /// Whether the first frame is a keyframe.
    pub keyframe_first: bool,
    /// Hex MD5 of the stored segment: S3 gives a part copied from it this ETag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    /// Layout of fragmented media (`segments: fragmented` jobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fragmented: Option<FragmentedMedia>,
    /// The header of a GIF part (signature, screen descriptor, global palette), base64:
    /// identical for every chunk of a GIF job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gif_header: Option<String>,
    /// The image files of an image sequence or still, in frame order, stored under the
    /// attempt's folder (`jobs/<id>/attempts/<index>/<attempt>/<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<ImageFile>>,
}

/// One image an attempt wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageFile {
    /// The composition's frame index.
    pub frame: u64,
    /// File name (the output pattern with the frame number in it).
    pub name: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Hex SHA-256.
    pub sha256: String,
    /// Hex MD5: what S3 and Cloud Storage report for the object, so a copy in the bucket
    /// is checked without reading it.
    pub md5: String,
}

impl ImageFile {
    /// One digest standing for a whole set of files (names and hashes, in order): the
    /// `sha256` of an image attempt's report.
    pub fn digest_of(files: &[ImageFile]) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for f in files {
            h.update(f.name.as_bytes());
            h.update(b"\t");
            h.update(f.sha256.as_bytes());
            h.update(b"\n");
        }
        hex::encode(h.finalize())
    }
}

/// The layout of a fragmented segment: what the byte join needs besides the bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FragmentedMedia {
    /// The `ftyp moov` init segment, base64: identical for every chunk of a job.
    pub init: String,
    /// Track timescale.
    pub timescale: u32,
    /// Decode time of the first frame (the chunk's first frame × ticks per frame).
    pub decode_start: u64,
    /// Decode time after the last frame.
    pub decode_end: u64,
    /// Composition offset of the first frame (ticks): the encoder's reordering delay.
    pub presentation_delay: i64,
    /// Fragments, with offsets from the start of the stored media.
    pub fragments: Vec<crate::media::fmp4::Fragment>,
}

/// Durations of a worker's phases, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timings {
    /// Reading the spec and the bundle.
    pub fetch_ms: u64,
    /// Producing frames.
    pub render_ms: u64,
    /// Encoding and checking the segment.
    pub encode_ms: u64,
    /// Uploading segment and report.
    pub upload_ms: u64,
    /// Whole attempt.
    pub total_ms: u64,
}

/// Classes of failure; each is retryable or not by nature, and the worker says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The request names no valid job or chunk.
    InvalidRequest,
    /// The job spec is invalid.
    InvalidSpec,
    /// The bundle is missing or unsafe.
    MissingBundle,
    /// The composition itself fails (page exception, bad output).
    Composition,
    /// The renderer program cannot be started.
    RendererNotFound,
    /// The renderer program failed.
    RendererFailed,
    /// The browser crashed or hung.
    BrowserCrashed,
    /// The renderer's output is unusable (wrong size, frame count, unreadable).
    RenderOutput,
    /// FFmpeg failed.
    Encode,
    /// A required tool (FFmpeg) is missing on the worker.
    MissingTool,
    /// The worker's fonts differ from the ones the job was planned with.
    FontMismatch,
    /// Storage I/O failed.
    Storage,
    /// Local I/O failed.
    Io,
    /// The attempt ran out of time.
    Timeout,
    /// The worker died or its answer was lost.
    LostWorker,
    /// The engine refused the invocation for now (429, throttling).
    Throttled,
    /// A segment an assembly task had to join is not what its report said (`chunk` names
    /// it): that chunk is rendered again.
    BadSegment,
    /// A bug or an unexpected condition.
    Internal,
}

impl FailureKind {
    /// The kind of a render error.
    pub fn from_render(e: &RenderError) -> Self {
        use crate::media::MediaError;
        match e {
            RenderError::ProgramNotFound { .. } => FailureKind::RendererNotFound,
            RenderError::ProgramFailed { .. } => FailureKind::RendererFailed,
            RenderError::BrowserCrashed(_) => FailureKind::BrowserCrashed,
            RenderError::BadOutput(_) => FailureKind::RenderOutput,
            RenderError::Composition(_) => FailureKind::Composition,
            RenderError::FontMismatch(_) => FailureKind::FontMismatch,
            RenderError::BrowserMissing(_) | RenderError::Media(MediaError::Missing { .. }) => {
                FailureKind::MissingTool
            }
            RenderError::Media(_) => FailureKind::Encode,
            RenderError::Io { .. } => FailureKind::Io,
        }
    }
}

/// A failed attempt, as a worker reports it: `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct WorkerFailure {
    /// Whether another attempt may succeed.
    pub retryable: bool,
    /// Class of failure.
    pub kind: FailureKind,
    /// What happened, for people.
    pub message: String,
    /// The chunk at fault, when it is not the one asked for ([`FailureKind::BadSegment`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk: Option<u32>,
}

impl WorkerFailure {
    /// A failure worth retrying.
    pub fn retryable(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            retryable: true,
            kind,
            message: message.into(),
            chunk: None,
        }
    }

    /// A failure that would repeat.
    pub fn fatal(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            retryable: false,
            kind,
            message: message.into(),
            chunk: None,
        }
    }
}

/// The JSON a worker prints or returns: a report or an error.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum WorkerResponse {
    /// `{"error": {...}}`
    Failure {
        /// The failure.
        error: WorkerFailure,
    },
    /// The chunk report.
    Report(ChunkReport),
}

impl From<Result<ChunkReport, WorkerFailure>> for WorkerResponse {
    fn from(r: Result<ChunkReport, WorkerFailure>) -> Self {
        match r {
            Ok(report) => WorkerResponse::Report(report),
            Err(error) => WorkerResponse::Failure { error },
        }
    }
}

impl From<WorkerResponse> for Result<ChunkReport, WorkerFailure> {
    fn from(r: WorkerResponse) -> Self {
        match r {
            WorkerResponse::Report(report) => Ok(report),
            WorkerResponse::Failure { error } => Err(error),
        }
    }
}
