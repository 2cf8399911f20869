//! The durable job store: jobs and chunks in SQLite (WAL, synchronous=FULL, busy timeout),
//! so that a killed orchestrator resumes exactly where it stopped.
//!
//! Writes are group-committed: one writer thread owns the write connection, drains every
//! change queued while the previous transaction was being fsync'd, applies each in its own
//! savepoint, commits them with one fsync and only then answers the callers. A change is
//! therefore durable before the orchestrator acts on it, but a thousand concurrent chunks
//! cost a handful of fsyncs rather than two thousand.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::{mpsc, oneshot};

use crate::spec::{Chunk, JobSpec};

/// Job states: `queued → running → stitching → succeeded | failed | cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Submitted, not started.
    Queued,
    /// Chunks are rendering.
    Running,
    /// Segments are being verified and concatenated.
    Stitching,
    /// The output is complete.
    Succeeded,
    /// A chunk failed for good, or stitching failed; resumable.
    Failed,
    /// Stopped by the user; resumable.
    Cancelled,
    /// Stopped by its cost cap before it could finish (`--max-cost`); resumable with a
    /// higher cap.
    Stopped,
}

/// Chunk states: `pending → running → done | failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkState {
    /// Waiting for a worker.
    Pending,
    /// An attempt is in flight.
    Running,
    /// A verified segment is committed.
    Done,
    /// Out of attempts, or failed fatally.
    Failed,
}

macro_rules! names {
    ($t:ty { $($v:ident => $s:literal),* $(,)? }) => {
        impl $t {
            /// Lowercase name as stored and shown.
            pub fn as_str(self) -> &'static str { match self { $(Self::$v => $s),* } }
            fn parse(s: &str) -> Result<Self, StoreError> {
                match s { $($s => Ok(Self::$v),)* other => Err(StoreError::Corrupt(format!("unknown state {other:?}"))) }
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(self.as_str()) }
        }
    };
}
names!(JobState { Queued => "queued", Running => "running", Stitching => "stitching", Succeeded => "succeeded", Failed => "failed", Cancelled => "cancelled", Stopped => "stopped" });
names!(ChunkState { Pending => "pending", Running => "running", Done => "done", Failed => "failed" });
names!(AttemptOutcome { Running => "running", Succeeded => "succeeded", Failed => "failed", Fatal => "fatal", TimedOut => "timed_out", Superseded => "superseded", Cancelled => "cancelled", Interrupted => "interrupted" });

/// How an attempt of a chunk ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// Still in flight (or the orchestrator has not said yet).
    Running,
    /// Its segment was verified.
    Succeeded,
    /// It failed in a way worth retrying.
    Failed,
    /// It failed in a way no retry can fix.
    Fatal,
    /// It ran past the job's timeout and was killed.
    TimedOut,
    /// Another attempt of the same chunk (a speculative duplicate, or the attempt it
    /// duplicated) won first.
    Superseded,
    /// The job was cancelled while it ran.
    Cancelled,
    /// The orchestrator stopped (crash, kill) while it ran; found on resume.
    Interrupted,
}

/// One attempt of a chunk, as recorded by the orchestrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    /// Chunk index.
    pub index: u32,
    /// Attempt number (per chunk, from 1, across resumes).
    pub attempt: u32,
    /// When it started (ms since the Unix epoch, the orchestrator's clock).
    pub started_ms: i64,
    /// When it ended, if it has.
    pub ended_ms: Option<i64>,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// The failure's class (the worker protocol's name), if it failed.
    pub kind: Option<String>,
    /// The failure's message, if it failed.
    pub error: Option<String>,
}

impl JobState {
    /// Whether the job has stopped (successfully or not).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled | JobState::Stopped
        )
    }
}

/// Job store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("job store error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The store holds data this build cannot read.
    #[error("job store is corrupt: {0}")]
    Corrupt(String),
    /// The job does not exist.
    #[error("no job {0} in the job store (see `helios-infra status` for the list)")]
    NoSuchJob(String),
    /// The job exists already.
    #[error(
        "job {0} already exists in the job store; use `helios-infra resume {0}` to continue it"
    )]
    Exists(String),
    /// A group of changes could not be committed; none of them was saved.
    #[error("the job store could not save a change: {0} (check free disk space and permissions of the store's folder)")]
    Commit(String),
    /// The writer thread is gone (the store was closed or its thread panicked).
    #[error(
        "the job store's writer has stopped; nothing after the last committed change was saved"
    )]
    WriterGone,
}

/// A job as stored.
#[derive(Debug, Clone)]
pub struct JobRecord {
    /// Job id.
    pub id: String,
    /// The spec.
    pub spec: JobSpec,
    /// Storage root URL.
    pub storage_url: String,
    /// Where the final output is copied.
    pub output: String,
    /// Adapter name.
    pub adapter: String,
    /// How to reach the adapter again on resume (JSON, no secrets).
    pub adapter_config: String,
    /// Whether the output is copied to `output` (otherwise it stays in storage only, and
    /// `output` only names its container).
    pub download: bool,
    /// Current state.
    pub state: JobState,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// Whether `cancel` was requested.
    pub cancel_requested: bool,
    /// Creation time, Unix milliseconds.
    pub created_ms: i64,
    /// Last change, Unix milliseconds.
    pub updated_ms: i64,
    /// The batch this job is a row of, if any.
    pub batch: Option<BatchRow>,
}

/// A job's place in a batch (`helios-infra batch`): one job per row of props.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRow {
    /// The batch id (shared by its jobs).
    pub batch: String,
    /// 1-based row number in the batch's props file.
    pub row: u32,
}

/// A chunk as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRecord {
    /// The chunk.
    pub chunk: Chunk,
    /// Current state.
    pub state: ChunkState,
    /// Attempts started so far (across resumes); the next attempt gets `attempts + 1`.
    pub attempts: u32,
    /// The committed attempt's segment, once done.
    pub segment: Option<CommittedSegment>,
    /// Last error.
    pub error: Option<String>,
}

