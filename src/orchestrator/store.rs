//! The durable job store: jobs and chunks in SQLite (WAL, busy timeout, one transaction
//! per state change), so that a killed orchestrator resumes exactly where it stopped.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};

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
names!(JobState { Queued => "queued", Running => "running", Stitching => "stitching", Succeeded => "succeeded", Failed => "failed", Cancelled => "cancelled" });
names!(ChunkState { Pending => "pending", Running => "running", Done => "done", Failed => "failed" });

impl JobState {
    /// Whether the job has stopped (successfully or not).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
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
}

/// Persistence of jobs and chunks. SQLite is the implementation; the trait is the seam the
/// orchestrator is written against.
pub trait JobStore: Send + Sync {
    /// Records a new job and its chunks (all pending) in one transaction.
    fn create_job(&self, job: &JobRecord) -> Result<(), StoreError>;
    /// One job.
    fn job(&self, id: &str) -> Result<JobRecord, StoreError>;
    /// All jobs, oldest first.
    fn jobs(&self) -> Result<Vec<JobRecord>, StoreError>;
    /// A job's chunks by index.
    fn chunks(&self, id: &str) -> Result<Vec<ChunkRecord>, StoreError>;
    /// Sets the job state (and error, cleared when `None`).
    fn set_job_state(
        &self,
        id: &str,
        state: JobState,
        error: Option<&str>,
    ) -> Result<(), StoreError>;
    /// Starts an attempt: the chunk becomes running; returns the attempt number.
    fn begin_attempt(&self, id: &str, index: u32) -> Result<u32, StoreError>;
    /// Commits a verified attempt as the chunk's segment. Returns false (and changes
    /// nothing) if the chunk is already done: a committed segment is never replaced.
    fn commit_chunk(
        &self,
        id: &str,
        index: u32,
        seg: &CommittedSegment,
    ) -> Result<bool, StoreError>;
    /// Puts a chunk back to pending (retry, cancel, crash recovery, bad segment).
    fn release_chunk(&self, id: &str, index: u32, error: Option<&str>) -> Result<(), StoreError>;
    /// Marks a chunk failed for good.
    fn fail_chunk(&self, id: &str, index: u32, error: &str) -> Result<(), StoreError>;
    /// Records a cancellation request; false if the job already ended.
    fn request_cancel(&self, id: &str) -> Result<bool, StoreError>;
    /// Clears a cancellation request (when the job is resumed).
    fn clear_cancel(&self, id: &str) -> Result<(), StoreError>;
}

/// The SQLite job store.
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

fn now_ms() -> i64 {
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
    state TEXT NOT NULL,
    error TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
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
    PRIMARY KEY (job_id, idx)
);
";

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = Connection::open(path)?;
        Self::init(conn)
    }

    /// An in-memory store (tests, benchmarks).
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self, StoreError> {
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a state change is on disk before the orchestrator acts on it.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self
            .conn
            .lock()
            .map_err(|_| StoreError::Corrupt("store lock poisoned".into()))?;
        f(&mut conn)
    }

    fn row_to_job(row: &rusqlite::Row<'_>) -> rusqlite::Result<(JobRecordRaw, String)> {
        Ok((
            JobRecordRaw {
                id: row.get(0)?,
                storage_url: row.get(2)?,
                output: row.get(3)?,
                adapter: row.get(4)?,
                adapter_config: row.get(10)?,
                state: row.get(5)?,
                error: row.get(6)?,
                cancel_requested: row.get::<_, i64>(7)? != 0,
                created_ms: row.get(8)?,
                updated_ms: row.get(9)?,
            },
            row.get(1)?,
        ))
    }
}

struct JobRecordRaw {
    id: String,
    storage_url: String,
    output: String,
    adapter: String,
    adapter_config: String,
    state: String,
    error: Option<String>,
    cancel_requested: bool,
    created_ms: i64,
    updated_ms: i64,
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
            error: self.error,
            cancel_requested: self.cancel_requested,
            created_ms: self.created_ms,
            updated_ms: self.updated_ms,
        })
    }
}

const JOB_COLUMNS: &str =
    "id, spec, storage_url, output, adapter, state, error, cancel_requested, created_ms, updated_ms, adapter_config";

