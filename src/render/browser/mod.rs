//! The browser renderer: HTML compositions in Chromium over CDP, with time under our
//! control.
//!
//! Before any page script runs, `virtual_time.js` replaces the page's clocks
//! (`Date`, `performance.now`, `requestAnimationFrame`, timers), seeds `Math.random`, and
//! exposes `__heliosSeek(ms)`, which moves time to exactly `ms`, pauses and seeks every
//! CSS animation, transition and WAAPI animation, runs the frame's callbacks, and drives
//! `@helios-project/core` through `__HELIOS_VIRTUAL_TIME__`. Seeking is O(1): a chunk
//! starting at frame S shows frame S without playing 0..S. One browser per chunk; frames
//! go as PNG screenshots through a pipe into FFmpeg, never through image files.

mod chrome;
mod serve;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine as _;
use chromiumoxide::cdp::browser_protocol::animation::{
    EnableParams as AnimationEnableParams, SetPlaybackRateParams,
};
use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
use chromiumoxide::cdp::browser_protocol::inspector::EventTargetCrashed;
use chromiumoxide::cdp::browser_protocol::log::{EventEntryAdded, LogEntryLevel, LogEntrySource};
use chromiumoxide::cdp::browser_protocol::network::{EventLoadingFailed, EventRequestWillBeSent};
use chromiumoxide::cdp::browser_protocol::page::{
    AddScriptToEvaluateOnNewDocumentParams, CaptureScreenshotFormat, CaptureScreenshotParams,
};
use chromiumoxide::cdp::js_protocol::runtime::EventExceptionThrown;
use chromiumoxide::error::CdpError;
use chromiumoxide::Page;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

pub use chrome::{locate as locate_chromium, LaunchError, CHROMIUM_ENV};

use super::{encoder, RenderError, RenderRequest, RenderedSegment, Renderer};
use crate::media;
use crate::process;
use crate::spec::BrowserComposition;

const VIRTUAL_TIME_JS: &str = include_str!("virtual_time.js");

/// How long the page may take to load and become ready.
const LOAD_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one frame (seek + capture) may take before the page counts as hung.
const FRAME_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on `window.helios.waitUntilStable()` per frame, in page milliseconds.
const HELIOS_STABLE_MS: u32 = 2000;

/// Renders HTML compositions in Chromium.
#[derive(Debug, Clone)]
pub struct BrowserRenderer {
    composition: BrowserComposition,
}

impl BrowserRenderer {
    /// A renderer for this composition.
    pub fn new(composition: BrowserComposition) -> Self {
        Self { composition }
    }
}

/// The first thing that went wrong in the page, as seen from CDP events.
#[derive(Debug, Clone)]
enum PageProblem {
    Exception(String),
    LoadFailed(String),
    Crashed,
}

fn crashed(chrome_tail: &str, what: &str) -> RenderError {
    RenderError::BrowserCrashed(format!(
        "{what}; last lines of Chromium's stderr:\n{chrome_tail}"
    ))
}

fn cdp_error(e: CdpError, what: &str, tail: &str) -> RenderError {
    match e {
        CdpError::JavascriptException(details) => {
            let msg = details
                .exception
                .as_ref()
                .and_then(|o| o.description.clone())
                .unwrap_or_else(|| details.text.clone());
            RenderError::Composition(format!("{what}: {msg}"))
        }
        other => crashed(tail, &format!("{what}: {other}")),
    }
}