/// The chunks whose segments play now: committed, in order, from the first chunk, up to
/// the first one that is not.
pub fn playable_prefix(chunks: &[ChunkRecord]) -> Vec<&ChunkRecord> {
    let mut sorted: Vec<&ChunkRecord> = chunks.iter().collect();
    sorted.sort_by_key(|c| c.chunk.index);
    sorted
        .into_iter()
        .enumerate()
        .take_while(|(i, c)| {
            c.chunk.index as usize == *i && c.state == ChunkState::Done && c.segment.is_some()
        })
        .map(|(_, c)| c)
        .collect()
}

/// A verified attempt recorded as the chunk's segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedSegment {
    /// Attempt number.
    pub attempt: u32,
    /// Storage key.
    pub key: String,
    /// Hex SHA-256.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Frames.
    pub frames: u64,
    /// Worker time for the attempt, in milliseconds.
    pub worker_ms: u64,
    /// What the worker found in the segment (absent for reports of older workers).
    pub media: Option<crate::worker::SegmentMedia>,
}

impl CommittedSegment {
    /// What a verified report of attempt `attempt` commits.
    pub fn from_report(report: &crate::worker::ChunkReport, attempt: u32) -> Self {
        Self {
            attempt,
            key: report.segment.clone(),
            sha256: report.sha256.clone(),
            bytes: report.bytes,
            frames: report.frames,
            worker_ms: report.timings.total_ms,
            media: report.media.as_deref().cloned(),
        }
    }
}

/// Persistence of jobs and chunks. SQLite is the implementation; the trait is the seam the
/// orchestrator is written against. Reads are synchronous; every write is durable when its
/// future resolves.
#[async_trait]
pub trait JobStore: Send + Sync {
    /// Records a new job and its chunks (all pending) in one transaction.
    async fn create_job(&self, job: &JobRecord) -> Result<(), StoreError>;
    /// One job.
    fn job(&self, id: &str) -> Result<JobRecord, StoreError>;
    /// Whether `cancel` was requested for a job (cheaper than [`JobStore::job`]).
    fn cancel_requested(&self, id: &str) -> Result<bool, StoreError>;
    /// All jobs, oldest first.
    fn jobs(&self) -> Result<Vec<JobRecord>, StoreError>;
    /// The jobs of a batch, by row (empty if there is no such batch).
    fn batch_jobs(&self, batch: &str) -> Result<Vec<JobRecord>, StoreError>;
    /// A job's chunks by index.
    fn chunks(&self, id: &str) -> Result<Vec<ChunkRecord>, StoreError>;
    /// Sets the job state (and error, cleared when `None`).
    async fn set_job_state(
        &self,
        id: &str,
        state: JobState,
        error: Option<&str>,
    ) -> Result<(), StoreError>;
    /// Starts an attempt: the chunk becomes running; returns the attempt number.
    async fn begin_attempt(&self, id: &str, index: u32) -> Result<u32, StoreError>;
    /// Commits a verified attempt as the chunk's segment. Returns false (and changes
    /// nothing) if the chunk is already done: a committed segment is never replaced.
    async fn commit_chunk(
        &self,
        id: &str,
        index: u32,
        seg: &CommittedSegment,
    ) -> Result<bool, StoreError>;
    /// Puts a chunk back to pending (retry, cancel, crash recovery, bad segment).
    async fn release_chunk(
        &self,
        id: &str,
        index: u32,
        error: Option<&str>,
    ) -> Result<(), StoreError>;
    /// Marks a chunk failed for good.
    async fn fail_chunk(&self, id: &str, index: u32, error: &str) -> Result<(), StoreError>;
    /// Records a cancellation request; false if the job already ended.
    async fn request_cancel(&self, id: &str) -> Result<bool, StoreError>;
    /// Clears a cancellation request (when the job is resumed).
    async fn clear_cancel(&self, id: &str) -> Result<(), StoreError>;
    /// Records how a running attempt ended (an attempt that already ended keeps its
    /// outcome). `failure` is the failure's class and message.
    async fn end_attempt(
        &self,
        id: &str,
        index: u32,
        attempt: u32,
        outcome: AttemptOutcome,
        failure: Option<(&str, &str)>,
    ) -> Result<(), StoreError>;
    /// Sets when an attempt started and ended (Unix milliseconds), for an attempt that ran
    /// before it was recorded: the estimate's probe, kept as its job's first chunk.
    async fn set_attempt_span(
        &self,
        id: &str,
        index: u32,
        attempt: u32,
        started_ms: i64,
        ended_ms: i64,
    ) -> Result<(), StoreError>;
    /// Ends every attempt of the job (or of one chunk) still running with `outcome`.
    async fn end_running_attempts(
        &self,
        id: &str,
        index: Option<u32>,
        outcome: AttemptOutcome,
    ) -> Result<(), StoreError>;
    /// Every attempt of a job, by chunk, then attempt number.
    fn attempts(&self, id: &str) -> Result<Vec<AttemptRecord>, StoreError>;
    /// Adds a billed task (a chunk's attempt, a palette or assembly task) to the job's
    /// spend ledger; a task already in the ledger keeps its first entry.
    async fn record_spend(&self, id: &str, entry: &SpendEntry) -> Result<(), StoreError>;
    /// What the ledger holds for `scope`: a job id, or a batch id (all its jobs).
    fn spent(&self, scope: &str) -> Result<Spent, StoreError>;
    /// A job's spend ledger, in the order its tasks ended.
    fn ledger(&self, id: &str) -> Result<Vec<SpendEntry>, StoreError>;
    /// Sets (or, with `None`, removes) the cost cap of `scope` in USD.
    async fn set_cap(&self, scope: &str, usd: Option<f64>) -> Result<(), StoreError>;
    /// Records the estimate made before `scope` (a job or a batch) ran (JSON).
    async fn set_estimate(&self, scope: &str, estimate: &str) -> Result<(), StoreError>;
    /// The cost cap and the estimate recorded for `scope`.
    fn cost_plan(&self, scope: &str) -> Result<CostPlan, StoreError>;
}

/// One billed task in a job's spend ledger.
#[derive(Debug, Clone, PartialEq)]
pub struct SpendEntry {
    /// The task: `chunk 3 attempt 2`, `palette attempt 1`, `assemble 0 attempt 1`.
    pub task: String,
    /// Time the task kept its worker (measured by the orchestrator, from dispatch to the
    /// end: never less than what the engine bills), in milliseconds.
    pub billed_ms: u64,
    /// Its price in USD.
    pub usd: f64,
    /// Frames it rendered, for a chunk's successful attempt (the job's observed pace);
    /// 0 otherwise.
    pub frames: u64,
}

