//! `helios-infra batch`: one composition rendered once per row of props. Each row is a
//! job in the store, grouped under a batch id; all of them share one bundle upload, one
//! adapter and one concurrency limit, so short variants keep every worker busy.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use futures::StreamExt;
use serde_json::json;

use super::args::{BatchArgs, Cli};
use super::plan::{self, Resolved, Source};
use super::rows::{self, Pattern, Row};
use super::{stop_signal, State};
use crate::orchestrator::{
    BatchRow, JobRecord, JobState, JobStore, Orchestrator, OrchestratorError,
};
use crate::render::browser::{HeliosMetadata, Inspector};
use crate::spec::{BrowserComposition, JobSpec, Props};
use crate::view as status;

/// How the error of a row refused at plan time starts: such a job never runs (its props
/// cannot render), on `resume` either.
pub const REFUSED: &str = "refused at plan time: ";

/// A row ready to submit: its spec and output, or why it cannot render.
struct Planned {
    row: u32,
    spec: JobSpec,
    output: PathBuf,
    refused: Option<String>,
}

/// Plans every row and records the batch's jobs; returns the batch id and its jobs.
pub async fn submit(
    cli: &Cli,
    ctx: &State,
    orch: &Orchestrator,
    a: &BatchArgs,
) -> anyhow::Result<(String, Vec<JobRecord>)> {
    let still = (a.frame.is_some() || a.time.is_some())
        .then(|| super::args::StillFrame::new(a.frame, a.time));
    // Stills of a page that declares no duration may pick any frame.
    let stills_plan;
    let p = match still {
        Some(_) => {
            stills_plan = crate::cli::args::PlanSettings {
                still: true,
                ..a.plan.clone()
            };
            &stills_plan
        }
        None => &a.plan,
    };
    let source = Source::new(p)?;
    let Some((dir, entry)) = source.page.clone() else {
        bail!("batch renders an HTML composition (a folder with index.html, or an .html file) once per row of props; a renderer command takes no props");
    };
    let pattern = Pattern::parse(&a.output)?;
    let rows = rows::read(&a.props_file)?;

    // The composition is opened once: its metadata, its schema (to type CSV values) and
    // its verdict on every row, each row merged over the common props.
    let composition = BrowserComposition {
        entry: entry.clone(),
        bundle: String::new(),
        seed: None,
        capture_canvas: None,
        browsers: None,
        props: source.props.clone(),
        assets: Default::default(),
        allow_network: false,
        fonts: Vec::new(),
    };
    let video = plan::probe_video(p);
    let loading = || {
        format!(
            "loading {} to read its settings and check the rows",
            dir.join(&entry).display()
        )
    };
    let mut inspector = Inspector::open(&dir, &composition, &video)
        .await
        .with_context(loading)?;
    let checked = async {
        let inspection = inspector.inspect(!p.no_media_audio).await?;
        let mut verdicts = Vec::with_capacity(rows.len());
        for row in &rows {
            let verdict = match row.props(inspection.schema.as_ref()) {
                Err(why) => Err(why),
                Ok(props) => match inspector.try_row(&props).await? {
                    Some(v) => v,
                    // A plain page takes any props, merged over the common ones.
                    None => {
                        let mut merged = source.props.clone().unwrap_or_default();
                        merged.extend(props);
                        Ok((merged, None))
                    }
                },
            };
            verdicts.push(verdict);
        }
        // What the page loads, and the fonts its text uses, for the frames of the job:
        // seen once for the whole batch (every row's remote resources vendored once).
        let seen = plan::look_around(&mut inspector, p, inspection.helios.as_ref(), still).await;
        Ok::<_, crate::render::RenderError>((inspection, verdicts, seen))
    }
    .await;
    inspector.close().await;
    let (inspection, verdicts, (remote, fonts)) = checked.with_context(loading)?;
    plan::check_fonts(&fonts, p.inputs.strict_fonts)?;

    let base = Resolved::new(p, inspection.helios.as_ref())?;
    eprintln!("{}", base.describe());
    if let Some(f) = still {
        base.range_for(Some(f))?;
    }
    let bundle = source.upload(p, &ctx.storage).await?;
    let local = matches!(a.adapter.adapter, None | Some(super::AdapterKind::Local));
    let mut planned = Vec::with_capacity(rows.len());
    for (i, verdict) in verdicts.into_iter().enumerate() {
        let row = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let plan_row = |props: Props, meta: Option<&HeliosMetadata>| -> Result<_, String> {
            let settings = match meta {
                Some(m) => Resolved::new(p, Some(m)).map_err(|e| format!("{e:#}"))?,
                None => {
                    Resolved::new(p, inspection.helios.as_ref()).map_err(|e| format!("{e:#}"))?
                }
            };
            let output = pattern.expand(row, &props)?;
            let target = plan::Target {
                output: Some(Path::new(&output)),
                still,
            };
            let spec = plan::assemble(
                p,
                &source,
                bundle.clone(),
                &settings,
                Some(props),
                &inspection.media,
                local,
                &target,
            )
            .map_err(|e| format!("{e:#}"))?;
            Ok((spec, PathBuf::from(output)))
        };
        let result = match verdict {
            Ok((props, meta)) => plan_row(props, meta.as_ref()),
            Err(why) => Err(why),
        };
        let result = result.map(|(mut spec, output)| {
            batch_defaults(&mut spec, p, local);
            (spec, output)
        });
        planned.push(match result {
            Ok((spec, output)) => Planned {
                row,
                spec,
                output,
                refused: None,
            },
            Err(why) => {
                // Recorded as a failed job so that `status` shows the row and why.
                let fallback = rows
                    .get(i)
                    .and_then(|r| match r {
                        Row::Json(p) => Some(p.clone()),
                        _ => None,
                    })
                    .unwrap_or_default();
                let output = PathBuf::from(pattern.fallback(row));
                let target = plan::Target {
                    output: Some(&output),
                    still,
                };
                let spec = plan::assemble(
                    p,
                    &source,
                    bundle.clone(),
                    &base,
                    Some(fallback),
                    &inspection.media,
                    local,
                    &target,
                )?;
                Planned {
                    row,
                    spec,
                    output,
                    refused: Some(why),
                }
            }
        });
    }

    // Two rows writing one file would lose one of them: refuse before anything renders.
    let mut seen: HashMap<PathBuf, u32> = HashMap::new();
    let mut clashes = Vec::new();
    for r in planned.iter().filter(|r| r.refused.is_none()) {
        let abs = std::path::absolute(&r.output).unwrap_or_else(|_| r.output.clone());
        if let Some(first) = seen.insert(abs, r.row) {
            clashes.push(format!(
                "rows {first} and {} would both write {}",
                r.row,
                r.output.display()
            ));
        }
    }
    if !clashes.is_empty() {
        bail!(
            "-o {}: {}; put {{row}} or a prop that differs in the pattern",
            a.output,
            clashes.join("; ")
        );
    }
    if let Some(first) = planned.iter().find(|r| r.refused.is_none()) {
        plan::check_output(&first.output, &first.spec)?;
        plan::check_audio(&first.spec, source.bundle_dir(p), Some(&ctx.storage)).await?;
    }
    if !a.no_download {
        for r in planned.iter().filter(|r| r.refused.is_none()) {
            plan::check_writable(&r.output)?;
        }
    }

    let mut jobs = Vec::with_capacity(planned.len());
    // One fetch per URL for the whole batch: vendored into the first row's spec, copied
    // into the others'.
    if let Some(first) = planned.first_mut() {
        plan::set_network(&mut first.spec, p, &remote, &ctx.storage).await?;
    }
    if let Some(assets) = planned.first().and_then(|r| match &r.spec.composition {
        crate::spec::Composition::Browser(b) => Some((b.assets.clone(), b.allow_network)),
        _ => None,
    }) {
        for r in planned.iter_mut().skip(1) {
            if let crate::spec::Composition::Browser(b) = &mut r.spec.composition {
                (b.assets, b.allow_network) = assets.clone();
            }
        }
    }
    for r in planned.iter_mut() {
        if let crate::spec::Composition::Browser(b) = &mut r.spec.composition {
            b.fonts = fonts.clone();
        }
    }
    // The estimate of every row together, which the batch's cap covers.
    let budgeted = match planned.iter().find(|r| r.refused.is_none()) {
        Some(first) => {
            let chunks: Vec<crate::spec::Chunk> = planned
                .iter()
                .filter(|r| r.refused.is_none())
                .flat_map(|r| r.spec.chunks.iter().copied())
                .collect();
            let config = a.adapter.config(None)?;
            Some(
                super::estimate::Budgeted::new(
                    cli.json,
                    &ctx.storage,
                    &a.budget,
                    &config,
                    &first.spec,
                    &chunks,
                    false,
                )
                .await?,
            )
        }
        None => None,
    };
    let batch = ulid::Ulid::new().to_string();
    for mut r in planned {
        r.spec.video.segments = a.stitch.segments(&r.output, &r.spec.video);
        r.output = super::plan::hls_media(&r.output, &mut r.spec);
        let job = orch
            .submit_row(
                r.spec,
                &ctx.storage,
                &r.output,
                !a.no_download,
                Some(BatchRow {
                    batch: batch.clone(),
                    row: r.row,
                }),
            )
            .await?;
        if let Some(why) = r.refused {
            let msg = format!("{REFUSED}{why}");
            ctx.store
                .set_job_state(&job.id, JobState::Failed, Some(&msg))
                .await?;
        }
        jobs.push(ctx.store.job(&job.id)?);
    }
    let refused = jobs.iter().filter(|j| j.state == JobState::Failed).count();
    if cli.json {
        println!(
            "{}",
            json!({"event": "batch", "batch": batch, "rows": jobs.len(), "refused": refused})
        );
    } else {
        eprintln!(
            "batch {batch}: {} rows ({refused} refused); `helios-infra status {batch}` shows it, `helios-infra resume {batch}` continues it",
            jobs.len()
        );
    }
    if let Some(b) = &budgeted {
        b.record(&*ctx.store, &batch, true).await?;
    }
    Ok((batch, jobs))
}

