//! Child processes: spawned with an argument vector (never a shell), killed with their
//! parent, and with a bounded tail of their stderr kept for error messages.

use std::collections::VecDeque;
use std::process::{ExitStatus, Stdio};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

/// Turns transparent huge pages off for this process and every process it starts (the flag
/// is inherited across fork and exec: FFmpeg, Chromium). A worker frees and touches fresh
/// multi-megabyte frame buffers every frame, and so does FFmpeg; with huge pages each such
/// touch had the kernel zero a whole 2 MiB page, about 11 ms of CPU a 720p frame between
/// the worker and FFmpeg (perf, docs/BENCHMARKS.md). Best effort: a kernel that refuses
/// leaves things as they were.
pub fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = nix::sys::prctl::set_thp_disable(true) {
        tracing::debug!("cannot turn transparent huge pages off: {e}");
    }
}

/// Lines of stderr kept for error messages.
pub const TAIL_LINES: usize = 20;

/// Makes a child die with this process: `kill_on_drop` for normal drops (timeouts,
/// cancellation) and `PR_SET_PDEATHSIG` for when this process itself is killed.
pub fn die_with_parent(cmd: &mut Command) -> &mut Command {
    cmd.kill_on_drop(true);
    #[cfg(target_os = "linux")]
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
    cmd
}

/// The last lines a stream printed.
#[derive(Debug, Default, Clone)]
pub struct Tail(VecDeque<String>);

impl Tail {
    /// The kept lines joined by newlines.
    pub fn text(&self) -> String {
        self.0.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

/// Reads a stream to its end, keeping its last [`TAIL_LINES`] lines (each cut to 500 bytes).
pub async fn read_tail(stream: impl AsyncRead + Unpin) -> Tail {
    let mut lines = BufReader::new(stream).lines();
    let mut tail = VecDeque::with_capacity(TAIL_LINES);
    while let Ok(Some(mut line)) = lines.next_line().await {
        if line.len() > 500 {
            let mut cut = 500;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push('…');
        }
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    Tail(tail)
}

/// Outcome of [`run`].
#[derive(Debug)]
pub struct Finished {
    /// Exit status.
    pub status: ExitStatus,
    /// Whole stdout (small outputs only: JSON from ffprobe or a worker).
    pub stdout: Vec<u8>,
    /// Tail of stderr.
    pub stderr: Tail,
}

/// Runs a command to completion with stdin closed, capturing stdout and a stderr tail.
pub async fn run(cmd: &mut Command) -> std::io::Result<Finished> {
    die_with_parent(cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    collect(&mut child).await
}

/// Waits for a child spawned with piped stdout and stderr, capturing stdout and a stderr tail.
pub async fn collect(child: &mut tokio::process::Child) -> std::io::Result<Finished> {
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let out_task = async {
        let mut buf = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut stdout, &mut buf).await;
        buf
    };
    let (stdout, stderr, status) = tokio::join!(out_task, read_tail(stderr), child.wait());
    Ok(Finished {
        status: status?,
        stdout,
        stderr,
    })
}

/// Describes an exit status for people: `exit code 3` or `killed by signal 9 (SIGKILL)`.
pub fn describe_status(status: &ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            let name = nix::sys::signal::Signal::try_from(sig)
                .map(|s| s.as_str().to_string())
                .unwrap_or_default();
            return format!("killed by signal {sig} ({name})");
        }
    }
    match status.code() {
        Some(c) => format!("exit code {c}"),
        None => "unknown exit status".into(),
    }
}

/// Gives a renderer process a clean, fixed environment instead of the worker's: the
/// worker may hold storage or cloud credentials that a user's renderer (or a page's
/// browser) has no business seeing, and host variables would make frames depend on the
/// machine. Kept: `PATH` (to find programs); set: `HOME` and `TMPDIR` to the attempt's
/// private directory, a UTF-8 locale and UTC.
pub fn clean_env(cmd: &mut tokio::process::Command, home: &std::path::Path) {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    cmd.env_clear()
        .env("PATH", path)
        .env("HOME", home)
        .env("TMPDIR", home)
        .env("LANG", "C.UTF-8")
        .env("LC_ALL", "C.UTF-8")
        .env("TZ", "UTC");
}
