//! Scale model of cloud runs, checked against the real orchestrator.
//!
//! One realistic job (the constants below) is rendered with a sweep of chunk counts. For each
//! count this prints what [`ScaleModel`] predicts next to a run of the real
//! `Orchestrator::render_chunks` (scheduler, retries, SQLite job store in memory, report
//! verification) with simulated workers whose attempts take `cold_start + frames ×
//! per_frame` and fail retryably at a seeded rate ([`SimConfig::attempt`]). It then writes
//! `docs/scale-model.svg` and rewrites the `scale` block of `docs/BENCHMARKS.md`.
//!
//! `cargo bench --bench scale_model` takes a few seconds once built.
//!
//! Virtual time. Simulated minutes of rendering pass on a virtual clock ([`VirtualClock`]),
//! not the real one. Tokio's paused clock would be the obvious tool, but (1) it needs
//! tokio's `test-util` feature, which this crate does not enable, and (2) its auto-advance
//! jumps to the next timer whenever the runtime is idle — including while chunk tasks await
//! the job store's writer, a real thread — so a chunk could start a whole chunk-time late.
//! The virtual clock instead advances only when every running chunk is asleep on it: at
//! most `concurrency` chunks run at once and the orchestrator starts the next pending chunk
//! as soon as a slot frees, so that is exactly when `min(concurrency, unfinished chunks)`
//! attempts are asleep. Scheduling and store work thus take no virtual time (they take ~35
//! µs per chunk of real time; see the pipeline block), and the simulated wall time is the
//! clock's reading at the end. The orchestrator's own timers (retry backoff, attempt
//! timeout) stay on the real clock, so the runs use no backoff (the model is given none
//! either) and a timeout far beyond any attempt.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use helios_infra::adapters::sim::{SimAdapter, SimConfig, SimOutcome};
use helios_infra::adapters::{ChunkReport, ChunkRequest, WorkerAdapter, WorkerFailure};
use helios_infra::model::{Prediction, ScaleModel, LAMBDA_GB_SECOND, LAMBDA_REQUEST};
use helios_infra::orchestrator::{ChunkState, JobStore, Orchestrator, SqliteStore};
use helios_infra::spec::*;
use helios_infra::storage::Storage;
use plotters::prelude::*;
use tokio::sync::oneshot;

/// 2 minutes of video at 30 fps.
const FRAMES: u64 = 3600;
const FPS: u32 = 30;
/// A cold Lambda worker: container image, runtime, Chromium launch, bundle fetch (assumed).
const COLD_START: Duration = Duration::from_millis(1500);
/// Capture and encode of one 1080p frame in headless Chromium on 2 GB (assumed).
const PER_FRAME: Duration = Duration::from_millis(60);
const MEMORY_MB: u32 = 2048;
/// The default Lambda concurrency limit of an AWS account.
const CONCURRENCY: u32 = 1000;
/// Share of attempts that fail retryably (at their end, so billed in full).
const FAIL_RATE: f64 = 0.05;
/// Attempts per chunk; with these seeds no chunk needs more (checked). The default is 3.
const MAX_ATTEMPTS: u32 = 8;
/// The orchestrator's byte join of 1,000 segments on this machine (docs/BENCHMARKS.md,
/// stitch block: `resume` of a job killed at its stitch, fixed costs included), per segment.
const STITCH_PER_SEGMENT: Duration = Duration::from_micros(STITCH_PER_SEGMENT_US);
const STITCH_PER_SEGMENT_US: u64 = 230;
/// The previous release's stitch, as this model used it before the byte join
/// (`helios-infra stitch` of 100 segments: 3.98 s).
const PREVIOUS_STITCH_PER_SEGMENT: Duration = Duration::from_millis(40);
/// The model gives expected values; the sim runs are averaged over this many seeds.
const SEEDS: u64 = 30;
const CHUNKS: [u32; 12] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 3600];

fn model(chunks: u32) -> ScaleModel {
    ScaleModel {
        concurrency: CONCURRENCY,
        cold_start: COLD_START,
        per_frame: PER_FRAME,
        fail_rate: FAIL_RATE,
        max_attempts: MAX_ATTEMPTS,
        backoff: Duration::ZERO,
        memory_mb: MEMORY_MB,
        stitch_per_segment: STITCH_PER_SEGMENT,
        ..ScaleModel::lambda(FRAMES, chunks)
    }
}

