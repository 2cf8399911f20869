//! The `helios-infra` command line: the binary edge, where errors become messages and
//! exit codes.

pub mod adapter;
pub mod args;
mod batch;
mod deploy;
pub mod doctor;
pub mod estimate;
mod helios_job;
mod plan;
pub mod progress;
mod rows;
use crate::view as status;
mod vendor;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Parser;
use futures::StreamExt;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

use crate::media;
use crate::orchestrator::{
    Event, JobLock, JobState, JobStore, Orchestrator, OrchestratorError, SqliteStore,
};
use crate::spec;
use crate::stitch::{check_segments, ConcatStitcher, Segment, Stitcher};
use crate::storage::Storage;
use crate::worker::server::ServerAuth;
use crate::worker::{self, protocol::WorkerResponse, ChunkRequest};
use adapter::{AdapterArgs, AdapterKind};

use args::{Cli, Command, WorkerCommand};

/// Exit code for a job that was cancelled (as after Ctrl-C).
pub const EXIT_CANCELLED: i32 = 130;
/// Exit code for a job (or batch) stopped by its cost cap (`--max-cost`).
pub const EXIT_STOPPED: i32 = 3;
/// Worker exit code for a retryable failure (EX_TEMPFAIL).
pub const EXIT_RETRYABLE: i32 = 75;
/// Worker exit code for a fatal failure (EX_DATAERR).
pub const EXIT_FATAL: i32 = 65;

/// Parses the command line, runs it, and returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    crate::net::use_ring();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            let text = error_chain(&e);
            eprintln!("error: {text}");
            if let Some(hint) = crate::net::tls_hint(&text) {
                eprintln!("hint: {hint}");
            }
            match e.downcast_ref::<OrchestratorError>() {
                Some(OrchestratorError::Cancelled { .. }) => EXIT_CANCELLED,
                Some(OrchestratorError::OverBudget { .. }) => EXIT_STOPPED,
                _ => 1,
            }
        }
    }
}

