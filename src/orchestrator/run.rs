//! Running a job: recover → render pending chunks → verify → stitch.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::spend::{Meter, OverCap, Ticket, Work};
use super::{
    webhook, AttemptOutcome, ChunkState, CommittedSegment, Event, JobLock, JobRecord, JobState,
    JobStore, Orchestrator, OrchestratorError, Outcome, Speculation, StoreError,
};
use crate::adapters::{ChunkReport, ChunkRequest, FailureKind, WorkerAdapter, WorkerFailure};
use crate::backoff;
use crate::media;
use crate::spec::{self, AudioSource, Chunk, JobSpec, SegmentFormat};
use crate::stitch::{bytejoin, check_segments, AudioInput, AudioMix, Segment, SegmentProblem};
use crate::storage::gcs::GcsBucket;
use crate::storage::s3::S3Bucket;
use crate::storage::{keys, Storage};
use crate::worker::hash_file;

/// Render/verify rounds before a job whose segments keep failing verification gives up.
const MAX_STITCH_ROUNDS: u32 = 3;

impl Orchestrator {
    fn emit(&self, e: Event) {
        if let Some(sink) = &self.events {
            let _ = sink.send(e);
        }
    }

    /// Validates a spec, assigns its id, uploads it and records the job (all chunks pending).
    pub async fn submit(
        &self,
        spec: JobSpec,
        storage: &Storage,
        output: &Path,
    ) -> Result<JobRecord, OrchestratorError> {
        self.submit_with(spec, storage, output, true).await
    }

    /// [`Orchestrator::submit`], saying whether the output is copied to `output` or left in
    /// storage (`output` then only names the container).
    pub async fn submit_with(
        &self,
        spec: JobSpec,
        storage: &Storage,
        output: &Path,
        download: bool,
    ) -> Result<JobRecord, OrchestratorError> {
        self.submit_row(spec, storage, output, download, None).await
    }

    /// [`Orchestrator::submit_with`] for a job that is a row of a batch.
    pub async fn submit_row(
        &self,
        mut spec: JobSpec,
        storage: &Storage,
        output: &Path,
        download: bool,
        batch: Option<super::BatchRow>,
    ) -> Result<JobRecord, OrchestratorError> {
        let id = spec
            .id
            .get_or_insert_with(|| ulid::Ulid::new().to_string())
            .clone();
        spec::validate(&spec)?;
        // Refuse before uploading: the stored spec of an existing job must never change.
        match self.store.job(&id) {
            Ok(_) => return Err(StoreError::Exists(id).into()),
            Err(StoreError::NoSuchJob(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let output = std::path::absolute(output).map_err(|e| OrchestratorError::Io {
            context: format!("cannot resolve output path {}", output.display()),
            source: e,
        })?;
        let json = serde_json::to_vec_pretty(&spec).map_err(|e| OrchestratorError::Io {
            context: "cannot serialize the job spec".into(),
            source: e.into(),
        })?;
        storage.put(&keys::job_spec(&id), json.into()).await?;
        let record = JobRecord {
            id,
            spec,
            storage_url: storage.url().to_string(),
            output: output.display().to_string(),
            adapter: self.adapter.name().to_string(),
            adapter_config: self.adapter_config.clone(),
            download,
            state: JobState::Queued,
            error: None,
            cancel_requested: false,
            created_ms: 0,
            updated_ms: 0,
            batch,
        };
        self.store.create_job(&record).await?;
        crate::failpoint::hit("after-submit");
        Ok(record)
    }

    /// Keeps an attempt that ran before job `id` was submitted (the estimate's probe, run as
    /// the job's first chunk with the job's own spec): its time goes in the spend ledger
    /// now, and [`Orchestrator::run`] commits it, verified like any attempt, as its chunk's
    /// attempt (or renders the chunk if it does not verify).
    pub async fn keep_attempt(
        &self,
        id: &str,
        kept_attempt: super::KeptAttempt,
    ) -> Result<(), OrchestratorError> {
        let report = &kept_attempt.report;
        let (started, ended) = kept_attempt.span_ms;
        let billed_ms = (ended - started).max(0) as u64;
        let entry = super::SpendEntry {
            task: format!(
                "chunk {} attempt {} (the estimate's probe)",
                report.chunk, report.attempt
            ),
            billed_ms,
            usd: self.meter.price().attempt(billed_ms as f64 / 1000.0),
            frames: report.frames,
        };
        self.store.record_spend(id, &entry).await?;
        if let Ok(mut kept) = self.kept.lock() {
            kept.entry(id.to_string()).or_default().push(kept_attempt);
        }
        Ok(())
    }

    /// Runs (or resumes) a job to the end: only chunks that are not done are rendered.
    pub async fn run(&self, id: &str) -> Result<Outcome, OrchestratorError> {
        let _lock = JobLock::acquire(&self.state_dir.join("locks"), id)?;
        let job = self.store.job(id)?;
        let storage = Storage::open(&job.storage_url)?;
        if job.state == JobState::Succeeded && (!job.download || Path::new(&job.output).exists()) {
            return Ok(Outcome {
                job: job.id.clone(),
                output: PathBuf::from(&job.output),
                downloaded: job.download,
                url: output_location(&job, &storage).await,
                frames: job.spec.frame_count(),
                chunks_rendered: 0,
            });
        }
        self.store.clear_cancel(id).await?;

        // Watch for `helios-infra cancel` from other processes.
        let stop_poll = CancellationToken::new();
        let poller = {
            let (store, cancel, stop, id) = (
                self.store.clone(),
                self.cancel.clone(),
                stop_poll.clone(),
                id.to_string(),
            );
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                    }
                    if store.cancel_requested(&id).unwrap_or(false) {
                        cancel.cancel();
                        break;
                    }
                }
            })
        };
        let result = self.run_locked(&job, &storage).await;
        stop_poll.cancel();
        let _ = poller.await;

