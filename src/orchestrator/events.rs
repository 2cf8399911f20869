//! Progress events emitted by the orchestrator, for progress bars and `--json` output.

use serde::Serialize;

/// Something that happened in a job.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The job started (or resumed).
    JobStarted {
        /// Job id.
        job: String,
        /// Chunks in the job.
        chunks: u32,
        /// Frames in the job.
        frames: u64,
        /// Frames already done (resume).
        frames_done: u64,
        /// Chunks still to render.
        pending: u32,
    },
    /// An attempt started.
    ChunkStarted {
        /// Chunk index.
        chunk: u32,
        /// Attempt number.
        attempt: u32,
    },
    /// A chunk's segment was committed.
    ChunkDone {
        /// Chunk index.
        chunk: u32,
        /// Attempt number.
        attempt: u32,
        /// Frames in the chunk.
        frames: u64,
        /// Worker time, milliseconds.
        worker_ms: u64,
    },
    /// A straggling chunk got a speculative duplicate attempt.
    ChunkSpeculated {
        /// Chunk index.
        chunk: u32,
        /// The duplicate's attempt number.
        attempt: u32,
    },
    /// An attempt failed and will be retried.
    ChunkRetry {
        /// Chunk index.
        chunk: u32,
        /// The failed attempt.
        attempt: u32,
        /// Delay before the next attempt, milliseconds.
        backoff_ms: u64,
        /// What went wrong.
        error: String,
    },
    /// A chunk failed for good.
    ChunkFailed {
        /// Chunk index.
        chunk: u32,
        /// Attempts made in this run.
        attempts: u32,
        /// What went wrong.
        error: String,
    },
    /// Segments are being verified and concatenated.
    Stitching {
        /// Number of segments.
        segments: u32,
    },
    /// A segment failed verification and will be rendered again.
    SegmentRejected {
        /// Chunk index.
        chunk: u32,
        /// Why.
        reason: String,
    },
    /// The output is complete.
    JobSucceeded {
        /// Job id.
        job: String,
        /// Output path.
        output: String,
        /// Frames in the output.
        frames: u64,
    },
    /// The job failed.
    JobFailed {
        /// Job id.
        job: String,
        /// Why.
        error: String,
    },
    /// The job was cancelled.
    JobCancelled {
        /// Job id.
        job: String,
    },
    /// The job stopped before it could finish: its cost cap was reached (`reason`
    /// "budget"). Finished chunks are kept; `resume` with a higher cap continues it.
    JobStopped {
        /// Job id.
        job: String,
        /// Why: "budget".
        reason: String,
        /// The cap, USD.
        cap_usd: f64,
        /// Spent when the next task was refused, USD.
        spent_usd: f64,
        /// Expected cost of what is left, USD.
        remaining_usd: f64,
        /// The whole message, with the command that continues.
        message: String,
    },
    /// The plan's expected time and cost, before anything runs.
    Estimate {
        /// Job (or batch) id.
        job: String,
        /// Expected wall time, seconds.
        wall_s: f64,
        /// Expected cost, USD.
        usd: f64,
        /// The cap, USD, if there is one.
        cap_usd: Option<f64>,
        /// Spent so far (a resumed job), USD.
        spent_usd: f64,
        /// The estimate in words.
        text: String,
    },
}

/// Where events go.
pub type EventSink = tokio::sync::mpsc::UnboundedSender<Event>;
