//! What a render will take and cost, said before it starts: a short probe of the
//! composition on this machine gives the pace of a worker, the adapter gives the price, and
//! [`crate::cost::estimate`] (the scale model) the rest. A plan over `--max-cost` is refused
//! here, before anything runs, unless `--start-anyway`.

use std::time::Instant;

use anyhow::{bail, Context};

use super::adapter::AdapterConfig;
use super::args::BudgetArgs;
use crate::adapters::local::LocalAdapter;
use crate::adapters::{ChunkReport, ChunkRequest, WorkerAdapter};
use crate::cost::{self, format_usd, Estimate, Pace, PlanShape};
use crate::orchestrator::spend::ASSUMED_PACE;
use crate::orchestrator::{ChunkState, JobRecord, JobState, JobStore, KeptAttempt};
use crate::spec::{Chunk, JobSpec, OutputKind, OutputSpec};
use crate::storage::{keys, Storage};

/// Frames a probe renders.
const PROBE_FRAMES: u64 = 30;

/// Start-up assumed with `--frame-ms` (what a local worker takes to start a browser and
/// load a page on a 2-core machine).
const STARTUP_MS_WITH_FRAME_MS: f64 = 1500.0;

/// The pace of one worker for `spec`: from `--frame-ms`, assumed with `--no-probe`, or
/// measured by rendering a few of its frames in one worker process on this machine.
pub async fn pace(
    budget: &BudgetArgs,
    spec: &JobSpec,
    storage: &Storage,
) -> anyhow::Result<(Pace, String)> {
    let (pace, from, _) = measure(budget, spec, storage, false).await?;
    Ok((pace, from))
}

/// Whether a new render's probe can be its own first chunk: a local worker renders the
/// job's frames exactly as the probe does, nothing can refuse the job after the probe (no
/// `--max-cost`), the job is probed at all, and its output is what the probe makes (a GIF
/// is probed as video).
pub fn keeps_probe(budget: &BudgetArgs, config: &AdapterConfig, spec: &JobSpec) -> bool {
    config.is_local()
        && budget.max_cost.is_none()
        && matches!(unprobed(budget, spec), Ok(None))
        && spec.output.kind != OutputKind::Gif
        && spec.chunks.first().map(|c| c.start) == Some(spec.video.frames.start)
}

/// Makes the probe's frames the job's first chunk, the rest of the frames planned in as
/// many chunks as before (none under [`PROBE_FRAMES`] frames), and gives the job its id.
pub fn carve_probe_chunk(spec: &mut JobSpec) {
    let frames = spec.video.frames;
    let probe_end = frames.start + PROBE_FRAMES;
    let rest = crate::spec::FrameRange::new(probe_end, frames.end);
    let count = (spec.chunks.len() as u64)
        .min(rest.len() / PROBE_FRAMES)
        .max(1) as u32;
    let mut chunks = vec![Chunk {
        index: 0,
        start: frames.start,
        end: probe_end,
    }];
    chunks.extend(
        crate::spec::plan_chunks(rest, crate::spec::ChunkPlan::Count(count))
            .into_iter()
            .map(|c| Chunk {
                index: c.index + 1,
                ..c
            }),
    );
    spec.chunks = chunks;
    spec.id.get_or_insert_with(|| ulid::Ulid::new().to_string());
}

/// The pace of a job that is not probed, and where it comes from (`--frame-ms`,
/// `--no-probe`, a renderer command, a short job); `None` when the job is probed.
fn unprobed(budget: &BudgetArgs, spec: &JobSpec) -> anyhow::Result<Option<(Pace, String)>> {
    if let Some(ms) = budget.frame_ms {
        if !(ms.is_finite() && ms > 0.0) {
            bail!("--frame-ms must be a positive number of milliseconds, not {ms}");
        }
        let pace = Pace {
            startup_ms: STARTUP_MS_WITH_FRAME_MS,
            frame_ms: ms,
            cores: 1.0,
        };
        return Ok(Some((pace, "--frame-ms".into())));
    }
    if budget.no_probe {
        return Ok(Some((ASSUMED_PACE, "an assumption (--no-probe)".into())));
    }
    // A renderer command is the user's program: running it once more than asked could
    // cost money or have effects, so its pace is given (--frame-ms), never probed.
    if matches!(spec.composition, crate::spec::Composition::Command(_)) {
        return Ok(Some((
            ASSUMED_PACE,
            "an assumption (renderer commands are not probed; --frame-ms gives their pace)".into(),
        )));
    }
    // A short job would be rendered again, in good part, by its own probe.
    if spec.frame_count() < 3 * PROBE_FRAMES {
        return Ok(Some((
            ASSUMED_PACE,
            format!(
                "an assumption (jobs under {} frames are not probed)",
                3 * PROBE_FRAMES
            ),
        )));
    }
    Ok(None)
}