        self.notify(id, &result).await;
        match &result {
            Ok(outcome) => {
                self.store
                    .set_job_state(id, JobState::Succeeded, None)
                    .await?;
                self.emit(Event::JobSucceeded {
                    job: id.to_string(),
                    output: outcome.output.display().to_string(),
                    frames: outcome.frames,
                });
            }
            Err(OrchestratorError::Cancelled { .. }) => {
                self.store
                    .set_job_state(id, JobState::Cancelled, Some("cancelled"))
                    .await?;
                self.emit(Event::JobCancelled {
                    job: id.to_string(),
                });
            }
            Err(OrchestratorError::OverBudget {
                over,
                remaining_usd,
                ..
            }) => {
                let msg = result
                    .as_ref()
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default();
                self.store
                    .set_job_state(id, JobState::Stopped, Some(&msg))
                    .await?;
                self.emit(Event::JobStopped {
                    job: id.to_string(),
                    reason: "budget".into(),
                    cap_usd: over.cap_usd,
                    spent_usd: over.spent_usd,
                    remaining_usd: *remaining_usd,
                    message: msg,
                });
            }
            Err(OrchestratorError::Lock(_)) => {}
            Err(e) => {
                let msg = e.to_string();
                let _ = self
                    .store
                    .set_job_state(id, JobState::Failed, Some(&msg))
                    .await;
                self.emit(Event::JobFailed {
                    job: id.to_string(),
                    error: msg,
                });
            }
        }
        result
    }

    /// Sends the job's webhook, if it has one, for a finished run.
    async fn notify(&self, id: &str, result: &Result<Outcome, OrchestratorError>) {
        let Ok(job) = self.store.job(id) else { return };
        let Some(url) = job.spec.webhook.clone() else {
            return;
        };
        let (event, state, output, error) = match result {
            Ok(o) => (
                "job.succeeded",
                "succeeded",
                Some(o.output.display().to_string()),
                None,
            ),
            Err(OrchestratorError::Cancelled { .. }) => ("job.cancelled", "cancelled", None, None),
            Err(e @ OrchestratorError::OverBudget { .. }) => {
                ("job.stopped", "stopped", None, Some(e.to_string()))
            }
            Err(OrchestratorError::Lock(_)) => return,
            Err(e) => ("job.failed", "failed", None, Some(e.to_string())),
        };
        let note = webhook::Notification {
            event,
            job: id.to_string(),
            state: state.into(),
            output,
            frames: job.spec.frame_count(),
            error,
        };
        webhook::deliver(
            &webhook::Webhook::new(url, self.webhook_secret.clone()),
            &note,
        )
        .await;
    }

    async fn run_locked(
        &self,
        job: &JobRecord,
        storage: &Storage,
    ) -> Result<Outcome, OrchestratorError> {
        self.recover(job, storage).await?;
        self.store
            .set_job_state(&job.id, JobState::Running, None)
            .await?;
        if job.spec.output.kind == spec::OutputKind::Gif {
            self.ensure_palette(job, storage).await?;
        }
        let mut rendered = 0;
        let mut last_problem = String::new();
        for _round in 0..MAX_STITCH_ROUNDS {
            rendered += self.render_chunks(job, storage).await?;
            self.store
                .set_job_state(&job.id, JobState::Stitching, None)
                .await?;
            crate::failpoint::hit("before-stitch");
            match self.stitch(job, storage).await? {
                Ok(output) => {
                    // An HLS output: the playlists over the joined MP4 are what was asked.
                    let (output, url) = if job.spec.output.hls {
                        let playlist = super::hls::write(job, storage).await?;
                        let shown = match job.download {
                            true => PathBuf::from(&playlist),
                            false => output,
                        };
                        (shown, playlist)
                    } else {
                        (output, output_location(job, storage).await)
                    };
                    return Ok(Outcome {
                        job: job.id.clone(),
                        output,
                        downloaded: job.download,
                        url,
                        frames: job.spec.frame_count(),
                        chunks_rendered: rendered,
                    });
                }
                Err(problems) => {
                    last_problem = problems
                        .iter()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                        .join("; ");
                    self.store
                        .set_job_state(&job.id, JobState::Running, None)
                        .await?;
                }
            }
        }
        Err(OrchestratorError::Unstitchable {
            job: job.id.clone(),
            rounds: MAX_STITCH_ROUNDS,
            reason: last_problem,
        })
    }

    /// The error of a job stopped by its cost cap, with what is left and a cap that
    /// covers it.
    pub(super) fn over_budget(&self, job: &JobRecord, over: OverCap) -> OrchestratorError {
        // One pace for every chunk left (it is looked up in the store).
        let pace = self.meter.pace(&*self.store, job);
        let remaining_usd: f64 = self
            .store
            .chunks(&job.id)
            .unwrap_or_default()
            .iter()
            .filter(|c| c.state != ChunkState::Done)
            .map(|c| self.meter.cost_at(pace, Work::Frames(c.chunk.len())))
            .sum();
        let spent = self.meter.spent(&*self.store, &over.scope);
        OrchestratorError::OverBudget {
            job: job.id.clone(),
            scope: over.scope.clone(),
            suggested: crate::cost::round_up_cap((spent + remaining_usd) * 1.25)
                .max(crate::cost::round_up_cap(over.cap_usd * 1.01)),
            remaining_usd,
            over: Box::new(over),
        }
    }

    /// Crash recovery: a chunk left `running` (or `failed` by an earlier run) either has a
    /// finished attempt in storage, which is verified and committed, or goes back to pending.
    async fn recover(&self, job: &JobRecord, storage: &Storage) -> Result<(), OrchestratorError> {
        for c in self.store.chunks(&job.id)? {
            if !matches!(c.state, ChunkState::Running | ChunkState::Failed) {
                continue;
            }
            let mut adopted = false;
            if c.state == ChunkState::Running {
                for attempt in (1..=c.attempts).rev() {
                    let Ok(bytes) = storage
                        .get(&keys::attempt_report(&job.id, c.chunk.index, attempt))
                        .await
                    else {
                        continue;
                    };
                    let Ok(report) = serde_json::from_slice::<ChunkReport>(&bytes) else {
                        continue;
                    };
                    if let Ok(seg) =
                        verify_report(&report, &job.spec, c.chunk, attempt, storage).await
                    {
                        tracing::info!(job = %job.id, chunk = c.chunk.index, attempt, "adopting an attempt that finished while the orchestrator was down");
                        self.store
                            .end_attempt(
                                &job.id,
                                c.chunk.index,
                                attempt,
                                AttemptOutcome::Succeeded,
                                None,
                            )
                            .await?;
                        self.store
                            .commit_chunk(&job.id, c.chunk.index, &seg)
                            .await?;
                        adopted = true;
                        break;
                    }
                }
            }
            if !adopted {
                self.store
                    .release_chunk(&job.id, c.chunk.index, None)
                    .await?;
            }
        }
        // Whatever was still in flight when the last run stopped did not finish under it,
        // but its worker may have run to the end: it is billed up to the timeout.
        let limit_ms = (job.spec.retry.timeout_s * 1000.0) as i64;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        for a in self.store.attempts(&job.id)? {
            if a.outcome != AttemptOutcome::Running {
                continue;
            }
            let ms = (now - a.started_ms).clamp(0, limit_ms.max(0)) as u64;
            let entry = super::SpendEntry {
                task: format!("chunk {} attempt {}", a.index, a.attempt),
                billed_ms: ms,
                usd: self.meter.price().attempt(ms as f64 / 1000.0),
                frames: 0,
            };
            self.store.record_spend(&job.id, &entry).await?;
        }
        self.store
            .end_running_attempts(&job.id, None, AttemptOutcome::Interrupted)
            .await?;
        Ok(())
    }

    /// Renders every chunk of a submitted job that is not done, without stitching; returns
    /// how many were rendered. [`Orchestrator::run`] calls this; it is public for tools and
    /// benchmarks that measure scheduling alone.
    pub async fn render_chunks(
        &self,
        job: &JobRecord,
        storage: &Storage,
    ) -> Result<u32, OrchestratorError> {
        let records = self.store.chunks(&job.id)?;
        let pending: Vec<Chunk> = records
            .iter()
            .filter(|c| c.state != ChunkState::Done)
            .map(|c| c.chunk)
            .collect();
        let frames_done: u64 = records
            .iter()
            .filter(|c| c.state == ChunkState::Done)
            .map(|c| c.chunk.len())
            .sum();
        self.emit(Event::JobStarted {
            job: job.id.clone(),
            chunks: records.len() as u32,
            frames: job.spec.frame_count(),
            frames_done,
            pending: pending.len() as u32,
        });
        // The estimate made before the job started, with its cap and what is spent.
        let scope = super::spend::scope_of(job);
        if let Ok(plan) = self.store.cost_plan(&job.id) {
            let estimate = plan
                .estimate
                .and_then(|e| serde_json::from_str::<crate::cost::Estimate>(&e).ok());
            if let Some(e) = estimate {
                let cap = self.store.cost_plan(scope).ok().and_then(|p| p.cap_usd);
                self.emit(Event::Estimate {
                    job: job.id.clone(),
                    wall_s: e.wall_s,
                    usd: e.usd,
                    cap_usd: cap,
                    spent_usd: self.meter.spent(&*self.store, scope),
                    text: e.describe(),
                });
            }
        }
        let ctx = Arc::new(ChunkCtx {
            store: self.store.clone(),
            adapter: self.adapter.clone(),
            storage: storage.clone(),
            spec: job.spec.clone(),
            job: job.id.clone(),
            job_url: storage.url_for(&keys::job_spec(&job.id)),
            cancel: self.cancel.clone(),
            events: self.events.clone(),
            failed: AtomicBool::new(false),
            speculation: self.speculation.clone(),
            done: AtomicU32::new(0),
            durations: std::sync::Mutex::new(Vec::new()),
            meter: self.meter.clone(),
            record: job.clone(),
            over: std::sync::Mutex::new(None),
            kept: std::sync::Mutex::new(
                self.kept
                    .lock()
                    .ok()
                    .and_then(|mut k| k.remove(&job.id))
                    .unwrap_or_default(),
            ),
        });
        let sem = self
            .slots
            .clone()
            .unwrap_or_else(|| Arc::new(Semaphore::new(job.spec.concurrency.max(1) as usize)));
        let mut tasks = JoinSet::new();
        let mut outcome = Tally::default();
        for chunk in pending.iter().copied() {
            let permit = tokio::select! {
                p = sem.clone().acquire_owned() => p.expect("semaphore is never closed"),
                _ = self.cancel.cancelled() => break,
            };
            // Free the tasks that have finished: a finished task keeps its memory until it
            // is joined, which for 10,000 chunks is tens of megabytes.
            while let Some(joined) = tasks.try_join_next() {
                outcome.add(joined);
            }
            // After a chunk failed for good, or the cost cap refused a task, start nothing
            // new; running chunks finish.
            if ctx.failed.load(Ordering::SeqCst) || ctx.is_over() {
                break;
            }
            let ctx = ctx.clone();
            tasks.spawn(async move {
                let r = ctx.render_chunk(chunk).await;
                drop(permit);
                r
            });
        }
        while let Some(joined) = tasks.join_next().await {
            outcome.add(joined);
        }
        if let Err(e) = self.meter.flush(&*self.store).await {
            tracing::warn!(job = %job.id, error = %e, "could not write the spend ledger");
        }
        let Tally {
            rendered,
            first_error,
        } = outcome;
        if let Some(e) = first_error {
            return Err(e);
        }
        if self.cancel.is_cancelled() {
            return Err(OrchestratorError::Cancelled {
                job: job.id.clone(),
            });
        }
        let over = ctx.over.lock().ok().and_then(|mut o| o.take());
        if let Some(over) = over {
            return Err(self.over_budget(job, over));
        }
        Ok(rendered)
    }

    /// Verifies the committed segments and concatenates them. Segments that fail
    /// verification are released for re-rendering and returned as problems.
    async fn stitch(
        &self,
        job: &JobRecord,
        storage: &Storage,
    ) -> Result<Result<PathBuf, Vec<SegmentProblem>>, OrchestratorError> {
        let chunks = self.store.chunks(&job.id)?;
        self.emit(Event::Stitching {
            segments: chunks.len() as u32,
        });
        if job.spec.output.kind.is_image() {
            let placed = super::place::place_images(job, storage, &chunks).await?;
            if let Err(problems) = &placed {
                self.reject(job, problems).await?;
            }
            return Ok(placed);
        }
        let tmp_root = self.state_dir.join("tmp");
        std::fs::create_dir_all(&tmp_root).map_err(|e| OrchestratorError::Io {
            context: format!("cannot create {}", tmp_root.display()),
            source: e,
        })?;
        if job.spec.video.segments == SegmentFormat::Fragmented
            && job.spec.audio.is_empty()
            && job.download
            && storage.local_path(&job.output_key()).is_some()
        {
            // A byte join on local disk with no audio writes nothing but the output: no
            // scratch directory, whose removal right after a large write waits on the file
            // system's journal (up to tens of milliseconds on ext4).
            return self.join_fragments(job, storage, &chunks, None).await;
        }
        let tmp = tempfile::tempdir_in(&tmp_root).map_err(|e| OrchestratorError::Io {
            context: format!("cannot create a directory in {}", tmp_root.display()),
            source: e,
        })?;

        if job.spec.video.segments == SegmentFormat::Fragmented {
            return self
                .join_fragments(job, storage, &chunks, Some(tmp.path()))
                .await;
        }
        if job.spec.output.kind == spec::OutputKind::Gif {
            let joined = self.join_gif(job, storage, &chunks, tmp.path()).await?;
            if let Err(problems) = &joined {
                self.reject(job, problems).await?;
            }
            return Ok(joined);
        }

        // Fetch and hash every segment, a few at a time; probe only those whose worker did
        // not report what it holds.
        let checks = futures::stream::iter(chunks.iter().map(|c| {
            let dir = tmp.path().to_path_buf();
            async move {
                let seg = c
                    .segment
                    .as_ref()
                    .ok_or_else(|| format!("chunk {} has no committed segment", c.chunk.index))?;
                let path = storage
                    .fetch_to_dir(&seg.key, &dir)
                    .await
                    .map_err(|e| e.to_string())?;
                let (sha, _) = hash_file(&path)
                    .await
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                if sha != seg.sha256 {
                    return Err(format!(
                        "content hash {sha} does not match the committed {}",
                        seg.sha256
                    ));
                }
                let info = match &seg.media {
                    Some(m) => Reported::from(m),
                    None => {
                        let i = media::probe(&path).await.map_err(|e| e.to_string())?;
                        Reported {
                            params: i.codec_parameters(),
                            frames: i.frames,
                            keyframe_first: i.starts_with_keyframe,
                        }
                    }
                };
                Ok((path, info))
            }
        }))
        .buffered(4)
        .collect::<Vec<_>>()
        .await;

        let mut problems = Vec::new();
        let mut probed = Vec::new();
        let mut paths = Vec::new();
        for (c, check) in chunks.iter().zip(checks) {
            match check {
                Ok((path, info)) => {
                    probed.push((c.chunk.index as usize, info, c.chunk.len()));
                    paths.push(Segment {
                        path,
                        frames: c.chunk.len(),
                    });
                }
                Err(reason) => problems.push(SegmentProblem {
                    index: c.chunk.index as usize,
                    reason,
                }),
            }
        }
        let infos: Vec<_> = probed
            .iter()
            .map(|(_, i, n)| (i.params.as_str(), i.frames, i.keyframe_first, *n))
            .collect();
        for p in check_segments(&infos) {
            problems.push(SegmentProblem {
                index: probed[p.index].0,
                reason: p.reason,
            });
        }
        if !problems.is_empty() {
            self.reject(job, &problems).await?;
            return Ok(Err(problems));
        }

        let audio = prepare_audio(job, storage, tmp.path()).await?;
        let output = output_path(job, tmp.path());
        self.stitcher
            .stitch(&paths, job.spec.video.fps, audio.as_ref(), &output)
            .await
            .map_err(|e| OrchestratorError::Stitch {
                job: job.id.clone(),
                source: e,
            })?;
        crate::failpoint::hit("after-concat");
        storage.put_file(&job.output_key(), &output).await?;
        crate::failpoint::hit("after-upload");
        Ok(Ok(PathBuf::from(&job.output)))
    }

    /// Releases rejected segments for re-rendering and says why.
    async fn reject(
        &self,
        job: &JobRecord,
        problems: &[SegmentProblem],
    ) -> Result<(), OrchestratorError> {
        for p in problems {
            tracing::warn!(job = %job.id, chunk = p.index, reason = %p.reason, "segment rejected; rendering it again");
            self.store
                .release_chunk(
                    &job.id,
                    p.index as u32,
                    Some(&format!("segment rejected: {}", p.reason)),
                )
                .await?;
            self.emit(Event::SegmentRejected {
                chunk: p.index as u32,
                reason: p.reason.clone(),
            });
        }
        Ok(())
    }

    /// The byte join of fragmented segments: checks the workers' reports against each
    /// other, then joins the media behind one init, checking every segment's bytes as they
    /// are copied.
    async fn join_fragments(
        &self,
        job: &JobRecord,
        storage: &Storage,
        chunks: &[super::ChunkRecord],
        tmp: Option<&Path>,
    ) -> Result<Result<PathBuf, Vec<SegmentProblem>>, OrchestratorError> {
        let scratch = || {
            tmp.ok_or_else(|| OrchestratorError::Io {
                context: "stitching".into(),
                source: std::io::Error::other("no scratch directory was made for it"),
            })
        };
        let range_start = job.spec.video.frames.start;
        let mut pieces = Vec::with_capacity(chunks.len());
        let mut problems = Vec::new();
        for c in chunks {
            match &c.segment {
                Some(seg) => pieces.push(bytejoin::Piece {
                    index: c.chunk.index as usize,
                    key: &seg.key,
                    sha256: &seg.sha256,
                    bytes: seg.bytes,
                    frames: c.chunk.len(),
                    first_frame: c.chunk.start - range_start,
                    media: seg.media.as_ref(),
                }),
                None => problems.push(SegmentProblem {
                    index: c.chunk.index as usize,
                    reason: format!("chunk {} has no committed segment", c.chunk.index),
                }),
            }
        }
        if problems.is_empty() {
            if let Err(p) = bytejoin::plan(&pieces, job.spec.video.fps) {
                problems = p;
            }
        }
        if !problems.is_empty() {
            self.reject(job, &problems).await?;
            return Ok(Err(problems));
        }
        let plan = bytejoin::plan(&pieces, job.spec.video.fps).map_err(|p| {
            OrchestratorError::Unstitchable {
                job: job.id.clone(),
                rounds: 0,
                reason: p
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
            }
        })?;
        let audio = match job.spec.audio.is_empty() {
            true => None,
            false => prepare_audio(job, storage, scratch()?).await?,
        };
        let join = super::assemble::Join {
            job,
            storage,
            pieces: &pieces,
            plan: &plan,
            audio: audio.as_ref(),
            tmp,
        };
        if let Some(gcs) = GcsBucket::open(storage.url())? {
            let r = self.compose_in_bucket(&join, &gcs).await?;
            return match r {
                Ok(output) => Ok(Ok(output)),
                Err(problems) => {
                    self.reject(job, &problems).await?;
                    Ok(Err(problems))
                }
            };
        }
        if let Some(bucket) = S3Bucket::open(storage.url()).await? {
            let r = self.assemble_in_bucket(&join, &bucket).await?;
            return match r {
                Ok(output) => Ok(Ok(output)),
                Err(problems) => {
                    self.reject(job, &problems).await?;
                    Ok(Err(problems))
                }
            };
        }
        let output = match job.download {
            true => PathBuf::from(&job.output),
            false => output_path(job, scratch()?),
        };
        let joined = bytejoin::join_local(storage, &pieces, &plan, audio.as_ref(), tmp, &output)
            .await
            .map_err(|e| OrchestratorError::Stitch {
                job: job.id.clone(),
                source: e,
            })?;
        if let Err(problems) = joined {
            self.reject(job, &problems).await?;
            return Ok(Err(problems));
        }
        crate::failpoint::hit("after-concat");
        storage.put_file_linked(&job.output_key(), &output).await?;
        crate::failpoint::hit("after-upload");
        Ok(Ok(PathBuf::from(&job.output)))
    }
}

