//! The cloudrun-job adapter: chunks run as the tasks of Cloud Run Jobs executions, started
//! through the Admin API (`jobs.run`, the official `google-cloud-run-v2` client) and
//! watched by polling.
//!
//! Cloud Run Jobs is a batch engine, so chunk requests that arrive together (the
//! orchestrator starts up to `--concurrency` at once) are gathered for a moment and started
//! as one execution whose task count is the number of chunks: with `--concurrency` at least
//! the chunk count, a job is one execution of one task per chunk. Each task runs
//! `helios-infra worker run`, which takes the job URL from `HELIOS_JOB_URL`, its position from
//! `CLOUD_RUN_TASK_INDEX` and its chunk and attempt from the `HELIOS_TASKS` list. Tasks have
//! no answer channel: a finished task's report (or error) is read from the attempt's keys in
//! storage, so each chunk completes as soon as its task does; a task that ends without
//! either is a retryable failure, and the orchestrator retries the chunk in a later
//! execution.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use google_cloud_gax::error::rpc::Code;
use google_cloud_lro::{Poller, PollingResult};
use google_cloud_run_v2::client::{Executions, Jobs};
use google_cloud_run_v2::model::run_job_request::{overrides::ContainerOverride, Overrides};
use google_cloud_run_v2::model::{EnvVar, Execution};

use super::tasks::{self, fail_all, Gatherer, Waiter};
use super::{ChunkReport, ChunkRequest, FailureKind, WorkerAdapter, WorkerFailure};

/// How to reach the Cloud Run job.
#[derive(Debug, Clone)]
pub struct CloudRunJobOptions {
    /// `projects/PROJECT/locations/REGION/jobs/JOB`.
    pub job: String,
    /// Admin API endpoint (default `https://run.googleapis.com`). A plain `http://` endpoint
    /// (an emulator or fake) is used without credentials.
    pub endpoint: Option<String>,
    /// How long to gather chunk requests into one execution.
    pub gather: Duration,
    /// Interval between status polls.
    pub poll: Duration,
    /// Task timeout set on each execution.
    pub task_timeout: Duration,
}

impl CloudRunJobOptions {
    /// Options with the default gather window (250 ms) and poll interval (2 s).
    pub fn new(job: String, endpoint: Option<String>, task_timeout: Duration) -> Self {
        Self {
            job,
            endpoint,
            gather: Duration::from_millis(250),
            poll: Duration::from_secs(2),
            task_timeout,
        }
    }
}

/// Checks a job's resource name: `projects/P/locations/L/jobs/J`.
pub fn check_job_name(name: &str) -> Result<(), String> {
    let parts: Vec<&str> = name.split('/').collect();
    let ok = parts.len() == 6
        && parts[0] == "projects"
        && parts[2] == "locations"
        && parts[4] == "jobs"
        && [1, 3, 5].iter().all(|&i| !parts[i].is_empty());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a Cloud Run job name (projects/PROJECT/locations/REGION/jobs/JOB)"
        ))
    }
}

struct Inner {
    jobs: Jobs,
    executions: Executions,
    opts: CloudRunJobOptions,
    /// Executions started and still watched: cancelled on shutdown.
    running: tasks::Running,
}

/// Runs chunks as Cloud Run Jobs tasks.
#[derive(Clone)]
pub struct CloudRunJobAdapter {
    inner: Arc<Inner>,
    gatherer: Arc<Gatherer>,
}

/// Why the Admin API clients could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot create the Cloud Run Admin API client: {0}")]
pub struct ClientError(String);

impl CloudRunJobAdapter {
    /// Creates the Admin API clients: application default credentials, or none for a
    /// plain-HTTP endpoint.
    pub async fn new(opts: CloudRunJobOptions) -> Result<Self, ClientError> {
        let err = |e: &dyn std::fmt::Display| ClientError(e.to_string());
        let anonymous = opts
            .endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("http://"));
        macro_rules! client {
            ($t:ty) => {{
                crate::net::use_ring();
                let mut b = <$t>::builder();
                if let Some(ep) = &opts.endpoint {
                    b = b.with_endpoint(ep.trim_end_matches('/'));
                }
                if anonymous {
                    b = b.with_credentials(
                        google_cloud_auth::credentials::anonymous::Builder::new().build(),
                    );
                }
                b.build().await.map_err(|e| err(&e))?
            }};
        }
        let jobs = client!(Jobs);
        let executions = client!(Executions);
        Ok(Self {
            gatherer: Arc::new(Gatherer::new(opts.gather)),
            inner: Arc::new(Inner {
                jobs,
                executions,
                opts,
                running: Default::default(),
            }),
        })
    }
}

#[async_trait]
impl WorkerAdapter for CloudRunJobAdapter {
    fn name(&self) -> &'static str {
        "cloudrun-job"
    }

    async fn run_chunk(&self, req: &ChunkRequest) -> Result<ChunkReport, WorkerFailure> {
        let inner = self.inner.clone();
        self.gatherer
            .submit(req, "Cloud Run Jobs", move |url, waiters| {
                let inner = inner.clone();
                async move { inner.execute(url, waiters).await }
            })
            .await
    }

    /// Cancels every execution still running for this orchestrator (cancel, Ctrl-C, a
    /// failed job), so its tasks stop instead of rendering for nobody.
    async fn shutdown(&self) {
        for name in self.inner.running.take_all() {
            self.inner.cancel(&name).await;
        }
    }
}

