//! What the batch-engine adapters (Cloud Run Jobs, Kubernetes Indexed Jobs) share: chunk
//! requests that arrive together are gathered into one batch of tasks, each task finds its
//! chunk and attempt in the `HELIOS_TASKS` list by its task index, and since a task has no
//! answer channel, its report (or error) is read from the attempt's keys in storage.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use super::{ChunkReport, ChunkRequest, FailureKind, WorkerFailure};
use crate::storage::{keys, Storage};

/// A chunk request waiting for its task.
pub(crate) struct Waiter {
    pub req: ChunkRequest,
    pub answer: oneshot::Sender<Result<ChunkReport, WorkerFailure>>,
}

impl Waiter {
    /// Answers the request (a request already given up is ignored).
    pub fn send(self, r: Result<ChunkReport, WorkerFailure>) {
        let _ = self.answer.send(r);
    }
}

/// Answers every waiter with the same failure.
pub(crate) fn fail_all(waiters: Vec<Waiter>, f: WorkerFailure) {
    for w in waiters {
        w.send(Err(f.clone()));
    }
}

/// The `HELIOS_TASKS` list of a batch: `chunk:attempt` by task index, an assembly task
/// marked with a third field (see `worker run`).
pub(crate) fn task_list(waiters: &[Waiter]) -> String {
    waiters
        .iter()
        .map(|w| match (w.req.assemble, w.req.palette, w.req.ping) {
            (true, _, _) => format!("{}:{}:assemble", w.req.chunk, w.req.attempt),
            (_, true, _) => format!("{}:{}:palette", w.req.chunk, w.req.attempt),
            (_, _, true) => format!("{}:{}:ping", w.req.chunk, w.req.attempt),
            _ => format!("{}:{}", w.req.chunk, w.req.attempt),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The storage and job id a job URL points at.
pub(crate) fn job_storage(job_url: &str) -> Result<(Storage, String), WorkerFailure> {
    Storage::open_object_url(job_url)
        .map_err(|e| e.to_string())
        .and_then(|(s, key)| {
            keys::job_of_spec_key(&key)
                .map(|j| (s.clone(), j.to_string()))
                .ok_or_else(|| format!("{job_url} is not a job.json URL"))
        })
        .map_err(|e| WorkerFailure::fatal(FailureKind::InvalidRequest, e))
}

/// Gathers the requests that arrive within a short window into one batch per job URL and
/// hands each batch to `launch`.
pub(crate) struct Gatherer {
    window: Duration,
    /// Requests gathered for the next batch, and whether its launch is scheduled.
    pending: Mutex<(Vec<Waiter>, bool)>,
}

impl Gatherer {
    /// A gatherer that waits `window` after the first request of a batch.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            pending: Mutex::new((Vec::new(), false)),
        }
    }

    /// Queues `req` and waits for its answer; the first request of a batch schedules
    /// `launch(job_url, waiters)` for every job URL gathered.
    pub async fn submit<F, Fut>(
        self: &Arc<Self>,
        req: &ChunkRequest,
        engine: &'static str,
        launch: F,
    ) -> Result<ChunkReport, WorkerFailure>
    where
        F: Fn(String, Vec<Waiter>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let lost = |why: &str| {
            WorkerFailure::retryable(FailureKind::LostWorker, format!("{engine}: {why}"))
        };
        let (tx, rx) = oneshot::channel();
        let schedule = {
            let mut g = self
                .pending
                .lock()
                .map_err(|_| lost("the request queue is poisoned"))?;
            g.0.push(Waiter {
                req: req.clone(),
                answer: tx,
            });
            !std::mem::replace(&mut g.1, true)
        };
        if schedule {
            let me = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(me.window).await;
                let batch = match me.pending.lock() {
                    Ok(mut g) => {
                        g.1 = false;
                        std::mem::take(&mut g.0)
                    }
                    Err(_) => return,
                };
                // Requests for different jobs (one orchestrator, several jobs) go to
                // separate batches: each carries one job URL.
                let mut by_job: Vec<(String, Vec<Waiter>)> = Vec::new();
                for w in batch {
                    match by_job.iter_mut().find(|(u, _)| *u == w.req.job) {
                        Some((_, v)) => v.push(w),
                        None => by_job.push((w.req.job.clone(), vec![w])),
                    }
                }
                for (url, waiters) in by_job {
                    tokio::spawn(launch(url, waiters));
                }
            });
        }
        rx.await
            .unwrap_or_else(|_| Err(lost("the batch monitor stopped")))
    }
}

/// Answers every waiter whose report or error has appeared in storage. `seen` keeps the
/// keys already answered, so each poll costs one listing however many tasks are left.
pub(crate) async fn collect(
    storage: &Storage,
    job: &str,
    waiters: &mut Vec<Waiter>,
    seen: &mut HashSet<String>,
) {
    let Ok(listed) = storage.list(&keys::attempts(job)).await else {
        return;
    };
    let fresh: HashSet<String> = listed.into_iter().filter(|k| !seen.contains(k)).collect();
    let mut i = 0;
    while i < waiters.len() {
        let r = &waiters[i].req;
        let report_key = keys::attempt_report(job, r.chunk, r.attempt);
        let error_key = keys::attempt_error(job, r.chunk, r.attempt);
        let outcome = if fresh.contains(&report_key) {
            storage.get(&report_key).await.ok().map(|b| {
                serde_json::from_slice::<ChunkReport>(&b).map_err(|e| {
                    WorkerFailure::retryable(
                        FailureKind::RenderOutput,
                        format!("unreadable report {report_key}: {e}"),
                    )
                })
            })
        } else if fresh.contains(&error_key) {
            storage.get(&error_key).await.ok().map(|b| {
                Err(
                    serde_json::from_slice::<WorkerFailure>(&b).unwrap_or_else(|e| {
                        WorkerFailure::retryable(
                            FailureKind::Internal,
                            format!("unreadable error record {error_key}: {e}"),
                        )
                    }),
                )
            })
        } else {
            None
        };
        match outcome {
            Some(result) => {
                seen.insert(report_key);
                seen.insert(error_key);
                waiters.swap_remove(i).send(result);
            }
            None => i += 1,
        }
    }
}

/// The batches (executions, Jobs) an adapter has started and still watches, so that
/// `shutdown` can stop them when the orchestrator exits before its monitors do.
#[derive(Default)]
pub(crate) struct Running(Mutex<HashSet<String>>);

/// Removes its batch from [`Running`] when its monitor returns, whichever way.
pub(crate) struct Tracked<'a> {
    running: &'a Running,
    name: String,
}

impl Running {
    /// Tracks `name` until the returned guard is dropped.
    pub fn track(&self, name: &str) -> Tracked<'_> {
        if let Ok(mut s) = self.0.lock() {
            s.insert(name.to_string());
        }
        Tracked {
            running: self,
            name: name.to_string(),
        }
    }

    /// Claims `name` for stopping: true for the first caller only (its monitor or
    /// `shutdown`), so a batch is stopped once.
    pub fn claim(&self, name: &str) -> bool {
        self.0.lock().is_ok_and(|mut s| s.remove(name))
    }

    /// Claims every batch still watched.
    pub fn take_all(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|mut s| s.drain().collect())
            .unwrap_or_default()
    }
}

impl Drop for Tracked<'_> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.running.0.lock() {
            s.remove(&self.name);
        }
    }
}