/// What a chunk task needs, shared by all of a job's chunk tasks.
struct ChunkCtx {
    store: Arc<dyn JobStore>,
    adapter: Arc<dyn WorkerAdapter>,
    storage: Storage,
    spec: JobSpec,
    job: String,
    job_url: String,
    cancel: CancellationToken,
    events: Option<super::EventSink>,
    failed: AtomicBool,
    speculation: Option<Speculation>,
    /// Chunks committed in this run, and how long their successful attempts took.
    done: AtomicU32,
    durations: std::sync::Mutex<Vec<Duration>>,
    meter: Arc<Meter>,
    record: JobRecord,
    /// The task the cost cap refused, once one was.
    over: std::sync::Mutex<Option<OverCap>>,
    /// Attempts that ran before the job was submitted, to commit (see
    /// [`Orchestrator::keep_attempt`]).
    kept: std::sync::Mutex<Vec<super::KeptAttempt>>,
}

impl ChunkCtx {
    fn emit(&self, e: Event) {
        if let Some(sink) = &self.events {
            let _ = sink.send(e);
        }
    }

    fn is_over(&self) -> bool {
        self.over.lock().map(|o| o.is_some()).unwrap_or(true)
    }

    /// Admits the next task of a chunk against the cost cap; a refusal stops the job from
    /// starting anything else.
    async fn admit(&self, chunk: Chunk, what: &str) -> Option<Ticket> {
        if self.is_over() {
            return None;
        }
        let admitted = self
            .meter
            .admit_when_room(
                &*self.store,
                &self.record,
                format!("chunk {} {what}", chunk.index),
                Work::Frames(chunk.len()),
                &self.cancel,
            )
            .await;
        match admitted {
            Ok(t) => Some(t),
            Err(_) if self.cancel.is_cancelled() => None,
            Err(over) => {
                tracing::warn!(job = %self.job, chunk = chunk.index, %over, "cost cap reached");
                if let Ok(mut o) = self.over.lock() {
                    o.get_or_insert(over);
                }
                None
            }
        }
    }

