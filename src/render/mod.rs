//! Renderers turn one chunk of a job into a segment file.
//!
//! [`Renderer`] is the seam: the [`command::CommandRenderer`] runs an external program;
//! the browser renderer (Chromium over CDP) plugs in beside it. Both hand their frames to
//! [`encoder`], so every segment of a job has identical encoder parameters.

pub mod browser;
pub mod command;
pub mod encoder;

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;

use crate::media::MediaError;
use crate::spec::{Chunk, JobSpec};

/// Everything a renderer needs for one chunk.
#[derive(Debug, Clone, Copy)]
pub struct RenderRequest<'a> {
    /// The job.
    pub spec: &'a JobSpec,
    /// The chunk to render.
    pub chunk: Chunk,
    /// A private, empty directory the renderer may use; removed afterwards.
    pub workdir: &'a Path,
    /// The unpacked composition bundle, if the job has one.
    pub bundle_dir: Option<&'a Path>,
}

/// A segment on local disk, ready to upload.
#[derive(Debug, Clone)]
pub struct RenderedSegment {
    /// The segment file (in the job's segment container), or the folder of its images.
    pub path: PathBuf,
    /// Frames it holds (checked by probing).
    pub frames: u64,
    /// What was checked: the segment as probing found it (codec parameters, keyframe
    /// first), or the image of each frame.
    pub artifact: encoder::Artifact,
    /// Time spent producing frames.
    pub render_time: Duration,
    /// Time spent encoding and checking them.
    pub encode_time: Duration,
    /// Renderer counters (e.g. the page work done before the first frame).
    pub stats: std::collections::BTreeMap<String, u64>,
    /// Where a browser chunk's time went, stage by stage.
    pub stages: Option<StageTimings>,
}

/// Where the time of a browser chunk went. Stage times of browsers are summed over the
/// browsers (browser-milliseconds); the writer's waits are its own wall time.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StageTimings {
    /// Browser processes that shared the chunk.
    pub browsers: u32,
    /// Starting the browsers and loading the composition (wall time, in parallel).
    pub launch_ms: u64,
    /// Seek round trips: moving the page's clock and running the frame's callbacks.
    pub seek_ms: u64,
    /// Waiting inside the page for `helios.waitUntilStable()`.
    pub settle_ms: u64,
    /// Capture round trips: paint, raster, PNG encoding in Chromium, transfer over CDP.
    pub capture_ms: u64,
    /// Decoding base64 and PNG in Rust (thread-pool time, parallel to capture).
    pub decode_ms: u64,
    /// The writer waiting for the next frame in order (capture-bound time).
    pub frame_wait_ms: u64,
    /// The writer blocked on FFmpeg's input (encoder-bound time).
    pub encode_wait_ms: u64,
    /// From the last frame to FFmpeg's exit.
    pub encode_finish_ms: u64,
    /// Frames of the chunk ÷ wall time from browser launch to a verified segment.
    pub frames_per_s: f64,
    /// The pace at which frames arrived from the browsers over the chunk's second half,
    /// once they are warm, in milliseconds a frame (0 for chunks under 4 frames).
    #[serde(default)]
    pub steady_frame_ms: f64,
}

/// Renders chunks.
#[async_trait]
pub trait Renderer: Send + Sync {
    /// Renders `req.chunk` into a segment inside `req.workdir`.
    async fn render(&self, req: &RenderRequest<'_>) -> Result<RenderedSegment, RenderError>;

    /// Renders single frames, not a range, as images of `req.spec`'s output (an image
    /// spec); returns each frame's file, in the order asked. By default each frame is a
    /// one-frame chunk of its own.
    async fn render_frames(
        &self,
        req: &RenderRequest<'_>,
        frames: &[u64],
    ) -> Result<Vec<PathBuf>, RenderError> {
        let mut out = Vec::with_capacity(frames.len());
        for &f in frames {
            let workdir = req.workdir.join(format!("frame-{f}"));
            std::fs::create_dir_all(&workdir).map_err(|source| RenderError::Io {
                context: "cannot make a work directory".into(),
                source,
            })?;
            let one = RenderRequest {
                chunk: Chunk {
                    index: req.chunk.index,
                    start: f,
                    end: f + 1,
                },
                workdir: &workdir,
                ..*req
            };
            match self.render(&one).await?.artifact {
                encoder::Artifact::Images(mut files) if files.len() == 1 => {
                    out.push(files.remove(0).1)
                }
                _ => {
                    return Err(RenderError::BadOutput(format!(
                        "frame {f} did not render as one image"
                    )))
                }
            }
        }
        Ok(out)
    }
}

/// Why a chunk could not be rendered. [`RenderError::is_retryable`] tells transient
/// failures from ones that would fail again.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The renderer program does not exist or cannot be executed.
    #[error("cannot start renderer {program:?}: {source}")]
    ProgramNotFound {
        /// `argv[0]`.
        program: String,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The renderer program exited unsuccessfully.
    #[error("renderer {program:?} failed with {status}; last lines of its stderr:\n{stderr}")]
    ProgramFailed {
        /// `argv[0]`.
        program: String,
        /// Exit status description.
        status: String,
        /// Tail of its stderr.
        stderr: String,
    },
    /// The renderer succeeded but its output is unusable.
    #[error("{0}")]
    BadOutput(String),
    /// The composition itself is broken (e.g. the page threw).
    #[error("composition error: {0}")]
    Composition(String),
    /// No browser to render with.
    #[error("{0}")]
    BrowserMissing(String),
    /// This worker's fonts are not the ones the job was planned with.
    #[error("{0}")]
    FontMismatch(String),
    /// The browser crashed, hung or went away.
    #[error("browser failure: {0}")]
    BrowserCrashed(String),
    /// FFmpeg could not encode or probe the frames.
    #[error(transparent)]
    Media(#[from] MediaError),
    /// Local I/O in the work directory.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl RenderError {
    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            RenderError::ProgramFailed { .. }
                | RenderError::Io { .. }
                | RenderError::BrowserCrashed(_)
                | RenderError::Media(MediaError::Spawn { .. })
        )
    }
}