/// The sum of a spend ledger.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spent {
    /// USD.
    pub usd: f64,
    /// Billed tasks.
    pub tasks: u64,
    /// Worker time in milliseconds.
    pub billed_ms: u64,
    /// Time of the successful chunk attempts, in milliseconds…
    pub rendered_ms: u64,
    /// …and the frames they rendered.
    pub rendered_frames: u64,
}

/// The cost cap and the estimate of a job or a batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CostPlan {
    /// The cap in USD, if there is one.
    pub cap_usd: Option<f64>,
    /// The estimate made before it ran (JSON of [`crate::cost::Estimate`]).
    pub estimate: Option<String>,
}

/// A change queued for the writer: applied inside the group's transaction (or told why
/// there is none), it returns whether it succeeded and the completion to run once the
/// group's commit has succeeded or failed.
struct Op {
    /// Whether the change runs several statements and needs a savepoint of its own; a single
    /// statement is atomic by itself, and skipping the savepoint halves the writer's work.
    isolate: bool,
    apply: Apply,
}
type Apply = Box<dyn FnOnce(Result<&Connection, &str>) -> (bool, Completion) + Send>;
type Completion = Box<dyn FnOnce(Result<(), String>) + Send>;

/// Most changes applied in one transaction; bounds the latency of the first in a group.
const MAX_GROUP: usize = 4096;

/// The SQLite job store.
pub struct SqliteStore {
    /// Reads. For a file this is its own connection (WAL lets it read while the writer
    /// commits); for an in-memory database it is the writer's connection.
    read: Arc<Mutex<Connection>>,
    ops: mpsc::UnboundedSender<Op>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    stats: Arc<WriterStats>,
}

/// Counters of the writer thread, for benchmarks and logs.
#[derive(Debug, Default)]
struct WriterStats {
    transactions: std::sync::atomic::AtomicU64,
    changes: std::sync::atomic::AtomicU64,
}

/// How many transactions the store has committed and how many changes they carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    /// Committed transactions (one fsync each, for a file).
    pub transactions: u64,
    /// Changes committed in them.
    pub changes: u64,
}