/// An error and its causes, each said once: many of the library's errors already include
/// their source in their own message, and `{:#}` would repeat it after them.
pub(crate) fn error_chain(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let msg = cause.to_string();
        if msg.is_empty() || text.contains(&msg) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&msg);
    }
    text
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "error",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    match &cli.command {
        Command::Worker(WorkerCommand::Run {
            job,
            chunk,
            attempt,
            assemble,
            palette,
            ping,
        }) => {
            if *ping {
                let answer = worker::run(&ChunkRequest::ping()).await;
                println!("{}", serde_json::to_string(&WorkerResponse::from(answer))?);
                return Ok(0);
            }
            let job = job.clone().unwrap_or_default();
            let env_u32 = |name: &str| {
                std::env::var(name)
                    .ok()
                    .and_then(|v| v.trim().parse::<u32>().ok())
            };
            let task = env_u32("CLOUD_RUN_TASK_INDEX").or_else(|| env_u32("JOB_COMPLETION_INDEX"));
            // The cloudrun-job adapter lists each task's chunk and attempt in HELIOS_TASKS
            // ("chunk:attempt,…", by task index); without it, task N renders chunk N.
            let listed = match (chunk, task, std::env::var("HELIOS_TASKS")) {
                (None, Some(t), Ok(list)) => Some(task_entry(&list, t)?),
                _ => None,
            };
            let batch = chunk.is_none() && task.is_some();
            let (chunk, attempt, task_kind) = match listed {
                Some(entry) => entry,
                None => {
                    let chunk = chunk.or(task).ok_or_else(|| anyhow::anyhow!("give --chunk N (or run as a Cloud Run Jobs / Indexed Job task, which sets the task index)"))?;
                    // Cloud Run counts task attempts from 0; attempt keys count from 1.
                    let attempt = attempt
                        .or_else(|| env_u32("CLOUD_RUN_TASK_ATTEMPT").map(|a| a + 1))
                        .unwrap_or(1);
                    let kind = match (*assemble, *palette) {
                        (true, _) => TaskKind::Assemble,
                        (_, true) => TaskKind::Palette,
                        _ => TaskKind::Chunk,
                    };
                    (chunk, attempt, kind)
                }
            };
            let req = ChunkRequest {
                assemble: task_kind == TaskKind::Assemble,
                palette: task_kind == TaskKind::Palette,
                ping: task_kind == TaskKind::Ping,
                ..ChunkRequest::render(job, chunk, attempt)
            };
            let result = worker::run(&req).await;
            if let (true, Err(f)) = (batch, &result) {
                worker::record_failure(&req, f).await;
            }
            let code = match &result {
                Ok(_) => 0,
                Err(f) if f.retryable => EXIT_RETRYABLE,
                Err(_) => EXIT_FATAL,
            };
            if let Err(f) = &result {
                eprintln!("error: {}", f.message);
            }
            println!("{}", serde_json::to_string(&WorkerResponse::from(result))?);
            Ok(code)
        }
        Command::Worker(WorkerCommand::Lambda) => {
            worker::lambda::run()
                .await
                .map_err(|e| anyhow::anyhow!("Lambda runtime failed: {e}"))?;
            Ok(0)
        }
        Command::Worker(WorkerCommand::Serve {
            listen,
            token,
            no_auth,
        }) => {
            let auth = match (token, no_auth) {
                (Some(t), _) if !t.is_empty() => ServerAuth::Token(t.clone()),
                (_, true) => ServerAuth::Disabled,
                _ => bail!("worker serve needs --token TOKEN (or HELIOS_WORKER_TOKEN), or --no-auth to accept anyone"),
            };
            let addr = match listen {
                Some(a) => *a,
                None => {
                    let port = std::env::var("PORT")
                        .ok()
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(8080u16);
                    std::net::SocketAddr::from(([0, 0, 0, 0], port))
                }
            };
            let shutdown = CancellationToken::new();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                stop_signal().await;
                tracing::info!("shutting down after the chunk in flight");
                stop.cancel();
            });
            worker::server::serve(addr, auth, shutdown)
                .await
                .with_context(|| format!("cannot serve on {addr}"))?;
            Ok(0)
        }
        Command::Render(a) => {
            let ctx = State::open(&cli)?;
            let local = matches!(a.adapter.adapter, None | Some(AdapterKind::Local));
            let output = args::output_or_default(&a.output);
            if !a.no_download {
                plan::check_writable(&output)?;
            }
            let mut spec =
                plan::build_spec(&a.plan, &ctx.storage, local, &plan::Target::output(&output))
                    .await?;
            plan::check_output(&output, &spec)?;
            spec.video.segments = a.stitch.segments(&output, &spec.video);
            preflight()?;
            // Chunks are ours to plan: the estimate's probe may be the first of them.
            let ours = a.plan.chunks.is_none() && a.plan.frames_per_chunk.is_none();
            submit_and_run(
                &cli,
                &ctx,
                &a.adapter,
                &a.budget,
                spec,
                &output,
                (!a.no_download, ours),
            )
            .await
        }
        Command::Still(a) => {
            let ctx = State::open(&cli)?;
            let local = matches!(a.adapter.adapter, None | Some(AdapterKind::Local));
            let output = a
                .output
                .clone()
                .unwrap_or_else(|| std::path::PathBuf::from("output.png"));
            if !a.no_download {
                plan::check_writable(&output)?;
            }
            let target = plan::Target {
                output: Some(&output),
                still: Some(args::StillFrame::new(a.frame, a.time)),
            };
            let spec = plan::build_spec(&a.plan_settings(), &ctx.storage, local, &target).await?;
            preflight()?;
            let (orch, rx) = ctx.orchestrator(&a.adapter, None).await?;
            let job = orch
                .submit_with(spec, &ctx.storage, &output, !a.no_download)
                .await?;
            run_job(&cli, orch, rx, &job.id).await
        }
        Command::Batch(a) => {
            let ctx = State::open(&cli)?;
            preflight()?;
            let (orch, _rx) = ctx.orchestrator(&a.adapter, None).await?;
            let (id, jobs) = batch::submit(&cli, &ctx, &orch, a).await?;
            batch::run(&cli, orch, &id, jobs).await
        }
        Command::Plan(a) => {
            let ctx = State::open(&cli)?;
            // A plan is run with the local adapter unless said otherwise.
            let target = plan::Target {
                output: a.output.as_deref(),
                still: None,
            };
            let local = matches!(a.adapter.adapter, None | Some(AdapterKind::Local));
            let spec = plan::build_spec(&a.plan, &ctx.storage, local, &target).await?;
            let config = a.adapter.config(None)?;
            estimate::Budgeted::new(
                false,
                &ctx.storage,
                &a.budget,
                &config,
                &spec,
                &spec.chunks,
                false,
            )
            .await?;
            let json = serde_json::to_string_pretty(&spec)? + "\n";
            if a.emit.as_os_str() == "-" {
                print!("{json}");
            } else {
                std::fs::write(&a.emit, json)
                    .with_context(|| format!("cannot write {}", a.emit.display()))?;
                eprintln!(
                    "wrote {} ({} frames in {} chunks)",
                    a.emit.display(),
                    spec.frame_count(),
                    spec.chunks.len()
                );
            }
            Ok(0)
        }
        Command::Run(a) => {
            let text = std::fs::read_to_string(&a.spec)
                .with_context(|| format!("cannot read job spec {}", a.spec.display()))?;
            if let Some(job) = helios_job::read(&a.spec, &text)? {
                return run_helios_job(&cli, a, &job).await;
            }
            if a.chunk_commands {
                bail!(
                    "--chunk-commands is for Helios job files; {} is a helios-infra job spec",
                    a.spec.display()
                );
            }
            let mut spec: spec::JobSpec = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a valid job spec", a.spec.display()))?;
            if let Some(c) = a.concurrency {
                spec.concurrency = c;
            }
            spec::validate(&spec)
                .with_context(|| format!("{} is not a valid job spec", a.spec.display()))?;
            let output = args::output_or_default(&a.output);
            if !a.no_download {
                plan::check_writable(&output)?;
            }
            plan::adopt_output(&output, &mut spec);
            plan::check_output(&output, &spec)?;
            // The segments' form follows the output container, whatever the plan assumed.
            spec.video.segments = a.stitch.segments(&output, &spec.video);
            preflight()?;
            let ctx = State::open(&cli)?;
            plan::check_audio(&spec, None, Some(&ctx.storage)).await?;
            submit_and_run(
                &cli,
                &ctx,
                &a.adapter,
                &a.budget,
                spec,
                &output,
                (!a.no_download, false),
            )
            .await
        }
        Command::Resume(a) => {
            let ctx = State::open(&cli)?;
            if let Some(jobs) = ctx.batch(&a.id)? {
                preflight()?;
                let recorded = jobs.first().map(|j| j.adapter_config.clone());
                let config = a.adapter.config(recorded.as_deref())?;
                estimate::before_resume(cli.json, &*ctx.store, &a.budget, &config, &a.id, &jobs)
                    .await?;
                let (orch, _rx) = ctx.orchestrator(&a.adapter, recorded.as_deref()).await?;
                return batch::run(&cli, orch, &a.id, jobs).await;
            }
            let job = ctx.store.job(&a.id)?;
            if batch::is_refused(&job) {
                bail!(
                    "job {} cannot run: {}; correct the row and run the batch again",
                    job.id,
                    job.error.as_deref().unwrap_or_default()
                );
            }
            preflight()?;
            let config = a.adapter.config(Some(&job.adapter_config))?;
            let scope = crate::orchestrator::spend::scope_of(&job).to_string();
            estimate::before_resume(
                cli.json,
                &*ctx.store,
                &a.budget,
                &config,
                &scope,
                std::slice::from_ref(&job),
            )
            .await?;
            let (orch, rx) = ctx
                .orchestrator(&a.adapter, Some(&job.adapter_config))
                .await?;
            run_job(&cli, orch, rx, &a.id).await
        }
        Command::Ui(a) => {
            let ctx = State::open(&cli)?;
            let cfg = crate::ui::UiConfig {
                listen: a.listen,
                token: a.token.clone().filter(|t| !t.is_empty()),
                home: std::path::absolute(&ctx.home).unwrap_or(ctx.home.clone()),
                exe: std::env::current_exe().context("cannot find this program's path")?,
            };
            let listener = crate::ui::bind(&cfg).await?;
            let addr = listener.local_addr()?;
            let open = match &cfg.token {
                Some(_) => format!("http://{addr}/?token=<token>"),
                None => format!("http://{addr}/"),
            };
            eprintln!(
                "dashboard of {}: {open} (Ctrl-C stops it)",
                cfg.home.display()
            );
            if cli.json {
                println!(
                    "{}",
                    serde_json::json!({"event": "listening", "url": format!("http://{addr}/")})
                );
            }
            let stop = CancellationToken::new();
            let on_signal = stop.clone();
            tokio::spawn(async move {
                let _ = tokio::signal::ctrl_c().await;
                on_signal.cancel();
            });
            crate::ui::serve(cfg, ctx.store.clone(), listener, stop).await?;
            Ok(0)
        }
        Command::Cancel(a) => {
            let ctx = State::open(&cli)?;
            if let Some(jobs) = ctx.batch(&a.id)? {
                return batch::cancel(&ctx, &a.id, &jobs).await;
            }
            let job = ctx.store.job(&a.id)?;
            if !ctx.store.request_cancel(&a.id).await? {
                bail!("job {} has already ended ({})", a.id, job.state);
            }
            let locks = ctx.home.join("locks");
            if JobLock::is_held(&locks, &a.id) {
                eprintln!(
                    "cancelling job {}: its workers are being stopped; finished chunks are kept",
                    a.id
                );
            } else {
                ctx.store
                    .set_job_state(&a.id, JobState::Cancelled, Some("cancelled"))
                    .await?;
                eprintln!(
                    "job {} cancelled (it was not running); `helios-infra resume {}` continues it",
                    a.id, a.id
                );
            }
            Ok(0)
        }
        Command::Status(a) => {
            let ctx = State::open(&cli)?;
            if let Some(id) = &a.id {
                if let Some(jobs) = ctx.batch(id)? {
                    batch::show(&ctx, id, &jobs, cli.json)?;
                    return Ok(0);
                }
            }
            let locks = ctx.home.join("locks");
            let jobs = match &a.id {
                Some(id) => vec![ctx.store.job(id)?],
                None => ctx.store.jobs()?,
            };
            let mut values = Vec::new();
            for job in &jobs {
                let chunks = ctx.store.chunks(&job.id)?;
                if cli.json {
                    let mut v = status::job_json(job, &chunks, &locks, a.id.is_some());
                    status::add_spend(&mut v, &*ctx.store, job);
                    if a.id.is_some() {
                        status::add_attempts(&mut v, &ctx.store.attempts(&job.id)?);
                        v["spend"]["ledger"] = ctx
                            .store
                            .ledger(&job.id)?
                            .iter()
                            .map(|e| {
                                serde_json::json!({"task": e.task, "billed_ms": e.billed_ms, "usd": e.usd, "frames": e.frames})
                            })
                            .collect();
                        status::add_reports(&mut v, job, &chunks).await;
                    }
                    values.push(v);
                } else if a.id.is_some() {
                    let mut text = status::job_detail(job, &chunks, &locks);
                    if let Some(line) = status::spend_line(&*ctx.store, job) {
                        // After the job's first lines, before the chunk table.
                        let at = text.find("chunk  frames").unwrap_or(text.len());
                        text.insert_str(at, &format!("{line}\n"));
                    }
                    stdout(&text)?;
                } else {
                    stdout(&format!("{}\n", status::job_line(job, &chunks, &locks)))?;
                }
            }
            if cli.json {
                let out = match (&a.id, values.pop()) {
                    (Some(_), Some(v)) => v,
                    (_, last) => serde_json::Value::Array(values.into_iter().chain(last).collect()),
                };
                stdout(&format!("{}\n", serde_json::to_string_pretty(&out)?))?;
            } else if jobs.is_empty() {
                eprintln!("no jobs in {}", ctx.home.join("jobs.db").display());
            }
            Ok(0)
        }
        Command::Deploy(args::DeployCommand::Aws(a)) => deploy::aws(a, cli.json).await,
        Command::Deploy(args::DeployCommand::Gcp(a)) => deploy::gcp(a, cli.json).await,
        Command::Deploy(args::DeployCommand::Kubernetes(a)) => {
            deploy::kubernetes(a, cli.json).await
        }
        Command::Destroy(args::DestroyCommand::Aws(a)) => deploy::destroy_aws(a, cli.json).await,
        Command::Doctor(a) => {
            let storage = match &cli.storage {
                Some(u) => u.clone(),
                None => cli.home.join("storage").display().to_string(),
            };
            let checks = doctor::run(&storage, &a.adapter).await;
            for c in &checks {
                if cli.json {
                    println!("{}", serde_json::to_string(c)?);
                } else {
                    eprintln!("{}", c.line());
                }
            }
            let failed = checks.iter().filter(|c| !c.ok).count();
            if failed > 0 {
                eprintln!("{failed} of {} checks failed", checks.len());
                Ok(1)
            } else {
                eprintln!("all {} checks passed", checks.len());
                Ok(0)
            }
        }
        Command::Stitch(a) => {
            preflight()?;
            stitch_files(&a.segments, &a.output).await?;
            eprintln!(
                "stitched {} segments into {}",
                a.segments.len(),
                a.output.display()
            );
            Ok(0)
        }
    }
}

