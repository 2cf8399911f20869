//! The spend ledger's guard. Every task a worker runs for a job (a chunk's attempt,
//! speculative duplicates included, a GIF palette, an in-bucket assembly) is admitted here
//! before it is dispatched and priced when it ends. A job (or a batch) with a cost cap gets
//! no task whose expected cost would take its spend, plus what is already running, over the
//! cap; tasks already running finish, so the cap can only be passed by what they cost beyond
//! their estimate.
//!
//! The time billed is the orchestrator's: from dispatch to the answer, never less than what
//! the engine bills. Totals are kept in memory (one orchestrator holds a job's lock) and
//! written to the job store's ledger as tasks end.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::{JobRecord, JobStore, SpendEntry, StoreError};
use crate::cost::{format_usd, Estimate, Pace, Price};

/// The pace assumed for a job with no estimate and no finished attempt of its own.
pub const ASSUMED_PACE: Pace = Pace {
    startup_ms: 2000.0,
    frame_ms: 100.0,
    cores: 1.0,
};

/// Prices tasks, records them, and holds jobs to their caps.
pub struct Meter {
    price: Price,
    state: Mutex<State>,
    /// Told whenever a task ends (its reservation becomes its real cost).
    ended: tokio::sync::Notify,
}

#[derive(Default)]
struct State {
    /// Spent and reserved by scope (a job id, or a batch id).
    scopes: HashMap<String, Totals>,
    /// Observed pace by job: milliseconds and frames of successful chunk attempts.
    paces: HashMap<String, (u64, u64)>,
    /// Ended tasks not yet written to the store.
    unwritten: Vec<(String, SpendEntry)>,
}

#[derive(Default, Clone, Copy)]
struct Totals {
    spent: f64,
    reserved: f64,
}

/// A task that would take its job over the cap.
#[derive(Debug, Clone, PartialEq)]
pub struct OverCap {
    /// The job or batch the cap covers.
    pub scope: String,
    /// The cap, USD.
    pub cap_usd: f64,
    /// Spent so far, USD.
    pub spent_usd: f64,
    /// Expected cost of the tasks running now, USD.
    pub running_usd: f64,
    /// Expected cost of the refused task, USD.
    pub next_usd: f64,
    /// The refused task.
    pub task: String,
}

impl std::fmt::Display for OverCap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (about {}) would take the spend over the cap of {}: {} spent, {} expected of the tasks still running",
            self.task,
            format_usd(self.next_usd),
            format_usd(self.cap_usd),
            format_usd(self.spent_usd),
            format_usd(self.running_usd)
        )
    }
}

/// The work a task does, for its expected cost.
#[derive(Debug, Clone, Copy)]
pub enum Work {
    /// Renders this many frames.
    Frames(u64),
    /// A task that renders nothing (it is charged one start-up).
    Fixed,
}

/// An admitted task. When it is dropped, its time is priced and put in the ledger (written
/// at the next [`Meter::flush`]); a task dropped while in flight (a superseded duplicate, a
/// cancelled attempt) is billed for the time it ran.
pub struct Ticket {
    meter: Arc<Meter>,
    job: String,
    scope: String,
    task: String,
    reserved: f64,
    started: Instant,
    frames: u64,
}

impl Ticket {
    /// Names the task in the ledger (once its attempt number is known).
    pub fn name(&mut self, task: String) {
        self.task = task;
    }

    /// Marks the task as a successful render of `frames` frames (the job's observed pace).
    pub fn rendered(&mut self, frames: u64) {
        self.frames = frames;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let ms = self.started.elapsed().as_millis() as u64;
        let usd = self.meter.price.attempt(ms as f64 / 1000.0);
        let Ok(mut s) = self.meter.state.lock() else {
            return;
        };
        let t = s.scopes.entry(self.scope.clone()).or_default();
        t.reserved = (t.reserved - self.reserved).max(0.0);
        t.spent += usd;
        if self.frames > 0 {
            let p = s.paces.entry(self.job.clone()).or_default();
            p.0 += ms;
            p.1 += self.frames;
        }
        s.unwritten.push((
            self.job.clone(),
            SpendEntry {
                task: std::mem::take(&mut self.task),
                billed_ms: ms,
                usd,
                frames: self.frames,
            },
        ));
        drop(s);
        self.meter.ended.notify_waiters();
    }
}

