//! The ping task (`{"ping": true}`): a worker says what it is and what it can do, without
//! touching any job. Every adapter carries it like a chunk request, so `doctor` checks the
//! whole path to a worker (credentials, network, the function or service, the image).

use serde::{Deserialize, Serialize};

use super::protocol::{ChunkReport, ChunkRequest, Timings, WorkerFailure};

/// Encoders a job may need; a ping lists those this worker's FFmpeg has.
const ENCODERS: &[&str] = &[
    "libx264",
    "libx265",
    "libvpx-vp9",
    "libsvtav1",
    "libaom-av1",
    "prores_ks",
    "ffv1",
    "gif",
    "png",
    "libwebp",
];

/// What a worker answers to a ping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PingInfo {
    /// helios-infra's version.
    pub version: String,
    /// `chromium --version`, or why there is none.
    pub chromium: String,
    /// The first line of `ffmpeg -version`, or why there is none.
    pub ffmpeg: String,
    /// Font files fontconfig knows.
    pub fonts: u64,
    /// Free space in the temporary directory, in MB.
    pub tmp_free_mb: u64,
    /// CPUs this worker may use.
    pub cpus: u32,
    /// Memory of the worker in MB (the Lambda function's memory, else the machine's).
    pub memory_mb: u64,
    /// Tasks it runs.
    pub tasks: Vec<String>,
    /// Encoders its FFmpeg has, of those a job may need.
    pub encoders: Vec<String>,
}

/// Answers a ping: a report with no segment and the worker's [`PingInfo`].
pub async fn answer(req: &ChunkRequest) -> Result<ChunkReport, WorkerFailure> {
    let started = std::time::Instant::now();
    let info = tokio::task::spawn_blocking(gather)
        .await
        .map_err(|e| WorkerFailure::retryable(super::FailureKind::Internal, e.to_string()))?;
    let report = ChunkReport {
        job: String::new(),
        chunk: req.chunk,
        attempt: req.attempt,
        start: 0,
        end: 0,
        frames: 0,
        segment: String::new(),
        bytes: 0,
        sha256: String::new(),
        md5: None,
        timings: Timings {
            total_ms: started.elapsed().as_millis() as u64,
            ..Timings::default()
        },
        stats: Default::default(),
        stages: None,
        media: None,
        ping: Some(Box::new(info)),
    };
    // A batch engine's task has no answer channel: with a job URL, the answer goes where
    // a chunk's report would (which also shows the worker can write to the storage).
    if !req.job.is_empty() {
        let (storage, job) = crate::adapters::tasks::job_storage(&req.job)?;
        let body = serde_json::to_vec(&report)
            .map_err(|e| WorkerFailure::fatal(super::FailureKind::Internal, e.to_string()))?;
        storage
            .put(
                &crate::storage::keys::attempt_report(&job, req.chunk, req.attempt),
                body.into(),
            )
            .await
            .map_err(|e| {
                WorkerFailure::retryable(
                    super::FailureKind::Io,
                    format!("cannot write the ping's answer to {}: {e}", storage.url()),
                )
            })?;
    }
    Ok(report)
}

fn first_line(program: &std::path::Path, args: &[&str]) -> String {
    match std::process::Command::new(program).args(args).output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_string(),
        Ok(o) => format!(
            "{} {} failed: {}",
            program.display(),
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => format!("cannot run {}: {e}", program.display()),
    }
}

fn gather() -> PingInfo {
    let chromium = match crate::render::browser::locate_chromium() {
        Ok(p) => first_line(&p, &["--version"]),
        Err(e) => format!("missing: {e}"),
    };
    let (ffmpeg, encoders) = match crate::media::Tool::Ffmpeg.locate() {
        Ok(p) => (
            first_line(&p, &["-hide_banner", "-version"]),
            ENCODERS
                .iter()
                .filter(|e| crate::media::has_encoder(e))
                .map(|e| e.to_string())
                .collect(),
        ),
        Err(e) => (format!("missing: {e}"), Vec::new()),
    };
    let fonts = std::process::Command::new("fc-list")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().count() as u64)
        .unwrap_or(0);
    let tmp_free_mb = nix::sys::statvfs::statvfs(&std::env::temp_dir())
        .map(|s| s.blocks_available() * s.fragment_size() / (1024 * 1024))
        .unwrap_or(0);
    let memory_mb = std::env::var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        .ok()
        .and_then(|m| m.parse().ok())
        .or_else(|| {
            let info = std::fs::read_to_string("/proc/meminfo").ok()?;
            let kb: u64 = info
                .lines()
                .find(|l| l.starts_with("MemTotal:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some(kb / 1024)
        })
        .unwrap_or(0);
    PingInfo {
        version: env!("CARGO_PKG_VERSION").to_string(),
        chromium,
        ffmpeg,
        fonts,
        tmp_free_mb,
        cpus: std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1),
        memory_mb,
        tasks: ["chunk", "palette", "assemble", "ping"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        encoders,
    }
}