fn sim_config(seed: u64) -> SimConfig {
    SimConfig {
        seed,
        cold_start: COLD_START,
        per_frame: PER_FRAME,
        fail_rate: FAIL_RATE,
        ..SimConfig::default()
    }
}

/// A clock that jumps to the next wake-up once all running chunks sleep on it.
struct VirtualClock {
    state: Mutex<ClockState>,
}

struct ClockState {
    now: Duration,
    concurrency: usize,
    /// Chunks whose successful attempt has not ended yet.
    unfinished: usize,
    /// (wake-up, sequence) → (the attempt succeeds, its waker).
    sleepers: BTreeMap<(Duration, u64), (bool, oneshot::Sender<()>)>,
    seq: u64,
}

impl VirtualClock {
    fn new(chunks: usize, concurrency: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(ClockState {
                now: Duration::ZERO,
                concurrency,
                unfinished: chunks,
                sleepers: BTreeMap::new(),
                seq: 0,
            }),
        })
    }

    fn now(&self) -> Duration {
        self.state.lock().expect("clock lock").now
    }

    /// Sleeps `d` of virtual time; `succeeds` says whether this attempt ends its chunk.
    async fn sleep(&self, d: Duration, succeeds: bool) {
        let rx = {
            let mut s = self.state.lock().expect("clock lock");
            let (tx, rx) = oneshot::channel();
            let key = (s.now + d, s.seq);
            s.seq += 1;
            s.sleepers.insert(key, (succeeds, tx));
            s.advance();
            rx
        };
        let _ = rx.await;
    }
}

impl ClockState {
    fn advance(&mut self) {
        while !self.sleepers.is_empty()
            && self.sleepers.len() == self.concurrency.min(self.unfinished)
        {
            let Some(&(deadline, _)) = self.sleepers.keys().next() else {
                break;
            };
            self.now = deadline;
            while let Some(entry) = self.sleepers.first_entry() {
                if entry.key().0 != deadline {
                    break;
                }
                let (succeeds, tx) = entry.remove();
                self.unfinished -= usize::from(succeeds);
                let _ = tx.send(());
            }
        }
    }
}

/// The sim adapter with its latency on the virtual clock: the attempt's outcome and latency
/// come from the full config ([`SimConfig::attempt`]); the inner adapter, with the same
/// seed and rates but no latency, then writes the segment and reports (or fails) at once.
struct VirtualSim {
    config: SimConfig,
    inner: SimAdapter,
    clock: Arc<VirtualClock>,
    lengths: Vec<u64>,
}

#[async_trait]
impl WorkerAdapter for VirtualSim {
    fn name(&self) -> &'static str {
        "sim"
    }

    async fn run_chunk(&self, req: &ChunkRequest) -> Result<ChunkReport, WorkerFailure> {
        let frames = self.lengths.get(req.chunk as usize).copied().unwrap_or(0);
        let (outcome, latency) = self.config.attempt(req.chunk, req.attempt, frames);
        self.clock.sleep(latency, outcome == SimOutcome::Ok).await;
        let mut report = self.inner.run_chunk(req).await?;
        report.timings.total_ms = latency.as_millis() as u64;
        Ok(report)
    }
}

struct SimRun {
    render: Duration,
    attempts: u64,
    worker_seconds: f64,
    cost_usd: f64,
    real: Duration,
}

