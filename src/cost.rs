//! What workers cost: the list prices of each engine, the price of one attempt, how fast a
//! worker renders (its [`Pace`]), and what a plan is expected to take and cost
//! ([`Estimate`], from the [`crate::model`] scale model). Pure arithmetic, no I/O; below
//! both the command line (estimates) and the orchestrator (the spend ledger and its cap).

use serde::{Deserialize, Serialize};

use crate::model::{ModelError, ScaleModel};

/// AWS Lambda x86 list price per GB-second (USD).
pub const LAMBDA_GB_SECOND: f64 = 0.000_016_666_7;
/// AWS Lambda list price per request (USD).
pub const LAMBDA_REQUEST: f64 = 0.000_000_2;
/// Cloud Run list price per vCPU-second (request-based billing and Jobs, USD).
pub const RUN_VCPU_SECOND: f64 = 0.000_024;
/// Cloud Run list price per GiB-second (USD).
pub const RUN_GIB_SECOND: f64 = 0.000_002_5;
/// Cloud Run list price per request (services only; Jobs have none, USD).
pub const RUN_REQUEST: f64 = 0.000_000_4;

/// What an engine bills for, to say an amount of work in its own units.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "unit", rename_all = "snake_case")]
pub enum Billing {
    /// Memory × time (Lambda): GB-seconds, and requests.
    GbSeconds {
        /// Memory of one worker in GB.
        gb: f64,
    },
    /// CPU × time and memory × time (Cloud Run): vCPU-seconds, GiB-seconds, requests.
    VcpuSeconds {
        /// vCPUs of one instance.
        vcpu: f64,
        /// Memory of one instance in GiB.
        gib: f64,
    },
    /// Pod-hours at a price per pod-hour (Kubernetes).
    PodHours,
    /// Worker-hours at a price per worker-hour (local and HTTP workers).
    WorkerHours,
}

/// The price of workers' time on one engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Price {
    /// USD per second of one worker's time.
    pub per_second: f64,
    /// USD per attempt (a request or an invocation).
    pub per_request: f64,
    /// What the engine bills for.
    pub billing: Billing,
    /// Where the price comes from, for people.
    pub basis: String,
}

impl Price {
    /// AWS Lambda (x86) at list price with `memory_mb` of memory.
    pub fn lambda(memory_mb: u32) -> Self {
        let gb = f64::from(memory_mb) / 1024.0;
        Self {
            per_second: gb * LAMBDA_GB_SECOND,
            per_request: LAMBDA_REQUEST,
            billing: Billing::GbSeconds { gb },
            basis: format!("AWS Lambda x86 list price, {memory_mb} MB"),
        }
    }

    /// Cloud Run at list price: a service (request-based billing, with a fee per request)
    /// or a Job (instance time only).
    pub fn cloud_run(vcpu: f64, memory_mb: u32, job: bool) -> Self {
        let gib = f64::from(memory_mb) / 1024.0;
        let what = if job {
            "Cloud Run Jobs"
        } else {
            "Cloud Run request-based"
        };
        Self {
            per_second: vcpu * RUN_VCPU_SECOND + gib * RUN_GIB_SECOND,
            per_request: if job { 0.0 } else { RUN_REQUEST },
            billing: Billing::VcpuSeconds { vcpu, gib },
            basis: format!("{what} list price, {vcpu} vCPU / {memory_mb} MiB"),
        }
    }

    /// Kubernetes pods at `usd` a pod-hour (the nodes' price over the pods one node runs).
    pub fn pod_hour(usd: f64) -> Self {
        Self {
            per_second: usd / 3600.0,
            per_request: 0.0,
            billing: Billing::PodHours,
            basis: format!("Kubernetes pod-seconds at {usd} USD a pod-hour (--k8s-pod-hour-usd)"),
        }
    }

    /// Local or HTTP workers at `usd` a worker-hour (`--worker-hour-usd`); free without it.
    pub fn worker_hour(usd: Option<f64>) -> Self {
        let usd = usd.unwrap_or(0.0);
        Self {
            per_second: usd / 3600.0,
            per_request: 0.0,
            billing: Billing::WorkerHours,
            basis: if usd > 0.0 {
                format!("{usd} USD a worker-hour (--worker-hour-usd)")
            } else {
                "free: these workers cost nothing unless --worker-hour-usd says so".into()
            },
        }
    }