fn lost(why: &str) -> WorkerFailure {
    WorkerFailure::retryable(FailureKind::LostWorker, format!("Cloud Run Jobs: {why}"))
}

/// A failed Admin API call: configuration mistakes are fatal, the rest retryable.
fn api_failure(what: &str, e: &google_cloud_gax::error::Error) -> WorkerFailure {
    let fatal = e.status().is_some_and(|s| {
        matches!(
            s.code,
            Code::NotFound
                | Code::PermissionDenied
                | Code::InvalidArgument
                | Code::Unauthenticated
                | Code::FailedPrecondition
        )
    }) || matches!(e.http_status_code(), Some(400 | 401 | 403 | 404));
    let message = format!("Cloud Run Jobs: {what} failed: {e}");
    if fatal {
        WorkerFailure::fatal(FailureKind::InvalidRequest, message)
    } else {
        WorkerFailure::retryable(FailureKind::LostWorker, message)
    }
}

impl Inner {
    /// Starts one execution for `waiters` and answers each as its task finishes.
    async fn execute(&self, job_url: String, mut waiters: Vec<Waiter>) {
        let task_list = tasks::task_list(&waiters);
        let (storage, job) = match tasks::job_storage(&job_url) {
            Ok(v) => v,
            Err(f) => return fail_all(waiters, f),
        };
        let timeout = google_cloud_wkt::Duration::try_from(self.opts.task_timeout)
            .unwrap_or_else(|_| google_cloud_wkt::Duration::clamp(3600, 0));
        let overrides = Overrides::new()
            .set_container_overrides([ContainerOverride::new().set_env([
                EnvVar::new()
                    .set_name("HELIOS_JOB_URL")
                    .set_value(job_url.clone()),
                EnvVar::new().set_name("HELIOS_TASKS").set_value(task_list),
            ])])
            .set_task_count(waiters.len() as i32)
            .set_timeout(timeout);
        let mut poller = self
            .jobs
            .run_job()
            .set_name(&self.opts.job)
            .set_overrides(overrides)
            .poller();
        let execution = match poller.poll().await {
            Some(PollingResult::InProgress(Some(e))) | Some(PollingResult::Completed(Ok(e))) => e,
            Some(PollingResult::InProgress(None)) => {
                return fail_all(
                    waiters,
                    lost("jobs.run answered without the execution it started"),
                )
            }
            Some(PollingResult::Completed(Err(e))) | Some(PollingResult::PollingError(e)) => {
                return fail_all(
                    waiters,
                    api_failure(&format!("running {}", self.opts.job), &e),
                )
            }
            None => return fail_all(waiters, lost("jobs.run returned nothing")),
        };
        let name = execution.name.clone();
        tracing::info!(execution = %name, tasks = waiters.len(), "Cloud Run Jobs execution started");
        let _tracked = self.running.track(&name);

        let mut seen: HashSet<String> = HashSet::new();
        let mut api_errors = 0u32;
        loop {
            tokio::time::sleep(self.opts.poll).await;
            waiters.retain(|w| !w.answer.is_closed());
            if waiters.is_empty() {
                // Every chunk of this execution was abandoned (cancelled or timed out).
                if self.running.claim(&name) {
                    self.cancel(&name).await;
                }
                return;
            }
            // Status first, then storage: a task's output is in storage before its
            // execution counts it as finished.
            let status = self.executions.get_execution().set_name(&name).send().await;
            let finished = match &status {
                Ok(e) => is_finished(e),
                Err(e) => {
                    api_errors += 1;
                    tracing::warn!(execution = %name, error = %e, "cannot poll the execution");
                    if api_errors >= 10 {
                        return fail_all(waiters, api_failure("polling the execution", e));
                    }
                    false
                }
            };
            tasks::collect(&storage, &job, &mut waiters, &mut seen).await;
            if finished {
                let e = status.as_ref().ok();
                let detail = e
                    .map(|e| {
                        format!(
                            "{} succeeded, {} failed, {} cancelled; logs: {}",
                            e.succeeded_count, e.failed_count, e.cancelled_count, e.log_uri
                        )
                    })
                    .unwrap_or_default();
                for w in waiters.drain(..) {
                    let (chunk, attempt) = (w.req.chunk, w.req.attempt);
                    w.send(Err(WorkerFailure::retryable(
                        FailureKind::LostWorker,
                        format!(
                            "the Cloud Run task for chunk {} (attempt {}) ended without a report (execution {name}: {detail})",
                            chunk, attempt
                        ),
                    )));
                }
                return;
            }
            if waiters.is_empty() {
                return;
            }
        }
    }
}

impl Inner {
    /// Cancels an execution (its running tasks stop).
    async fn cancel(&self, name: &str) {
        if let Err(e) = self
            .executions
            .cancel_execution()
            .set_name(name)
            .send()
            .await
        {
            tracing::warn!(execution = %name, error = %e, "cannot cancel the execution");
        }
    }
}

/// Whether an execution has ended (successfully or not).
fn is_finished(e: &Execution) -> bool {
    e.completion_time.is_some()
        || (e.task_count > 0
            && e.running_count == 0
            && e.succeeded_count + e.failed_count + e.cancelled_count >= e.task_count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_are_checked() {
        assert!(check_job_name("projects/p/locations/us-central1/jobs/render").is_ok());
        for bad in [
            "render",
            "projects/p/jobs/render",
            "projects//locations/l/jobs/j",
            "projects/p/locations/l/jobs/j/x",
        ] {
            assert!(check_job_name(bad).is_err(), "{bad}");
        }
    }
}