/// The scope a job's cap and spend are kept under: its batch, or the job itself.
pub fn scope_of(job: &JobRecord) -> &str {
    job.batch
        .as_ref()
        .map(|b| b.batch.as_str())
        .unwrap_or(&job.id)
}

impl Meter {
    /// A meter at `price`.
    pub fn new(price: Price) -> Arc<Self> {
        Arc::new(Self {
            price,
            state: Mutex::new(State::default()),
            ended: tokio::sync::Notify::new(),
        })
    }

    /// The price of a worker's time.
    pub fn price(&self) -> &Price {
        &self.price
    }

    /// The pace of `job`: what its successful attempts took per frame once there are some
    /// (their start-ups spread over their frames), else its estimate's, else
    /// [`ASSUMED_PACE`].
    pub fn pace(&self, store: &dyn JobStore, job: &JobRecord) -> Pace {
        let observed = {
            let Ok(mut s) = self.state.lock() else {
                return ASSUMED_PACE;
            };
            *s.paces.entry(job.id.clone()).or_insert_with(|| {
                store
                    .spent(&job.id)
                    .map(|sp| (sp.rendered_ms, sp.rendered_frames))
                    .unwrap_or_default()
            })
        };
        if observed.1 > 0 {
            return Pace {
                startup_ms: 0.0,
                frame_ms: observed.0 as f64 / observed.1 as f64,
                cores: 1.0,
            };
        }
        [job.id.as_str(), scope_of(job)]
            .iter()
            .find_map(|scope| {
                let e = store.cost_plan(scope).ok()?.estimate?;
                Some(serde_json::from_str::<Estimate>(&e).ok()?.pace)
            })
            .unwrap_or(ASSUMED_PACE)
    }

    /// Expected cost of a task of `job`.
    pub fn expected(&self, store: &dyn JobStore, job: &JobRecord, work: Work) -> f64 {
        self.cost_at(self.pace(store, job), work)
    }

    /// Expected cost of a task doing `work` at `pace`.
    pub fn cost_at(&self, pace: Pace, work: Work) -> f64 {
        let seconds = match work {
            Work::Frames(n) => pace.seconds(n),
            Work::Fixed => pace.startup_ms.max(ASSUMED_PACE.startup_ms) / 1000.0,
        };
        self.price.attempt(seconds)
    }

    /// Admits `task` of `job` (e.g. `chunk 3 attempt 2`) before it is dispatched, or says
    /// why not: its expected cost, with the spend so far and the tasks running, would pass
    /// the cap of the job (or its batch).
    pub fn admit(
        self: &Arc<Self>,
        store: &dyn JobStore,
        job: &JobRecord,
        task: String,
        work: Work,
    ) -> Result<Ticket, OverCap> {
        let scope = scope_of(job).to_string();
        let cap = store.cost_plan(&scope).ok().and_then(|p| p.cap_usd);
        let expected = match cap {
            Some(_) => self.expected(store, job, work),
            None => 0.0,
        };
        let mut s = self.state.lock().map_err(|_| OverCap {
            scope: scope.clone(),
            cap_usd: cap.unwrap_or(0.0),
            spent_usd: 0.0,
            running_usd: 0.0,
            next_usd: expected,
            task: task.clone(),
        })?;
        // The ledger holds what earlier runs spent; from here on, tickets keep the total.
        let t = *s.scopes.entry(scope.clone()).or_insert_with(|| Totals {
            spent: store.spent(&scope).map(|sp| sp.usd).unwrap_or(0.0),
            reserved: 0.0,
        });
        if let Some(cap) = cap {
            // A hair of tolerance so a cap equal to the estimate admits it.
            if t.spent + t.reserved + expected > cap * (1.0 + 1e-9) {
                return Err(OverCap {
                    scope,
                    cap_usd: cap,
                    spent_usd: t.spent,
                    running_usd: t.reserved,
                    next_usd: expected,
                    task,
                });
            }
        }
        s.scopes.entry(scope.clone()).or_default().reserved += expected;
        drop(s);
        Ok(Ticket {
            meter: self.clone(),
            job: job.id.clone(),
            scope,
            task,
            reserved: expected,
            started: Instant::now(),
            frames: 0,
        })
    }

