//! The sim adapter: an in-process stand-in for workers, for tests and benchmarks of the
//! orchestrator. It renders nothing; it writes a small placeholder segment under the
//! attempt's key and answers with a well-formed report after a fixed latency.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use super::{ChunkReport, ChunkRequest, FailureKind, WorkerAdapter, WorkerFailure};
use crate::render::encoder;
use crate::spec::{self, JobSpec};
use crate::storage::{keys, Storage};
use crate::worker::Timings;

/// Answers every attempt successfully after `latency`, without rendering.
pub struct SimAdapter {
    latency: Duration,
    specs: Mutex<HashMap<String, Arc<JobSpec>>>,
}

impl SimAdapter {
    /// A sim adapter whose attempts take `latency`.
    pub fn new(latency: Duration) -> Self {
        Self {
            latency,
            specs: Mutex::default(),
        }
    }

    async fn spec(
        &self,
        storage: &Storage,
        key: &str,
        url: &str,
    ) -> Result<Arc<JobSpec>, WorkerFailure> {
        if let Some(s) = self.specs.lock().ok().and_then(|m| m.get(url).cloned()) {
            return Ok(s);
        }
        let bytes = storage
            .get(key)
            .await
            .map_err(|e| WorkerFailure::fatal(FailureKind::InvalidRequest, e.to_string()))?;
        let text = String::from_utf8_lossy(&bytes);
        let parsed = Arc::new(
            spec::parse(&text)
                .map_err(|e| WorkerFailure::fatal(FailureKind::InvalidSpec, e.to_string()))?,
        );
        if let Ok(mut m) = self.specs.lock() {
            m.insert(url.to_string(), parsed.clone());
        }
        Ok(parsed)
    }
}

#[async_trait]
impl WorkerAdapter for SimAdapter {
    fn name(&self) -> &'static str {
        "sim"
    }

    async fn run_chunk(&self, req: &ChunkRequest) -> Result<ChunkReport, WorkerFailure> {
        let (storage, key) = Storage::open_object_url(&req.job)
            .map_err(|e| WorkerFailure::fatal(FailureKind::InvalidRequest, e.to_string()))?;
        let spec = self.spec(&storage, &key, &req.job).await?;
        let job = spec.id.clone().unwrap_or_default();
        let chunk = *spec.chunk(req.chunk).ok_or_else(|| {
            WorkerFailure::fatal(
                FailureKind::InvalidRequest,
                format!("no chunk {}", req.chunk),
            )
        })?;
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        let body = format!("sim segment {job} {} {}", chunk.index, req.attempt).into_bytes();
        let segment = keys::attempt_segment(
            &job,
            chunk.index,
            req.attempt,
            encoder::segment_extension(spec.video.codec),
        );
        let sha256 = hex::encode(Sha256::digest(&body));
        let bytes = body.len() as u64;
        storage
            .put(&segment, body.into())
            .await
            .map_err(|e| WorkerFailure::retryable(FailureKind::Storage, e.to_string()))?;
        Ok(ChunkReport {
            job,
            chunk: chunk.index,
            attempt: req.attempt,
            start: chunk.start,
            end: chunk.end,
            frames: chunk.len(),
            segment,
            bytes,
            sha256,
            timings: Timings {
                total_ms: self.latency.as_millis() as u64,
                ..Timings::default()
            },
            stats: Default::default(),
        })
    }
}
