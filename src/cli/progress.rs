//! Showing progress events: a progress bar on a terminal, JSON lines with `--json`, plain
//! lines otherwise.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::orchestrator::Event;

/// How events are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One JSON object per line on stdout.
    Json,
    /// A progress bar on stderr.
    Bar,
    /// Notable events as lines on stderr.
    Plain,
}

impl Mode {
    /// JSON if asked, a bar when stderr is a terminal, plain lines otherwise.
    pub fn pick(json: bool) -> Self {
        if json {
            Mode::Json
        } else if std::io::stderr().is_terminal() {
            Mode::Bar
        } else {
            Mode::Plain
        }
    }
}

/// Consumes events until the sender is dropped.
pub async fn show(mut rx: UnboundedReceiver<Event>, mode: Mode) {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if mode == Mode::Bar {
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} frames  {per_sec}  ETA {eta}  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
    } else {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let (mut chunks_done, mut chunks_total) = (0u32, 0u32);
    while let Some(ev) = rx.recv().await {
        if mode == Mode::Json {
            if let Ok(line) = serde_json::to_string(&ev) {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
            continue;
        }
        let line = match &ev {
            Event::JobStarted {
                job,
                chunks,
                frames,
                frames_done,
                pending,
            } => {
                chunks_total = *chunks;
                chunks_done = chunks - pending;
                bar.set_length(*frames);
                bar.set_position(*frames_done);
                bar.reset_eta();
                Some(format!(
                    "job {job}: {frames} frames in {chunks} chunks, {pending} to render"
                ))
            }
            Event::ChunkDone { frames, .. } => {
                chunks_done += 1;
                bar.inc(*frames);
                bar.set_message(format!("{chunks_done}/{chunks_total} chunks"));
                None
            }
            Event::ChunkRetry {
                chunk,
                attempt,
                backoff_ms,
                error,
            } => Some(format!(
                "chunk {chunk} attempt {attempt} failed, retrying in {:.1}s: {}",
                *backoff_ms as f64 / 1000.0,
                first_line(error)
            )),
            Event::ChunkFailed {
                chunk,
                attempts,
                error,
            } => Some(format!(
                "chunk {chunk} failed after {attempts} attempt(s): {}",
                first_line(error)
            )),
            Event::SegmentRejected { chunk, reason } => Some(format!(
                "segment of chunk {chunk} rejected ({reason}); rendering it again"
            )),
            Event::Stitching { segments } => {
                bar.set_message(format!("stitching {segments} segments"));
                None
            }
            _ => None,
        };
        if let Some(line) = line {
            if mode == Mode::Bar {
                bar.println(line);
            } else {
                eprintln!("{line}");
            }
        }
    }
    bar.finish_and_clear();
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}