/// [`pace`], and with `keep` (a spec prepared by [`carve_probe_chunk`]) the probe run as
/// the job's first chunk and kept.
async fn measure(
    budget: &BudgetArgs,
    spec: &JobSpec,
    storage: &Storage,
    keep: bool,
) -> anyhow::Result<(Pace, String, Option<KeptAttempt>)> {
    if let Some((pace, from)) = unprobed(budget, spec)? {
        return Ok((pace, from, None));
    }
    let probed = if keep {
        probe_first_chunk(spec, storage)
            .await
            .map(|(p, from, kept)| (p, from, Some(kept)))
    } else {
        probe(spec, storage).await.map(|(p, from)| (p, from, None))
    };
    match probed {
        Ok(p) => Ok(p),
        // The estimate is advice: a probe that fails never stops the render itself.
        Err(e) => {
            eprintln!("warning: {}", super::error_chain(&e));
            Ok((
                ASSUMED_PACE,
                "an assumption (the probe failed)".into(),
                None,
            ))
        }
    }
}

/// Renders the first frames of `spec` as a throw-away job in one local worker process and
/// times it: start-up (process, spec and bundle, browser launch, upload) and time per
/// frame, and the cores it kept busy.
pub async fn probe(spec: &JobSpec, storage: &Storage) -> anyhow::Result<(Pace, String)> {
    let frames = spec.video.frames;
    let n = frames.len().min(PROBE_FRAMES);
    let mut probe = spec.clone();
    let id = format!("probe-{}", ulid::Ulid::new());
    probe.id = Some(id.clone());
    probe.video.frames = crate::spec::FrameRange::new(frames.start, frames.start + n);
    probe.chunks = vec![Chunk {
        index: 0,
        start: frames.start,
        end: frames.start + n,
    }];
    probe.audio.clear();
    probe.webhook = None;
    // A GIF chunk needs the job's palette: it is probed as the video it is drawn from.
    let note = if probe.output.kind == OutputKind::Gif {
        probe.output = OutputSpec::default();
        ", as video"
    } else {
        ""
    };
    let timed = run_first_chunk(&probe, storage).await;
    remove_job_files(storage, &id).await;
    let timed = timed?;
    Ok((
        timed.pace(),
        format!("a probe of {n} frames on this machine{note}"),
    ))
}

/// The probe as the job's own first chunk: `spec` is the job's (from
/// [`carve_probe_chunk`]); its files are removed if it fails, kept otherwise.
async fn probe_first_chunk(
    spec: &JobSpec,
    storage: &Storage,
) -> anyhow::Result<(Pace, String, KeptAttempt)> {
    let id = spec
        .id
        .clone()
        .context("the job has no id to probe it under")?;
    let timed = match run_first_chunk(spec, storage).await {
        Ok(t) => t,
        Err(e) => {
            remove_job_files(storage, &id).await;
            return Err(e);
        }
    };
    let n = timed.report.frames;
    Ok((
        timed.pace(),
        format!("a probe of {n} frames on this machine, kept as the job's first chunk"),
        KeptAttempt {
            span_ms: (
                timed.dispatched_ms,
                timed.dispatched_ms + timed.wall_ms as i64,
            ),
            report: timed.report,
        },
    ))
}

/// A probe's attempt as it ran.
struct Timed {
    report: ChunkReport,
    /// Dispatch to report.
    wall_ms: f64,
    /// When it was dispatched, Unix milliseconds.
    dispatched_ms: i64,
    /// CPU time of the whole machine meanwhile.
    cpu_ms: f64,
}

