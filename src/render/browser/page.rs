//! One browser process with the composition loaded: moves the page's clock to a frame and
//! captures it. A chunk uses one or more of these side by side (see `pipeline`).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chromiumoxide::cdp::browser_protocol::animation::{
    EnableParams as AnimationEnableParams, SetPlaybackRateParams,
};
use chromiumoxide::cdp::browser_protocol::dom::Rgba;
use chromiumoxide::cdp::browser_protocol::emulation::{
    SetDefaultBackgroundColorOverrideParams, SetDeviceMetricsOverrideParams,
};
use chromiumoxide::cdp::browser_protocol::headless_experimental::{
    BeginFrameParams, ScreenshotParams, ScreenshotParamsFormat,
};
use chromiumoxide::cdp::browser_protocol::inspector::EventTargetCrashed;
use chromiumoxide::cdp::browser_protocol::log::{EventEntryAdded, LogEntryLevel, LogEntrySource};
use chromiumoxide::cdp::browser_protocol::network::{
    DisableParams as NetworkDisableParams, EventLoadingFailed, EventRequestWillBeSent,
};
use chromiumoxide::cdp::browser_protocol::page::{
    AddScriptToEvaluateOnNewDocumentParams, CaptureScreenshotFormat, CaptureScreenshotParams,
};
use chromiumoxide::cdp::browser_protocol::target::CreateTargetParams;
use chromiumoxide::cdp::js_protocol::runtime::EventExceptionThrown;
use chromiumoxide::error::CdpError;
use chromiumoxide::Page;
use futures::StreamExt;

use super::chrome::{self, Chrome, LaunchError};
use super::serve::{BundleServer, FrameInbox};
use super::{cdp_error, crashed, VIRTUAL_TIME_JS};
use crate::render::RenderError;
use crate::spec::{BrowserComposition, Fps, Props, VideoSpec};

/// How long the page may take to load and become ready.
pub(super) const LOAD_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one frame (seek or capture) may take before the page counts as hung.
const FRAME_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on `window.helios.waitUntilStable()` per frame, in page milliseconds.
const HELIOS_STABLE_MS: u32 = 2000;

/// The first thing that went wrong in the page, as seen from CDP events.
#[derive(Debug, Clone)]
enum PageProblem {
    Exception(String),
    LoadFailed(String),
    Crashed,
    /// A remote resource that was not vendored at plan time (and the network is closed).
    Unvendored(String),
}

/// The remote resources a page may load at a worker: the copies vendored at plan time,
/// answered from memory, and whether other remote requests may reach the network.
#[derive(Debug, Default)]
pub(crate) struct Vendored {
    /// URL (without fragment) → body (base64, as CDP takes it) and content type.
    pub assets: std::collections::HashMap<String, (Arc<String>, Option<String>)>,
    /// Whether requests for other remote resources go through.
    pub allow_network: bool,
}

/// A browser with the composition open at the video's size, its clock under our control.
pub(super) struct FramePage {
    chrome: Chrome,
    page: Page,
    problem: Arc<Mutex<Option<PageProblem>>>,
    /// Remote URLs the page requested (plan-time vendoring reads them).
    remote: Arc<Mutex<Vec<String>>>,
    /// Canvas read-back, with `capture_canvas`.
    canvas: Option<Readback>,
    fps: Fps,
    /// BeginFrame mode: the time of the last frame drawn (must strictly increase) and its
    /// picture, which a frame without damage shows again.
    frame_ticks: f64,
    last_frame: Option<Arc<String>>,
    /// The props a Helios composition held after it was given the spec's.
    pub(super) props: Option<Props>,
}

/// Real time one frame spent in each stage on its browser.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct FrameTimes {
    /// The seek round trip, minus the settle time below.
    pub seek: Duration,
    /// `helios.waitUntilStable()` inside the page.
    pub settle: Duration,
    /// The capture round trip: paint, raster, PNG encoding in Chromium, transfer over CDP.
    pub capture: Duration,
}