/// The plan of one variant among many, where the flags leave it open: on the local
/// adapter, one worker slot per core with one browser each. A batch keeps its slots busy
/// with whole variants, so a variant needs neither several workers nor several browsers,
/// whose start-ups would outweigh the few frames each would get (docs/BENCHMARKS.md).
fn batch_defaults(spec: &mut JobSpec, p: &crate::cli::args::PlanSettings, local: bool) {
    if !local {
        return;
    }
    if p.concurrency.is_none() {
        spec.concurrency = plan::default_concurrency();
    }
    if let (crate::spec::Composition::Browser(b), None) = (&mut spec.composition, p.browsers) {
        b.browsers = Some(1);
    }
}

/// Runs a batch's unfinished jobs side by side through one adapter and one limit of
/// worker slots; reports each row as it ends. Exit code 0 when every row succeeded.
pub async fn run(
    cli: &Cli,
    mut orch: Orchestrator,
    batch: &str,
    jobs: Vec<JobRecord>,
) -> anyhow::Result<i32> {
    let slots = jobs.first().map(|j| j.spec.concurrency.max(1)).unwrap_or(1);
    orch.slots = Some(Arc::new(tokio::sync::Semaphore::new(slots as usize)));
    // Progress is per row here, not per chunk.
    orch.events = None;
    let orch = Arc::new(orch);
    let cancel = orch.cancel.clone();
    let signals = tokio::spawn(async move {
        stop_signal().await;
        cancel.cancel();
    });
    let mut failed = 0usize;
    let mut succeeded = 0usize;
    let mut todo = Vec::new();
    for job in jobs {
        match job.state {
            JobState::Succeeded => succeeded += 1,
            // Refused at plan time: reported now, never run (its props cannot render).
            JobState::Failed if is_refused(&job) => {
                failed += 1;
                report(cli, batch, &job, "failed", None, job.error.clone());
            }
            _ => todo.push(job),
        }
    }
    // Enough jobs in flight that every slot has a chunk while others start or stitch.
    let parallel = (slots as usize * 2).max(2);
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let mut runs = futures::stream::iter(todo.into_iter().map(|job| {
        let orch = orch.clone();
        async move {
            // `cancel BATCH` while this batch runs: rows not started yet stay cancelled.
            let cancelled_meanwhile = orch
                .store
                .job(&job.id)
                .is_ok_and(|j| j.state == JobState::Cancelled && j.updated_ms >= since);
            let r = if cancelled_meanwhile {
                Err(OrchestratorError::Cancelled {
                    job: job.id.clone(),
                })
            } else {
                orch.run(&job.id).await
            };
            (job, r)
        }
    }))
    .buffer_unordered(parallel);
    let mut cancelled = false;
    let (mut stopped, mut stop_message) = (0usize, None::<String>);
    while let Some((job, r)) = runs.next().await {
        match r {
            Ok(o) => {
                succeeded += 1;
                let place = if o.downloaded {
                    o.output.display().to_string()
                } else {
                    o.url.clone()
                };
                report(cli, batch, &job, "succeeded", Some(place), None);
            }
            Err(OrchestratorError::Cancelled { .. }) => {
                cancelled = true;
                report(cli, batch, &job, "cancelled", None, None);
            }
            Err(e @ OrchestratorError::OverBudget { .. }) => {
                stopped += 1;
                if stop_message.is_none() {
                    stop_message = Some(e.to_string());
                }
                report(cli, batch, &job, "stopped", None, Some(format!("{e}")));
            }
            Err(e) => {
                failed += 1;
                report(cli, batch, &job, "failed", None, Some(format!("{e}")));
            }
        }
    }
    signals.abort();
    orch.adapter.shutdown().await;
    if cli.json {
        println!(
            "{}",
            json!({"event": "batch_done", "batch": batch, "succeeded": succeeded, "failed": failed, "cancelled": cancelled, "stopped": stopped})
        );
    } else {
        eprintln!(
            "batch {batch}: {succeeded} succeeded, {failed} failed{}",
            if cancelled {
                ", cancelled (resume continues it)"
            } else {
                ""
            }
        );
    }
    if let Some(m) = &stop_message {
        eprintln!("batch {batch}: {stopped} row(s) stopped by the cost cap: {m}");
    }
    Ok(if cancelled {
        super::EXIT_CANCELLED
    } else if failed > 0 {
        1
    } else if stopped > 0 {
        super::EXIT_STOPPED
    } else {
        0
    })
}

