//! One chunk's frames from several browsers, merged in order into one encoder.
//!
//! The chunk is cut into small contiguous blocks, dealt out in turn: browser `k` of `n`
//! renders blocks `k`, `k + n`, `k + 2n`… (a fixed deal, not first come first served, so
//! that each browser draws the same frames in the same order on every run: Chromium keeps
//! some raster decisions from one drawing to the next). It renders each block frame by
//! frame (seek, capture) and hands every capture to the blocking thread pool for decoding;
//! the writer takes decoded frames strictly in frame order and streams them raw into
//! FFmpeg. No stage waits for one it does not depend on: while a browser seeks frame
//! `f + 1`, frame `f` is being decoded and frame `f − k` encoded. A browser may run at most
//! `browsers` blocks ahead of the encoder, which bounds memory.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::frames::{self, Layout, RawFrame};
use super::page::{FramePage, FrameTimes, Shot};
use crate::media;
use crate::process;
use crate::render::{encoder, RenderError};
use crate::spec::{Chunk, JobSpec, VideoSpec};

/// Longest block, in frames: short enough that browsers share a chunk evenly.
const MAX_BLOCK: u64 = 32;
/// Shortest block (but for the memory bound): fewer, longer blocks mean fewer frames drawn
/// right after a jump in time.
pub(super) const MIN_BLOCK: u64 = 8;
/// Frames drawn, not captured, before each block that does not start the timeline: what the
/// compositor remembers of earlier drawings (measured: two frames deep for scaled, blurred
/// and shadowed layers under GSAP) is then the same as when the frames come in order.
const WARM_UP_FRAMES: u64 = 2;
/// Raw frames that may wait for the encoder, in bytes (the window of blocks in flight).
const WINDOW_BYTES: u64 = 512 << 20;

/// A captured frame on its way to the writer.
enum Captured {
    /// Being decoded on the thread pool.
    Decoding(JoinHandle<Result<RawFrame, String>>),
    /// Raw pixels as the page sent them: nothing to decode.
    Raw(Result<RawFrame, String>),
    /// Measuring the capture ceiling: nothing to decode or encode.
    Discarded,
}

/// Cuts `[start, end)` into contiguous blocks for `browsers` browsers of frames of
/// `frame_bytes` each. Blocks are [`MIN_BLOCK`] to [`MAX_BLOCK`] frames, and small enough
/// that the blocks in flight fit [`WINDOW_BYTES`]; they shrink towards the end (each is
/// about a `2 × browsers`-th of what remains), so that browsers finish together.
pub(super) fn plan_blocks(
    (start, end): (u64, u64),
    browsers: u32,
    frame_bytes: u64,
) -> Vec<std::ops::Range<u64>> {
    let n = u64::from(browsers.max(1));
    let longest = MAX_BLOCK
        .min(WINDOW_BYTES / (frame_bytes.max(1) * (n + 1)))
        .max(1);
    let mut out = Vec::new();
    let mut at = start;
    while at < end {
        let len = (end - at)
            .div_ceil(2 * n)
            .clamp(MIN_BLOCK.min(longest), longest)
            .min(end - at);
        out.push(at..at + len);
        at += len;
    }
    out
}

/// What the stages cost, summed over the chunk.
#[derive(Debug, Default)]
pub(super) struct Totals {
    /// Seek, settle and capture time, summed over browsers.
    pub times: FrameTimes,
    /// Decoding time on the thread pool.
    pub decode: Duration,
    /// The writer blocked on FFmpeg's input (the encoder is the bottleneck).
    pub encode_wait: Duration,
    /// The writer waited for the next frame in order (capture is the bottleneck).
    pub frame_wait: Duration,
    /// From the last frame written to FFmpeg's exit (the encoder's tail).
    pub encode_finish: Duration,
    /// The pace at which frames arrived from the browsers over the chunk's second half,
    /// once every browser is warm, when the chunk has at least 4 frames.
    pub steady_frame: Option<Duration>,
    /// Page counters after the chunk's first frame.
    pub page_stats: BTreeMap<String, u64>,
}

/// The blocks of a chunk and the first frame that failed.
struct Blocks {
    ranges: Vec<std::ops::Range<u64>>,
    /// The lowest frame a browser failed on (`u64::MAX` while none has): frames below it
    /// are still rendered, so that the error reported is the first frame's, as with one
    /// browser, whichever browser got there first.
    failed_at: watch::Sender<u64>,
}

impl Blocks {
    fn fail(&self, f: u64) {
        self.failed_at.send_if_modified(|at| {
            let lower = f < *at;
            *at = (*at).min(f);
            lower
        });
    }

