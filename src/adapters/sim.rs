//! The sim adapter: an in-process stand-in for workers, for tests and benchmarks of the
//! orchestrator. It renders nothing: it writes a small placeholder segment under the
//! attempt's key and answers with a report — after a latency of a cold start plus a cost per
//! frame plus a seeded random part, and with seeded rates of transient failure, hang and
//! corrupt output, so that chaos runs are reproducible.

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

/// Behaviour of simulated workers.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Seed of every random draw.
    pub seed: u64,
    /// Shortest and longest random part of an attempt's latency, uniformly distributed;
    /// added to `cold_start` and `per_frame` time.
    pub latency: (Duration, Duration),
    /// Fixed start-up time of every attempt (a cold worker: runtime, browser, bundle).
    pub cold_start: Duration,
    /// Render time per frame of the chunk.
    pub per_frame: Duration,
    /// Share of attempts that fail with a retryable error.
    pub fail_rate: f64,
    /// Share of attempts that never answer (the orchestrator's timeout must catch them).
    pub hang_rate: f64,
    /// Share of attempts whose segment does not match their report.
    pub corrupt_rate: f64,
    /// Latency overrides for given (chunk, attempt) pairs: stragglers. An override replaces
    /// the whole latency of that attempt (cold start and per-frame time included).
    pub slow: Vec<(u32, u32, Duration)>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            latency: (Duration::ZERO, Duration::ZERO),
            cold_start: Duration::ZERO,
            per_frame: Duration::ZERO,
            fail_rate: 0.0,
            hang_rate: 0.0,
            corrupt_rate: 0.0,
            slow: Vec::new(),
        }
    }
}

/// What a simulated attempt does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimOutcome {
    /// Writes a good segment and reports it.
    Ok,
    /// Fails with a retryable error.
    Fail,
    /// Never answers.
    Hang,
    /// Writes a segment that does not match the report.
    Corrupt,
}

impl SimConfig {
    /// The outcome and random latency of one attempt: a function of (seed, chunk, attempt)
    /// only, so the same run gives the same draws whatever the scheduling order.
    /// [`SimConfig::attempt`] adds the cold start and per-frame time, or the `slow` override.
    pub fn draw(&self, chunk: u32, attempt: u32) -> (SimOutcome, Duration) {
        // SplitMix64 over (seed, chunk, attempt): cheap, and stable across crate versions.
        let mut state =
            self.seed ^ ((chunk as u64) << 32 | attempt as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut next = || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)) as f64 / u64::MAX as f64
        };
        let x = next();
        let outcome = if x < self.fail_rate {
            SimOutcome::Fail
        } else if x < self.fail_rate + self.hang_rate {
            SimOutcome::Hang
        } else if x < self.fail_rate + self.hang_rate + self.corrupt_rate {
            SimOutcome::Corrupt
        } else {
            SimOutcome::Ok
        };
        let (lo, hi) = self.latency;
        let latency = if hi > lo {
            lo + (hi - lo).mul_f64(next())
        } else {
            lo
        };
        (outcome, latency)
    }

    /// The outcome and total latency of one attempt at a chunk of `frames` frames:
    /// `cold_start + frames × per_frame` plus the random latency of [`SimConfig::draw`], or
    /// the `slow` override alone. Like `draw`, a function of its arguments only.
    pub fn attempt(&self, chunk: u32, attempt: u32, frames: u64) -> (SimOutcome, Duration) {
        let (outcome, drawn) = self.draw(chunk, attempt);
        if let Some((_, _, slow)) = self
            .slow
            .iter()
            .find(|(c, a, _)| *c == chunk && *a == attempt)
        {
            return (outcome, *slow);
        }
        let frames = u32::try_from(frames).unwrap_or(u32::MAX);
        let work = self
            .cold_start
            .saturating_add(self.per_frame.saturating_mul(frames));
        (outcome, work.saturating_add(drawn))
    }
}

/// Simulated workers.
pub struct SimAdapter {
    config: SimConfig,
    /// Job URL → its storage and parsed spec; workers would each read it once too.
    specs: Mutex<HashMap<String, (Storage, Arc<JobSpec>)>>,
}

impl SimAdapter {
    /// Workers that always succeed after `latency`.
    pub fn new(latency: Duration) -> Self {
        Self::with_config(SimConfig {
            latency: (latency, latency),
            ..SimConfig::default()
        })
    }