/// `cancel BATCH`: every unfinished row is cancelled (running ones stop their workers;
/// finished chunks and rows are kept); `resume BATCH` continues.
pub async fn cancel(ctx: &State, batch: &str, jobs: &[JobRecord]) -> anyhow::Result<i32> {
    let locks = ctx.home.join("locks");
    let mut stopping = 0;
    let mut cancelled = 0;
    for job in jobs {
        if !ctx.store.request_cancel(&job.id).await? {
            continue;
        }
        if crate::orchestrator::JobLock::is_held(&locks, &job.id) {
            stopping += 1;
        } else {
            ctx.store
                .set_job_state(&job.id, JobState::Cancelled, Some("cancelled"))
                .await?;
            cancelled += 1;
        }
    }
    if stopping + cancelled == 0 {
        bail!("batch {batch} has already ended: every row succeeded or failed");
    }
    eprintln!(
        "batch {batch}: {stopping} running row(s) stopping, {cancelled} waiting row(s) cancelled; finished rows are kept; `helios-infra resume {batch}` continues it"
    );
    Ok(0)
}

/// Whether a job is a batch row refused at plan time.
pub fn is_refused(job: &JobRecord) -> bool {
    job.state == JobState::Failed
        && job.batch.is_some()
        && job.error.as_deref().is_some_and(|e| e.starts_with(REFUSED))
}