#[async_trait]
impl Renderer for BrowserRenderer {
    async fn render(&self, req: &RenderRequest<'_>) -> Result<RenderedSegment, RenderError> {
        let bundle = req.bundle_dir.ok_or_else(|| {
            RenderError::BadOutput("a browser composition needs its bundle".into())
        })?;
        let entry = bundle.join(&self.composition.entry);
        if !entry.is_file() {
            return Err(RenderError::Composition(format!(
                "entry {} is not in the bundle",
                self.composition.entry
            )));
        }
        let path = chrome::locate().map_err(|e| RenderError::BrowserMissing(e.to_string()))?;
        let io = |context: &str| {
            let context = context.to_string();
            move |source| RenderError::Io { context, source }
        };
        let server = serve::BundleServer::start(bundle)
            .await
            .map_err(io("cannot serve the bundle on loopback"))?;
        let profile = req.workdir.join("chromium-profile");
        std::fs::create_dir_all(&profile).map_err(io("cannot create the browser profile"))?;

        let started = Instant::now();
        let mut chrome = chrome::Chrome::launch(&path, &profile)
            .await
            .map_err(|e| match e {
                LaunchError::NotFound { .. } => RenderError::BrowserMissing(e.to_string()),
                LaunchError::Failed { .. } => RenderError::BrowserCrashed(e.to_string()),
            })?;
        let result = self.render_in(req, &mut chrome, &server, started).await;
        chrome.shutdown().await;
        result
    }
}