/// Now, in Unix milliseconds: the clock of every time the store records.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    storage_url TEXT NOT NULL,
    output TEXT NOT NULL,
    adapter TEXT NOT NULL,
    adapter_config TEXT NOT NULL DEFAULT '{}',
    download INTEGER NOT NULL DEFAULT 1,
    state TEXT NOT NULL,
    error TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    batch TEXT,
    batch_row INTEGER
);
CREATE TABLE IF NOT EXISTS chunks (
    job_id TEXT NOT NULL REFERENCES jobs(id),
    idx INTEGER NOT NULL,
    start_frame INTEGER NOT NULL,
    end_frame INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    committed_attempt INTEGER,
    segment_key TEXT,
    sha256 TEXT,
    bytes INTEGER,
    frames INTEGER,
    worker_ms INTEGER,
    error TEXT,
    media TEXT,
    PRIMARY KEY (job_id, idx)
);
CREATE TABLE IF NOT EXISTS attempts (
    job_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    started_ms INTEGER NOT NULL,
    ended_ms INTEGER,
    outcome TEXT NOT NULL DEFAULT 'running',
    kind TEXT,
    error TEXT,
    PRIMARY KEY (job_id, idx, attempt)
);
CREATE TABLE IF NOT EXISTS spend (
    job_id TEXT NOT NULL,
    task TEXT NOT NULL,
    billed_ms INTEGER NOT NULL,
    usd REAL NOT NULL,
    frames INTEGER NOT NULL DEFAULT 0,
    recorded_ms INTEGER NOT NULL,
    PRIMARY KEY (job_id, task)
);
CREATE TABLE IF NOT EXISTS costs (
    scope TEXT PRIMARY KEY,
    cap_usd REAL,
    estimate TEXT
);
";

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let write = Arc::new(Mutex::new(Self::configure(Connection::open(path)?)?));
        let read = Self::configure(Connection::open(path)?)?;
        Ok(Self::start(write, Arc::new(Mutex::new(read))))
    }

    /// An in-memory store (tests, benchmarks).
    pub fn in_memory() -> Result<Self, StoreError> {
        let conn = Arc::new(Mutex::new(Self::configure(Connection::open_in_memory()?)?));
        Ok(Self::start(conn.clone(), conn))
    }

    fn configure(conn: Connection) -> Result<Connection, StoreError> {
        const BUSY: Duration = Duration::from_secs(10);
        conn.busy_timeout(BUSY)?;
        // Switching a new store to WAL needs it to itself, and SQLite answers "locked" at
        // once there instead of waiting: another process opening it too is waited for here.
        let deadline = std::time::Instant::now() + BUSY;
        loop {
            match conn.pragma_update(None, "journal_mode", "WAL") {
                Ok(()) => break,
                Err(rusqlite::Error::SqliteFailure(f, _))
                    if f.code == rusqlite::ErrorCode::DatabaseBusy
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(e.into()),
            }
        }
        // FULL: a committed group is on disk before any of its callers is answered.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Several processes may open a new store at once (`render` and a `status` poll):
        // the schema is made in one IMMEDIATE transaction, which waits for the write lock
        // (busy_timeout). Statements run one by one would each take a read lock and then
        // fail at once with "database is locked" when upgrading it, and two openers could
        // both find a column missing and both add it.
        let tx =
            rusqlite::Transaction::new_unchecked(&conn, rusqlite::TransactionBehavior::Immediate)?;
        Self::migrate(&tx)?;
        tx.commit()?;
        Ok(conn)
    }

    /// Creates the tables, and adds what stores made by earlier releases lack.
    fn migrate(conn: &Connection) -> Result<(), StoreError> {
        conn.execute_batch(SCHEMA)?;
        // Stores made before segments carried their worker's findings gain the column.
        let has_media: bool = conn
            .prepare("SELECT 1 FROM pragma_table_info('chunks') WHERE name = 'media'")?
            .exists([])?;
        if !has_media {
            conn.execute_batch("ALTER TABLE chunks ADD COLUMN media TEXT")?;
        }
        let has_download: bool = conn
            .prepare("SELECT 1 FROM pragma_table_info('jobs') WHERE name = 'download'")?
            .exists([])?;
        if !has_download {
            conn.execute_batch("ALTER TABLE jobs ADD COLUMN download INTEGER NOT NULL DEFAULT 1")?;
        }
        let has_batch: bool = conn
            .prepare("SELECT 1 FROM pragma_table_info('jobs') WHERE name = 'batch'")?
            .exists([])?;
        if !has_batch {
            conn.execute_batch(
                "ALTER TABLE jobs ADD COLUMN batch TEXT; ALTER TABLE jobs ADD COLUMN batch_row INTEGER;",
            )?;
        }
        conn.execute_batch("CREATE INDEX IF NOT EXISTS jobs_batch ON jobs(batch, batch_row)")?;
        Ok(())
    }

    fn start(write: Arc<Mutex<Connection>>, read: Arc<Mutex<Connection>>) -> Self {
        let (ops, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(WriterStats::default());
        let counters = stats.clone();
        let writer = std::thread::Builder::new()
            .name("helios-job-store".into())
            .spawn(move || writer_loop(&write, rx, &counters))
            .ok();
        Self {
            read,
            ops,
            writer: Mutex::new(writer),
            stats,
        }
    }

    /// Transactions committed so far and the changes they carried.
    pub fn stats(&self) -> StoreStats {
        use std::sync::atomic::Ordering::Relaxed;
        StoreStats {
            transactions: self.stats.transactions.load(Relaxed),
            changes: self.stats.changes.load(Relaxed),
        }
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = self
            .read
            .lock()
            .map_err(|_| StoreError::Corrupt("store lock poisoned".into()))?;
        f(&conn)
    }

    /// Queues a single-statement change for the next group commit and waits until it is
    /// durable.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.queue(false, f).await
    }

    /// Like [`SqliteStore::write`], for a change of several statements: it gets a savepoint
    /// so that failing halfway leaves nothing behind.
    async fn write_isolated<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.queue(true, f).await
    }

    async fn queue<T: Send + 'static>(
        &self,
        isolate: bool,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        let apply = Box::new(move |conn: Result<&Connection, &str>| match conn {
            Err(e) => {
                let _ = tx.send(Err(StoreError::Commit(e.to_string())));
                let nothing: Completion = Box::new(|_| {});
                (false, nothing)
            }
            Ok(conn) => {
                let applied = f(conn);
                let ok = applied.is_ok();
                let completion: Completion = Box::new(move |committed| {
                    let _ = tx.send(match committed {
                        Ok(()) => applied,
                        Err(e) => Err(StoreError::Commit(e)),
                    });
                });
                (ok, completion)
            }
        });
        self.ops
            .send(Op { isolate, apply })
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    fn row_to_job(row: &rusqlite::Row<'_>) -> rusqlite::Result<(JobRecordRaw, String)> {
        Ok((
            JobRecordRaw {
                id: row.get(0)?,
                storage_url: row.get(2)?,
                output: row.get(3)?,
                adapter: row.get(4)?,
                adapter_config: row.get(10)?,
                download: row.get::<_, i64>(11)? != 0,
                state: row.get(5)?,
                error: row.get(6)?,
                cancel_requested: row.get::<_, i64>(7)? != 0,
                created_ms: row.get(8)?,
                updated_ms: row.get(9)?,
                batch: match (
                    row.get::<_, Option<String>>(12)?,
                    row.get::<_, Option<i64>>(13)?,
                ) {
                    (Some(batch), Some(r)) => Some(BatchRow {
                        batch,
                        row: u32::try_from(r).unwrap_or(0),
                    }),
                    _ => None,
                },
            },
            row.get(1)?,
        ))
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Closing the channel ends the writer after it has committed what is queued.
        let (closed, _) = mpsc::unbounded_channel();
        self.ops = closed;
        if let Some(handle) = self.writer.lock().ok().and_then(|mut w| w.take()) {
            let _ = handle.join();
        }
    }
}

/// The writer thread: one transaction per group of queued changes, each change in its own
/// savepoint so that one failing change (say, an unknown job) does not undo its neighbours.
fn writer_loop(conn: &Mutex<Connection>, mut rx: mpsc::UnboundedReceiver<Op>, stats: &WriterStats) {
    let mut group: Vec<Op> = Vec::new();
    let mut done: Vec<Completion> = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        group.push(first);
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(op) => group.push(op),
                Err(_) => break,
            }
        }
        let Ok(conn) = conn.lock() else {
            // Poisoned by a panic elsewhere: dropping the ops answers their callers with
            // WriterGone rather than pretending a change was saved.
            return;
        };
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let msg = e.to_string();
            tracing::error!(error = %msg, "job store: could not begin a transaction");
            for op in group.drain(..) {
                let _ = (op.apply)(Err(&msg));
            }
            continue;
        }
        for op in group.drain(..) {
            let isolated = op.isolate && run_cached(&conn, "SAVEPOINT op");
            let (applied, completion) = (op.apply)(Ok(&conn));
            if isolated {
                if !applied {
                    run_cached(&conn, "ROLLBACK TO op");
                }
                run_cached(&conn, "RELEASE op");
            }
            done.push(completion);
        }
        let committed = conn.execute_batch("COMMIT").map_err(|e| {
            let _ = conn.execute_batch("ROLLBACK");
            e.to_string()
        });
        drop(conn);
        if committed.is_ok() {
            use std::sync::atomic::Ordering::Relaxed;
            stats.transactions.fetch_add(1, Relaxed);
            stats.changes.fetch_add(done.len() as u64, Relaxed);
        }
        for c in done.drain(..) {
            c(committed.clone());
        }
    }
}

/// Runs a parameterless statement through the statement cache.
fn run_cached(conn: &Connection, sql: &str) -> bool {
    conn.prepare_cached(sql)
        .and_then(|mut st| st.execute([]))
        .is_ok()
}

struct JobRecordRaw {
    id: String,
    storage_url: String,
    output: String,
    adapter: String,
    adapter_config: String,
    download: bool,
    state: String,
    error: Option<String>,
    cancel_requested: bool,
    created_ms: i64,
    updated_ms: i64,
    batch: Option<BatchRow>,
}

