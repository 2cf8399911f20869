//! Where chunks run. [`WorkerAdapter`] is the seam between the orchestrator and the
//! engines (local processes now; Lambda, Cloud Run, Kubernetes later): every adapter sends
//! the same [`ChunkRequest`] and returns the worker's report or its classified failure.

pub mod cloudrun_job;
pub mod config;
pub mod google_auth;
pub mod http;
pub mod kubernetes;
pub mod lambda;
pub mod local;
pub mod sim;
pub(crate) mod tasks;

use async_trait::async_trait;

pub use crate::worker::{ChunkReport, ChunkRequest, FailureKind, WorkerFailure};

/// Runs chunk attempts on some engine.
///
/// Cancellation and timeouts are the caller's: dropping the returned future must stop the
/// attempt (kill the process, abandon the request).
#[async_trait]
pub trait WorkerAdapter: Send + Sync {
    /// A short name for logs and status (`local`, `lambda`…).
    fn name(&self) -> &'static str;

    /// Runs one attempt.
    async fn run_chunk(&self, req: &ChunkRequest) -> Result<ChunkReport, WorkerFailure>;

    /// Stops whatever the engine still runs for this adapter (called before the process
    /// exits: a cancelled render must not leave batch jobs running in a cloud).
    async fn shutdown(&self) {}
}