impl FramePage {
    /// Launches Chromium (`profile` is its own, empty directory) and loads the composition.
    pub async fn open(
        chromium: &Path,
        profile: &Path,
        server: &BundleServer,
        composition: &BrowserComposition,
        video: &VideoSpec,
        alpha: bool,
        vendored: Option<Arc<Vendored>>,
    ) -> Result<Self, RenderError> {
        std::fs::create_dir_all(profile).map_err(|source| RenderError::Io {
            context: "cannot create the browser profile".into(),
            source,
        })?;
        let chrome = Chrome::launch(chromium, profile)
            .await
            .map_err(|e| match e {
                LaunchError::NotFound { .. } => RenderError::BrowserMissing(e.to_string()),
                LaunchError::Failed { .. } => RenderError::BrowserCrashed(e.to_string()),
            })?;
        let mut target = CreateTargetParams::new("about:blank");
        target.enable_begin_frame_control = Some(chrome.begin_frames);
        let page = chrome
            .browser
            .new_page(target)
            .await
            .map_err(|e| cdp_error(e, "cannot open a page", &chrome.stderr_tail()))?;
        let base = server.url("");
        let (problem, remote) = watch(&page, &base)
            .await
            .map_err(|e| cdp_error(e, "cannot watch the page", &chrome.stderr_tail()))?;
        if let Some(v) = vendored {
            intercept(&page, base, v, problem.clone())
                .await
                .map_err(|e| cdp_error(e, "cannot serve vendored assets", &chrome.stderr_tail()))?;
        }
        let mut this = Self {
            canvas: composition.capture_canvas.as_deref().map(|sel| {
                let inbox = server.frame_inbox();
                Readback {
                    js: canvas_js(sel, video, &inbox.path),
                    inbox,
                    selector: sel.to_string(),
                    draws_elements: None,
                }
            }),
            chrome,
            page,
            problem,
            remote,
            fps: video.fps.reduced(),
            frame_ticks: 0.0,
            last_frame: None,
            props: None,
        };
        let seed = composition.seed.unwrap_or(0x9e37_79b9);
        let props_json = composition
            .props
            .as_ref()
            .map(|p| serde_json::Value::Object(p.clone()).to_string());
        // For plain pages, and for Helios compositions that pass it to their constructor.
        let props_global = props_json.as_ref().map(|json| {
            format!(
                "Object.defineProperty(window, '__HELIOS_PROPS__', \
                 {{ value: Object.freeze({json}), enumerable: true }});"
            )
        });
        let page = &this.page;
        let setup = async {
            page.execute(SetDeviceMetricsOverrideParams::new(
                video.width as i64,
                video.height as i64,
                1.0,
                false,
            ))
            .await?;
            if alpha {
                // A transparent page where nothing is painted: screenshots keep alpha.
                page.execute(
                    SetDefaultBackgroundColorOverrideParams::builder()
                        .color(Rgba {
                            r: 0,
                            g: 0,
                            b: 0,
                            a: Some(0.0),
                        })
                        .build(),
                )
                .await?;
            }
            // Stop the compositor's own animation clock: otherwise the first capture after
            // load can show CSS animations a few real milliseconds ahead.
            page.execute(AnimationEnableParams::default()).await?;
            page.execute(SetPlaybackRateParams::new(0.0)).await?;
            // The render's settings, for compositions that follow them (a pixel clock at
            // 30000/1001 must know the rate it is sampled at).
            page.execute(AddScriptToEvaluateOnNewDocumentParams::new(format!(
                "window.__HELIOS_CONFIG__ = {{ seed: {seed}, fps: {{ num: {num}, den: {den} }}, \
                 width: {w}, height: {h} }};",
                num = video.fps.num,
                den = video.fps.den,
                w = video.width,
                h = video.height
            )))
            .await?;
            if let Some(js) = &props_global {
                page.execute(AddScriptToEvaluateOnNewDocumentParams::new(js.clone()))
                    .await?;
            }
            page.execute(AddScriptToEvaluateOnNewDocumentParams::new(VIRTUAL_TIME_JS))
                .await?;
            page.goto(server.url(&composition.entry)).await?;
            // Fonts and images before the first capture.
            page.evaluate_expression("document.fonts.ready.then(() => true)")
                .await?;
            Ok::<_, CdpError>(())
        };
        match tokio::time::timeout(LOAD_TIMEOUT, setup).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let tail = this.chrome.stderr_tail();
                this.check()?;
                return Err(cdp_error(e, "loading the composition failed", &tail));
            }
            Err(_) => {
                return Err(RenderError::Composition(format!(
                    "the composition did not finish loading within {}s",
                    LOAD_TIMEOUT.as_secs()
                )))
            }
        }
        this.check()?;
        if this.canvas.is_some() {
            // DevTools would copy every frame sent over the frame socket into a network
            // event, as base64 (megabytes of JSON a frame). Resources that fail to load from
            // now on still show as network errors in the log.
            let off = this.page.execute(NetworkDisableParams::default()).await;
            off.map_err(|e| {
                cdp_error(
                    e,
                    "cannot stop watching the network",
                    &this.chrome.stderr_tail(),
                )
            })?;
        }
        if let Some(json) = &props_json {
            this.props = this.apply_props(json).await?;
        }
        if this.chrome.begin_frames {
            // Draw the page once as it loaded, before any seek, as a browser that draws on
            // its own does: Chromium keeps some raster decisions (the raster translation of
            // a layer that only moves) from a layer's first drawing, so every browser must
            // first draw the same picture, whichever frame it renders first.
            let first = BeginFrameParams::builder()
                .frame_time_ticks(this.next_ticks())
                .interval(this.frame_interval())
                .build();
            match tokio::time::timeout(LOAD_TIMEOUT, this.page.execute(first)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    let tail = this.chrome.stderr_tail();
                    return Err(cdp_error(e, "drawing the loaded page failed", &tail));
                }
                Err(_) => {
                    return Err(crashed(
                        &this.chrome.stderr_tail(),
                        "drawing the loaded page hung",
                    ))
                }
            }
        }
        Ok(this)
    }

    /// Gives a Helios composition its props through `helios.setInputProps`, merged over
    /// the props it has (Helios replaces them; a partial set must keep the rest). Its
    /// schema validates them: a refusal is the composition's error, named as Helios names
    /// it. Returns the props the composition holds afterwards (`None` for a page without
    /// Helios).
    pub async fn apply_props(&mut self, json: &str) -> Result<Option<Props>, RenderError> {
        self.apply_props_over(json, None).await
    }

    /// [`FramePage::apply_props`], merged over `base` (a JSON object) instead of the props
    /// the composition holds: a batch gives one page each row's props in turn.
    pub async fn apply_props_over(
        &mut self,
        json: &str,
        base: Option<&str>,
    ) -> Result<Option<Props>, RenderError> {
        let base = base.unwrap_or("null");
        let js = format!(
            "(() => {{
                const props = {json};
                const base = {base};
                const h = window.helios;
                if (!(h && typeof h.setInputProps === 'function')) return {{ helios: false }};
                let current = {{}};
                try {{
                    current = base !== null ? base
                        : (h.inputProps && typeof h.inputProps.peek === 'function')
                        ? h.inputProps.peek() : (h.getState().inputProps || {{}});
                }} catch (e) {{}}
                try {{
                    h.setInputProps(Object.assign({{}}, current, props));
                }} catch (e) {{
                    const name = (e && e.name) || 'Error';
                    return {{ helios: true, error: name + ': ' + String((e && e.message) || e) }};
                }}
                let after = null;
                try {{ after = JSON.parse(JSON.stringify(h.getState().inputProps)); }} catch (e) {{}}
                return {{ helios: true, props: after }};
            }})()"
        );
        #[derive(serde::Deserialize)]
        struct Applied {
            helios: bool,
            #[serde(default)]
            error: Option<String>,
            #[serde(default)]
            props: Option<Props>,
        }
        let applied: Applied = self
            .evaluate(&js, "giving the composition its props")
            .await?;
        if let Some(e) = applied.error {
            return Err(RenderError::Composition(format!(
                "the composition refused its props: {e}"
            )));
        }
        Ok(if applied.helios { applied.props } else { None })
    }

    /// The props a Helios composition holds now (`None` for a page without Helios).
    pub async fn current_props(&mut self) -> Result<Option<Props>, RenderError> {
        self.evaluate(
            "(() => { const h = window.helios;
                if (!(h && typeof h.getState === 'function')) return null;
                try { return JSON.parse(JSON.stringify(h.getState().inputProps || {})); }
                catch (e) { return {}; } })()",
            "reading the composition's props",
        )
        .await
    }

    /// Evaluates `js` in the page (promises awaited) and returns its value.
    pub async fn evaluate<T: serde::de::DeserializeOwned>(
        &mut self,
        js: &str,
        what: &str,
    ) -> Result<T, RenderError> {
        let result =
            match tokio::time::timeout(FRAME_TIMEOUT, self.page.evaluate_expression(js)).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    self.check()?;
                    return Err(cdp_error(e, what, &self.chrome.stderr_tail()));
                }
                Err(_) => {
                    self.check()?;
                    return Err(RenderError::Composition(format!(
                        "{what}: no answer within {}s",
                        FRAME_TIMEOUT.as_secs()
                    )));
                }
            };
        self.check()?;
        // `null` and `undefined` come back without a value.
        let value = result.value().cloned().unwrap_or(serde_json::Value::Null);
        serde_json::from_value::<T>(value)
            .map_err(|e| RenderError::Composition(format!("{what}: unexpected answer: {e}")))
    }

    /// Milliseconds between frames, as BeginFrame intervals.
    fn frame_interval(&self) -> f64 {
        1000.0 * self.fps.den as f64 / self.fps.num as f64
    }

    /// The next BeginFrame's time: strictly increasing, one frame interval apart.
    fn next_ticks(&mut self) -> f64 {
        self.frame_ticks += self.frame_interval();
        self.frame_ticks
    }

    /// Shows frame `f`: the page's clock at exactly `f / fps`, and everything that time
    /// caused in the page run to the end (see `settle` in virtual_time.js): framework
    /// renders posted as tasks, timers due now, promise chains, answers to requests,
    /// `requestAnimationFrame` callbacks asked for outside the animation loop, and Helios'
    /// `waitUntilStable()`. A page that never settles fails the frame, naming it.
    pub async fn seek(&mut self, f: u64, times: &mut FrameTimes) -> Result<(), RenderError> {
        let ms = (f as f64) * 1000.0 * self.fps.den as f64 / self.fps.num as f64;
        let started = Instant::now();
        // The page measures its own settling, so that it shows apart from the round trip.
        let js = format!(
            "(async () => {{
                const real = window.__heliosReal;
                await window.__heliosSeek({ms}, false);
                const t0 = real.performanceNow();
                await window.__heliosSettle();
                const h = window.helios;
                if (h && typeof h.waitUntilStable === 'function') {{
                    let timer;
                    const stable = h.waitUntilStable();
                    await window.__heliosSettle();
                    await Promise.race([stable,
                        new Promise(r => {{ timer = real.setTimeout(r, {HELIOS_STABLE_MS}); }})]);
                    real.clearTimeout(timer);
                    await window.__heliosSettle();
                }}
                return real.performanceNow() - t0;
            }})()"
        );
        let settle =
            match tokio::time::timeout(FRAME_TIMEOUT, self.page.evaluate_expression(js)).await {
                Ok(Ok(r)) => r.into_value::<f64>().unwrap_or(0.0),
                Ok(Err(e)) => {
                    self.check()?;
                    return Err(cdp_error(
                        e,
                        &format!("frame {f} (composition time {:.3} s)", ms / 1000.0),
                        &self.chrome.stderr_tail(),
                    ));
                }
                Err(_) => {
                    self.check()?;
                    return Err(RenderError::Composition(format!(
                        "frame {f} never became ready (no answer within {}s)",
                        FRAME_TIMEOUT.as_secs()
                    )));
                }
            };
        let settle = Duration::from_secs_f64((settle.max(0.0)) / 1000.0);
        times.settle += settle;
        times.seek += started.elapsed().saturating_sub(settle);
        self.check()
    }

    /// Draws frame `f` without capturing it (BeginFrame mode only; a no-op otherwise): a
    /// frame drawn before a jump in time, so that the compositor's raster state when the
    /// next frame is drawn is what it would be had the frames been drawn in order.
    pub async fn draw(&mut self, f: u64, times: &mut FrameTimes) -> Result<(), RenderError> {
        if !self.chrome.begin_frames || self.canvas.is_some() {
            return Ok(());
        }
        self.seek(f, times).await?;
        let started = Instant::now();
        let (interval, ticks) = (self.frame_interval(), self.next_ticks());
        let begin = BeginFrameParams::builder()
            .frame_time_ticks(ticks)
            .interval(interval)
            .build();
        let drawn = tokio::time::timeout(FRAME_TIMEOUT, self.page.execute(begin)).await;
        times.capture += started.elapsed();
        self.answered(drawn, &format!("drawing frame {f}"))
            .map(|_| ())
    }

    /// Captures what the page shows now: a base64 PNG of the viewport, or the canvas's own
    /// raw pixels with `capture_canvas`. Decoding is left to the caller's thread pool; the
    /// text is shared, not copied, with the picture kept for a frame without damage.
    pub async fn capture(&mut self, f: u64, times: &mut FrameTimes) -> Result<Shot, RenderError> {
        let started = Instant::now();
        let unknown = self.canvas.as_ref().filter(|c| c.draws_elements.is_none());
        if let Some(sel) = unknown.map(|c| serde_json::to_string(&c.selector).unwrap_or_default()) {
            let js = format!(
                "(() => {{ const c = document.querySelector({sel}); return !!(c && c.hasAttribute('layoutsubtree')); }})()"
            );
            let draws = self.evaluate::<bool>(&js, "looking at the canvas").await?;
            if let Some(c) = self.canvas.as_mut() {
                c.draws_elements = Some(draws);
            }
        }
        let (interval, ticks) = (self.frame_interval(), self.next_ticks());
        let begin_frames = self.chrome.begin_frames;
        let page = &self.page;
        let captured = match &mut self.canvas {
            // Canvas read-back: the canvas's pixels as they are, sent to our loopback server
            // over a WebSocket: no compositing pass, no PNG encoding or decoding, no base64.
            Some(Readback {
                js,
                inbox,
                draws_elements,
                ..
            }) => {
                let lifecycle = *draws_elements == Some(true) && begin_frames;
                // With BeginFrame control, one BeginFrame without a screenshot runs the
                // rendering update whose `paint` event draws an HTML-in-Canvas scene; the
                // page waits for that event itself otherwise.
                let js = format!("({js})({f}, {lifecycle})");
                tokio::time::timeout(FRAME_TIMEOUT, async {
                    if lifecycle {
                        // Nothing is drawn to the display: the canvas is read, not the
                        // screen, so the compositor need not raster or draw the page.
                        let begin = BeginFrameParams::builder()
                            .frame_time_ticks(ticks)
                            .interval(interval)
                            .no_display_updates(true)
                            .build();
                        page.execute(begin).await?;
                    }
                    page.evaluate_expression(js).await?;
                    // The page has sent it; it arrives after what it sent before.
                    Ok::<_, CdpError>(match inbox.rx.recv().await {
                        Some((at, px)) if at == f => Shot::Raw(px),
                        _ => Shot::Raw(bytes::Bytes::new()),
                    })
                })
                .await
            }
            None if self.chrome.begin_frames => {
                // One BeginFrame draws the page as it is now (every tile rastered) and
                // returns that very frame: one round trip, no frame drawn for nothing.
                let begin = BeginFrameParams::builder()
                    .frame_time_ticks(ticks)
                    .interval(interval)
                    .screenshot(ScreenshotParams {
                        format: Some(ScreenshotParamsFormat::Png),
                        quality: None,
                        optimize_for_speed: Some(true),
                    })
                    .build();
                let last = &mut self.last_frame;
                tokio::time::timeout(FRAME_TIMEOUT, async {
                    let r = page.execute(begin).await?;
                    Ok::<_, CdpError>(Shot::Png(match r.result.screenshot_data {
                        Some(data) => {
                            let b64 = Arc::new(String::from(data));
                            *last = Some(b64.clone());
                            b64
                        }
                        // No damage: the picture is the one this browser drew last.
                        None => last.clone().unwrap_or_default(),
                    }))
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
                    Ok::<_, CdpError>(r.result.data)
                })
                .await
                .map(|r| r.map(|data| Shot::Png(Arc::new(String::from(data)))))
            }
        };
        times.capture += started.elapsed();
        match self.answered(captured, &format!("capturing frame {f}"))? {
            shot if shot.is_empty() => Err(crashed(
                &self.chrome.stderr_tail(),
                &format!("Chromium drew no picture for frame {f}"),
            )),
            shot => Ok(shot),
        }
    }

    /// The outcome of a command bounded by [`FRAME_TIMEOUT`]: the page's own problem first
    /// (an exception, a crash), then the command's error, or a hang.
    fn answered<T>(
        &mut self,
        r: Result<Result<T, CdpError>, tokio::time::error::Elapsed>,
        what: &str,
    ) -> Result<T, RenderError> {
        match r {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                self.check()?;
                Err(cdp_error(e, what, &self.chrome.stderr_tail()))
            }
            Err(_) => {
                self.check()?;
                Err(crashed(&self.chrome.stderr_tail(), &format!("{what} hung")))
            }
        }
    }

    /// The page's own counters (seeks, callbacks run), e.g. to show that reaching the first
    /// frame of a chunk cost the same at any frame.
    pub async fn page_stats(&self) -> std::collections::BTreeMap<String, u64> {
        match self
            .page
            .evaluate_expression("window.__heliosStats()")
            .await
        {
            Ok(r) => r.into_value().unwrap_or_default(),
            Err(_) => Default::default(),
        }
    }

    /// Fails with the page's first problem, if any.
    fn check(&mut self) -> Result<(), RenderError> {
        let p = self.problem.lock().ok().and_then(|p| p.clone());
        match p {
            None if self.chrome.is_alive() => Ok(()),
            None => Err(crashed(&self.chrome.stderr_tail(), "Chromium exited")),
            Some(PageProblem::Exception(msg)) => {
                Err(RenderError::Composition(format!("the page threw: {msg}")))
            }
            Some(PageProblem::LoadFailed(what)) => Err(RenderError::Composition(format!(
                "a resource failed to load: {what}"
            ))),
            Some(PageProblem::Crashed) => Err(crashed(
                &self.chrome.stderr_tail(),
                "the page's renderer process crashed",
            )),
            Some(PageProblem::Unvendored(url)) => Err(RenderError::Composition(format!(
                "the page requested {url}, which was not loaded when the job was planned: a \
                 composition must load its remote resources when it opens, not per frame (or \
                 plan with --allow-network to let such requests through)"
            ))),
        }
    }

    /// The fonts the page's text renders with now: for each element holding text (up to
    /// [`MAX_FONT_PROBES`]), its `font-family` as requested and the platform fonts Chromium
    /// drew its glyphs with (CDP `CSS.getPlatformFontsForNode`).
    pub async fn fonts_in_use(&mut self) -> Result<Vec<FontUse>, RenderError> {
        use chromiumoxide::cdp::browser_protocol::{css, dom};
        let page = &self.page;
        let probed = async {
            page.execute(dom::EnableParams::default()).await?;
            page.execute(css::EnableParams::default()).await?;
            let doc = page
                .execute(dom::GetDocumentParams::builder().depth(-1).build())
                .await?
                .result
                .root;
            let mut holders = Vec::new();
            text_holders(&doc, None, &mut holders);
            let mut uses = Vec::new();
            for id in holders {
                let style = page
                    .execute(css::GetComputedStyleForNodeParams::new(id))
                    .await?
                    .result
                    .computed_style;
                let requested = style
                    .into_iter()
                    .find(|p| p.name == "font-family")
                    .map(|p| p.value)
                    .unwrap_or_default();
                let fonts = page
                    .execute(css::GetPlatformFontsForNodeParams::new(id))
                    .await?
                    .result
                    .fonts;
                for f in fonts {
                    uses.push(FontUse {
                        requested: requested.clone(),
                        platform: f.family_name,
                        web: f.is_custom_font,
                    });
                }
            }
            page.execute(css::DisableParams::default()).await?;
            page.execute(dom::DisableParams::default()).await?;
            Ok::<_, CdpError>(uses)
        };
        let r = tokio::time::timeout(FRAME_TIMEOUT, probed).await;
        let mut uses = self.answered(r, "listing the fonts the page's text uses")?;
        uses.sort();
        uses.dedup();
        Ok(uses)
    }

    /// Remote (`http(s)`, not the composition's own server) URLs the page has requested so
    /// far, in order of first request.
    pub fn remote_requests(&self) -> Vec<String> {
        self.remote.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Closes the browser.
    pub async fn close(self) {
        self.chrome.shutdown().await;
    }
}