impl JobRecord {
    /// The output's container extension (from its path; `mp4` when it has none).
    pub fn output_ext(&self) -> &str {
        Path::new(&self.output)
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("mp4")
    }

    /// The storage key of the stitched output, `jobs/<id>/output.<ext>`.
    pub fn output_key(&self) -> String {
        crate::storage::keys::output(&self.id, self.output_ext())
    }
}

impl JobRecordRaw {
    fn finish(self, spec: &str) -> Result<JobRecord, StoreError> {
        let spec: JobSpec = serde_json::from_str(spec)
            .map_err(|e| StoreError::Corrupt(format!("spec of job {}: {e}", self.id)))?;
        Ok(JobRecord {
            state: JobState::parse(&self.state)?,
            id: self.id,
            spec,
            storage_url: self.storage_url,
            output: self.output,
            adapter: self.adapter,
            adapter_config: self.adapter_config,
            download: self.download,
            error: self.error,
            cancel_requested: self.cancel_requested,
            created_ms: self.created_ms,
            updated_ms: self.updated_ms,
            batch: self.batch,
        })
    }
}

const JOB_COLUMNS: &str =
    "id, spec, storage_url, output, adapter, state, error, cancel_requested, created_ms, updated_ms, adapter_config, download, batch, batch_row";

#[async_trait]
impl JobStore for SqliteStore {
    async fn create_job(&self, job: &JobRecord) -> Result<(), StoreError> {
        let spec =
            serde_json::to_string(&job.spec).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let job = job.clone();
        self.write_isolated(move |conn| {
            let exists: bool = conn
                .query_row("SELECT 1 FROM jobs WHERE id = ?1", [&job.id], |_| Ok(true))
                .optional()?
                .unwrap_or(false);
            if exists {
                return Err(StoreError::Exists(job.id.clone()));
            }
            let now = now_ms();
            conn.execute(
                "INSERT INTO jobs (id, spec, storage_url, output, adapter, state, error, cancel_requested, created_ms, updated_ms, adapter_config, download, batch, batch_row)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, 0, ?7, ?7, ?8, ?9, ?10, ?11)",
                params![
                    job.id,
                    spec,
                    job.storage_url,
                    job.output,
                    job.adapter,
                    job.state.as_str(),
                    now,
                    job.adapter_config,
                    job.download,
                    job.batch.as_ref().map(|b| b.batch.clone()),
                    job.batch.as_ref().map(|b| b.row)
                ],
            )?;
            let mut ins = conn.prepare_cached(
                "INSERT INTO chunks (job_id, idx, start_frame, end_frame, state) VALUES (?1, ?2, ?3, ?4, 'pending')",
            )?;
            for c in &job.spec.chunks {
                ins.execute(params![job.id, c.index, c.start as i64, c.end as i64])?;
            }
            Ok(())
        })
        .await
    }

    fn cancel_requested(&self, id: &str) -> Result<bool, StoreError> {
        self.with(|conn| {
            conn.prepare_cached("SELECT cancel_requested FROM jobs WHERE id = ?1")?
                .query_row([id], |r| r.get::<_, i64>(0))
                .optional()?
                .map(|v| v != 0)
                .ok_or_else(|| StoreError::NoSuchJob(id.to_string()))
        })
    }

    fn job(&self, id: &str) -> Result<JobRecord, StoreError> {
        let (raw, spec) = self.with(|conn| {
            conn.query_row(
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
                [id],
                Self::row_to_job,
            )
            .optional()?
            .ok_or_else(|| StoreError::NoSuchJob(id.to_string()))
        })?;
        raw.finish(&spec)
    }

    fn jobs(&self) -> Result<Vec<JobRecord>, StoreError> {
        let rows = self.with(|conn| {
            let mut stmt = conn.prepare(&format!("SELECT {JOB_COLUMNS} FROM jobs ORDER BY id"))?;
            let rows = stmt
                .query_map([], Self::row_to_job)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })?;
        rows.into_iter()
            .map(|(raw, spec)| raw.finish(&spec))
            .collect()
    }