fn report(
    cli: &Cli,
    batch: &str,
    job: &JobRecord,
    state: &str,
    output: Option<String>,
    error: Option<String>,
) {
    let row = job.batch.as_ref().map(|b| b.row).unwrap_or(0);
    if cli.json {
        println!(
            "{}",
            json!({"event": "row", "batch": batch, "row": row, "job": job.id, "state": state, "output": output, "error": error})
        );
    } else {
        match (&output, &error) {
            (Some(o), _) => eprintln!("row {row}: {state}: {o}"),
            (None, Some(e)) => eprintln!("row {row}: {state}: {e}"),
            _ => eprintln!("row {row}: {state}"),
        }
    }
}

/// `status BATCH`: every row's job, state and output, and the counts.
pub fn show(ctx: &State, batch: &str, jobs: &[JobRecord], json_out: bool) -> anyhow::Result<()> {
    let locks = ctx.home.join("locks");
    let mut rows = Vec::with_capacity(jobs.len());
    let (mut done, mut failed, mut cancelled, mut pending) = (0, 0, 0, 0);
    for job in jobs {
        let chunks = ctx.store.chunks(&job.id)?;
        let state = status::shown_state(job, &locks);
        match job.state {
            JobState::Succeeded => done += 1,
            JobState::Failed => failed += 1,
            JobState::Cancelled | JobState::Stopped => cancelled += 1,
            _ => pending += 1,
        }
        let mut v = status::job_json(job, &chunks, &locks, false);
        status::add_spend(&mut v, &*ctx.store, job);
        v["row"] = json!(job.batch.as_ref().map(|b| b.row));
        rows.push((v, state, chunks));
    }
    if json_out {
        let out = json!({
            "batch": batch,
            "rows": rows.len(),
            "succeeded": done,
            "failed": failed,
            "cancelled": cancelled,
            "pending": pending,
            "jobs": rows.iter().map(|(v, _, _)| v.clone()).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "batch {batch}: {} rows: {done} succeeded, {failed} failed, {cancelled} cancelled, {pending} pending",
        rows.len()
    );
    for ((_, state, chunks), job) in rows.iter().zip(jobs) {
        let row = job.batch.as_ref().map(|b| b.row).unwrap_or(0);
        let frames_done: u64 = chunks
            .iter()
            .filter(|c| c.state == crate::orchestrator::ChunkState::Done)
            .map(|c| c.chunk.len())
            .sum();
        let tail = match (&job.state, &job.error) {
            (JobState::Failed, Some(e)) => format!("  {}", e.lines().next().unwrap_or("")),
            _ => String::new(),
        };
        println!(
            "row {row:>4}  {}  {state:<11}  {frames_done}/{} frames  {}{tail}",
            job.id,
            job.spec.frame_count(),
            Path::new(&job.output).display()
        );
    }
    Ok(())
}