/// Canvas read-back: the script that sends the canvas's raw pixels, where they arrive, and
/// whether the canvas is a `<canvas layoutsubtree>` (HTML-in-Canvas) whose `paint` event
/// draws its DOM children, which needs a rendering update first (`None` until the first
/// frame looks).
struct Readback {
    js: String,
    inbox: FrameInbox,
    selector: String,
    draws_elements: Option<bool>,
}

/// What a capture gave.
#[derive(Debug, Clone)]
pub(super) enum Shot {
    /// A base64 PNG (a screenshot of the viewport).
    Png(Arc<String>),
    /// Raw RGBA pixels, rows top to bottom, as `VideoFrame.copyTo` gives them.
    Raw(bytes::Bytes),
}

impl Shot {
    fn is_empty(&self) -> bool {
        match self {
            Shot::Png(b64) => b64.is_empty(),
            Shot::Raw(px) => px.is_empty(),
        }
    }
}

/// A function of the frame index that sends the canvas's raw pixels over a WebSocket to
/// `path` on the page's own origin, checking that the canvas is the video's size. Its second
/// argument says whether a `<canvas layoutsubtree>` has had its `paint` event for this
/// frame already; if not, it asks for one and waits. The pixels
/// are copied (`VideoFrame.copyTo`) into one buffer kept for the whole chunk, not a new
/// `ImageData` a frame.
fn canvas_js(selector: &str, v: &VideoSpec, path: &str) -> String {
    let sel = serde_json::to_string(selector).unwrap_or_default();
    let path = serde_json::to_string(path).unwrap_or_default();
    format!(
        "async (f, painted) => {{ const c = document.querySelector({sel});
           if (!c || typeof c.getContext !== 'function') throw new Error('no <canvas> matches ' + {sel});
           if (c.width !== {w} || c.height !== {h}) throw new Error('canvas ' + {sel} + ' is ' + c.width + 'x' + c.height + ', the video is {w}x{h}');
           if (!painted && c.hasAttribute('layoutsubtree') && typeof c.requestPaint === 'function')
             await new Promise(r => {{ c.addEventListener('paint', () => r(), {{ once: true }}); c.requestPaint(); }});
           let out = window.__heliosOut;
           if (!out) {{
             const ws = new window.__heliosReal.WebSocket('ws://' + location.host + {path});
             ws.binaryType = 'arraybuffer';
             await new Promise((ok, fail) => {{ ws.onopen = ok; ws.onerror = () => fail(new Error('the frame socket did not open')); }});
             out = {{ ws, px: new Uint8Array({w} * {h} * 4) }};
             Object.defineProperty(window, '__heliosOut', {{ value: out }});
           }}
           if (out.ws.readyState !== 1) throw new Error('the frame socket closed');
           const frame = new VideoFrame(c, {{ timestamp: 0 }});
           try {{ await frame.copyTo(out.px, {{ format: 'RGBA', colorSpace: 'srgb' }}); }} finally {{ frame.close(); }}
           const index = new DataView(new ArrayBuffer(8));
           index.setBigUint64(0, BigInt(f), true);
           out.ws.send(index.buffer);
           out.ws.send(out.px);
           return out.px.length; }}",
        w = v.width,
        h = v.height
    )
}