    async fn cancelled(&self, index: u32) -> OrchestratorError {
        let _ = self
            .store
            .end_running_attempts(&self.job, Some(index), AttemptOutcome::Cancelled)
            .await;
        let _ = self.store.release_chunk(&self.job, index, None).await;
        OrchestratorError::Cancelled {
            job: self.job.clone(),
        }
    }

    /// One attempt, bounded by the timeout, with its report verified; how it ended is
    /// recorded in the store.
    async fn attempt_once(
        &self,
        chunk: Chunk,
        attempt: u32,
        timeout: Duration,
    ) -> Result<CommittedSegment, WorkerFailure> {
        let r = self.run_attempt(chunk, attempt, timeout).await;
        let (outcome, failure) = match &r {
            Ok(_) => (AttemptOutcome::Succeeded, None),
            Err(f) => (
                if f.kind == FailureKind::Timeout {
                    AttemptOutcome::TimedOut
                } else if f.retryable {
                    AttemptOutcome::Failed
                } else {
                    AttemptOutcome::Fatal
                },
                Some(f),
            ),
        };
        // The kind under its protocol name (`renderer_failed`), as reports spell it.
        let kind = failure
            .and_then(|f| serde_json::to_value(f.kind).ok())
            .and_then(|k| k.as_str().map(str::to_string))
            .unwrap_or_default();
        let recorded = self
            .store
            .end_attempt(
                &self.job,
                chunk.index,
                attempt,
                outcome,
                failure.map(|f| (kind.as_str(), f.message.as_str())),
            )
            .await;
        if let Err(e) = recorded {
            tracing::warn!(job = %self.job, chunk = chunk.index, attempt, error = %e, "could not record how the attempt ended");
        }
        r
    }