/// Stores `spec` and runs attempt 1 of its chunk 0 in one local worker process, timed.
async fn run_first_chunk(spec: &JobSpec, storage: &Storage) -> anyhow::Result<Timed> {
    let id = spec.id.as_deref().context("the probe has no job id")?;
    let n = spec.chunks.first().map(|c| c.len()).unwrap_or(0);
    let key = keys::job_spec(id);
    storage
        .put(&key, serde_json::to_vec(spec)?.into())
        .await
        .context("cannot store the probe's job spec")?;
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let worker = LocalAdapter::new(exe);
    let cpu_before = busy_cpu_seconds();
    let dispatched_ms = crate::orchestrator::now_ms();
    let started = Instant::now();
    let result = worker
        .run_chunk(&ChunkRequest::render(storage.url_for(&key), 0, 1))
        .await;
    let wall_ms = started.elapsed().as_secs_f64() * 1000.0;
    let cpu_ms = (busy_cpu_seconds() - cpu_before).max(0.0) * 1000.0;
    let report = result.map_err(|f| {
        anyhow::anyhow!(
            "the probe of {n} frames failed: {}\n(--no-probe or --frame-ms MS skip the probe)",
            f.message
        )
    })?;
    Ok(Timed {
        report,
        wall_ms,
        dispatched_ms,
        cpu_ms,
    })
}

/// Removes what a probe left under `jobs/ID` (a folder's empty directories too).
async fn remove_job_files(storage: &Storage, id: &str) {
    let prefix = format!("jobs/{id}");
    for k in storage.list(&prefix).await.unwrap_or_default() {
        let _ = storage.delete(&k).await;
    }
    if let Some(dir) = storage.local_path(&prefix) {
        let _ = std::fs::remove_dir_all(dir);
    }
}

impl Timed {
    /// The pace the attempt shows.
    fn pace(&self) -> Pace {
        let n = self.report.frames.max(1);
        // A frame's time, as a longer chunk would pace it: the pace at which frames arrive
        // from the browsers once they are warm (the probe's second half), plus the
        // encoder's time per frame, which runs beside capture on the same cores. A short
        // probe's frames all sit in the encoder's lookahead when the last one arrives, so
        // the encoder's tail after it is their encoding time. What is left of the attempt
        // is start-up.
        let frame_ms = match &self.report.stages {
            Some(st) if st.steady_frame_ms > 0.0 => {
                st.steady_frame_ms + st.encode_finish_ms as f64 / n as f64
            }
            Some(st) if st.frames_per_s > 0.0 => {
                (n as f64 * 1000.0 / st.frames_per_s - st.launch_ms as f64) / n as f64
            }
            _ => {
                let t = &self.report.timings;
                (t.render_ms + t.encode_ms) as f64 / n as f64
            }
        }
        .max(0.1);
        let startup_ms = (self.wall_ms - n as f64 * frame_ms).max(0.0);
        Pace {
            startup_ms,
            frame_ms,
            cores: (self.cpu_ms / self.wall_ms.max(1.0)).max(0.1),
        }
    }
}

/// CPU seconds this machine has been busy (all processes, from `/proc/stat`): a worker's
/// browser and encoder are not all children it waits for, so their time is counted where
/// the kernel counts it. Falls back to this process's ended children elsewhere.
fn busy_cpu_seconds() -> f64 {
    if let Ok(stat) = std::fs::read_to_string("/proc/stat") {
        if let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) {
            let v: Vec<f64> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal: busy is all but idle, iowait.
            if v.len() >= 8 {
                let busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
                // USER_HZ is 100 on every Linux build that matters.
                return busy / 100.0;
            }
        }
    }
    rusage_children()
}

/// CPU seconds (user and system) of this process's children that have ended.
fn rusage_children() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    match getrusage(UsageWho::RUSAGE_CHILDREN) {
        Ok(u) => {
            let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
            t(u.user_time()) + t(u.system_time())
        }
        Err(_) => 0.0,
    }
}

