//! The HTTP adapter: attempts are `POST /v1/chunks` to `helios-infra worker serve`
//! instances — a pool of the user's own machines, or a Cloud Run service.
//!
//! Connection failures move on to the next worker at once (the request never started);
//! throttling (429, or a 5xx without a worker answer) is retried here with backoff; a worker
//! that dies mid-request is reported as a retryable lost worker and rested for a while, so
//! the orchestrator's retry lands elsewhere.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::StatusCode;

use super::{ChunkReport, ChunkRequest, FailureKind, WorkerAdapter, WorkerFailure};
use crate::backoff;
use crate::spec::RetryPolicy;
use crate::worker::protocol::WorkerResponse;

/// How long a worker that failed at the connection level is skipped, by default.
pub const DEFAULT_REST: Duration = Duration::from_secs(30);
/// Lost or unreachable this many times in a job, a worker gets no more of its chunks.
pub const DEFAULT_MAX_WORKER_FAILURES: u32 = 3;

/// What the adapter knows of one worker's health during a job.
#[derive(Debug, Clone, Copy, Default)]
struct Health {
    resting_until: Option<Instant>,
    failures: u32,
}

/// Supplies the `Authorization` bearer token for each request.
#[async_trait]
pub trait TokenSource: Send + Sync {
    /// A currently valid token.
    async fn token(&self) -> Result<String, WorkerFailure>;
}

/// How requests authenticate.
#[derive(Clone)]
pub enum ClientAuth {
    /// No `Authorization` header.
    None,
    /// A static bearer token.
    Bearer(String),
    /// Tokens from a source (Google ID tokens for Cloud Run).
    Source(Arc<dyn TokenSource>),
}

/// Throttling retries done inside one attempt.
#[derive(Debug, Clone)]
pub struct ThrottlePolicy {
    /// Tries before the attempt fails as throttled.
    pub max_tries: u32,
    /// Backoff between tries (full jitter).
    pub backoff: RetryPolicy,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            max_tries: 20,
            backoff: RetryPolicy {
                base_backoff_ms: 250,
                max_backoff_ms: 5_000,
                ..RetryPolicy::default()
            },
        }
    }
}

/// Sends attempts to HTTP workers, round robin.
pub struct HttpAdapter {
    name: &'static str,
    endpoints: Vec<String>,
    health: Mutex<Vec<Health>>,
    max_failures: u32,
    rest: Duration,
    next: AtomicUsize,
    client: reqwest::Client,
    auth: ClientAuth,
    throttle: ThrottlePolicy,
}

impl HttpAdapter {
    /// An adapter over worker base URLs (`http://host:port`). `name` is `http` or `cloudrun`.
    pub fn new(
        name: &'static str,
        endpoints: Vec<String>,
        auth: ClientAuth,
    ) -> Result<Self, WorkerFailure> {
        if endpoints.is_empty() {
            return Err(WorkerFailure::fatal(
                FailureKind::InvalidRequest,
                "no worker URLs given",
            ));
        }
        let client = crate::net::http_client()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| {
                WorkerFailure::fatal(
                    FailureKind::Internal,
                    format!("cannot build HTTP client: {e}"),
                )
            })?;
        let n = endpoints.len();
        Ok(Self {
            name,
            endpoints: endpoints
                .into_iter()
                .map(|e| e.trim_end_matches('/').to_string())
                .collect(),
            health: Mutex::new(vec![Health::default(); n]),
            max_failures: DEFAULT_MAX_WORKER_FAILURES,
            rest: DEFAULT_REST,
            next: AtomicUsize::new(0),
            client,
            auth,
            throttle: ThrottlePolicy::default(),
        })
    }

    /// Replaces the throttling policy (tests use short delays).
    pub fn with_throttle(mut self, throttle: ThrottlePolicy) -> Self {
        self.throttle = throttle;
        self
    }

    /// Sets how many failures blocklist a worker for the rest of the job, and how long a
    /// worker is skipped after each failure.
    pub fn with_health(mut self, max_failures: u32, rest: Duration) -> Self {
        self.max_failures = max_failures.max(1);
        self.rest = rest;
        self
    }

    /// The next healthy worker that is not resting, starting after the last one used.
    fn pick(&self, skip: &[usize]) -> Option<usize> {
        let now = Instant::now();
        let health = self.health.lock().map(|h| h.clone()).unwrap_or_default();
        let n = self.endpoints.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n).map(|k| (start + k) % n).find(|i| {
            let h = health.get(*i).copied().unwrap_or_default();
            !skip.contains(i)
                && h.failures < self.max_failures
                && h.resting_until.is_none_or(|t| t <= now)
        })
    }

    /// Whether every worker has been blocklisted.
    fn none_healthy(&self) -> bool {
        self.health
            .lock()
            .map(|h| h.iter().all(|w| w.failures >= self.max_failures))
            .unwrap_or(false)
    }

    /// Gives worker `i` no more attempts of this job.
    fn blocklist(&self, i: usize) {
        if let Ok(mut h) = self.health.lock() {
            h[i].failures = h[i].failures.max(self.max_failures);
            tracing::warn!(worker = %self.endpoints[i], "worker blocklisted for this job: its fonts differ from the plan's");
        }
    }

    /// Counts a failure against worker `i` and rests it; enough failures blocklist it.
    fn record_failure(&self, i: usize) {
        if let Ok(mut h) = self.health.lock() {
            h[i].failures += 1;
            h[i].resting_until = Some(Instant::now() + self.rest);
            if h[i].failures == self.max_failures {
                tracing::warn!(worker = %self.endpoints[i], failures = h[i].failures, "worker blocklisted for this job");
            }
        }
    }

    async fn bearer(&self) -> Result<Option<String>, WorkerFailure> {
        match &self.auth {
            ClientAuth::None => Ok(None),
            ClientAuth::Bearer(t) => Ok(Some(t.clone())),
            ClientAuth::Source(s) => s.token().await.map(Some),
        }
    }
}