impl JobStore for SqliteStore {
    fn create_job(&self, job: &JobRecord) -> Result<(), StoreError> {
        let spec =
            serde_json::to_string(&job.spec).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.with(|conn| {
            let tx = conn.transaction()?;
            let exists: bool = tx
                .query_row("SELECT 1 FROM jobs WHERE id = ?1", [&job.id], |_| Ok(true))
                .optional()?
                .unwrap_or(false);
            if exists {
                return Err(StoreError::Exists(job.id.clone()));
            }
            let now = now_ms();
            tx.execute(
                "INSERT INTO jobs (id, spec, storage_url, output, adapter, state, error, cancel_requested, created_ms, updated_ms, adapter_config)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, 0, ?7, ?7, ?8)",
                params![job.id, spec, job.storage_url, job.output, job.adapter, job.state.as_str(), now, job.adapter_config],
            )?;
            {
                let mut ins = tx.prepare(
                    "INSERT INTO chunks (job_id, idx, start_frame, end_frame, state) VALUES (?1, ?2, ?3, ?4, 'pending')",
                )?;
                for c in &job.spec.chunks {
                    ins.execute(params![job.id, c.index, c.start as i64, c.end as i64])?;
                }
            }
            tx.commit()?;
            Ok(())
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

    fn chunks(&self, id: &str) -> Result<Vec<ChunkRecord>, StoreError> {
        self.with(|conn| {
            let mut stmt = conn.prepare(
                "SELECT idx, start_frame, end_frame, state, attempts, committed_attempt, segment_key, sha256, bytes, frames, worker_ms, error
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

    fn set_job_state(
        &self,
        id: &str,
        state: JobState,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        self.with(|conn| {
            let n = conn.execute(
                "UPDATE jobs SET state = ?2, error = ?3, updated_ms = ?4 WHERE id = ?1",
                params![id, state.as_str(), error, now_ms()],
            )?;
            if n == 0 {
                return Err(StoreError::NoSuchJob(id.to_string()));
            }
            Ok(())
        })
    }

    fn begin_attempt(&self, id: &str, index: u32) -> Result<u32, StoreError> {
        self.with(|conn| {
            let attempt: Option<u32> = conn
                .query_row(
                    "UPDATE chunks SET attempts = attempts + 1, state = 'running'
                     WHERE job_id = ?1 AND idx = ?2 AND state != 'done' RETURNING attempts",
                    params![id, index],
                    |r| r.get(0),
                )
                .optional()?;
            attempt.ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "chunk {index} of job {id} is missing or already done"
                ))
            })
        })
    }

    fn commit_chunk(
        &self,
        id: &str,
        index: u32,
        seg: &CommittedSegment,
    ) -> Result<bool, StoreError> {
        self.with(|conn| {
            let n = conn.execute(
                "UPDATE chunks SET state = 'done', committed_attempt = ?3, segment_key = ?4, sha256 = ?5,
                        bytes = ?6, frames = ?7, worker_ms = ?8, error = NULL
                 WHERE job_id = ?1 AND idx = ?2 AND state != 'done'",
                params![id, index, seg.attempt, seg.key, seg.sha256, seg.bytes as i64, seg.frames as i64, seg.worker_ms as i64],
            )?;
            Ok(n == 1)
        })
    }

    fn release_chunk(&self, id: &str, index: u32, error: Option<&str>) -> Result<(), StoreError> {
        self.with(|conn| {
            conn.execute(
                "UPDATE chunks SET state = 'pending', committed_attempt = NULL, segment_key = NULL, sha256 = NULL,
                        bytes = NULL, frames = NULL, worker_ms = NULL, error = COALESCE(?3, error)
                 WHERE job_id = ?1 AND idx = ?2",
                params![id, index, error],
            )?;
            Ok(())
        })
    }

    fn fail_chunk(&self, id: &str, index: u32, error: &str) -> Result<(), StoreError> {
        self.with(|conn| {
            conn.execute(
                "UPDATE chunks SET state = 'failed', error = ?3 WHERE job_id = ?1 AND idx = ?2 AND state != 'done'",
                params![id, index, error],
            )?;
            Ok(())
        })
    }

    fn request_cancel(&self, id: &str) -> Result<bool, StoreError> {
        self.with(|conn| {
            let state: Option<String> = conn
                .query_row("SELECT state FROM jobs WHERE id = ?1", [id], |r| r.get(0))
                .optional()?;
            let state =
                JobState::parse(&state.ok_or_else(|| StoreError::NoSuchJob(id.to_string()))?)?;
            if state.is_terminal() {
                return Ok(false);
            }
            conn.execute(
                "UPDATE jobs SET cancel_requested = 1, updated_ms = ?2 WHERE id = ?1",
                params![id, now_ms()],
            )?;
            Ok(true)
        })
    }

    fn clear_cancel(&self, id: &str) -> Result<(), StoreError> {
        self.with(|conn| {
            conn.execute("UPDATE jobs SET cancel_requested = 0 WHERE id = ?1", [id])?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::*;

    fn job(id: &str) -> JobRecord {
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
            state: JobState::Queued,
            error: None,
            cancel_requested: false,
            created_ms: 0,
            updated_ms: 0,
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
        }
    }

    #[test]
    fn committed_segment_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("jobs.db")).unwrap();
        s.create_job(&job("J1")).unwrap();
        assert!(matches!(
            s.create_job(&job("J1")),
            Err(StoreError::Exists(_))
        ));
        assert_eq!(s.begin_attempt("J1", 1).unwrap(), 1);
        assert_eq!(s.begin_attempt("J1", 1).unwrap(), 2);
        assert!(s.commit_chunk("J1", 1, &seg(2)).unwrap());
        assert!(
            !s.commit_chunk("J1", 1, &seg(1)).unwrap(),
            "late attempt must not overwrite"
        );
        assert!(s.begin_attempt("J1", 1).is_err());
        let c = &s.chunks("J1").unwrap()[1];
        assert_eq!(c.state, ChunkState::Done);
        assert_eq!(c.segment.as_ref().unwrap().attempt, 2);
        // Survives reopening.
        drop(s);
        let s = SqliteStore::open(&dir.path().join("jobs.db")).unwrap();
        assert_eq!(s.chunks("J1").unwrap()[1].segment, Some(seg(2)));
        assert_eq!(s.job("J1").unwrap().state, JobState::Queued);
    }

    #[test]
    fn cancel_requests_only_for_live_jobs() {
        let s = SqliteStore::in_memory().unwrap();
        s.create_job(&job("J2")).unwrap();
        assert!(s.request_cancel("J2").unwrap());
        assert!(s.job("J2").unwrap().cancel_requested);
        s.set_job_state("J2", JobState::Succeeded, None).unwrap();
        assert!(!s.request_cancel("J2").unwrap());
        assert!(matches!(s.job("nope"), Err(StoreError::NoSuchJob(_))));
    }
}