impl BrowserRenderer {
    async fn render_in(
        &self,
        req: &RenderRequest<'_>,
        chrome: &mut chrome::Chrome,
        server: &serve::BundleServer,
        started: Instant,
    ) -> Result<RenderedSegment, RenderError> {
        let v = &req.spec.video;
        let page = chrome
            .browser
            .new_page("about:blank")
            .await
            .map_err(|e| cdp_error(e, "cannot open a page", &chrome.stderr_tail()))?;
        let problem = watch(&page)
            .await
            .map_err(|e| cdp_error(e, "cannot watch the page", &chrome.stderr_tail()))?;

        let seed = self.composition.seed.unwrap_or(0x9e37_79b9);
        let setup = async {
            page.execute(SetDeviceMetricsOverrideParams::new(
                v.width as i64,
                v.height as i64,
                1.0,
                false,
            ))
            .await?;
            // Stop the compositor's own animation clock: otherwise the first capture after
            // load can show CSS animations a few real milliseconds ahead.
            page.execute(AnimationEnableParams::default()).await?;
            page.execute(SetPlaybackRateParams::new(0.0)).await?;
            page.execute(AddScriptToEvaluateOnNewDocumentParams::new(format!(
                "window.__HELIOS_CONFIG__ = {{ seed: {seed} }};"
            )))
            .await?;
            page.execute(AddScriptToEvaluateOnNewDocumentParams::new(VIRTUAL_TIME_JS))
                .await?;
            page.goto(server.url(&self.composition.entry)).await?;
            // Fonts and images before the first capture.
            page.evaluate_expression("document.fonts.ready.then(() => true)")
                .await?;
            Ok::<_, CdpError>(())
        };
        match tokio::time::timeout(LOAD_TIMEOUT, setup).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(cdp_error(
                    e,
                    "loading the composition failed",
                    &chrome.stderr_tail(),
                ))
            }
            Err(_) => {
                return Err(RenderError::Composition(format!(
                    "the composition did not finish loading within {}s",
                    LOAD_TIMEOUT.as_secs()
                )))
            }
        }
        check(&problem, chrome)?;

        let output = req
            .workdir
            .join(format!("segment.{}", encoder::segment_extension(v.codec)));
        let mut ffmpeg = encoder::spawn_png_encoder(v, &output)?;
        let mut stdin = ffmpeg.stdin.take().expect("stdin is piped");
        let ff_stderr = ffmpeg.stderr.take().expect("stderr is piped");
        let ff_tail = tokio::spawn(process::read_tail(ff_stderr));
        // Capture and encoding overlap: a few frames may wait in this queue.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
        let writer = tokio::spawn(async move {
            while let Some(png) = rx.recv().await {
                stdin.write_all(&png).await?;
            }
            stdin.shutdown().await
        });

        let fps = v.fps.reduced();
        let mut stats = BTreeMap::new();
        let canvas_js = self.composition.capture_canvas.as_ref().map(|sel| {
            let sel = serde_json::to_string(sel).unwrap_or_default();
            format!(
                "(() => {{ const c = document.querySelector({sel});
                   if (!c || typeof c.toDataURL !== 'function') throw new Error('no <canvas> matches ' + {sel});
                   if (c.width !== {w} || c.height !== {h}) throw new Error('canvas ' + {sel} + ' is ' + c.width + 'x' + c.height + ', the video is {w}x{h}');
                   return c.toDataURL('image/png'); }})()",
                w = v.width,
                h = v.height
            )
        });
        for f in req.chunk.start..req.chunk.end {
            let ms = (f as f64) * 1000.0 * fps.den as f64 / fps.num as f64;
            let frame = async {
                page.evaluate_expression(format!(
                    "window.__heliosSeek({ms}).then(() => (window.helios && typeof window.helios.waitUntilStable === 'function')
                        ? Promise.race([window.helios.waitUntilStable(),
                                        new Promise(r => window.__heliosReal.setTimeout(r, {HELIOS_STABLE_MS}))])
                        : null)"
                ))
                .await?;
                if f == req.chunk.start {
                    let s: BTreeMap<String, u64> = page
                        .evaluate_expression("window.__heliosStats()")
                        .await?
                        .into_value()
                        .unwrap_or_default();
                    Ok::<_, CdpError>(Some(s))
                } else {
                    Ok(None)
                }
            };
            match tokio::time::timeout(FRAME_TIMEOUT, frame).await {
                Ok(Ok(Some(s))) => {
                    stats = s
                        .into_iter()
                        .map(|(k, n)| (format!("page_{k}_to_first_frame"), n))
                        .collect();
                }
                Ok(Ok(None)) => {}
                Ok(Err(e)) => {
                    check(&problem, chrome)?;
                    return Err(cdp_error(e, &format!("frame {f}"), &chrome.stderr_tail()));
                }
                Err(_) => {
                    check(&problem, chrome)?;
                    return Err(RenderError::Composition(format!(
                        "frame {f} never became ready (no answer within {}s)",
                        FRAME_TIMEOUT.as_secs()
                    )));
                }
            }
            check(&problem, chrome)?;
            let captured = match &canvas_js {
                // Canvas read-back: the canvas's own pixels as PNG, no compositing pass.
                Some(js) => {
                    tokio::time::timeout(FRAME_TIMEOUT, async {
                        let url: String = page
                            .evaluate_expression(js.as_str())
                            .await?
                            .into_value()
                            .unwrap_or_default();
                        Ok::<_, CdpError>(
                            url.split_once(',')
                                .map(|(_, b64)| b64.to_string())
                                .unwrap_or_default(),
                        )
                    })
                    .await
                }
                None => {
                    let shot = CaptureScreenshotParams::builder()
                        .format(CaptureScreenshotFormat::Png)
                        .optimize_for_speed(true)
                        .build();
                    tokio::time::timeout(FRAME_TIMEOUT, async {
                        let r = page.execute(shot).await?;
                        Ok::<_, CdpError>(AsRef::<str>::as_ref(&r.result.data).to_string())
                    })
                    .await
                }
            };
            let png = match captured {
                Ok(Ok(b64)) => base64::engine::general_purpose::STANDARD
                    .decode(b64.as_str())
                    .map_err(|e| {
                        RenderError::BadOutput(format!(
                            "capture of frame {f} is not base64 PNG: {e}"
                        ))
                    })?,
                Ok(Err(e)) => {
                    check(&problem, chrome)?;
                    return Err(cdp_error(
                        e,
                        &format!("capturing frame {f}"),
                        &chrome.stderr_tail(),
                    ));
                }
                Err(_) => {
                    check(&problem, chrome)?;
                    return Err(crashed(
                        &chrome.stderr_tail(),
                        &format!("capturing frame {f} hung"),
                    ));
                }
            };
            if tx.send(png).await.is_err() {
                break; // FFmpeg died; its error is reported below.
            }
        }
        drop(tx);
        let render_time = started.elapsed();
        let encode_started = Instant::now();
        let wrote = writer.await.map_err(|e| RenderError::Io {
            context: "frame writer".into(),
            source: std::io::Error::other(e),
        })?;
        let status = ffmpeg.wait().await.map_err(|e| RenderError::Io {
            context: "waiting for FFmpeg".into(),
            source: e,
        })?;
        let tail = ff_tail.await.map(|t| t.text()).unwrap_or_default();
        if !status.success() || wrote.is_err() {
            return Err(RenderError::Media(media::MediaError::Failed {
                tool: "ffmpeg",
                what: "encoding captured frames".into(),
                status: process::describe_status(&status),
                stderr: tail,
            }));
        }
        let info = media::probe(&output).await?;
        if info.frames != req.chunk.len() {
            return Err(RenderError::BadOutput(format!(
                "encoded {} frames for chunk {} but {} were captured",
                info.frames,
                req.chunk.index,
                req.chunk.len()
            )));
        }
        stats.insert("frames_captured".into(), req.chunk.len());
        Ok(RenderedSegment {
            path: output,
            frames: info.frames,
            render_time,
            encode_time: encode_started.elapsed(),
            stats,
        })
    }
}