/// The estimate of rendering `chunks` (those still to do) of `spec` on `config`'s workers.
pub fn of_chunks(
    spec: &JobSpec,
    chunks: &[Chunk],
    config: &AdapterConfig,
    pace: Pace,
    pace_from: &str,
) -> anyhow::Result<Estimate> {
    let frames: u64 = chunks.iter().map(|c| c.len()).sum();
    let shape = PlanShape {
        frames: frames.max(1),
        chunks: (chunks.len() as u32).max(1),
        concurrency: spec.concurrency.max(1),
        shared_cores: config.is_local().then(|| {
            std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1)
        }),
    };
    let mut e = cost::estimate(shape, pace, pace_from, &config.price())?;
    if frames == 0 {
        e.wall_s = 0.0;
        e.worker_s = 0.0;
        e.usd = 0.0;
    }
    Ok(e)
}

/// The estimate of a whole job.
pub fn of_spec(
    spec: &JobSpec,
    config: &AdapterConfig,
    pace: Pace,
    pace_from: &str,
) -> anyhow::Result<Estimate> {
    of_chunks(spec, &spec.chunks, config, pace, pace_from)
}

/// Says the estimate, and refuses a plan whose estimate (with what is already spent) is
/// over the cap, unless `--start-anyway`.
pub fn check(
    e: &Estimate,
    spent: f64,
    budget: &BudgetArgs,
    cap: Option<f64>,
    json: bool,
    id: &str,
) -> anyhow::Result<()> {
    let cap_note = match cap {
        Some(c) => format!(
            "; cap {}{}",
            format_usd(c),
            if spent > 0.0 {
                format!(", {} spent", format_usd(spent))
            } else {
                String::new()
            }
        ),
        None => String::new(),
    };
    eprintln!("{}{cap_note}", e.describe());
    if json && !id.is_empty() {
        print_event(e, id, cap, spent);
    }
    if let Some(c) = cap {
        if spent + e.usd > c && !budget.start_anyway {
            bail!(
                "the estimate ({}{}) is over the cost cap of {}: nothing was started.\n\
                 Raise --max-cost (to about {} USD), render less or on cheaper workers, or pass \
                 --start-anyway to start and stop at the cap.",
                format_usd(e.usd),
                if spent > 0.0 {
                    format!(" on top of {} spent", format_usd(spent))
                } else {
                    String::new()
                },
                format_usd(c),
                cost::round_up_cap((spent + e.usd) * 1.25)
            );
        }
    }
    Ok(())
}

/// The estimate as a `--json` event line.
fn print_event(e: &Estimate, id: &str, cap: Option<f64>, spent: f64) {
    println!(
        "{}",
        serde_json::json!({
            "event": "estimate", "job": id, "wall_s": e.wall_s, "usd": e.usd,
            "cap_usd": cap, "spent_usd": spent, "estimate": e,
        })
    );
}

/// Checks a `--max-cost` value.
pub fn cap(budget: &BudgetArgs) -> anyhow::Result<Option<f64>> {
    match budget.max_cost {
        Some(c) if !(c.is_finite() && c > 0.0) => {
            bail!("--max-cost must be a positive amount in USD, not {c}")
        }
        c => Ok(c),
    }
}

/// A new job's (or batch's) cap and estimate, recorded once it is submitted.
pub struct Budgeted {
    /// `--max-cost`.
    pub cap: Option<f64>,
    /// The estimate said before it was submitted.
    pub estimate: Estimate,
    /// Whether events are printed as JSON lines.
    json: bool,
    /// The probe, run as the job's first chunk, to commit once the job is submitted.
    pub kept: Option<KeptAttempt>,
}

impl Budgeted {
    /// Estimates `chunks` of `spec` (a job's, or every row's of a batch) on the adapter
    /// chosen by `adapter`, says it, and refuses a plan over `--max-cost`. With
    /// `keep_probe` (a spec prepared by [`carve_probe_chunk`]), the probe is the job's
    /// first chunk, in [`Budgeted::kept`].
    pub async fn new(
        json: bool,
        storage: &Storage,
        budget: &BudgetArgs,
        config: &AdapterConfig,
        spec: &JobSpec,
        chunks: &[Chunk],
        keep_probe: bool,
    ) -> anyhow::Result<Self> {
        let cap = cap(budget)?;
        let (pace, from, kept) = measure(budget, spec, storage, keep_probe).await?;
        let estimate = of_chunks(spec, chunks, config, pace, &from)?;
        if cap.is_some() && config.price().is_free() {
            eprintln!(
                "warning: --max-cost has nothing to count: local and HTTP workers cost nothing unless --worker-hour-usd gives their price"
            );
        }
        check(&estimate, 0.0, budget, cap, false, "")?;
        Ok(Self {
            cap,
            estimate,
            json,
            kept,
        })
    }