    /// One attempt, bounded by the timeout, with its report verified.
    async fn run_attempt(
        &self,
        chunk: Chunk,
        attempt: u32,
        timeout: Duration,
    ) -> Result<CommittedSegment, WorkerFailure> {
        let req = ChunkRequest::render(self.job_url.clone(), chunk.index, attempt);
        match tokio::time::timeout(timeout, self.adapter.run_chunk(&req)).await {
            Ok(Ok(report)) => verify_report(&report, &self.spec, chunk, attempt, &self.storage)
                .await
                .map_err(|reason| WorkerFailure::retryable(FailureKind::RenderOutput, reason)),
            Ok(Err(failure)) => Err(failure),
            Err(_) => Err(WorkerFailure::retryable(
                FailureKind::Timeout,
                format!(
                    "attempt {attempt} timed out after {}s and was killed",
                    timeout.as_secs_f64()
                ),
            )),
        }
    }

    /// Whether an attempt running for `elapsed` is a straggler worth duplicating.
    fn is_straggler(&self, elapsed: Duration, s: &Speculation) -> bool {
        let total = self.spec.chunks.len().max(1) as f64;
        if (self.done.load(Ordering::SeqCst) as f64) < s.min_done * total {
            return false;
        }
        let Ok(d) = self.durations.lock() else {
            return false;
        };
        if d.len() < 3 {
            return false;
        }
        let mut sorted = d.clone();
        sorted.sort();
        let median = sorted[sorted.len() / 2];
        elapsed > median.mul_f64(s.factor).max(s.min_elapsed)
    }

