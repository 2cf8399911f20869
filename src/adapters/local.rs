//! The local adapter: each attempt is a child process `helios-infra worker run`.

use std::path::PathBuf;
use std::process::Stdio;

use async_trait::async_trait;
use tokio::process::Command;

use super::{ChunkReport, ChunkRequest, FailureKind, WorkerAdapter, WorkerFailure};
use crate::process;
use crate::worker::protocol::WorkerResponse;

/// Runs attempts as child processes of this machine.
///
/// Each worker runs in its own process group so that a timeout or cancellation kills the
/// renderer and FFmpeg it started, not only the worker itself.
#[derive(Debug, Clone)]
pub struct LocalAdapter {
    worker_exe: PathBuf,
}

impl LocalAdapter {
    /// An adapter that starts `worker_exe worker run …` (normally this very binary).
    pub fn new(worker_exe: PathBuf) -> Self {
        Self { worker_exe }
    }
}

/// Kills a whole process group when dropped before the process finished.
struct GroupKill(Option<i32>);

impl Drop for GroupKill {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

#[async_trait]
impl WorkerAdapter for LocalAdapter {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn run_chunk(&self, req: &ChunkRequest) -> Result<ChunkReport, WorkerFailure> {
        let mut cmd = Command::new(&self.worker_exe);
        cmd.args(["worker", "run", "--job", &req.job])
            .args(["--chunk", &req.chunk.to_string()])
            .args(["--attempt", &req.attempt.to_string()])
            .process_group(0);
        if req.assemble {
            cmd.arg("--assemble");
        }
        if req.palette {
            cmd.arg("--palette");
        }
        if req.ping {
            cmd.arg("--ping");
        }
        process::die_with_parent(&mut cmd);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| {
            WorkerFailure::fatal(
                FailureKind::Internal,
                format!("cannot start worker {}: {e}", self.worker_exe.display()),
            )
        })?;
        let mut guard = GroupKill(child.id().map(|p| p as i32));
        let done = process::collect(&mut child).await;
        guard.0 = None;
        let process::Finished {
            status,
            stdout: out,
            stderr: err_tail,
        } = done.map_err(|e| {
            WorkerFailure::retryable(FailureKind::LostWorker, format!("lost worker: {e}"))
        })?;

        // The worker prints its response as the last line of stdout.
        let last = out
            .split(|b| *b == b'\n')
            .rev()
            .find(|l| !l.iter().all(u8::is_ascii_whitespace));
        if let Some(resp) = last.and_then(|l| serde_json::from_slice::<WorkerResponse>(l).ok()) {
            return resp.into();
        }
        Err(WorkerFailure::retryable(
            FailureKind::LostWorker,
            format!(
                "worker for chunk {} ended with {} without a report; last lines of its stderr:\n{}",
                req.chunk,
                process::describe_status(&status),
                err_tail.text()
            ),
        ))
    }
}