    fn failed_at(&self) -> u64 {
        *self.failed_at.borrow()
    }
}

/// Where the writer sends frames: chunk `chunk` of `spec`, written to `path` (see
/// `encoder::chunk_output`).
pub(super) type Sink<'a> = (&'a JobSpec, Chunk, &'a Path);

/// Renders `[start, end)` with `pages` into `output` (with no output, frames are captured
/// and dropped: the capture ceiling). Returns the pages (to be closed by the caller whatever
/// happened) and the outcome.
pub(super) async fn capture(
    pages: Vec<FramePage>,
    (start, end): (u64, u64),
    v: &VideoSpec,
    output: Option<Sink<'_>>,
) -> (Vec<FramePage>, Result<Totals, RenderError>) {
    let n = pages.len().max(1) as u32;
    let frame_bytes = u64::from(v.width) * u64::from(v.height) * 4;
    let blocks = std::sync::Arc::new(Blocks {
        ranges: plan_blocks((start, end), n, frame_bytes),
        failed_at: watch::Sender::new(u64::MAX),
    });
    let token = CancellationToken::new();
    let (written_tx, written_rx) = watch::channel(start);
    let (tx, rx) = mpsc::unbounded_channel::<(u64, Captured)>();
    let (w, h) = (v.width, v.height);
    let decode = output.is_some();

    let browsers: Vec<JoinHandle<_>> = pages
        .into_iter()
        .enumerate()
        .map(|(k, mut page)| {
            let blocks = blocks.clone();
            let written = written_rx.clone();
            let tx = tx.clone();
            let token = token.clone();
            tokio::spawn(async move {
                let mut times = FrameTimes::default();
                let mut stats = BTreeMap::new();
                let r = browse(
                    &mut page,
                    &blocks,
                    (k, n as usize),
                    written,
                    &tx,
                    &token,
                    decode.then_some((w, h)),
                    &mut times,
                    &mut stats,
                )
                .await;
                (page, r, times, stats)
            })
        })
        .collect();
    drop(tx);

    let written = write(rx, (start, end), output, &written_tx, &token).await;
    if written.is_err() {
        token.cancel();
    }
    let mut totals = Totals::default();
    let mut pages = Vec::new();
    let mut first_error: Option<(u64, RenderError)> = None;
    for b in browsers {
        let failed = match b.await {
            Ok((page, r, times, stats)) => {
                pages.push(page);
                totals.times.seek += times.seek;
                totals.times.settle += times.settle;
                totals.times.capture += times.capture;
                totals.page_stats.extend(stats);
                r.err()
            }
            Err(e) => Some((
                u64::MAX,
                RenderError::Io {
                    context: "a capture task failed".into(),
                    source: std::io::Error::other(e),
                },
            )),
        };
        if let Some((f, e)) = failed {
            if first_error.as_ref().is_none_or(|(at, _)| f < *at) {
                first_error = Some((f, e));
            }
        }
    }
    let first_error = first_error.map(|(_, e)| e);
    // A browser's own failure explains a writer that ran out of frames better than the
    // writer can.
    let result = match (first_error, written) {
        (Some(e), _) => Err(e),
        (None, Err(e)) => Err(e),
        (None, Ok(w)) => {
            totals.decode = w.decode;
            totals.encode_wait = w.encode_wait;
            totals.frame_wait = w.frame_wait;
            totals.encode_finish = w.finish;
            totals.steady_frame = w.steady_frame;
            Ok(totals)
        }
    };
    (pages, result)
}