    /// Runs an attempt; if it straggles, starts a duplicate and takes the first verified
    /// result (outputs are identical by determinism). Returns the winning attempt number.
    async fn attempt_with_speculation(
        &self,
        chunk: Chunk,
        attempt: u32,
        timeout: Duration,
    ) -> (u32, Result<CommittedSegment, WorkerFailure>) {
        let first = self.attempt_once(chunk, attempt, timeout);
        tokio::pin!(first);
        let Some(spec) = self.speculation.clone() else {
            return (attempt, first.await);
        };
        let started = Instant::now();
        loop {
            tokio::select! {
                r = &mut first => return (attempt, r),
                _ = tokio::time::sleep(Duration::from_millis(50)) => {
                    if self.is_straggler(started.elapsed(), &spec) {
                        break;
                    }
                }
            }
        }
        // A duplicate is a task like any other: the cost cap may refuse it.
        let Some(mut dup_ticket) = self
            .meter
            .admit(
                &*self.store,
                &self.record,
                format!("chunk {} duplicate", chunk.index),
                Work::Frames(chunk.len()),
            )
            .ok()
        else {
            return (attempt, first.await);
        };
        let Ok(duplicate) = self.store.begin_attempt(&self.job, chunk.index).await else {
            return (attempt, first.await);
        };
        dup_ticket.name(format!("chunk {} attempt {duplicate}", chunk.index));
        tracing::info!(job = %self.job, chunk = chunk.index, attempt, duplicate, "straggler: starting a duplicate attempt");
        self.emit(Event::ChunkSpeculated {
            chunk: chunk.index,
            attempt: duplicate,
        });
        let second = self.attempt_once(chunk, duplicate, timeout);
        tokio::pin!(second);
        let (mut first_failed, mut second_failed) = (None, None);
        loop {
            let won = tokio::select! {
                r = &mut first, if first_failed.is_none() => match r {
                    Ok(seg) => Some((attempt, seg)),
                    Err(f) => { first_failed = Some(f); None }
                },
                r = &mut second, if second_failed.is_none() => match r {
                    Ok(seg) => Some((duplicate, seg)),
                    Err(f) => { second_failed = Some(f); None }
                },
            };
            if let Some((winner, seg)) = won {
                if winner == duplicate {
                    dup_ticket.rendered(seg.frames);
                }
                // The other attempt is dropped (its worker stopped) as it stands.
                let _ = self
                    .store
                    .end_running_attempts(&self.job, Some(chunk.index), AttemptOutcome::Superseded)
                    .await;
                return (winner, Ok(seg));
            }
            if let (Some(_), Some(f)) = (&first_failed, &second_failed) {
                return (duplicate, Err(f.clone()));
            }
        }
    }

    /// Commits the attempt kept for `chunk`, if there is one and it verifies as the chunk's
    /// first attempt. Returns whether the chunk is committed.
    async fn commit_kept(&self, chunk: Chunk) -> Result<bool, OrchestratorError> {
        let super::KeptAttempt { report, span_ms } = match self.kept.lock() {
            Ok(mut kept) => match kept.iter().position(|k| k.report.chunk == chunk.index) {
                Some(i) => kept.swap_remove(i),
                None => return Ok(false),
            },
            Err(_) => return Ok(false),
        };
        let seg = match verify_report(&report, &self.spec, chunk, report.attempt, &self.storage)
            .await
        {
            Ok(seg) => seg,
            Err(reason) => {
                tracing::warn!(job = %self.job, chunk = chunk.index, %reason, "the probe's attempt is not kept: rendering the chunk");
                return Ok(false);
            }
        };
        let attempt = self.store.begin_attempt(&self.job, chunk.index).await?;
        if attempt != report.attempt {
            // Not the chunk's first attempt after all: it is rendered like any other.
            self.store
                .end_attempt(
                    &self.job,
                    chunk.index,
                    attempt,
                    AttemptOutcome::Superseded,
                    None,
                )
                .await?;
            self.store
                .release_chunk(&self.job, chunk.index, None)
                .await?;
            return Ok(false);
        }
        self.emit(Event::ChunkStarted {
            chunk: chunk.index,
            attempt,
        });
        self.store
            .end_attempt(
                &self.job,
                chunk.index,
                attempt,
                AttemptOutcome::Succeeded,
                None,
            )
            .await?;
        self.store
            .set_attempt_span(&self.job, chunk.index, attempt, span_ms.0, span_ms.1)
            .await?;
        self.store
            .commit_chunk(&self.job, chunk.index, &seg)
            .await?;
        // Its duration is not a straggler's yardstick: the probe's chunk is shorter.
        self.done.fetch_add(1, Ordering::SeqCst);
        self.emit(Event::ChunkDone {
            chunk: chunk.index,
            attempt,
            frames: seg.frames,
            worker_ms: seg.worker_ms,
        });
        Ok(true)
    }