/// Fails with the page's first problem, if any.
fn check(
    problem: &Arc<Mutex<Option<PageProblem>>>,
    chrome: &mut chrome::Chrome,
) -> Result<(), RenderError> {
    let p = problem.lock().ok().and_then(|p| p.clone());
    match p {
        None if chrome.is_alive() => Ok(()),
        None => Err(crashed(&chrome.stderr_tail(), "Chromium exited")),
        Some(PageProblem::Exception(msg)) => {
            Err(RenderError::Composition(format!("the page threw: {msg}")))
        }
        Some(PageProblem::LoadFailed(what)) => Err(RenderError::Composition(format!(
            "a resource failed to load: {what}"
        ))),
        Some(PageProblem::Crashed) => Err(crashed(
            &chrome.stderr_tail(),
            "the page's renderer process crashed",
        )),
    }
}

/// Collects the first exception, failed resource load or crash of the page.
async fn watch(page: &Page) -> Result<Arc<Mutex<Option<PageProblem>>>, CdpError> {
    let slot = Arc::new(Mutex::new(None::<PageProblem>));
    let set = |slot: &Arc<Mutex<Option<PageProblem>>>, p: PageProblem| {
        if let Ok(mut s) = slot.lock() {
            s.get_or_insert(p);
        }
    };
    let mut exceptions = page.event_listener::<EventExceptionThrown>().await?;
    let mut logs = page.event_listener::<EventEntryAdded>().await?;
    let mut failed = page.event_listener::<EventLoadingFailed>().await?;
    let mut requests = page.event_listener::<EventRequestWillBeSent>().await?;
    let mut crashes = page.event_listener::<EventTargetCrashed>().await?;
    let s = slot.clone();
    tokio::spawn(async move {
        let mut urls = std::collections::HashMap::new();
        loop {
            tokio::select! {
                Some(e) = exceptions.next() => {
                    let d = &e.exception_details;
                    let msg = d.exception.as_ref().and_then(|o| o.description.clone()).unwrap_or_else(|| d.text.clone());
                    let at = d.url.as_deref().map(|u| format!(" ({u}:{})", d.line_number + 1)).unwrap_or_default();
                    set(&s, PageProblem::Exception(format!("{msg}{at}")));
                }
                Some(e) = logs.next() => {
                    let url = e.entry.url.clone().unwrap_or_default();
                    if e.entry.source == LogEntrySource::Network && e.entry.level == LogEntryLevel::Error && !url.ends_with("/favicon.ico") {
                        set(&s, PageProblem::LoadFailed(format!("{url}: {}", e.entry.text)));
                    }
                }
                Some(e) = requests.next() => { urls.insert(e.request_id.inner().clone(), e.request.url.clone()); }
                Some(e) = failed.next() => {
                    let url = urls.get(e.request_id.inner()).cloned().unwrap_or_default();
                    if !url.ends_with("/favicon.ico") && e.canceled != Some(true) {
                        set(&s, PageProblem::LoadFailed(format!("{url}: {}", e.error_text)));
                    }
                }
                Some(_) = crashes.next() => set(&s, PageProblem::Crashed),
                else => break,
            }
        }
    });
    Ok(slot)
}