    /// Workers behaving as `config` says.
    pub fn with_config(config: SimConfig) -> Self {
        Self {
            config,
            specs: Mutex::default(),
        }
    }

    async fn spec(&self, url: &str) -> Result<(Storage, Arc<JobSpec>), WorkerFailure> {
        if let Some(s) = self.specs.lock().ok().and_then(|m| m.get(url).cloned()) {
            return Ok(s);
        }
        let (storage, key) = Storage::open_object_url(url)
            .map_err(|e| WorkerFailure::fatal(FailureKind::InvalidRequest, e.to_string()))?;
        let bytes = storage
            .get(&key)
            .await
            .map_err(|e| WorkerFailure::fatal(FailureKind::InvalidRequest, e.to_string()))?;
        let text = String::from_utf8_lossy(&bytes);
        let parsed = Arc::new(
            spec::parse(&text)
                .map_err(|e| WorkerFailure::fatal(FailureKind::InvalidSpec, e.to_string()))?,
        );
        if let Ok(mut m) = self.specs.lock() {
            m.insert(url.to_string(), (storage.clone(), parsed.clone()));
        }
        Ok((storage, parsed))
    }
}

#[async_trait]
impl WorkerAdapter for SimAdapter {
    fn name(&self) -> &'static str {
        "sim"
    }

    async fn run_chunk(&self, req: &ChunkRequest) -> Result<ChunkReport, WorkerFailure> {
        let (storage, spec) = self.spec(&req.job).await?;
        let job = spec.id.clone().unwrap_or_default();
        let chunk = *spec.chunk(req.chunk).ok_or_else(|| {
            WorkerFailure::fatal(
                FailureKind::InvalidRequest,
                format!("no chunk {}", req.chunk),
            )
        })?;
        let (outcome, latency) = self.config.attempt(req.chunk, req.attempt, chunk.len());
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        match outcome {
            SimOutcome::Fail => {
                return Err(WorkerFailure::retryable(
                    FailureKind::RendererFailed,
                    format!(
                        "simulated failure of chunk {} attempt {}",
                        req.chunk, req.attempt
                    ),
                ))
            }
            SimOutcome::Hang => std::future::pending::<()>().await,
            SimOutcome::Ok | SimOutcome::Corrupt => {}
        }
        let body = format!("sim segment {job} {} {}", chunk.index, req.attempt).into_bytes();
        let segment = keys::attempt_segment(
            &job,
            chunk.index,
            req.attempt,
            encoder::stored_extension(&spec),
        );
        let sha256 = hex::encode(Sha256::digest(&body));
        let bytes = body.len() as u64;
        // A corrupt attempt writes a truncated segment but reports the full one.
        let written = if outcome == SimOutcome::Corrupt {
            body[..body.len() / 2].to_vec()
        } else {
            body
        };
        storage
            .put(&segment, written.into())
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
            md5: None,
            timings: Timings {
                total_ms: latency.as_millis() as u64,
                ..Timings::default()
            },
            stats: Default::default(),
            stages: None,
            media: None,
            ping: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_is_cold_start_plus_frames_plus_the_draw() {
        let config = SimConfig {
            seed: 7,
            latency: (Duration::from_millis(10), Duration::from_millis(20)),
            cold_start: Duration::from_millis(1500),
            per_frame: Duration::from_millis(60),
            slow: vec![(3, 1, Duration::from_secs(9))],
            ..SimConfig::default()
        };
        for (chunk, attempt) in [(0, 1), (1, 1), (1, 2), (500, 3)] {
            let (outcome, drawn) = config.draw(chunk, attempt);
            let (o, total) = config.attempt(chunk, attempt, 10);
            assert_eq!(o, outcome);
            assert_eq!(total, Duration::from_millis(2100) + drawn);
            assert!(drawn >= Duration::from_millis(10) && drawn <= Duration::from_millis(20));
        }
        // An override is the whole latency.
        assert_eq!(config.attempt(3, 1, 10).1, Duration::from_secs(9));
        // The default adds nothing: existing behaviour is unchanged.
        assert_eq!(SimConfig::default().attempt(4, 1, 1000).1, Duration::ZERO);
    }
}