/// What one HTTP exchange came to.
enum Exchange {
    Done(Result<ChunkReport, WorkerFailure>),
    /// The worker could not be reached; nothing started.
    Unreachable(String),
    /// Throttled; retry after the delay the server asked for, if any.
    Throttled(Option<Duration>, String),
}

#[async_trait]
impl WorkerAdapter for HttpAdapter {
    fn name(&self) -> &'static str {
        self.name
    }

    async fn run_chunk(&self, req: &ChunkRequest) -> Result<ChunkReport, WorkerFailure> {
        let mut throttled = 0u32;
        let mut unreachable: Vec<usize> = Vec::new();
        loop {
            let Some(i) = self.pick(&unreachable) else {
                if self.none_healthy() {
                    return Err(WorkerFailure::fatal(
                        FailureKind::LostWorker,
                        format!(
                            "no healthy {} worker left: all {} failed {} times",
                            self.name,
                            self.endpoints.len(),
                            self.max_failures
                        ),
                    ));
                }
                return Err(WorkerFailure::retryable(
                    FailureKind::LostWorker,
                    format!(
                        "no {} worker is reachable ({} tried)",
                        self.name,
                        self.endpoints.len()
                    ),
                ));
            };
            let endpoint = &self.endpoints[i];
            match self.exchange(endpoint, req).await? {
                Exchange::Done(r) => {
                    if matches!(&r, Err(f) if f.kind == FailureKind::LostWorker) {
                        self.record_failure(i);
                    }
                    if matches!(&r, Err(f) if f.kind == FailureKind::FontMismatch) {
                        // Its fonts are not the job's: it gets no more chunks of it.
                        self.blocklist(i);
                    }
                    return r;
                }
                Exchange::Unreachable(why) => {
                    tracing::warn!(worker = %endpoint, chunk = req.chunk, error = %why, "worker unreachable; trying another");
                    self.record_failure(i);
                    unreachable.push(i);
                }
                Exchange::Throttled(after, why) => {
                    throttled += 1;
                    if throttled >= self.throttle.max_tries {
                        return Err(WorkerFailure::retryable(
                            FailureKind::Throttled,
                            format!(
                                "throttled {throttled} times in a row, last by {endpoint}: {why}"
                            ),
                        ));
                    }
                    let delay =
                        after.unwrap_or_else(|| backoff::delay(&self.throttle.backoff, throttled));
                    tracing::warn!(
                        worker = %endpoint, chunk = req.chunk, tries = throttled,
                        backoff_ms = delay.as_millis() as u64, reason = %why,
                        "throttled; backing off"
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

impl HttpAdapter {
    async fn exchange(
        &self,
        endpoint: &str,
        req: &ChunkRequest,
    ) -> Result<Exchange, WorkerFailure> {
        let mut call = self.client.post(format!("{endpoint}/v1/chunks")).json(req);
        if let Some(token) = self.bearer().await? {
            call = call.bearer_auth(token);
        }
        let resp = match call.send().await {
            Ok(r) => r,
            Err(e) if e.is_connect() => return Ok(Exchange::Unreachable(e.to_string())),
            Err(e) => {
                return Ok(Exchange::Done(Err(WorkerFailure::retryable(
                    FailureKind::LostWorker,
                    format!("lost worker {endpoint} during chunk {}: {e}", req.chunk),
                ))))
            }
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s.min(60)));
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return Ok(Exchange::Done(Err(WorkerFailure::retryable(
                    FailureKind::LostWorker,
                    format!(
                        "lost worker {endpoint} while reading its answer for chunk {}: {e}",
                        req.chunk
                    ),
                ))))
            }
        };
        let answer = serde_json::from_slice::<WorkerResponse>(&body).ok();
        let snippet = || {
            String::from_utf8_lossy(&body[..body.len().min(300)])
                .trim()
                .to_string()
        };
        Ok(match (status, answer) {
            (StatusCode::TOO_MANY_REQUESTS, _) => Exchange::Throttled(retry_after, format!("429 {}", snippet())),
            (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN, _) => Exchange::Done(Err(WorkerFailure::fatal(
                FailureKind::InvalidRequest,
                format!("worker {endpoint} refused the credentials ({status}); check --worker-token"),
            ))),
            (_, Some(answer)) => Exchange::Done(answer.into()),
            (s, None) if s.is_server_error() => Exchange::Throttled(retry_after, format!("{s} {}", snippet())),
            (s, None) => Exchange::Done(Err(WorkerFailure::fatal(
                FailureKind::InvalidRequest,
                format!("worker {endpoint} answered {s}: {}", snippet()),
            ))),
        })
    }
}