/// An `<audio>` or `<video>` element found in a composition, with Helios' timing
/// attributes (`data-helios-offset`, `data-helios-seek`, `data-helios-fade-in/out`).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct DiscoveredMedia {
    /// Source as a path inside the bundle, or an absolute http(s) URL.
    pub source: String,
    /// Seconds on the timeline where it starts.
    pub offset_s: f64,
    /// Seconds skipped at the start of the source.
    pub seek_s: f64,
    /// Fade-in seconds.
    pub fade_in_s: f64,
    /// Fade-out seconds.
    pub fade_out_s: f64,
    /// Gain (element volume × Helios track volume).
    pub volume: f64,
    /// Whether it loops.
    pub looped: bool,
}

const DISCOVER_JS: &str = r#"(() => {
  const tracks = (window.helios && window.helios.audioTracks && (window.helios.audioTracks.value || window.helios.audioTracks.peek?.())) || {};
  const num = (el, name) => { const v = parseFloat(el.getAttribute(name) || '0'); return isFinite(v) ? v : 0; };
  return [...document.querySelectorAll('audio, video')].map(el => {
    const raw = el.getAttribute('src') || (el.querySelector('source') && el.querySelector('source').getAttribute('src')) || '';
    const track = tracks[el.getAttribute('data-helios-track-id') || ''] || {};
    const muted = el.muted || el.hasAttribute('muted') || track.muted === true;
    return {
      source: raw ? new URL(raw, document.baseURI).href : '',
      offset_s: num(el, 'data-helios-offset'),
      seek_s: num(el, 'data-helios-seek'),
      fade_in_s: num(el, 'data-helios-fade-in'),
      fade_out_s: num(el, 'data-helios-fade-out'),
      volume: muted ? 0 : (el.volume ?? 1) * (typeof track.volume === 'number' ? track.volume : 1),
      looped: !!el.loop,
    };
  }).filter(m => m.source && m.volume > 0);
})()"#;

/// Loads a composition once (at plan time) and lists the media elements whose sound
/// belongs in the video. Sources served from the bundle come back as bundle paths.
pub async fn discover_media(
    bundle: &std::path::Path,
    entry: &str,
    width: u32,
    height: u32,
) -> Result<Vec<DiscoveredMedia>, RenderError> {
    let path = chrome::locate().map_err(|e| RenderError::BrowserMissing(e.to_string()))?;
    let server = serve::BundleServer::start(bundle)
        .await
        .map_err(|source| RenderError::Io {
            context: "cannot serve the composition".into(),
            source,
        })?;
    let profile = tempfile::tempdir().map_err(|source| RenderError::Io {
        context: "cannot create a browser profile".into(),
        source,
    })?;
    let chrome = chrome::Chrome::launch(&path, profile.path())
        .await
        .map_err(|e| RenderError::BrowserCrashed(e.to_string()))?;
    let base = server.url("");
    let found = async {
        let page = chrome.browser.new_page("about:blank").await?;
        page.execute(SetDeviceMetricsOverrideParams::new(
            width as i64,
            height as i64,
            1.0,
            false,
        ))
        .await?;
        page.execute(AddScriptToEvaluateOnNewDocumentParams::new(VIRTUAL_TIME_JS))
            .await?;
        page.goto(server.url(entry)).await?;
        page.evaluate_expression("window.__heliosSeek(0)").await?;
        let list: Vec<DiscoveredMedia> = page
            .evaluate_expression(DISCOVER_JS)
            .await?
            .into_value()
            .unwrap_or_default();
        Ok::<_, CdpError>(list)
    };
    let result = tokio::time::timeout(LOAD_TIMEOUT, found).await;
    let tail = chrome.stderr_tail();
    chrome.shutdown().await;
    let list = match result {
        Ok(Ok(list)) => list,
        Ok(Err(e)) => return Err(cdp_error(e, "looking for media elements", &tail)),
        Err(_) => {
            return Err(RenderError::Composition(
                "the composition did not load within 60s".into(),
            ))
        }
    };
    Ok(list
        .into_iter()
        .map(|mut m| {
            if let Some(rel) = m.source.strip_prefix(&base) {
                m.source = rel.split(['?', '#']).next().unwrap_or(rel).to_string();
            }
            m
        })
        .collect())
}