async fn sim_run(chunks: u32, seed: u64) -> SimRun {
    let config = sim_config(seed);
    let mut spec = JobSpec::command(
        &["noop", "{output}"],
        1920,
        1080,
        Fps::new(FPS, 1),
        FrameRange::new(0, FRAMES),
        ChunkPlan::Count(chunks),
    );
    spec.concurrency = CONCURRENCY;
    spec.retry = RetryPolicy {
        max_attempts: MAX_ATTEMPTS,
        base_backoff_ms: 0,
        max_backoff_ms: 0,
        timeout_s: 86_400.0,
    };
    let lengths: Vec<u64> = spec.chunks.iter().map(|c| c.len()).collect();
    let clock = VirtualClock::new(lengths.len(), CONCURRENCY as usize);
    let adapter = VirtualSim {
        inner: SimAdapter::with_config(SimConfig {
            cold_start: Duration::ZERO,
            per_frame: Duration::ZERO,
            latency: (Duration::ZERO, Duration::ZERO),
            ..config.clone()
        }),
        config: config.clone(),
        clock: clock.clone(),
        lengths: lengths.clone(),
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = Arc::new(SqliteStore::in_memory().expect("in-memory job store"));
    let storage =
        Storage::open(&format!("memory://scale-{chunks}-{seed}")).expect("memory storage");
    let orch = Orchestrator::new(store.clone(), Arc::new(adapter), dir.path());
    let job = orch
        .submit(spec, &storage, &dir.path().join("out.mp4"))
        .await
        .expect("submit");
    let started = Instant::now();
    // Real-time watchdog: if the virtual clock ever waited for a chunk that never sleeps
    // (e.g. one that ran out of attempts), the run would stall instead of ending.
    let rendered =
        tokio::time::timeout(Duration::from_secs(120), orch.render_chunks(&job, &storage))
            .await
            .expect("the run stalled")
            .expect("render_chunks");
    let real = started.elapsed();
    assert_eq!(rendered as usize, lengths.len());

    // What the workers would bill: every attempt the orchestrator made, at its latency.
    let (mut attempts, mut worker_seconds) = (0u64, 0.0f64);
    for c in store.chunks(&job.id).expect("chunk records") {
        assert_eq!(c.state, ChunkState::Done);
        let first_ok = (1..)
            .find(|&a| config.draw(c.chunk.index, a).0 == SimOutcome::Ok)
            .unwrap_or(u32::MAX);
        assert_eq!(c.attempts, first_ok, "chunk {}", c.chunk.index);
        for a in 1..=c.attempts {
            worker_seconds += config
                .attempt(c.chunk.index, a, c.chunk.len())
                .1
                .as_secs_f64();
        }
        attempts += u64::from(c.attempts);
    }
    let gb_seconds = worker_seconds * f64::from(MEMORY_MB) / 1024.0;
    SimRun {
        render: clock.now(),
        attempts,
        worker_seconds,
        cost_usd: gb_seconds * LAMBDA_GB_SECOND + attempts as f64 * LAMBDA_REQUEST,
        real,
    }
}

struct Row {
    chunks: u32,
    model: Prediction,
    /// One run per seed.
    sims: Vec<SimRun>,
}

impl Row {
    fn mean(&self, f: impl Fn(&SimRun) -> f64) -> f64 {
        self.sims.iter().map(f).sum::<f64>() / self.sims.len().max(1) as f64
    }

    /// Mean simulated render time, in seconds.
    fn sim_render(&self) -> f64 {
        self.mean(|s| s.render.as_secs_f64())
    }

    /// Shortest and longest simulated render, in seconds.
    fn sim_range(&self) -> (f64, f64) {
        self.sims
            .iter()
            .map(|s| s.render.as_secs_f64())
            .fold((f64::MAX, 0.0f64), |(lo, hi), x| (lo.min(x), hi.max(x)))
    }

    fn sim_cost(&self) -> f64 {
        self.mean(|s| s.cost_usd)
    }
}

/// What the previous release's stitch would add to a row.
fn previous_stitch(r: &Row) -> Duration {
    PREVIOUS_STITCH_PER_SEGMENT * r.chunks
}

fn secs(d: Duration) -> String {
    format!("{} s", num(d.as_secs_f64()))
}

fn num(s: f64) -> String {
    if s >= 100.0 {
        format!("{s:.0}")
    } else {
        format!("{s:.1}")
    }
}

fn table(rows: &[Row]) -> String {
    let mut t = String::new();
    t.push_str("| chunks | frames/chunk | waves | model render | sim render (mean) | sim range | sim/model | model stitch | model wall | previous release: stitch / wall | model cost | sim cost (mean) | attempts model / sim |\n");
    t.push_str("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in rows {
        let (lo, hi) = r.sim_range();
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} s | {}–{} s | {:.2} | {} | {} | {} / {} | ${:.4} | ${:.4} | {:.0} / {:.0} |",
            r.chunks,
            r.model.max_chunk_frames,
            r.model.waves,
            secs(r.model.render),
            num(r.sim_render()),
            num(lo),
            num(hi),
            r.sim_render() / r.model.render.as_secs_f64(),
            secs(r.model.stitch),
            secs(r.model.wall),
            secs(previous_stitch(r)),
            secs(r.model.render + previous_stitch(r)),
            r.model.cost_usd,
            r.sim_cost(),
            r.model.attempts,
            r.mean(|s| s.attempts as f64),
        );
    }
    t
}