    /// Whether nothing is ever billed.
    pub fn is_free(&self) -> bool {
        self.per_second <= 0.0 && self.per_request <= 0.0
    }

    /// USD of one attempt that kept a worker for `seconds`.
    pub fn attempt(&self, seconds: f64) -> f64 {
        seconds.max(0.0) * self.per_second + self.per_request
    }

    /// USD of `seconds` of workers' time over `attempts` attempts.
    pub fn of(&self, seconds: f64, attempts: f64) -> f64 {
        seconds.max(0.0) * self.per_second + attempts * self.per_request
    }

    /// An amount of work in the engine's own units ("45.1 GB-s, 12 requests").
    pub fn units(&self, seconds: f64, attempts: f64) -> String {
        match self.billing {
            Billing::GbSeconds { gb } => {
                format!("{:.1} GB-s, {attempts:.0} requests", seconds * gb)
            }
            Billing::VcpuSeconds { vcpu, gib } => {
                let requests = if self.per_request > 0.0 {
                    format!(", {attempts:.0} requests")
                } else {
                    String::new()
                };
                format!(
                    "{:.1} vCPU-s, {:.1} GiB-s{requests}",
                    seconds * vcpu,
                    seconds * gib
                )
            }
            Billing::PodHours => format!("{:.4} pod-hours", seconds / 3600.0),
            Billing::WorkerHours => format!("{:.4} worker-hours", seconds / 3600.0),
        }
    }
}

/// How fast one worker renders a job: a fixed start-up per attempt (process, spec and
/// bundle, browser launch, upload) and a time per frame.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Pace {
    /// Start-up of an attempt, in milliseconds.
    pub startup_ms: f64,
    /// Render and encode time of one frame, in milliseconds.
    pub frame_ms: f64,
    /// Cores one worker keeps busy while it renders (CPU time ÷ wall time); workers on one
    /// machine that want more cores than it has slow each other down.
    pub cores: f64,
}

impl Pace {
    /// Seconds an attempt of `frames` frames keeps its worker.
    pub fn seconds(&self, frames: u64) -> f64 {
        (self.startup_ms + frames as f64 * self.frame_ms) / 1000.0
    }
}

/// What a plan is expected to take and cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// Wall time from the first chunk's start to the last chunk's commit, in seconds.
    pub wall_s: f64,
    /// Workers' time over all attempts, in seconds.
    pub worker_s: f64,
    /// Attempts (requests).
    pub attempts: f64,
    /// Expected cost in USD.
    pub usd: f64,
    /// The pace the estimate assumed.
    pub pace: Pace,
    /// Where the pace comes from ("a probe of 8 frames on this machine", "--frame-ms").
    pub pace_from: String,
    /// The work in the engine's own units.
    pub units: String,
    /// Where the price comes from.
    pub basis: String,
}

/// A plan to estimate: how its frames are split and run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlanShape {
    /// Frames still to render.
    pub frames: u64,
    /// Chunks still to render.
    pub chunks: u32,
    /// Chunks rendering at once.
    pub concurrency: u32,
    /// Cores of the machine the workers share (local workers), or `None` when each worker
    /// has its own machine.
    pub shared_cores: Option<u32>,
}

/// The expected wall time and cost of `shape` at `pace` and `price`. Workers that share a
/// machine and want more cores than it has run proportionally slower.
pub fn estimate(
    shape: PlanShape,
    pace: Pace,
    pace_from: &str,
    price: &Price,
) -> Result<Estimate, ModelError> {
    let running = shape.concurrency.min(shape.chunks).max(1);
    let slowdown = match shape.shared_cores {
        Some(cores) if cores > 0 => (f64::from(running) * pace.cores / f64::from(cores)).max(1.0),
        _ => 1.0,
    };
    let ms = |v: f64| std::time::Duration::from_secs_f64((v * slowdown / 1000.0).max(0.0));
    let model = ScaleModel {
        concurrency: shape.concurrency,
        cold_start: ms(pace.startup_ms),
        per_frame: ms(pace.frame_ms),
        max_attempts: 1,
        // Billed per worker-second: one "GB" at the price of a second.
        memory_mb: 1024,
        price_gb_second: price.per_second,
        price_request: price.per_request,
        ..ScaleModel::lambda(shape.frames, shape.chunks)
    };
    let p = model.predict()?;
    Ok(Estimate {
        wall_s: p.wall.as_secs_f64(),
        worker_s: p.worker_seconds,
        attempts: p.attempts,
        usd: p.cost_usd,
        pace,
        pace_from: pace_from.to_string(),
        units: price.units(p.worker_seconds, p.attempts),
        basis: price.basis.clone(),
    })
}