/// Browser `k` of `n`: for each of its blocks, wait for the window, then seek and capture
/// the block's frames.
#[allow(clippy::too_many_arguments)]
async fn browse(
    page: &mut FramePage,
    blocks: &Blocks,
    (k, n): (usize, usize),
    mut written: watch::Receiver<u64>,
    tx: &mpsc::UnboundedSender<(u64, Captured)>,
    token: &CancellationToken,
    decode: Option<(u32, u32)>,
    times: &mut FrameTimes,
    stats: &mut BTreeMap<String, u64>,
) -> Result<(), (u64, RenderError)> {
    let mut failed_at = blocks.failed_at.subscribe();
    // The frame this browser drew last, plus one: a block starting there is no jump.
    let mut follows = None;
    for b in (k..blocks.ranges.len()).step_by(n.max(1)) {
        let range = blocks.ranges[b].clone();
        // Block b starts once the encoder has reached block b − n, so at most n + 1 blocks
        // are in flight. The block the encoder waits on is always being rendered: its
        // browser has finished its earlier blocks, which come before it.
        let gate = blocks.ranges[b.saturating_sub(n)].start;
        tokio::select! {
            r = written.wait_for(|&next| next >= gate) => if r.is_err() { return Ok(()) },
            _ = failed_at.wait_for(|&at| at <= range.start) => return Ok(()),
            _ = token.cancelled() => return Ok(()),
        }
        // After a jump in time, the frames before the block are drawn first (not captured):
        // Chromium's compositor keeps raster decisions from one drawing to the next, so a
        // block's first frames come out as they do in the middle of another chunking.
        if follows != Some(range.start) {
            for w in range.start.saturating_sub(WARM_UP_FRAMES)..range.start {
                page.draw(w, times).await.map_err(|e| {
                    blocks.fail(range.start);
                    (range.start, e)
                })?;
            }
        }
        follows = Some(range.end);
        for f in range {
            if token.is_cancelled() || f >= blocks.failed_at() {
                return Ok(());
            }
            let failed = |e: RenderError| {
                blocks.fail(f);
                (f, e)
            };
            page.seek(f, times).await.map_err(failed)?;
            if f == blocks.ranges[0].start {
                *stats = page
                    .page_stats()
                    .await
                    .into_iter()
                    .map(|(name, count)| (format!("page_{name}_to_first_frame"), count))
                    .collect();
            }
            let shot = page.capture(f, times).await.map_err(failed)?;
            let captured = match (decode, shot) {
                (Some((w, h)), Shot::Png(b64)) => {
                    Captured::Decoding(tokio::task::spawn_blocking(move || {
                        frames::decode(&b64, f, w, h)
                    }))
                }
                (Some((w, h)), Shot::Raw(px)) => Captured::Raw(frames::raw(px, f, w, h)),
                (None, _) => Captured::Discarded,
            };
            if tx.send((f, captured)).is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// What the writer measured.
struct Written {
    decode: Duration,
    encode_wait: Duration,
    frame_wait: Duration,
    finish: Duration,
    steady_frame: Option<Duration>,
}

/// Takes decoded frames in order and streams them into FFmpeg, started at the first frame
/// (its pixel layout decides FFmpeg's input format).
async fn write(
    mut rx: mpsc::UnboundedReceiver<(u64, Captured)>,
    (start, end): (u64, u64),
    output: Option<Sink<'_>>,
    written: &watch::Sender<u64>,
    token: &CancellationToken,
) -> Result<Written, RenderError> {
    let mut pending: BTreeMap<u64, Captured> = BTreeMap::new();
    let mut encoder: Option<(Child, ChildStdin, JoinHandle<process::Tail>, Layout)> = None;
    let mut out = Written {
        decode: Duration::ZERO,
        encode_wait: Duration::ZERO,
        frame_wait: Duration::ZERO,
        finish: Duration::ZERO,
        steady_frame: None,
    };
    // The pace of the second half of the frames, as they arrive from the browsers (in any
    // order): from the arrival that completes the first half to the last arrival.
    let total = end - start;
    let half = total / 2;
    let (mut arrived, mut half_at, mut last_at) = (0u64, None::<Instant>, None::<Instant>);
    let mut next = start;
    let mut failure = None;
    while next < end {
        let waited = Instant::now();
        let decoding = loop {
            if let Some(d) = pending.remove(&next) {
                break Some(d);
            }
            tokio::select! {
                got = rx.recv() => match got {
                    Some((f, d)) => {
                        pending.insert(f, d);
                        arrived += 1;
                        let now = Instant::now();
                        if arrived == half {
                            half_at = Some(now);
                        }
                        last_at = Some(now);
                    }
                    None => break None,
                },
                _ = token.cancelled() => break None,
            }
        };
        let Some(decoding) = decoding else {
            failure = Some(RenderError::BadOutput(format!(
                "capture stopped before frame {next}"
            )));
            break;
        };
        let decoded = match decoding {
            Captured::Decoding(d) => d.await,
            Captured::Raw(r) => Ok(r),
            Captured::Discarded => {
                out.frame_wait += waited.elapsed();
                next += 1;
                written.send_replace(next);
                continue;
            }
        };
        let frame = match decoded {
            Ok(Ok(frame)) => frame,
            Ok(Err(msg)) => {
                failure = Some(RenderError::BadOutput(msg));
                break;
            }
            Err(e) => {
                failure = Some(RenderError::Io {
                    context: format!("decoding frame {next}"),
                    source: std::io::Error::other(e),
                });
                break;
            }
        };
        out.frame_wait += waited.elapsed();
        out.decode += frame.decode_time;
        if encoder.is_none() {
            let Some((spec, chunk, path)) = output else {
                unreachable!("frames are decoded only when there is an output");
            };
            // Transparent output keeps the alpha channel, even of a first frame that has
            // none (Chromium may leave it out of an opaque screenshot).
            let layout = if spec.output.alpha {
                Layout::Rgba
            } else {
                frame.layout
            };
            let mut child = encoder::spawn_raw_encoder(spec, chunk, layout.pix_fmt(), path)?;
            let stdin = child.stdin.take().expect("stdin is piped");
            let stderr = child.stderr.take().expect("stderr is piped");
            let tail = tokio::spawn(process::read_tail(stderr));
            encoder = Some((child, stdin, tail, layout));
        }
        let Some((_, stdin, _, layout)) = encoder.as_mut() else {
            unreachable!("the encoder was started above");
        };
        let frame = frame.into_layout(*layout);
        // Alpha is kept: colours must be straight, as the outputs store them.
        let frame = if *layout == Layout::Rgba && output.is_some_and(|(s, ..)| s.output.alpha) {
            frame.unpremultiplied()
        } else {
            frame
        };
        let writing = Instant::now();
        if stdin.write_all(&frame.data).await.is_err() {
            break; // FFmpeg died; its error is reported below.
        }
        out.encode_wait += writing.elapsed();
        next += 1;
        written.send_replace(next);
    }
    if let (Some(h), Some(l), true) = (half_at, last_at, total >= 4 && arrived == total) {
        out.steady_frame = Some(l.duration_since(h) / (total - half) as u32);
    }
    // Decodes still running are detached; their results are dropped.
    drop(pending);
    let Some((mut child, mut stdin, tail, _)) = encoder else {
        if output.is_none() && next == end {
            return Ok(out);
        }
        return Err(
            failure.unwrap_or_else(|| RenderError::BadOutput("no frame was captured".into()))
        );
    };
    if failure.is_some() {
        let _ = child.start_kill();
    }
    let finishing = Instant::now();
    let closed = stdin.shutdown().await;
    drop(stdin);
    let status = child.wait().await.map_err(|e| RenderError::Io {
        context: "waiting for FFmpeg".into(),
        source: e,
    })?;
    out.finish = finishing.elapsed();
    if let Some(f) = failure {
        return Err(f);
    }
    let tail = tail.await.map(|t| t.text()).unwrap_or_default();
    if !status.success() || closed.is_err() || next < end {
        return Err(RenderError::Media(media::MediaError::Failed {
            tool: "ffmpeg",
            what: "encoding captured frames".into(),
            status: process::describe_status(&status),
            stderr: tail,
        }));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::plan_blocks as blocks;

    fn lens(b: &[std::ops::Range<u64>]) -> Vec<u64> {
        b.iter().map(|r| r.end - r.start).collect()
    }

    #[test]
    fn blocks_tile_the_chunk_and_shrink_towards_the_end() {
        let hd = 1280 * 720 * 4;
        for (range, n) in [
            ((0, 300), 3),
            ((54_000, 54_007), 2),
            ((5, 6), 4),
            ((0, 1000), 1),
        ] {
            let b = blocks(range, n, hd);
            assert_eq!(b.first().map(|r| r.start), Some(range.0));
            assert_eq!(b.last().map(|r| r.end), Some(range.1));
            assert!(b.windows(2).all(|w| w[0].end == w[1].start), "{b:?}");
            let l = lens(&b);
            assert!(l.windows(2).all(|w| w[0] >= w[1]), "{l:?}");
            assert!(l.iter().all(|&x| (1..=32).contains(&x)), "{l:?}");
            assert!(l[..l.len() - 1].iter().all(|&x| x >= 8), "{l:?}");
        }
        assert_eq!(lens(&blocks((0, 300), 3, hd))[..3], [32, 32, 32]);
        assert_eq!(lens(&blocks((0, 4), 2, hd)), [4]);
        assert_eq!(lens(&blocks((0, 20), 2, hd)), [8, 8, 4]);
    }

    #[test]
    fn blocks_in_flight_fit_the_memory_window() {
        // 1080p with 4 browsers: 512 MiB over 5 blocks of 8.3 MB frames.
        assert_eq!(lens(&blocks((0, 300), 4, 1920 * 1080 * 4))[0], 12);
        // 8K: one frame a block rather than gigabytes in flight.
        assert!(lens(&blocks((0, 300), 4, 7680 * 4320 * 4))
            .iter()
            .all(|&l| l == 1));
    }
}