    /// Attempts a chunk until it is committed, fails fatally or runs out of attempts.
    /// Returns whether the chunk was committed (false: the cost cap stopped it first).
    async fn render_chunk(&self, chunk: Chunk) -> Result<bool, OrchestratorError> {
        if self.commit_kept(chunk).await? {
            return Ok(true);
        }
        let policy = &self.spec.retry;
        let timeout = Duration::from_secs_f64(policy.timeout_s);
        for n in 1..=policy.max_attempts {
            if self.cancel.is_cancelled() {
                return Err(self.cancelled(chunk.index).await);
            }
            let Some(mut ticket) = self.admit(chunk, "next attempt").await else {
                // Stopped by the cost cap: the chunk stays pending for `resume`.
                return Ok(false);
            };
            let attempt = self.store.begin_attempt(&self.job, chunk.index).await?;
            ticket.name(format!("chunk {} attempt {attempt}", chunk.index));
            self.emit(Event::ChunkStarted {
                chunk: chunk.index,
                attempt,
            });
            let started = Instant::now();
            let (winner, outcome) = tokio::select! {
                _ = self.cancel.cancelled() => {
                    drop(ticket);
                    return Err(self.cancelled(chunk.index).await);
                }
                r = self.attempt_with_speculation(chunk, attempt, timeout) => r,
            };
            if let (Ok(seg), true) = (&outcome, winner == attempt) {
                ticket.rendered(seg.frames);
            }
            drop(ticket);
            if let Err(e) = self.meter.flush(&*self.store).await {
                tracing::warn!(job = %self.job, error = %e, "could not write the spend ledger");
            }
            let failure = match outcome {
                Ok(seg) => {
                    self.store
                        .commit_chunk(&self.job, chunk.index, &seg)
                        .await?;
                    if let Ok(mut d) = self.durations.lock() {
                        d.push(started.elapsed());
                    }
                    self.done.fetch_add(1, Ordering::SeqCst);
                    self.emit(Event::ChunkDone {
                        chunk: chunk.index,
                        attempt: winner,
                        frames: seg.frames,
                        worker_ms: seg.worker_ms,
                    });
                    return Ok(true);
                }
                Err(failure) => failure,
            };
            if !failure.retryable || n == policy.max_attempts {
                let attempts_note = if failure.retryable {
                    ""
                } else {
                    " (not retryable)"
                };
                self.store
                    .fail_chunk(&self.job, chunk.index, &failure.message)
                    .await?;
                self.emit(Event::ChunkFailed {
                    chunk: chunk.index,
                    attempts: n,
                    error: failure.message.clone(),
                });
                self.failed.store(true, Ordering::SeqCst);
                return Err(OrchestratorError::ChunkFailed {
                    job: self.job.clone(),
                    chunk: chunk.index,
                    start: chunk.start,
                    end: chunk.end,
                    attempts: n,
                    message: format!("{}{attempts_note}", failure.message),
                });
            }
            let delay = backoff::delay(policy, n);
            tracing::warn!(
                job = %self.job, chunk = chunk.index, attempt, kind = ?failure.kind,
                backoff_ms = delay.as_millis() as u64, error = %failure.message,
                "attempt failed; retrying after backoff"
            );
            self.store
                .release_chunk(&self.job, chunk.index, Some(&failure.message))
                .await?;
            self.emit(Event::ChunkRetry {
                chunk: chunk.index,
                attempt,
                backoff_ms: delay.as_millis() as u64,
                error: failure.message,
            });
            tokio::select! {
                _ = self.cancel.cancelled() => return Err(self.cancelled(chunk.index).await),
                _ = tokio::time::sleep(delay) => {}
            }
        }
        unreachable!("the last attempt returns")
    }
}

/// Results of chunk tasks as they are joined.
#[derive(Default)]
struct Tally {
    rendered: u32,
    first_error: Option<OrchestratorError>,
}

impl Tally {
    fn add(&mut self, joined: Result<Result<bool, OrchestratorError>, tokio::task::JoinError>) {
        match joined {
            Ok(Ok(true)) => self.rendered += 1,
            Ok(Ok(false)) => {}
            Ok(Err(e)) => {
                // A real failure outranks the cancellations it caused.
                let replace = matches!(
                    (&self.first_error, &e),
                    (None, _)
                        | (
                            Some(OrchestratorError::Cancelled { .. }),
                            OrchestratorError::ChunkFailed { .. }
                        )
                );
                if replace {
                    self.first_error = Some(e);
                }
            }
            Err(join) => {
                self.first_error.get_or_insert(OrchestratorError::Io {
                    context: "a chunk task panicked".into(),
                    source: std::io::Error::other(join.to_string()),
                });
            }
        }
    }
}

/// Where the stitch writes the output: the user's path, or a file in `tmp` that only goes
/// to storage when the output is not downloaded.
fn output_path(job: &JobRecord, tmp: &Path) -> PathBuf {
    if job.download {
        PathBuf::from(&job.output)
    } else {
        tmp.join(format!("output.{}", job.output_ext()))
    }
}

/// Where a job's output is kept in storage, for people: the file of local storage, a
/// presigned URL (7 days) for S3 when the output was not downloaded, else the object's URL.
async fn output_location(job: &JobRecord, storage: &Storage) -> String {
    if job.spec.output.kind == spec::OutputKind::Images {
        let folder = keys::frames(&job.id);
        return match storage.local_path(&folder) {
            Some(p) => p.display().to_string(),
            None => storage.url_for(&folder),
        };
    }
    let key = job.output_key();
    if let Some(p) = storage.local_path(&key) {
        return p.display().to_string();
    }
    if !job.download {
        if let Ok(Some(bucket)) = S3Bucket::open(storage.url()).await {
            match bucket
                .presign_get(&key, Duration::from_secs(7 * 24 * 3600))
                .await
            {
                Ok(url) => return url,
                Err(e) => tracing::warn!(error = %e, "cannot presign the output's URL"),
            }
        }
    }
    storage.url_for(&key)
}

/// What is known of a segment's content: from its worker's report, or probed.
struct Reported {
    params: String,
    frames: u64,
    keyframe_first: bool,
}

impl From<&crate::worker::SegmentMedia> for Reported {
    fn from(m: &crate::worker::SegmentMedia) -> Self {
        Self {
            params: m.params.clone(),
            frames: m.frames,
            keyframe_first: m.keyframe_first,
        }
    }
}