impl Estimate {
    /// One line for people: "about 12.4 s and 0.0042 USD (45.1 GB-s, 12 requests; …)".
    pub fn describe(&self) -> String {
        format!(
            "estimate: about {} and {} ({}; {}; {:.0} ms a frame and {:.1} s to start a worker, from {})",
            format_duration(self.wall_s),
            format_usd(self.usd),
            self.units,
            self.basis,
            self.pace.frame_ms,
            self.pace.startup_ms / 1000.0,
            self.pace_from
        )
    }
}

/// An amount in USD with the digits that matter ("0.0042 USD", "12.50 USD").
pub fn format_usd(usd: f64) -> String {
    if usd == 0.0 {
        "0 USD".into()
    } else if usd >= 1.0 {
        format!("{usd:.2} USD")
    } else {
        // Three significant digits below a dollar.
        let digits = (2 - usd.log10().floor() as i32).clamp(2, 9) as usize;
        format!("{usd:.digits$} USD")
    }
}

fn format_duration(s: f64) -> String {
    if s < 90.0 {
        format!("{s:.1} s")
    } else if s < 5400.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

/// A cap above `needed` that is easy to type: two significant digits, rounded up.
pub fn round_up_cap(needed: f64) -> f64 {
    if needed <= 0.0 || !needed.is_finite() {
        return 0.01;
    }
    let scale = 10f64.powi(needed.log10().floor() as i32 - 1);
    ((needed / scale).ceil() * scale * 1e9).round() / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pace() -> Pace {
        Pace {
            startup_ms: 1000.0,
            frame_ms: 50.0,
            cores: 1.0,
        }
    }

    #[test]
    fn an_attempt_costs_its_time_and_its_request() {
        let p = Price::lambda(2048);
        assert!((p.attempt(10.0) - (20.0 * LAMBDA_GB_SECOND + LAMBDA_REQUEST)).abs() < 1e-15);
        assert_eq!(Price::worker_hour(None).attempt(100.0), 0.0);
        assert!(Price::worker_hour(None).is_free());
        assert!((Price::worker_hour(Some(36.0)).attempt(1.0) - 0.01).abs() < 1e-12);
        assert_eq!(Price::cloud_run(2.0, 4096, true).per_request, 0.0);
        assert_eq!(
            Price::lambda(1024).units(10.0, 3.0),
            "10.0 GB-s, 3 requests"
        );
    }

    #[test]
    fn estimates_follow_the_plan() {
        let price = Price::worker_hour(Some(36.0));
        let shape = PlanShape {
            frames: 300,
            chunks: 4,
            concurrency: 2,
            shared_cores: None,
        };
        let e = estimate(shape, pace(), "test", &price).unwrap();
        // Two waves of 75-frame chunks: 2 × (1 + 3.75) s; four attempts of 4.75 s.
        assert!((e.wall_s - 9.5).abs() < 1e-9);
        assert!((e.worker_s - 19.0).abs() < 1e-9);
        assert!((e.usd - 0.19).abs() < 1e-9);
        // Two workers of two cores each on a 2-core machine take twice as long.
        let crowded = estimate(
            PlanShape {
                shared_cores: Some(2),
                ..shape
            },
            Pace {
                cores: 2.0,
                ..pace()
            },
            "test",
            &price,
        )
        .unwrap();
        assert!((crowded.wall_s - 19.0).abs() < 1e-9);
    }

    #[test]
    fn caps_round_up_to_two_digits() {
        assert_eq!(round_up_cap(0.01234), 0.013);
        assert_eq!(round_up_cap(1.0), 1.0);
        assert_eq!(round_up_cap(12.01), 13.0);
        assert_eq!(format_usd(0.004213), "0.00421 USD");
        assert_eq!(format_usd(12.5), "12.50 USD");
    }
}
