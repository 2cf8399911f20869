//! The orchestrator: plans are submitted as jobs, chunks are dispatched to a
//! [`WorkerAdapter`](crate::adapters::WorkerAdapter) with a concurrency limit, per-attempt
//! timeouts and retries, verified results are committed to the [`JobStore`], and the
//! committed segments are stitched.

mod assemble;
pub mod events;
mod gif;
mod hls;
pub mod lock;
mod place;
mod run;
pub mod spend;
pub mod store;
pub mod webhook;

use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::adapters::WorkerAdapter;
use crate::spec::SpecError;
use crate::stitch::{StitchError, Stitcher};
use crate::storage::StorageError;

pub use events::{Event, EventSink};
pub use lock::{JobLock, LockError};
pub use store::{
    now_ms, playable_prefix, AttemptOutcome, AttemptRecord, BatchRow, ChunkRecord, ChunkState,
    CommittedSegment, CostPlan, JobRecord, JobState, JobStore, SpendEntry, Spent, SqliteStore,
    StoreError, StoreStats,
};

/// Why a job did not finish.
#[derive(Debug, thiserror::Error)]
pub enum OrchestratorError {
    /// The job store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Object storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Another process runs the job.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The spec is invalid.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// A chunk failed for good; finished segments are kept.
    #[error("job {job} failed: chunk {chunk} (frames {start}..{end}) failed after {attempts} attempt(s): {message}\nFinished chunks are kept; fix the cause and run `helios-infra resume {job}`.")]
    ChunkFailed {
        /// Job id.
        job: String,
        /// Chunk index.
        chunk: u32,
        /// First frame.
        start: u64,
        /// End frame (exclusive).
        end: u64,
        /// Attempts made in this run.
        attempts: u32,
        /// The last failure, with the renderer's stderr tail.
        message: String,
    },
    /// An audio track cannot be used.
    #[error("job {job}: audio track {track} ({location}) cannot be used: {message}")]
    Audio {
        /// Job id.
        job: String,
        /// Track index.
        track: usize,
        /// The track's source.
        location: String,
        /// What is wrong.
        message: String,
    },
    /// Stitching failed.
    #[error("job {job} failed while stitching: {source}")]
    Stitch {
        /// Job id.
        job: String,
        /// Underlying error.
        #[source]
        source: StitchError,
    },
    /// Segments kept failing verification.
    #[error("job {job}: segments failed verification {rounds} times in a row: {reason}")]
    Unstitchable {
        /// Job id.
        job: String,
        /// How many render/verify rounds were tried.
        rounds: u32,
        /// Last problem.
        reason: String,
    },
    /// A GIF job's palette could not be made.
    #[error("job {job} failed: its GIF palette could not be made: {message}\nNothing was lost; fix the cause and run `helios-infra resume {job}`.")]
    Palette {
        /// Job id.
        job: String,
        /// The last failure.
        message: String,
    },
    /// The job's cost cap (or its batch's) stopped it: no task starts that would pass the
    /// cap; finished chunks are kept; resumable with a higher cap.
    #[error("job {job} stopped: its cost cap was reached: {over}.\nFinished chunks are kept; `helios-infra resume {scope} --max-cost {suggested}` continues it (about {} of work is left).", crate::cost::format_usd(*.remaining_usd))]
    OverBudget {
        /// Job id.
        job: String,
        /// The job or batch the cap covers (what `resume` takes).
        scope: String,
        /// What was refused and why.
        over: Box<spend::OverCap>,
        /// Expected cost of what is left, USD.
        remaining_usd: f64,
        /// A cap that covers what is spent and what is left, with a margin.
        suggested: f64,
    },
    /// Cancelled by the user; resumable.
    #[error("job {job} was cancelled; finished chunks are kept (`helios-infra resume {job}` continues it)")]
    Cancelled {
        /// Job id.
        job: String,
    },
    /// Local I/O.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// What a finished job produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Job id.
    pub job: String,
    /// The output file (when it was downloaded; see `downloaded`).
    pub output: PathBuf,
    /// Whether the output was copied to `output`; if not, it is only at `url`.
    pub downloaded: bool,
    /// Where the output is kept in storage: its URL (a presigned HTTPS URL for S3 when it
    /// was not downloaded), or its path in local storage.
    pub url: String,
    /// Frames in it.
    pub frames: u64,
    /// Chunks rendered by this run (0 when everything was already done).
    pub chunks_rendered: u32,
}