/// Elements whose fonts are looked at, at most (the first ones in document order).
pub(super) const MAX_FONT_PROBES: usize = 400;

/// A family a page's text asks for, and a platform font Chromium drew it with.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FontUse {
    /// The element's computed `font-family` (the whole list, as CSS gives it).
    pub requested: String,
    /// The platform font's family name.
    pub platform: String,
    /// Whether it is a web font (`@font-face`), not a font of the machine.
    pub web: bool,
}

/// The elements (node ids) that hold visible text directly, in document order: parents of
/// non-blank text nodes, outside scripts, styles and the head.
fn text_holders(
    node: &chromiumoxide::cdp::browser_protocol::dom::Node,
    parent: Option<(&chromiumoxide::cdp::browser_protocol::dom::NodeId, &str)>,
    out: &mut Vec<chromiumoxide::cdp::browser_protocol::dom::NodeId>,
) {
    if out.len() >= MAX_FONT_PROBES {
        return;
    }
    if node.node_type == 3 && !node.node_value.trim().is_empty() {
        if let Some((id, name)) = parent {
            let hidden = matches!(
                name,
                "SCRIPT" | "STYLE" | "NOSCRIPT" | "TITLE" | "TEMPLATE" | "HEAD"
            );
            if !hidden && !out.contains(id) {
                out.push(*id);
            }
        }
        return;
    }
    if matches!(node.node_name.as_str(), "HEAD" | "SCRIPT" | "STYLE") {
        return;
    }
    for child in node.children.iter().flatten() {
        text_holders(child, Some((&node.node_id, node.node_name.as_str())), out);
    }
}

