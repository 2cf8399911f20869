//! A scale model of cloud runs: from the shape of a job (frames, chunk count, concurrency)
//! and the behaviour of its workers (cold start, time per frame, transient failure rate) to
//! the wall time and the pay-per-use cost of rendering it. Pure arithmetic, no I/O; checked
//! against runs of the real orchestrator with the sim adapter by `benches/scale_model.rs`.
//!
//! Assumptions, kept deliberately simple:
//! - Chunks are balanced as [`crate::spec::plan_chunks`] makes them (lengths differ by at
//!   most one frame, longer chunks first) and every attempt costs
//!   `cold_start + len × per_frame`: each attempt is a cold worker (pessimistic when warm
//!   workers are reused) and a worker's time is linear in its frames.
//! - At most `concurrency` chunks run at once and chunks start in index order, so without
//!   failures the render takes `ceil(chunks / concurrency)` waves, each as long as its
//!   longest chunk.
//! - An attempt fails (retryably) with probability `fail_rate`, independently, at its end
//!   (so a failed attempt is billed in full); the chunk keeps its slot, waits `backoff` on
//!   average and tries again, up to `max_attempts`. Retries in earlier waves take slot time
//!   that the scheduler spreads over all slots; a chunk of the last wave that needs `k`
//!   retries delays the end by `k` attempts and backoffs, and the job waits for the worst
//!   one: `E[max]` over the last wave is `Σ_k P(some chunk needs ≥ k retries) · (T + backoff)`.
//! - Stitching happens after the last chunk, on one host, in time proportional to the number
//!   of segments. Nothing else (scheduling, storage, the job store) takes time.
//! - Cost is Lambda-style: GB-seconds of worker time (memory × attempt time, every attempt)
//!   plus a price per request (attempt); stitching and the orchestrator are not billed.

use std::time::Duration;

use thiserror::Error;

pub use crate::cost::{LAMBDA_GB_SECOND, LAMBDA_REQUEST};

/// A job and the workers that render it.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleModel {
    /// Frames in the job.
    pub frames: u64,
    /// Chunks asked for (the planner makes at most one chunk per frame).
    pub chunks: u32,
    /// Chunks that may render at once (e.g. the Lambda account's concurrency limit).
    pub concurrency: u32,
    /// Start-up time of every attempt.
    pub cold_start: Duration,
    /// Render time per frame.
    pub per_frame: Duration,
    /// Probability that an attempt fails with a retryable error, in `[0, 1)`.
    pub fail_rate: f64,
    /// Attempts per chunk, first one included.
    pub max_attempts: u32,
    /// Mean wait before a retry (with full jitter, half the backoff ceiling).
    pub backoff: Duration,
    /// Memory of a worker, in MB (billed as MB / 1024 GB).
    pub memory_mb: u32,
    /// Price per GB-second of worker time (USD).
    pub price_gb_second: f64,
    /// Price per request, i.e. per attempt (USD).
    pub price_request: f64,
    /// Stitching time per segment.
    pub stitch_per_segment: Duration,
}

impl ScaleModel {
    /// A job of `frames` frames in `chunks` chunks on AWS Lambda at list prices: 1,000
    /// concurrent workers (the default account limit) of 2,048 MB, 3 attempts per chunk,
    /// and no cold start, render time, failures or stitching until set.
    pub fn lambda(frames: u64, chunks: u32) -> Self {
        Self {
            frames,
            chunks,
            concurrency: 1000,
            cold_start: Duration::ZERO,
            per_frame: Duration::ZERO,
            fail_rate: 0.0,
            max_attempts: 3,
            backoff: Duration::ZERO,
            memory_mb: 2048,
            price_gb_second: LAMBDA_GB_SECOND,
            price_request: LAMBDA_REQUEST,
            stitch_per_segment: Duration::ZERO,
        }
    }
}

