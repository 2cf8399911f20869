//! One orchestrator per job: an advisory file lock that the OS releases when the process
//! dies, so a crashed run never blocks `resume` and a live run is never doubled.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// Held while a job runs.
pub struct JobLock {
    _lock: Flock<File>,
}

/// Lock failures.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another live process runs the job.
    #[error("job {job} is already being run by another helios-infra process{pid}; wait for it or `helios-infra cancel {job}`")]
    Busy {
        /// Job id.
        job: String,
        /// ` (pid N)` when known.
        pid: String,
    },
    /// The lock file could not be opened.
    #[error("cannot open lock file {path}: {source}")]
    Io {
        /// Lock file.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
}

fn lock_path(dir: &Path, job: &str) -> PathBuf {
    dir.join(format!("{job}.lock"))
}

impl JobLock {
    /// Takes the lock of `job` in `dir`, or fails at once if a live process holds it.
    pub fn acquire(dir: &Path, job: &str) -> Result<Self, LockError> {
        let path = lock_path(dir, job);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut lock) => {
                let _ = lock.set_len(0);
                let _ = write!(lock, "{}", std::process::id());
                Ok(Self { _lock: lock })
            }
            Err((_, _)) => {
                let pid = std::fs::read_to_string(&path)
                    .ok()
                    .filter(|s| !s.trim().is_empty())
                    .map(|p| format!(" (pid {})", p.trim()))
                    .unwrap_or_default();
                Err(LockError::Busy {
                    job: job.to_string(),
                    pid,
                })
            }
        }
    }

    /// Whether a live process holds the lock of `job` right now.
    pub fn is_held(dir: &Path, job: &str) -> bool {
        let Ok(file) = File::open(lock_path(dir, job)) else {
            return false;
        };
        Flock::lock(file, FlockArg::LockSharedNonblock).is_err()
    }
}