/// What [`watch`] collects: the first problem of the page, and the remote URLs it requested.
type Watched = (Arc<Mutex<Option<PageProblem>>>, Arc<Mutex<Vec<String>>>);

/// Collects the first exception, failed resource load or crash of the page, and the remote
/// URLs it requests (`http(s)`, not under `base`, the composition's own server).
async fn watch(page: &Page, base: &str) -> Result<Watched, CdpError> {
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
    let remote = Arc::new(Mutex::new(Vec::<String>::new()));
    let r = remote.clone();
    let base = base.to_string();
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
                Some(e) = requests.next() => {
                    let url = e.request.url.clone();
                    if is_remote(&url, &base) {
                        let url = without_fragment(&url).to_string();
                        if let Ok(mut r) = r.lock() {
                            if !r.contains(&url) {
                                r.push(url);
                            }
                        }
                    }
                    urls.insert(e.request_id.inner().clone(), e.request.url.clone());
                }
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
    Ok((slot, remote))
}

/// Whether a URL is a remote resource: `http(s)`, not under the composition's own `base`.
fn is_remote(url: &str, base: &str) -> bool {
    (url.starts_with("http://") || url.starts_with("https://")) && !url.starts_with(base)
}

/// A URL without its `#fragment` (never sent to a server).
pub fn without_fragment(url: &str) -> &str {
    url.split('#').next().unwrap_or(url)
}