/// Checks that a report is the one asked for and that its segment exists with the
/// reported size; returns what to commit.
async fn verify_report(
    report: &ChunkReport,
    spec: &JobSpec,
    chunk: Chunk,
    attempt: u32,
    storage: &Storage,
) -> Result<CommittedSegment, String> {
    let job = spec.id.as_deref().unwrap_or_default();
    let ext = crate::render::encoder::stored_extension(spec);
    let expected_key = keys::attempt_segment(job, chunk.index, attempt, ext);
    if report.job != job || report.chunk != chunk.index || report.attempt != attempt {
        return Err(format!(
            "worker answered for job {} chunk {} attempt {}, not job {job} chunk {} attempt {attempt}",
            report.job, report.chunk, report.attempt, chunk.index
        ));
    }
    if report.frames != chunk.len() || report.start != chunk.start || report.end != chunk.end {
        return Err(format!(
            "worker reported {} frames ({}..{}) for chunk {} ({}..{})",
            report.frames, report.start, report.end, chunk.index, chunk.start, chunk.end
        ));
    }
    if spec.output.kind.is_image() {
        return verify_images(report, spec, chunk, attempt, storage).await;
    }
    if report.segment != expected_key {
        return Err(format!(
            "worker wrote {} instead of {expected_key}",
            report.segment
        ));
    }
    match storage.size(&report.segment).await {
        Ok(Some(size)) if size == report.bytes => {}
        Ok(Some(size)) => {
            return Err(format!(
                "segment {} has {size} bytes, report says {}",
                report.segment, report.bytes
            ))
        }
        Ok(None) => {
            return Err(format!(
                "segment {} is missing from storage",
                report.segment
            ))
        }
        Err(e) => return Err(e.to_string()),
    }
    Ok(CommittedSegment::from_report(report, attempt))
}

/// Checks an image attempt's report: one file per frame of the chunk, in order, under the
/// attempt's folder with the names the pattern gives, each in storage with its reported size.
async fn verify_images(
    report: &ChunkReport,
    spec: &JobSpec,
    chunk: Chunk,
    attempt: u32,
    storage: &Storage,
) -> Result<CommittedSegment, String> {
    let job = spec.id.as_deref().unwrap_or_default();
    let folder = keys::attempt_files(job, chunk.index, attempt);
    if report.segment != folder {
        return Err(format!(
            "worker wrote its images under {} instead of {folder}",
            report.segment
        ));
    }
    let files = report
        .media
        .as_ref()
        .and_then(|m| m.files.as_ref())
        .ok_or("worker reported no image files")?;
    if files.len() as u64 != chunk.len() {
        return Err(format!(
            "worker reported {} images for the {} frames of chunk {}",
            files.len(),
            chunk.len(),
            chunk.index
        ));
    }
    for (f, file) in (chunk.start..chunk.end).zip(files) {
        let name = spec.output.file_name(f);
        if file.frame != f || file.name != name {
            return Err(format!(
                "worker reported image {} for frame {}, expected {name} for frame {f}",
                file.name, file.frame
            ));
        }
    }
    if crate::worker::ImageFile::digest_of(files) != report.sha256 {
        return Err("the report's digest does not match its list of images".into());
    }
    let expected: Vec<(String, u64, Storage)> = files
        .iter()
        .map(|f| (format!("{folder}/{}", f.name), f.bytes, storage.clone()))
        .collect();
    let sizes = futures::stream::iter(expected.into_iter().map(
        |(key, bytes, storage)| async move {
            match storage.size(&key).await {
                Ok(Some(n)) if n == bytes => Ok(()),
                Ok(Some(n)) => Err(format!("image {key} has {n} bytes, report says {bytes}")),
                Ok(None) => Err(format!("image {key} is missing from storage")),
                Err(e) => Err(e.to_string()),
            }
        },
    ))
    .buffered(16)
    .collect::<Vec<_>>()
    .await;
    sizes.into_iter().collect::<Result<Vec<()>, String>>()?;
    Ok(CommittedSegment::from_report(report, attempt))
}

/// Locates and probes every audio track: a file in the bundle is unpacked next to the
/// segments, paths and URLs are read where they are.
async fn prepare_audio(
    job: &JobRecord,
    storage: &Storage,
    tmp: &Path,
) -> Result<Option<AudioMix>, OrchestratorError> {
    if job.spec.audio.is_empty() {
        return Ok(None);
    }
    let mut bundle_dir: Option<PathBuf> = None;
    let mut inputs = Vec::new();
    for (i, track) in job.spec.audio.iter().enumerate() {
        let location = match (job.spec.vendored_audio(track), track.source()) {
            // The copy vendored at plan time, not the origin.
            (Some(asset), _) => storage
                .fetch_to_dir(&asset.key, tmp)
                .await?
                .display()
                .to_string(),
            (None, AudioSource::Url(u)) => u,
            (None, AudioSource::Path(p)) => p.display().to_string(),
            (None, AudioSource::Bundle(rel)) => {
                if bundle_dir.is_none() {
                    let key = job.spec.composition.bundle().unwrap_or_default();
                    let bytes = storage.get(key).await?;
                    let dir = tmp.join("bundle");
                    let d = dir.clone();
                    tokio::task::spawn_blocking(move || crate::storage::unpack(&bytes, &d))
                        .await
                        .map_err(|e| OrchestratorError::Io {
                            context: "unpacking the bundle".into(),
                            source: std::io::Error::other(e),
                        })?
                        .map_err(|e| OrchestratorError::Io {
                            context: "unpacking the bundle".into(),
                            source: std::io::Error::other(e),
                        })?;
                    bundle_dir = Some(dir);
                }
                bundle_dir
                    .as_ref()
                    .map(|d| d.join(&rel).display().to_string())
                    .unwrap_or(rel)
            }
        };
        let input = AudioInput::probe(location, track.clone())
            .await
            .map_err(|e| OrchestratorError::Audio {
                job: job.id.clone(),
                track: i,
                location: track.source.clone(),
                message: e.to_string(),
            })?;
        inputs.push(input);
    }
    Ok(Some(AudioMix {
        inputs,
        fps: job.spec.video.fps,
        frames: job.spec.video.frames,
    }))
}