fn plot(rows: &[Row], path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (900, 900)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(450);
    let x_range = || (0.7f64..5000.0).log_scale();
    let xs = |r: &Row| f64::from(r.chunks);

    let times = rows.iter().flat_map(|r| {
        [
            r.model.render.as_secs_f64(),
            r.model.wall.as_secs_f64(),
            r.sim_range().0,
            r.sim_range().1,
        ]
    });
    let (lo, hi) = times.fold((f64::MAX, 0.0f64), |(lo, hi), t| (lo.min(t), hi.max(t)));
    let mut chart = ChartBuilder::on(&top)
        .caption(
            format!("Wall time: {FRAMES} frames, {CONCURRENCY} workers"),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x_range(), (lo * 0.7..hi * 1.5).log_scale())?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .x_desc("chunks (log)")
        .y_desc("seconds (log)")
        .draw()?;
    chart
        .draw_series(LineSeries::new(
            rows.iter().map(|r| (xs(r), r.model.render.as_secs_f64())),
            BLUE.stroke_width(2),
        ))?
        .label("model: render")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    chart.draw_series(rows.iter().map(|r| {
        let (lo, hi) = r.sim_range();
        PathElement::new(vec![(xs(r), lo), (xs(r), hi)], RED)
    }))?;
    chart
        .draw_series(
            rows.iter()
                .map(|r| Circle::new((xs(r), r.sim_render()), 4, RED.filled())),
        )?
        .label(format!(
            "sim (real orchestrator): render, mean and range of {SEEDS} seeds"
        ))
        .legend(|(x, y)| Circle::new((x + 10, y), 4, RED.filled()));
    chart
        .draw_series(LineSeries::new(
            rows.iter().map(|r| (xs(r), r.model.wall.as_secs_f64())),
            BLACK.stroke_width(1),
        ))?
        .label("model: render + stitch")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperMiddle)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;

    let costs = rows.iter().flat_map(|r| [r.model.cost_usd, r.sim_cost()]);
    let (lo, hi) = costs.fold((f64::MAX, 0.0f64), |(lo, hi), c| (lo.min(c), hi.max(c)));
    let mut chart = ChartBuilder::on(&bottom)
        .caption(
            format!("Cost: Lambda {MEMORY_MB} MB at list price"),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x_range(), (lo * 0.7..hi * 1.5).log_scale())?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_labels(5)
        .y_label_formatter(&|y| format!("${y:.3}"))
        .x_desc("chunks (log)")
        .y_desc("USD (log)")
        .draw()?;
    chart
        .draw_series(LineSeries::new(
            rows.iter().map(|r| (xs(r), r.model.cost_usd)),
            BLUE.stroke_width(2),
        ))?
        .label("model")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    chart
        .draw_series(
            rows.iter()
                .map(|r| Circle::new((xs(r), r.sim_cost()), 4, RED.filled())),
        )?
        .label(format!("sim (real orchestrator), mean of {SEEDS} seeds"))
        .legend(|(x, y)| Circle::new((x + 10, y), 4, RED.filled()));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// The findings, from the numbers.