/// Answers the page's remote requests from the vendored copies (CDP Fetch interception):
/// the composition's own server and non-remote URLs pass; a vendored URL gets its copy
/// (with `Access-Control-Allow-Origin: *`, as a cross-origin font or `fetch` needs); any
/// other remote URL reaches the network only if allowed, else it fails and the page's
/// problem names it.
async fn intercept(
    page: &Page,
    base: String,
    v: Arc<Vendored>,
    problem: Arc<Mutex<Option<PageProblem>>>,
) -> Result<(), CdpError> {
    use chromiumoxide::cdp::browser_protocol::fetch::{
        ContinueRequestParams, EnableParams, EventRequestPaused, FailRequestParams,
        FulfillRequestParams, HeaderEntry, RequestPattern, RequestStage,
    };
    use chromiumoxide::cdp::browser_protocol::network::ErrorReason;
    let mut paused = page.event_listener::<EventRequestPaused>().await?;
    page.execute(
        EnableParams::builder()
            .pattern(
                RequestPattern::builder()
                    .url_pattern("*")
                    .request_stage(RequestStage::Request)
                    .build(),
            )
            .build(),
    )
    .await?;
    let page = page.clone();
    tokio::spawn(async move {
        while let Some(e) = paused.next().await {
            let url = e.request.url.as_str();
            let id = e.request_id.clone();
            let answered = if !is_remote(url, &base) {
                page.execute(ContinueRequestParams::new(id))
                    .await
                    .map(|_| ())
            } else if let Some((body, ct)) = v.assets.get(without_fragment(url)) {
                let mut headers = vec![
                    HeaderEntry::new("Access-Control-Allow-Origin", "*"),
                    HeaderEntry::new("Cache-Control", "no-store"),
                ];
                if let Some(ct) = ct {
                    headers.push(HeaderEntry::new("Content-Type", ct.clone()));
                }
                let mut fulfil = FulfillRequestParams::new(id, 200);
                fulfil.response_headers = Some(headers);
                fulfil.body = Some(body.as_str().to_string().into());
                page.execute(fulfil).await.map(|_| ())
            } else if v.allow_network {
                page.execute(ContinueRequestParams::new(id))
                    .await
                    .map(|_| ())
            } else {
                if let Ok(mut p) = problem.lock() {
                    p.get_or_insert(PageProblem::Unvendored(without_fragment(url).to_string()));
                }
                page.execute(FailRequestParams::new(id, ErrorReason::BlockedByClient))
                    .await
                    .map(|_| ())
            };
            if answered.is_err() {
                // The page is closing.
                break;
            }
        }
    });
    Ok(())
}

/// Where the browser binary is, as a render error.
pub(super) fn chromium_path() -> Result<std::path::PathBuf, RenderError> {
    chrome::locate().map_err(|e| RenderError::BrowserMissing(e.to_string()))
}