    fn batch_jobs(&self, batch: &str) -> Result<Vec<JobRecord>, StoreError> {
        let rows = self.with(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE batch = ?1 ORDER BY batch_row"
            ))?;
            let rows = stmt
                .query_map([batch], Self::row_to_job)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })?;
        rows.into_iter()
            .map(|(raw, spec)| raw.finish(&spec))
            .collect()
    }

    fn chunks(&self, id: &str) -> Result<Vec<ChunkRecord>, StoreError> {
        self.with(|conn| {
            let mut stmt = conn.prepare(
                "SELECT idx, start_frame, end_frame, state, attempts, committed_attempt, segment_key, sha256, bytes, frames, worker_ms, error, media
                 FROM chunks WHERE job_id = ?1 ORDER BY idx",
            )?;
            let rows = stmt.query_map([id], |r| {
                let committed: Option<u32> = r.get(5)?;
                let segment = match committed {
                    Some(attempt) => Some(CommittedSegment {
                        attempt,
                        key: r.get::<_, Option<String>>(6)?.unwrap_or_default(),
                        sha256: r.get::<_, Option<String>>(7)?.unwrap_or_default(),
                        bytes: r.get::<_, Option<i64>>(8)?.unwrap_or(0) as u64,
                        frames: r.get::<_, Option<i64>>(9)?.unwrap_or(0) as u64,
                        worker_ms: r.get::<_, Option<i64>>(10)?.unwrap_or(0) as u64,
                        // Unreadable findings are as good as none: the stitch then probes.
                        media: r
                            .get::<_, Option<String>>(12)?
                            .and_then(|j| serde_json::from_str(&j).ok()),
                    }),
                    None => None,
                };
                Ok((
                    Chunk {
                        index: r.get(0)?,
                        start: r.get::<_, i64>(1)? as u64,
                        end: r.get::<_, i64>(2)? as u64,
                    },
                    r.get::<_, String>(3)?,
                    r.get::<_, u32>(4)?,
                    segment,
                    r.get::<_, Option<String>>(11)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (chunk, state, attempts, segment, error) = row?;
                out.push(ChunkRecord {
                    chunk,
                    state: ChunkState::parse(&state)?,
                    attempts,
                    segment,
                    error,
                });
            }
            Ok(out)
        })
    }

    async fn set_job_state(
        &self,
        id: &str,
        state: JobState,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let (id, error) = (id.to_string(), error.map(str::to_string));
        self.write(move |conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE jobs SET state = ?2, error = ?3, updated_ms = ?4 WHERE id = ?1",
                )?
                .execute(params![id, state.as_str(), error, now_ms()])?;
            if n == 0 {
                return Err(StoreError::NoSuchJob(id));
            }
            Ok(())
        })
        .await
    }

    async fn begin_attempt(&self, id: &str, index: u32) -> Result<u32, StoreError> {
        let id = id.to_string();
        self.write(move |conn| {
            let attempt: Option<u32> = conn
                .prepare_cached(
                    "UPDATE chunks SET attempts = attempts + 1, state = 'running'
                     WHERE job_id = ?1 AND idx = ?2 AND state != 'done' RETURNING attempts",
                )?
                .query_row(params![id, index], |r| r.get(0))
                .optional()?;
            let attempt = attempt.ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "chunk {index} of job {id} is missing or already done"
                ))
            })?;
            conn.prepare_cached(
                "INSERT OR REPLACE INTO attempts (job_id, idx, attempt, started_ms, outcome)
                 VALUES (?1, ?2, ?3, ?4, 'running')",
            )?
            .execute(params![id, index, attempt, now_ms()])?;
            Ok(attempt)
        })
        .await
    }

    async fn end_attempt(
        &self,
        id: &str,
        index: u32,
        attempt: u32,
        outcome: AttemptOutcome,
        failure: Option<(&str, &str)>,
    ) -> Result<(), StoreError> {
        let id = id.to_string();
        let (kind, error) = failure
            .map(|(k, e)| (Some(k.to_string()), Some(e.to_string())))
            .unwrap_or_default();
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE attempts SET ended_ms = ?4, outcome = ?5, kind = ?6, error = ?7
                 WHERE job_id = ?1 AND idx = ?2 AND attempt = ?3 AND outcome = 'running'",
            )?
            .execute(params![
                id,
                index,
                attempt,
                now_ms(),
                outcome.as_str(),
                kind,
                error
            ])?;
            Ok(())
        })
        .await
    }

    async fn set_attempt_span(
        &self,
        id: &str,
        index: u32,
        attempt: u32,
        started_ms: i64,
        ended_ms: i64,
    ) -> Result<(), StoreError> {
        let id = id.to_string();
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE attempts SET started_ms = ?4, ended_ms = ?5
                 WHERE job_id = ?1 AND idx = ?2 AND attempt = ?3",
            )?
            .execute(params![id, index, attempt, started_ms, ended_ms])?;
            Ok(())
        })
        .await
    }

    async fn end_running_attempts(
        &self,
        id: &str,
        index: Option<u32>,
        outcome: AttemptOutcome,
    ) -> Result<(), StoreError> {
        let id = id.to_string();
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE attempts SET ended_ms = ?3, outcome = ?4
                 WHERE job_id = ?1 AND (?2 IS NULL OR idx = ?2) AND outcome = 'running'",
            )?
            .execute(params![id, index, now_ms(), outcome.as_str()])?;
            Ok(())
        })
        .await
    }

    fn attempts(&self, id: &str) -> Result<Vec<AttemptRecord>, StoreError> {
        self.with(|conn| {
            let mut stmt = conn.prepare(
                "SELECT idx, attempt, started_ms, ended_ms, outcome, kind, error
                 FROM attempts WHERE job_id = ?1 ORDER BY idx, attempt",
            )?;
            let rows = stmt.query_map([id], |r| {
                Ok((
                    r.get::<_, u32>(0)?,
                    r.get::<_, u32>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, Option<String>>(6)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (index, attempt, started_ms, ended_ms, outcome, kind, error) = row?;
                out.push(AttemptRecord {
                    index,
                    attempt,
                    started_ms,
                    ended_ms,
                    outcome: AttemptOutcome::parse(&outcome)?,
                    kind,
                    error,
                });
            }
            Ok(out)
        })
    }

    async fn record_spend(&self, id: &str, entry: &SpendEntry) -> Result<(), StoreError> {
        let (id, e) = (id.to_string(), entry.clone());
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT OR IGNORE INTO spend (job_id, task, billed_ms, usd, frames, recorded_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                id,
                e.task,
                e.billed_ms as i64,
                e.usd,
                e.frames as i64,
                now_ms()
            ])?;
            Ok(())
        })
        .await
    }

    fn spent(&self, scope: &str) -> Result<Spent, StoreError> {
        self.with(|conn| {
            let row = conn
                .prepare_cached(
                    "SELECT COALESCE(SUM(usd), 0), COUNT(*), COALESCE(SUM(billed_ms), 0),
                            COALESCE(SUM(CASE WHEN frames > 0 THEN billed_ms END), 0),
                            COALESCE(SUM(frames), 0)
                     FROM (SELECT usd, billed_ms, frames FROM spend WHERE job_id = ?1
                           UNION ALL
                           SELECT spend.usd, spend.billed_ms, spend.frames
                           FROM jobs JOIN spend ON spend.job_id = jobs.id
                           WHERE jobs.batch = ?1)",
                )?
                .query_row([scope], |r| {
                    Ok(Spent {
                        usd: r.get(0)?,
                        tasks: r.get::<_, i64>(1)? as u64,
                        billed_ms: r.get::<_, i64>(2)? as u64,
                        rendered_ms: r.get::<_, i64>(3)? as u64,
                        rendered_frames: r.get::<_, i64>(4)? as u64,
                    })
                })?;
            Ok(row)
        })
    }

    fn ledger(&self, id: &str) -> Result<Vec<SpendEntry>, StoreError> {
        self.with(|conn| {
            let mut stmt = conn.prepare(
                "SELECT task, billed_ms, usd, frames FROM spend WHERE job_id = ?1
                 ORDER BY recorded_ms, rowid",
            )?;
            let rows = stmt.query_map([id], |r| {
                Ok(SpendEntry {
                    task: r.get(0)?,
                    billed_ms: r.get::<_, i64>(1)? as u64,
                    usd: r.get(2)?,
                    frames: r.get::<_, i64>(3)? as u64,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    async fn set_cap(&self, scope: &str, usd: Option<f64>) -> Result<(), StoreError> {
        let scope = scope.to_string();
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO costs (scope, cap_usd) VALUES (?1, ?2)
                 ON CONFLICT(scope) DO UPDATE SET cap_usd = excluded.cap_usd",
            )?
            .execute(params![scope, usd])?;
            Ok(())
        })
        .await
    }

    async fn set_estimate(&self, scope: &str, estimate: &str) -> Result<(), StoreError> {
        let (scope, estimate) = (scope.to_string(), estimate.to_string());
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO costs (scope, estimate) VALUES (?1, ?2)
                 ON CONFLICT(scope) DO UPDATE SET estimate = excluded.estimate",
            )?
            .execute(params![scope, estimate])?;
            Ok(())
        })
        .await
    }

    fn cost_plan(&self, scope: &str) -> Result<CostPlan, StoreError> {
        self.with(|conn| {
            Ok(conn
                .prepare_cached("SELECT cap_usd, estimate FROM costs WHERE scope = ?1")?
                .query_row([scope], |r| {
                    Ok(CostPlan {
                        cap_usd: r.get(0)?,
                        estimate: r.get(1)?,
                    })
                })
                .optional()?
                .unwrap_or_default())
        })
    }

    async fn commit_chunk(
        &self,
        id: &str,
        index: u32,
        seg: &CommittedSegment,
    ) -> Result<bool, StoreError> {
        let (id, seg) = (id.to_string(), seg.clone());
        let media = seg
            .media
            .as_ref()
            .and_then(|m| serde_json::to_string(m).ok());
        self.write(move |conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE chunks SET state = 'done', committed_attempt = ?3, segment_key = ?4, sha256 = ?5,
                            bytes = ?6, frames = ?7, worker_ms = ?8, media = ?9, error = NULL
                     WHERE job_id = ?1 AND idx = ?2 AND state != 'done'",
                )?
                .execute(params![id, index, seg.attempt, seg.key, seg.sha256, seg.bytes as i64, seg.frames as i64, seg.worker_ms as i64, media])?;
            Ok(n == 1)
        })
        .await
    }

    async fn release_chunk(
        &self,
        id: &str,
        index: u32,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let (id, error) = (id.to_string(), error.map(str::to_string));
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE chunks SET state = 'pending', committed_attempt = NULL, segment_key = NULL, sha256 = NULL,
                        bytes = NULL, frames = NULL, worker_ms = NULL, media = NULL, error = COALESCE(?3, error)
                 WHERE job_id = ?1 AND idx = ?2",
            )?
            .execute(params![id, index, error])?;
            Ok(())
        })
        .await
    }

    async fn fail_chunk(&self, id: &str, index: u32, error: &str) -> Result<(), StoreError> {
        let (id, error) = (id.to_string(), error.to_string());
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE chunks SET state = 'failed', error = ?3 WHERE job_id = ?1 AND idx = ?2 AND state != 'done'",
            )?
            .execute(params![id, index, error])?;
            Ok(())
        })
        .await
    }

    async fn request_cancel(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.write_isolated(move |conn| {
            let state: Option<String> = conn
                .query_row("SELECT state FROM jobs WHERE id = ?1", [&id], |r| r.get(0))
                .optional()?;
            let state = JobState::parse(&state.ok_or_else(|| StoreError::NoSuchJob(id.clone()))?)?;
            if state.is_terminal() {
                return Ok(false);
            }
            conn.execute(
                "UPDATE jobs SET cancel_requested = 1, updated_ms = ?2 WHERE id = ?1",
                params![id, now_ms()],
            )?;
            Ok(true)
        })
        .await
    }

    async fn clear_cancel(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_string();
        self.write(move |conn| {
            conn.execute("UPDATE jobs SET cancel_requested = 0 WHERE id = ?1", [id])?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::spec::*;

    /// A job of 90 frames in 3 chunks (a command renderer), for tests.
    pub(crate) fn job(id: &str) -> JobRecord {
        let frames = FrameRange::new(0, 90);
        JobRecord {
            id: id.into(),
            spec: JobSpec {
                id: Some(id.into()),
                concurrency: 2,
                ..JobSpec::command(
                    &["x", "{output}"],
                    64,
                    64,
                    Fps::new(30, 1),
                    frames,
                    ChunkPlan::Count(3),
                )
            },
            storage_url: "memory://t".into(),
            output: "/tmp/out.mp4".into(),
            adapter: "local".into(),
            adapter_config: "{}".into(),
            download: true,
            state: JobState::Queued,
            error: None,
            cancel_requested: false,
            created_ms: 0,
            updated_ms: 0,
            batch: None,
        }
    }

    fn seg(attempt: u32) -> CommittedSegment {
        CommittedSegment {
            attempt,
            key: format!("k{attempt}"),
            sha256: "h".into(),
            bytes: 1,
            frames: 30,
            worker_ms: 5,
            media: None,
        }
    }

    #[test]
    fn processes_opening_a_new_store_at_once_all_get_it() {
        // `render` and a `status` poll (or the dashboard) may open a store that does not
        // exist yet at the same moment: each must wait for the other, not fail with
        // "database is locked".
        for round in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("jobs.db");
            let opened: Vec<_> = (0..6)
                .map(|_| {
                    let path = path.clone();
                    std::thread::spawn(move || SqliteStore::open(&path).map(|_| ()))
                })
                .collect();
            for t in opened {
                let r = t.join().unwrap();
                assert!(r.is_ok(), "round {round}: {r:?}");
            }
        }
    }

    #[tokio::test]
    async fn every_attempt_is_recorded_with_how_it_ended() {
        let s = SqliteStore::in_memory().unwrap();
        s.create_job(&job("J")).await.unwrap();
        let a1 = s.begin_attempt("J", 0).await.unwrap();
        s.end_attempt(
            "J",
            0,
            a1,
            AttemptOutcome::Failed,
            Some(("renderer_failed", "exit 1")),
        )
        .await
        .unwrap();
        let a2 = s.begin_attempt("J", 0).await.unwrap();
        let dup = s.begin_attempt("J", 0).await.unwrap();
        s.end_attempt("J", 0, dup, AttemptOutcome::Succeeded, None)
            .await
            .unwrap();
        s.end_running_attempts("J", Some(0), AttemptOutcome::Superseded)
            .await
            .unwrap();
        // An ended attempt keeps its outcome.
        s.end_attempt("J", 0, a1, AttemptOutcome::Succeeded, None)
            .await
            .unwrap();
        s.begin_attempt("J", 1).await.unwrap();
        s.begin_attempt("J", 2).await.unwrap();
        s.end_running_attempts("J", None, AttemptOutcome::Interrupted)
            .await
            .unwrap();
        let got: Vec<_> = s
            .attempts("J")
            .unwrap()
            .into_iter()
            .map(|a| (a.index, a.attempt, a.outcome, a.kind, a.ended_ms.is_some()))
            .collect();
        use AttemptOutcome::*;
        assert_eq!(
            got,
            [
                (0, a1, Failed, Some("renderer_failed".to_string()), true),
                (0, a2, Superseded, None, true),
                (0, dup, Succeeded, None, true),
                (1, 1, Interrupted, None, true),
                (2, 1, Interrupted, None, true),
            ]
        );
        assert!(s.attempts("nope").unwrap().is_empty());
    }

    #[tokio::test]
    async fn committed_segment_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("jobs.db")).unwrap();
        s.create_job(&job("J1")).await.unwrap();
        assert!(matches!(
            s.create_job(&job("J1")).await,
            Err(StoreError::Exists(_))
        ));
        assert_eq!(s.begin_attempt("J1", 1).await.unwrap(), 1);
        assert_eq!(s.begin_attempt("J1", 1).await.unwrap(), 2);
        assert!(s.commit_chunk("J1", 1, &seg(2)).await.unwrap());
        assert!(
            !s.commit_chunk("J1", 1, &seg(1)).await.unwrap(),
            "late attempt must not overwrite"
        );
        assert!(s.begin_attempt("J1", 1).await.is_err());
        let c = &s.chunks("J1").unwrap()[1];
        assert_eq!(c.state, ChunkState::Done);
        assert_eq!(c.segment.as_ref().unwrap().attempt, 2);
        // Survives reopening.
        drop(s);
        let s = SqliteStore::open(&dir.path().join("jobs.db")).unwrap();
        assert_eq!(s.chunks("J1").unwrap()[1].segment, Some(seg(2)));
        assert_eq!(s.job("J1").unwrap().state, JobState::Queued);
    }

    #[tokio::test]
    async fn batches_group_jobs_by_row_and_old_stores_gain_the_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.db");
        {
            // A store from before batches: no batch columns.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE jobs (id TEXT PRIMARY KEY, spec TEXT NOT NULL, storage_url TEXT NOT NULL,
                 output TEXT NOT NULL, adapter TEXT NOT NULL, adapter_config TEXT NOT NULL DEFAULT '{}',
                 download INTEGER NOT NULL DEFAULT 1, state TEXT NOT NULL, error TEXT,
                 cancel_requested INTEGER NOT NULL DEFAULT 0, created_ms INTEGER NOT NULL,
                 updated_ms INTEGER NOT NULL);",
            )
            .unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        s.create_job(&job("SOLO")).await.unwrap();
        for (id, row) in [("R2", 2), ("R1", 1), ("R3", 3)] {
            let mut j = job(id);
            j.batch = Some(BatchRow {
                batch: "B".into(),
                row,
            });
            s.create_job(&j).await.unwrap();
        }
        let rows: Vec<_> = s
            .batch_jobs("B")
            .unwrap()
            .into_iter()
            .map(|j| (j.id, j.batch.unwrap().row))
            .collect();
        assert_eq!(
            rows,
            vec![("R1".into(), 1), ("R2".into(), 2), ("R3".into(), 3)]
        );
        assert!(s.batch_jobs("SOLO").unwrap().is_empty());
        assert_eq!(s.job("SOLO").unwrap().batch, None);
    }

    #[tokio::test]
    async fn cancel_requests_only_for_live_jobs() {
        let s = SqliteStore::in_memory().unwrap();
        s.create_job(&job("J2")).await.unwrap();
        assert!(s.request_cancel("J2").await.unwrap());
        assert!(s.job("J2").unwrap().cancel_requested);
        s.set_job_state("J2", JobState::Succeeded, None)
            .await
            .unwrap();
        assert!(!s.request_cancel("J2").await.unwrap());
        assert!(matches!(s.job("nope"), Err(StoreError::NoSuchJob(_))));
    }

    /// Many concurrent writers share transactions, one failing change in a group does not
    /// undo its neighbours, and everything answered is on disk when reopened.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn group_commits_are_isolated_and_durable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.db");
        let mut big = job("G");
        big.spec.chunks = (0..500)
            .map(|i| Chunk {
                index: i,
                start: i as u64,
                end: i as u64 + 1,
            })
            .collect();
        let s = Arc::new(SqliteStore::open(&path).unwrap());
        s.create_job(&big).await.unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..500u32 {
            let s = s.clone();
            tasks.spawn(async move {
                let attempt = s.begin_attempt("G", i).await.unwrap();
                // Interleave changes that fail: unknown jobs and done chunks.
                assert!(matches!(
                    s.set_job_state("missing", JobState::Running, None).await,
                    Err(StoreError::NoSuchJob(_))
                ));
                assert!(s.commit_chunk("G", i, &seg(attempt)).await.unwrap());
                assert!(s.begin_attempt("G", i).await.is_err());
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
        let stats = s.stats();
        assert_eq!(stats.changes, 1 + 500 * 4);
        assert!(stats.transactions >= 1 && stats.transactions <= stats.changes);
        drop(tasks);
        drop(Arc::try_unwrap(s).ok().expect("no other owner"));
        let s = SqliteStore::open(&path).unwrap();
        let chunks = s.chunks("G").unwrap();
        assert_eq!(chunks.len(), 500);
        for c in chunks {
            assert_eq!(c.state, ChunkState::Done, "chunk {}", c.chunk.index);
            assert_eq!(c.attempts, 1);
            assert_eq!(c.segment, Some(seg(1)));
        }
    }
}