    /// Admits `task` like [`Meter::admit`], but while the cap refuses it only because of
    /// tasks still running (whose real cost may come in under their estimate), waits for
    /// them to end and asks again. Refuses for good when nothing else runs, or on `cancel`.
    pub async fn admit_when_room(
        self: &Arc<Self>,
        store: &dyn JobStore,
        job: &JobRecord,
        task: String,
        work: Work,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> Result<Ticket, OverCap> {
        loop {
            let ended = self.ended.notified();
            tokio::pin!(ended);
            // Registered before asking, so an end between the two is not missed.
            ended.as_mut().enable();
            match self.admit(store, job, task.clone(), work) {
                Ok(t) => return Ok(t),
                Err(over) if over.running_usd > 0.0 && !cancel.is_cancelled() => {
                    tokio::select! {
                        _ = ended => {}
                        _ = cancel.cancelled() => return Err(over),
                    }
                }
                Err(over) => return Err(over),
            }
        }
    }

    /// Writes ended tasks to the job store's ledger.
    pub async fn flush(&self, store: &dyn JobStore) -> Result<(), StoreError> {
        let entries = match self.state.lock() {
            Ok(mut s) => std::mem::take(&mut s.unwritten),
            Err(_) => return Ok(()),
        };
        for (i, (job, entry)) in entries.iter().enumerate() {
            if let Err(e) = store.record_spend(job, entry).await {
                // Keep what was not written for the next flush.
                if let Ok(mut s) = self.state.lock() {
                    s.unwritten.extend(entries[i..].iter().cloned());
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// What `scope` has spent, with what has not been written yet.
    pub fn spent(&self, store: &dyn JobStore, scope: &str) -> f64 {
        if let Ok(s) = self.state.lock() {
            if let Some(t) = s.scopes.get(scope) {
                return t.spent;
            }
        }
        store.spent(scope).map(|s| s.usd).unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::store::tests::job;
    use crate::orchestrator::SqliteStore;

    #[tokio::test]
    async fn tasks_past_the_cap_are_refused_and_every_task_is_billed() {
        let store = SqliteStore::in_memory().unwrap();
        let j = job("J");
        store.create_job(&j).await.unwrap();
        let est = Estimate {
            wall_s: 0.0,
            worker_s: 0.0,
            attempts: 0.0,
            usd: 0.0,
            pace: Pace {
                startup_ms: 1000.0,
                frame_ms: 100.0,
                cores: 1.0,
            },
            pace_from: "test".into(),
            units: String::new(),
            basis: String::new(),
        };
        store
            .set_estimate("J", &serde_json::to_string(&est).unwrap())
            .await
            .unwrap();
        // 36 USD an hour: a cent a second; a 10-frame chunk is expected to take 2 s.
        let meter = Meter::new(Price::worker_hour(Some(36.0)));
        let w = Work::Frames(10);
        assert!((meter.expected(&store, &j, w) - 0.02).abs() < 1e-12);
        // Without a cap everything is admitted.
        let t = meter
            .admit(&store, &j, "chunk 0 attempt 1".into(), w)
            .unwrap();
        drop(t);
        store.set_cap("J", Some(0.05)).await.unwrap();
        let a = meter
            .admit(&store, &j, "chunk 0 attempt 2".into(), w)
            .unwrap();
        // Spent ~0 + reserved 0.02 + 0.02 fits under 0.05; a third would not.
        let b = meter
            .admit(&store, &j, "chunk 1 attempt 1".into(), w)
            .unwrap();
        let over = meter
            .admit(&store, &j, "chunk 1 attempt 2".into(), w)
            .err()
            .unwrap();
        assert!((over.running_usd - 0.04).abs() < 1e-9);
        assert!(over.to_string().contains("chunk 1 attempt 2"));
        drop((a, b));
        meter.flush(&store).await.unwrap();
        let spent = store.spent("J").unwrap();
        assert_eq!(spent.tasks, 3);
        // Once they ended (in microseconds), there is room again.
        assert!(meter
            .admit(&store, &j, "chunk 1 attempt 3".into(), w)
            .is_ok());
        // A successful attempt sets the pace.
        let mut t = meter
            .admit(&store, &j, "chunk 1 attempt 4".into(), w)
            .unwrap();
        t.rendered(10);
        drop(t);
        assert!(meter.pace(&store, &j).frame_ms < 100.0);
    }
}