/// Writes to standard output; a reader that has gone away (`status --json | head`) ends
/// the output quietly instead of making the process panic as `println!` does.
fn stdout(text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}

/// Fails early, with the fix, when FFmpeg is missing.
fn preflight() -> anyhow::Result<()> {
    media::Tool::Ffmpeg.locate()?;
    media::Tool::Ffprobe.locate()?;
    Ok(())
}

/// Opened state: the job store and storage under `--home`.
struct State {
    home: PathBuf,
    store: Arc<SqliteStore>,
    storage: Storage,
    webhook_secret: Option<String>,
}

impl State {
    fn open(cli: &Cli) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&cli.home)
            .with_context(|| format!("cannot create state directory {}", cli.home.display()))?;
        let db = cli.home.join("jobs.db");
        let store = SqliteStore::open(&db)
            .with_context(|| format!("cannot open job store {}", db.display()))?;
        let storage_url = match &cli.storage {
            Some(u) => u.clone(),
            None => cli.home.join("storage").display().to_string(),
        };
        Ok(Self {
            home: cli.home.clone(),
            store: Arc::new(store),
            storage: Storage::open(&storage_url)?,
            webhook_secret: cli.webhook_secret.clone().filter(|s| !s.is_empty()),
        })
    }

    /// The jobs of batch `id` when `id` names a batch rather than a job.
    fn batch(&self, id: &str) -> anyhow::Result<Option<Vec<crate::orchestrator::JobRecord>>> {
        if self.store.job(id).is_ok() {
            return Ok(None);
        }
        let jobs = self.store.batch_jobs(id)?;
        Ok((!jobs.is_empty()).then_some(jobs))
    }

    /// An orchestrator with the chosen adapter, and the receiving end of its events.
    async fn orchestrator(
        &self,
        args: &AdapterArgs,
        recorded: Option<&str>,
    ) -> anyhow::Result<(Orchestrator, UnboundedReceiver<Event>)> {
        let config = args.config(recorded)?;
        let adapter = args.build(&config).await?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        Ok((
            Orchestrator {
                adapter_config: serde_json::to_string(&config)?,
                events: Some(tx),
                webhook_secret: self.webhook_secret.clone(),
                speculation: args.speculation(&config),
                meter: crate::orchestrator::spend::Meter::new(config.price()),
                ..Orchestrator::new(self.store.clone(), adapter, self.home.clone())
            },
            rx,
        ))
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn stop_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let term = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// `run FILE` for a Helios job file: its chunks mapped onto this project's renderer (or run
/// as their own commands with `--chunk-commands`), stitched here.
async fn run_helios_job(
    cli: &Cli,
    a: &args::RunArgs,
    job: &helios_job::HeliosJob,
) -> anyhow::Result<i32> {
    let mapped = helios_job::map(job, &a.spec, a.chunk_commands)?;
    for note in &mapped.notes {
        eprintln!("note: {note}");
    }
    let mut spec = mapped.spec;
    let output = args::output_or_default(&a.output);
    if !a.no_download {
        plan::check_writable(&output)?;
    }
    let ctx = State::open(cli)?;
    let local = matches!(a.adapter.adapter, None | Some(AdapterKind::Local));
    let page = matches!(spec.composition, spec::Composition::Browser(_));
    spec.concurrency = a
        .concurrency
        .unwrap_or_else(|| plan::default_workers(page, local));
    if let (spec::Composition::Browser(b), Some(dir)) = (&mut spec.composition, &mapped.bundle_dir)
    {
        b.browsers = plan::default_browsers(spec.concurrency, local);
        // The sound of the page's media elements, as `render` finds it.
        let inspection = crate::render::browser::inspect(dir, b, &spec.video, true)
            .await
            .with_context(|| {
                format!(
                    "loading {} for its media elements",
                    dir.join(&b.entry).display()
                )
            })?;
        spec.audio = plan::discovered_audio(&inspection.media, spec.video.fps);
        b.bundle = plan::upload_bundle(dir, &ctx.storage).await?;
    }
    spec::validate(&spec)
        .with_context(|| format!("{} does not map onto a valid job", a.spec.display()))?;
    plan::check_output(&output, &spec)?;
    spec.video.segments = a.stitch.segments(&output, &spec.video);
    preflight()?;
    plan::check_audio(&spec, mapped.bundle_dir.as_deref(), Some(&ctx.storage)).await?;
    submit_and_run(
        cli,
        &ctx,
        &a.adapter,
        &a.budget,
        spec,
        &output,
        (!a.no_download, false),
    )
    .await
}

/// Estimates a new job (refusing one whose estimate is over its cap), submits it with its
/// cap and estimate, and runs it. With `chunks_ours` (no chunking was asked for), a probe
/// on local workers renders the job's first frames as its first chunk, kept.
async fn submit_and_run(
    cli: &Cli,
    ctx: &State,
    adapter: &AdapterArgs,
    budget: &args::BudgetArgs,
    mut spec: spec::JobSpec,
    output: &Path,
    (download, chunks_ours): (bool, bool),
) -> anyhow::Result<i32> {
    let media = plan::hls_media(output, &mut spec);
    let output = media.as_path();
    let config = adapter.config(None)?;
    let keep = chunks_ours && estimate::keeps_probe(budget, &config, &spec);
    if keep {
        estimate::carve_probe_chunk(&mut spec);
    }
    let budgeted = estimate::Budgeted::new(
        cli.json,
        &ctx.storage,
        budget,
        &config,
        &spec,
        &spec.chunks,
        keep,
    )
    .await?;
    let (orch, rx) = ctx.orchestrator(adapter, None).await?;
    let job = orch
        .submit_with(spec, &ctx.storage, output, download)
        .await?;
    budgeted.record(&*ctx.store, &job.id, false).await?;
    if let Some(kept) = budgeted.kept {
        orch.keep_attempt(&job.id, kept).await?;
    }
    run_job(cli, orch, rx, &job.id).await
}

/// Runs a job with progress display and Ctrl-C handling.
async fn run_job(
    cli: &Cli,
    orch: Orchestrator,
    rx: UnboundedReceiver<Event>,
    id: &str,
) -> anyhow::Result<i32> {
    let mode = progress::Mode::pick(cli.json);
    let shower = tokio::spawn(progress::show(rx, mode));
    let cancel = orch.cancel.clone();
    let signals = tokio::spawn(async move {
        stop_signal().await;
        cancel.cancel();
    });
    let started = std::time::Instant::now();
    let result = orch.run(id).await;
    signals.abort();
    orch.adapter.shutdown().await;
    drop(orch);
    let _ = shower.await;
    let outcome = result?;
    if !outcome.downloaded {
        // The one thing a script needs: where the output is.
        println!("{}", outcome.url);
    }
    if !cli.json {
        let to = if outcome.downloaded {
            outcome.output.display().to_string()
        } else {
            format!("storage, left there ({})", outcome.url)
        };
        eprintln!(
            "rendered {} frames to {to} (job {}, {} chunk(s) rendered, {:.1}s)",
            outcome.frames,
            outcome.job,
            outcome.chunks_rendered,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(0)
}

/// `stitch`: probe, check and concatenate arbitrary segment files.
async fn stitch_files(paths: &[PathBuf], output: &Path) -> anyhow::Result<()> {
    // Probe a few segments at a time: each is an ffprobe process.
    let infos: Vec<_> = futures::stream::iter(paths.iter().map(|p| async move {
        let info = media::probe(p)
            .await
            .with_context(|| format!("cannot read segment {}", p.display()))?;
        Ok::<_, anyhow::Error>(info)
    }))
    .buffered(4)
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .collect::<Result<Vec<_>, _>>()?;
    let params: Vec<String> = infos.iter().map(|i| i.codec_parameters()).collect();
    let facts: Vec<_> = infos
        .iter()
        .zip(&params)
        .map(|(i, p)| (p.as_str(), i.frames, i.starts_with_keyframe, i.frames))
        .collect();
    let problems = check_segments(&facts);
    if !problems.is_empty() {
        let list: Vec<String> = problems
            .iter()
            .map(|p| format!("  - {}: {}", paths[p.index].display(), p.reason))
            .collect();
        bail!(
            "these segments cannot be concatenated without re-encoding:\n{}",
            list.join("\n")
        );
    }
    let fps: spec::Fps = infos[0]
        .frame_rate
        .parse()
        .map_err(|e: String| anyhow::anyhow!("{}: {e}", paths[0].display()))?;
    let segments: Vec<Segment> = paths
        .iter()
        .zip(&infos)
        .map(|(p, i)| Segment {
            path: p.clone(),
            frames: i.frames,
        })
        .collect();
    ConcatStitcher.stitch(&segments, fps, None, output).await?;
    Ok(())
}

/// What a worker task does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TaskKind {
    /// Render a chunk.
    Chunk,
    /// Join objects into a part of an output (in-bucket stitching).
    Assemble,
    /// Make a GIF job's palette.
    Palette,
    /// Answer a ping (through storage, for batch engines).
    Ping,
}

/// Entry `task` of a `HELIOS_TASKS` list ("chunk:attempt,…", an assembly task being
/// "index:attempt:assemble", a palette task "0:attempt:palette"): chunk, attempt, kind.
fn task_entry(list: &str, task: u32) -> anyhow::Result<(u32, u32, TaskKind)> {
    let entry = list
        .split(',')
        .nth(task as usize)
        .ok_or_else(|| anyhow::anyhow!("HELIOS_TASKS has no entry for task {task}"))?;
    let bad = || anyhow::anyhow!("HELIOS_TASKS entry {entry:?} is not chunk:attempt");
    let mut fields = entry.trim().split(':');
    let parse = |v: Option<&str>| v.and_then(|v| v.parse::<u32>().ok()).ok_or_else(bad);
    let chunk = parse(fields.next())?;
    let attempt = parse(fields.next())?;
    let kind = match fields.next() {
        None => TaskKind::Chunk,
        Some("assemble") => TaskKind::Assemble,
        Some("palette") => TaskKind::Palette,
        Some("ping") => TaskKind::Ping,
        Some(_) => return Err(bad()),
    };
    Ok((chunk, attempt, kind))
}

#[cfg(test)]
mod tests {
    use super::{error_chain, task_entry, TaskKind};

    #[test]
    fn error_chains_say_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::IsADirectory, "Is a directory");
        let e = anyhow::Error::new(io)
            .context("cannot move the output to out.mp4: Is a directory")
            .context("stitching job 01J");
        assert_eq!(
            error_chain(&e),
            "stitching job 01J: cannot move the output to out.mp4: Is a directory"
        );
    }

    #[test]
    fn task_entries_name_chunks_and_assembly_tasks() {
        let list = "3:1,7:2:assemble,5:1";
        assert_eq!(task_entry(list, 0).unwrap(), (3, 1, TaskKind::Chunk));
        assert_eq!(task_entry(list, 1).unwrap(), (7, 2, TaskKind::Assemble));
        assert_eq!(
            task_entry("0:3:palette", 0).unwrap(),
            (0, 3, TaskKind::Palette)
        );
        assert!(task_entry(list, 3).is_err());
        assert!(task_entry("3:1:render", 0).is_err());
        assert!(task_entry("3", 0).is_err());
    }
}