fn findings(rows: &[Row]) -> String {
    let by = |f: &dyn Fn(&Row) -> f64| {
        rows.iter()
            .min_by(|a, b| f(a).total_cmp(&f(b)))
            .expect("rows")
    };
    let first = &rows[0];
    let fastest = by(&|r| r.sim_render());
    let fastest_wall = by(&|r| r.model.wall.as_secs_f64());
    let last = &rows[rows.len() - 1];
    let ratios: Vec<f64> = rows
        .iter()
        .map(|r| r.sim_render() / r.model.render.as_secs_f64())
        .collect();
    let (rlo, rhi) = ratios
        .iter()
        .fold((f64::MAX, 0.0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    // Above this many chunks, a chunk's cold start takes longer than its frames.
    let cold_equals_work = FRAMES as f64 * PER_FRAME.as_secs_f64() / COLD_START.as_secs_f64();
    let knee = rows
        .iter()
        .find(|r| f64::from(r.chunks) >= cold_equals_work)
        .unwrap_or(first);
    let default_attempts = ScaleModel {
        max_attempts: 3,
        ..model(last.chunks)
    }
    .predict()
    .map(|p| p.job_failure)
    .unwrap_or(f64::NAN);
    let one_wave = rows
        .iter()
        .filter(|r| r.chunks >= 20 && r.chunks <= CONCURRENCY)
        .map(|r| {
            r.sim_render()
                / (COLD_START.as_secs_f64()
                    + r.model.max_chunk_frames as f64 * PER_FRAME.as_secs_f64())
        })
        .fold((f64::MAX, 0.0f64), |(lo, hi), x| (lo.min(x), hi.max(x)));
    let mut s = String::new();
    let _ = writeln!(
        s,
        "- Chunking pays until the cold start dominates: the render falls from {} s (1 chunk) \
         to {} s at {} chunks ({:.0}× faster), but past ~{:.0} chunks a chunk's cold start \
         outlasts its frames and more chunks barely help ({} s at {} chunks); past \
         {CONCURRENCY} chunks (the concurrency) every extra wave adds a cold start: {} chunks \
         take {} s.",
        num(first.sim_render()),
        num(fastest.sim_render()),
        fastest.chunks,
        first.sim_render() / fastest.sim_render(),
        cold_equals_work,
        num(knee.sim_render()),
        knee.chunks,
        last.chunks,
        num(last.sim_render()),
    );
    let _ = writeln!(
        s,
        "- Retries set the pace of wide jobs: with {:.0}% failed attempts a wave of 100 chunks \
         has a retry with probability {:.0}% and one of 1,000 a chunk retried twice with \
         probability {:.0}%, so a single wave of 20–{CONCURRENCY} chunks takes {:.1}–{:.1} chunk \
         times on average, not 1. (With the default 3 attempts, a {}-chunk job would fail \
         outright with probability {:.0}%.)",
        FAIL_RATE * 100.0,
        (1.0 - (1.0 - FAIL_RATE).powi(100)) * 100.0,
        (1.0 - (1.0 - FAIL_RATE * FAIL_RATE).powi(1000)) * 100.0,
        one_wave.0,
        one_wave.1,
        last.chunks,
        default_attempts * 100.0,
    );
    let _ = writeln!(
        s,
        "- Cost grows with the chunk count, because every attempt pays a billed cold start: \
         ${:.4} for 1 chunk, ${:.4} for {} ({:.0}×) — the same frames.",
        first.sim_cost(),
        last.sim_cost(),
        last.chunks,
        last.sim_cost() / first.sim_cost(),
    );
    let prev_fastest = by(&|r| (r.model.render + previous_stitch(r)).as_secs_f64());
    let _ = writeln!(
        s,
        "- Stitching at {:.2} ms a segment (this release's byte join): counting it, the fastest \
         job is {} chunks ({} in all), and {} chunks spend {} stitching. At the previous release's {} ms a segment the fastest was {} chunks ({}), \
         and {} chunks spent {} stitching.",
        STITCH_PER_SEGMENT.as_secs_f64() * 1000.0,
        fastest_wall.chunks,
        secs(fastest_wall.model.wall),
        last.chunks,
        secs(last.model.stitch),
        PREVIOUS_STITCH_PER_SEGMENT.as_millis(),
        prev_fastest.chunks,
        secs(prev_fastest.model.render + previous_stitch(prev_fastest)),
        last.chunks,
        secs(previous_stitch(last)),
    );
    let _ = writeln!(
        s,
        "- The model tracks the orchestrator's render time within a factor of {rlo:.2}–{rhi:.2} \
         (sim/model) and its cost within {:.1}%.",
        rows.iter()
            .map(|r| (r.sim_cost() / r.model.cost_usd - 1.0).abs() * 100.0)
            .fold(0.0f64, f64::max),
    );
    s
}

const START: &str = "<!-- scale:start -->";
const END: &str = "<!-- scale:end -->";

fn block(rows: &[Row], real: Duration) -> String {
    let mut b = String::new();
    let _ = write!(
        b,
        "{START}

## Scale model of cloud runs

`cargo bench --bench scale_model` (which rewrites this block and `scale-model.svg`) compares
`helios_infra::model::ScaleModel`, a few lines of arithmetic (waves of
`ceil(chunks / concurrency)` balanced chunks, each `cold start + frames × time per frame`;
the expected worst retry chain of the last wave; stitching per segment; Lambda GB-seconds
and requests), with runs of the real orchestrator (`Orchestrator::render_chunks`: scheduler,
retries, SQLite job store in memory, report checks) whose sim workers take the same times
and fail at a seeded rate. Worker latencies pass on a virtual clock that advances when every
running chunk is waiting on it, so scheduling and store work count as zero; the {} runs
({SEEDS} seeds per chunk count, averaged: the model gives expected values) took {:.1} s of
real time in all. Sim cost is every attempt the orchestrator made × its latency
× memory at list price, plus requests. The sim does not stitch: \"model wall\" adds the
model's stitch time to the model's render.

Parameters (assumed, not measured on a cloud): {FRAMES} frames (2 min at {FPS} fps), cold
start {} s per attempt, {} ms per frame, Lambda {MEMORY_MB} MB at ${LAMBDA_GB_SECOND}/GB-s
and ${LAMBDA_REQUEST}/request, concurrency {CONCURRENCY} (the default account limit),
{:.0}% of attempts fail retryably (up to {MAX_ATTEMPTS} attempts, no backoff), stitching
{:.2} ms per segment (this machine's byte join of 1,000 segments; the previous release's
{} ms beside it).

{}
![scale model](scale-model.svg)

{}{END}",
        rows.iter().map(|r| r.sims.len()).sum::<usize>(),
        real.as_secs_f64(),
        COLD_START.as_secs_f64(),
        PER_FRAME.as_millis(),
        FAIL_RATE * 100.0,
        STITCH_PER_SEGMENT.as_secs_f64() * 1000.0,
        PREVIOUS_STITCH_PER_SEGMENT.as_millis(),
        table(rows),
        findings(rows),
    );
    b
}

fn write_block(path: &Path, block: &str) -> std::io::Result<()> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|_| "# Benchmarks\n".into());
    let text = match (text.find(START), text.find(END)) {
        (Some(a), Some(b)) if b > a => {
            format!("{}{block}{}", &text[..a], &text[b + END.len()..])
        }
        _ => format!("{}\n\n{block}\n", text.trim_end()),
    };
    std::fs::write(path, text)
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut rows = Vec::new();
    let mut real = Duration::ZERO;
    for chunks in CHUNKS {
        let model = model(chunks).predict().expect("valid model");
        let sims: Vec<SimRun> = (0..SEEDS)
            .map(|seed| rt.block_on(sim_run(chunks, seed)))
            .collect();
        let row = Row {
            chunks,
            model,
            sims,
        };
        let run_real: Duration = row.sims.iter().map(|s| s.real).sum();
        eprintln!(
            "scale_model: {chunks} chunks: model {:.2} s, sim mean {:.2} s ({:.0} ms real)",
            row.model.render.as_secs_f64(),
            row.sim_render(),
            run_real.as_secs_f64() * 1000.0
        );
        let worker = row.mean(|s| s.worker_seconds);
        assert!(
            (worker / row.model.worker_seconds - 1.0).abs() < 0.5,
            "sim and model disagree wildly on worker time"
        );
        real += run_real;
        rows.push(row);
    }
    print!("{}", table(&rows));
    println!();
    print!("{}", findings(&rows));

    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    let svg = docs.join("scale-model.svg");
    if let Err(e) = plot(&rows, &svg) {
        panic!("cannot write {}: {e}", svg.display());
    }
    let md = docs.join("BENCHMARKS.md");
    if let Err(e) = write_block(&md, &block(&rows, real)) {
        panic!("cannot write {}: {e}", md.display());
    }
    eprintln!(
        "scale_model: wrote {} and the scale block of {}",
        svg.display(),
        md.display()
    );
}