/// Runs jobs. Cheap to build; one per process.
pub struct Orchestrator {
    /// Durable job state.
    pub store: Arc<dyn JobStore>,
    /// Where chunks run.
    pub adapter: Arc<dyn WorkerAdapter>,
    /// Recorded with each submitted job so `resume` can reach the same workers (JSON, no secrets).
    pub adapter_config: String,
    /// Joins segments.
    pub stitcher: Arc<dyn Stitcher>,
    /// Directory for locks and temporary files (`.helios/`).
    pub state_dir: PathBuf,
    /// Progress events, if anyone listens.
    pub events: Option<EventSink>,
    /// Cancels the running job (Ctrl-C); the job stays resumable.
    pub cancel: CancellationToken,
    /// Key that signs webhook notifications (never stored with the job).
    pub webhook_secret: Option<String>,
    /// Duplicate straggling attempts (on by default for remote adapters).
    pub speculation: Option<Speculation>,
    /// Worker slots shared by every job this orchestrator runs (a batch: one concurrency
    /// limit for all its variants); without it each job has its spec's `concurrency`.
    pub slots: Option<Arc<tokio::sync::Semaphore>>,
    /// Prices workers' time, keeps the spend ledger and holds jobs to their cost caps.
    pub meter: Arc<spend::Meter>,
    /// Attempts that ran before their job was submitted (the estimate's probe), by job:
    /// committed as their chunk's attempt when [`Orchestrator::run`] reaches the chunk.
    pub kept: std::sync::Mutex<std::collections::HashMap<String, Vec<KeptAttempt>>>,
}

/// An attempt that ran before its job was submitted (see [`Orchestrator::keep_attempt`]).
#[derive(Debug, Clone)]
pub struct KeptAttempt {
    /// The worker's report.
    pub report: crate::worker::ChunkReport,
    /// When it was dispatched and when it answered, Unix milliseconds.
    pub span_ms: (i64, i64),
}

impl Orchestrator {
    /// An orchestrator with the concat stitcher and no adapter config, events, webhook
    /// secret or speculation; set those fields as needed (struct update syntax).
    pub fn new(
        store: Arc<dyn JobStore>,
        adapter: Arc<dyn WorkerAdapter>,
        state_dir: impl Into<PathBuf>,
    ) -> Self {
        Self {
            store,
            adapter,
            adapter_config: "{}".into(),
            stitcher: Arc::new(crate::stitch::ConcatStitcher),
            state_dir: state_dir.into(),
            events: None,
            cancel: CancellationToken::new(),
            webhook_secret: None,
            speculation: None,
            slots: None,
            meter: spend::Meter::new(crate::cost::Price::worker_hour(None)),
            kept: Default::default(),
        }
    }
}

/// When a running attempt counts as a straggler and gets a speculative duplicate.
#[derive(Debug, Clone, PartialEq)]
pub struct Speculation {
    /// It has run longer than this multiple of the median successful attempt…
    pub factor: f64,
    /// …and at least this long…
    pub min_elapsed: std::time::Duration,
    /// …and at least this share of the job's chunks is done.
    pub min_done: f64,
}

impl Default for Speculation {
    fn default() -> Self {
        Self {
            factor: 3.0,
            min_elapsed: std::time::Duration::from_secs(1),
            min_done: 0.75,
        }
    }
}