    /// Records the cap and the estimate of `scope` (a job id or a batch id). A job's
    /// estimate reaches `--json` as the orchestrator's `estimate` event, after
    /// `job_started`; a batch's is printed here (`batch` has no progress events).
    pub async fn record(
        &self,
        store: &dyn JobStore,
        scope: &str,
        print_json: bool,
    ) -> anyhow::Result<()> {
        store.set_cap(scope, self.cap).await?;
        store
            .set_estimate(scope, &serde_json::to_string(&self.estimate)?)
            .await?;
        if self.json && print_json {
            print_event(&self.estimate, scope, self.cap, 0.0);
        }
        Ok(())
    }
}

/// Before `resume`: a new `--max-cost` replaces the recorded cap; the estimate of what is
/// left is said and, with what is already spent, held to the cap.
pub async fn before_resume(
    json: bool,
    store: &dyn JobStore,
    budget: &BudgetArgs,
    config: &AdapterConfig,
    scope: &str,
    jobs: &[JobRecord],
) -> anyhow::Result<()> {
    let new_cap = cap(budget)?;
    let Some(first) = jobs.first() else {
        return Ok(());
    };
    let meter = crate::orchestrator::spend::Meter::new(config.price());
    let pace = match budget.frame_ms {
        Some(_) => {
            pace(budget, &first.spec, &Storage::open(&first.storage_url)?)
                .await?
                .0
        }
        None => meter.pace(store, first),
    };
    let mut left = Vec::new();
    for job in jobs {
        if job.state == JobState::Succeeded {
            continue;
        }
        left.extend(
            store
                .chunks(&job.id)?
                .into_iter()
                .filter(|c| c.state != ChunkState::Done)
                .map(|c| c.chunk),
        );
    }
    let e = of_chunks(
        &first.spec,
        &left,
        config,
        pace,
        "this job's attempts or its estimate",
    )?;
    let spent = store.spent(scope)?.usd;
    let cap = new_cap.or(store.cost_plan(scope)?.cap_usd);
    check(&e, spent, budget, cap, json, scope)?;
    // Only a cap the plan fits under (or one started anyway) replaces the old one.
    if new_cap.is_some() {
        store.set_cap(scope, new_cap).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{ChunkPlan, Fps, FrameRange};

    fn spec(frames: FrameRange, chunks: u32) -> JobSpec {
        JobSpec::command(
            &["render", "{start}", "{output}"],
            320,
            240,
            Fps::new(30, 1),
            frames,
            ChunkPlan::Count(chunks),
        )
    }

    #[test]
    fn the_probes_chunk_comes_first_and_the_rest_keeps_the_planned_count() {
        for (frames, planned, want) in [
            (FrameRange::new(0, 300), 1, vec![(0, 30), (30, 300)]),
            (
                FrameRange::new(100, 400),
                2,
                vec![(100, 130), (130, 265), (265, 400)],
            ),
            // Never chunks under the probe's 30 frames: 60 frames after it make 2, not 4.
            (FrameRange::new(0, 90), 4, vec![(0, 30), (30, 60), (60, 90)]),
        ] {
            let mut s = spec(frames, planned);
            carve_probe_chunk(&mut s);
            let got: Vec<_> = s.chunks.iter().map(|c| (c.start, c.end)).collect();
            assert_eq!(got, want, "{frames:?} in {planned}");
            assert!(s
                .chunks
                .iter()
                .enumerate()
                .all(|(i, c)| c.index as usize == i));
            assert!(s.id.is_some());
            crate::spec::validate(&s).unwrap();
        }
        // An id already given is kept.
        let mut s = spec(FrameRange::new(0, 300), 1);
        s.id = Some("given".into());
        carve_probe_chunk(&mut s);
        assert_eq!(s.id.as_deref(), Some("given"));
    }
}