/// What the model expects of a job.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Chunks actually planned (`min(chunks, frames)`).
    pub chunks: u32,
    /// Frames in the longest chunk.
    pub max_chunk_frames: u64,
    /// Rounds of at most `concurrency` chunks.
    pub waves: u32,
    /// Expected time from the first chunk's start to the last chunk's commit.
    pub render: Duration,
    /// Stitching time.
    pub stitch: Duration,
    /// `render + stitch`.
    pub wall: Duration,
    /// Expected attempts (billed requests) in all.
    pub attempts: f64,
    /// Expected worker time over all attempts, in seconds.
    pub worker_seconds: f64,
    /// `worker_seconds` × memory in GB.
    pub gb_seconds: f64,
    /// Expected cost in USD.
    pub cost_usd: f64,
    /// Probability that some chunk fails all its attempts, failing the job.
    pub job_failure: f64,
}

/// A model that cannot be evaluated.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ModelError {
    /// A count that must be positive is zero.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// The failure rate is not a probability below 1.
    #[error("fail_rate must be in [0, 1), not {0}")]
    FailRate(f64),
}

impl ScaleModel {
    /// Evaluates the model.
    pub fn predict(&self) -> Result<Prediction, ModelError> {
        for (name, value) in [
            ("frames", self.frames),
            ("chunks", u64::from(self.chunks)),
            ("concurrency", u64::from(self.concurrency)),
            ("max_attempts", u64::from(self.max_attempts)),
        ] {
            if value == 0 {
                return Err(ModelError::Zero(name));
            }
        }
        let p = self.fail_rate;
        if !(0.0..1.0).contains(&p) {
            return Err(ModelError::FailRate(p));
        }

        // The planner's balanced split: `long` chunks of `base + 1` frames, then the rest.
        let n = u64::from(self.chunks).min(self.frames);
        let (base, long) = (self.frames / n, self.frames % n);
        let len_of = |i: u64| base + u64::from(i < long);
        let chunk_time = |frames: u64| {
            self.cold_start.as_secs_f64() + frames as f64 * self.per_frame.as_secs_f64()
        };
        let c = u64::from(self.concurrency).min(n);
        let waves = n.div_ceil(c);

        // Without failures: each wave lasts as long as its first (longest) chunk.
        let clean: f64 = (0..waves).map(|w| chunk_time(len_of(w * c))).sum();

        // Retry k (k = 1 .. max_attempts-1) happens with probability p^k.
        let retries = 1..self.max_attempts;
        let retry_prob = |k: u32| p.powi(k as i32);
        let attempts_per_chunk: f64 = 1.0 + retries.clone().map(retry_prob).sum::<f64>();
        let mean_time = self.cold_start.as_secs_f64()
            + self.frames as f64 / n as f64 * self.per_frame.as_secs_f64();
        let backoff = self.backoff.as_secs_f64();
        // Slot time of retries before the last wave, spread over the slots.
        let last = n - (waves - 1) * c;
        let spread =
            (n - last) as f64 * (attempts_per_chunk - 1.0) * (mean_time + backoff) / c as f64;
        // The last wave waits for its worst chunk's retries.
        let last_time = chunk_time(len_of((waves - 1) * c));
        let worst: f64 = retries
            .map(|k| {
                let some_chunk = 1.0 - (1.0 - retry_prob(k)).powf(last as f64);
                some_chunk * (last_time + backoff)
            })
            .sum();
        let render = clean + spread + worst;
        let stitch = self.stitch_per_segment.as_secs_f64() * n as f64;

        let attempts = attempts_per_chunk * n as f64;
        let worker_seconds = attempts_per_chunk
            * (n as f64 * self.cold_start.as_secs_f64()
                + self.frames as f64 * self.per_frame.as_secs_f64());
        let gb_seconds = worker_seconds * f64::from(self.memory_mb) / 1024.0;
        let cost_usd = gb_seconds * self.price_gb_second + attempts * self.price_request;
        let job_failure = 1.0 - (1.0 - p.powi(self.max_attempts as i32)).powf(n as f64);

        Ok(Prediction {
            chunks: n as u32,
            max_chunk_frames: len_of(0),
            waves: waves as u32,
            render: Duration::from_secs_f64(render),
            stitch: Duration::from_secs_f64(stitch),
            wall: Duration::from_secs_f64(render + stitch),
            attempts,
            worker_seconds,
            gb_seconds,
            cost_usd,
            job_failure,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(chunks: u32) -> ScaleModel {
        ScaleModel {
            cold_start: Duration::from_millis(1500),
            per_frame: Duration::from_millis(60),
            ..ScaleModel::lambda(3600, chunks)
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
    }

    #[test]
    fn one_chunk_is_cold_start_plus_all_frames() {
        let p = job(1).predict().unwrap();
        assert_eq!(p.waves, 1);
        assert!(close(p.render.as_secs_f64(), 1.5 + 3600.0 * 0.06));
        assert_eq!(p.wall, p.render);
        assert!(close(p.attempts, 1.0));
        assert!(close(p.worker_seconds, 217.5));
        // 2 GB × 217.5 s at list price, plus one request.
        assert!(close(p.gb_seconds, 435.0));
        assert!(close(p.cost_usd, 435.0 * LAMBDA_GB_SECOND + LAMBDA_REQUEST));
        assert_eq!(p.job_failure, 0.0);
    }

    #[test]
    fn doubling_concurrency_halves_the_waves() {
        let m = |concurrency| ScaleModel {
            concurrency,
            ..job(1000)
        };
        let (a, b) = (m(100).predict().unwrap(), m(200).predict().unwrap());
        assert_eq!((a.waves, b.waves), (10, 5));
        // 1000 chunks of 3 or 4 frames: the first wave has the 4-frame chunks (600 of them).
        assert!(close(a.render.as_secs_f64(), 6.0 * 1.74 + 4.0 * 1.68));
        assert!(close(b.render.as_secs_f64(), 3.0 * 1.74 + 2.0 * 1.68));
        // Same work, same bill.
        assert!(close(a.cost_usd, b.cost_usd));
    }

    #[test]
    fn chunks_beyond_concurrency_add_waves_and_cold_starts() {
        let p = job(2000).predict().unwrap();
        assert_eq!(p.waves, 2);
        assert!(close(p.render.as_secs_f64(), 2.0 * (1.5 + 2.0 * 0.06)));
        assert!(close(p.worker_seconds, 2000.0 * 1.5 + 3600.0 * 0.06));
        // More chunks than frames: one frame each.
        let p = job(10_000).predict().unwrap();
        assert_eq!((p.chunks, p.max_chunk_frames, p.waves), (3600, 1, 4));
    }

    #[test]
    fn stitching_is_per_segment() {
        let p = ScaleModel {
            stitch_per_segment: Duration::from_millis(40),
            ..job(100)
        }
        .predict()
        .unwrap();
        assert!(close(p.stitch.as_secs_f64(), 4.0));
        assert!(close(p.wall.as_secs_f64(), p.render.as_secs_f64() + 4.0));
    }

    #[test]
    fn failures_cost_attempts_and_the_worst_chunk_sets_the_pace() {
        let m = ScaleModel {
            fail_rate: 0.5,
            max_attempts: 2,
            backoff: Duration::from_secs(1),
            ..job(1)
        };
        let p = m.predict().unwrap();
        let t = 217.5;
        // One chunk: half the time a second attempt after a 1 s backoff.
        assert!(close(p.attempts, 1.5));
        assert!(close(p.render.as_secs_f64(), t + 0.5 * (t + 1.0)));
        assert!(close(p.worker_seconds, 1.5 * t));
        assert!(close(p.job_failure, 0.25));
        // With many chunks in one wave, some chunk almost surely retries.
        let many = ScaleModel {
            fail_rate: 0.05,
            max_attempts: 3,
            ..job(1000)
        };
        let p = many.predict().unwrap();
        let t = 1.5 + 4.0 * 0.06;
        let expected = t + (1.0 - 0.95f64.powi(1000)) * t + (1.0 - 0.9975f64.powi(1000)) * t;
        assert!(close(p.render.as_secs_f64(), expected));
    }

    #[test]
    fn bad_input_is_an_error() {
        assert_eq!(job(0).predict(), Err(ModelError::Zero("chunks")));
        let m = ScaleModel {
            fail_rate: 1.0,
            ..job(10)
        };
        assert_eq!(m.predict(), Err(ModelError::FailRate(1.0)));
        let m = ScaleModel {
            fail_rate: f64::NAN,
            ..job(10)
        };
        assert!(m.predict().is_err());
        let m = ScaleModel {
            concurrency: 0,
            ..job(10)
        };
        assert_eq!(m.predict(), Err(ModelError::Zero("concurrency")));
    }
}
