//! The browser renderer: HTML compositions in Chromium over CDP, with time under our
//! control.
//!
//! Before any page script runs, `virtual_time.js` replaces the page's clocks
//! (`Date`, `performance.now`, `requestAnimationFrame`, timers), seeds `Math.random`, and
//! exposes `__heliosSeek(ms)`, which moves time to exactly `ms`, pauses and seeks every
//! CSS animation, transition and WAAPI animation, runs the frame's callbacks, and drives
//! `@helios-project/core` through `__HELIOS_VIRTUAL_TIME__`. Seeking is O(1): a chunk
//! starting at frame S shows frame S without playing 0..S, so a chunk can be shared by
//! several browser processes (`pipeline`), each rendering contiguous blocks of it. Frames
//! are PNG screenshots decoded in Rust and streamed raw into FFmpeg, never through files.
//!
//! Modules follow the data: `chrome` (the process), `page` (one loaded page: seek,
//! capture), `frames` (decoding), `pipeline` (browsers merged in order into the encoder).

mod chrome;
mod fonts;
mod frames;
mod page;
mod pipeline;
mod serve;

use std::time::Instant;

use std::sync::Arc;

use async_trait::async_trait;
use chromiumoxide::error::CdpError;

pub use chrome::{locate as locate_chromium, LaunchError, CHROMIUM_ENV};

use super::{encoder, RenderError, RenderRequest, RenderedSegment, Renderer, StageTimings};
use crate::spec::{BrowserComposition, Props};
pub use fonts::family_file_sha256;
pub use page::without_fragment;
pub use page::FontUse;
use page::{FramePage, Vendored};

const VIRTUAL_TIME_JS: &str = include_str!("virtual_time.js");

/// A worker starts at most one browser per this many frames of its chunk.
pub const MIN_FRAMES_PER_BROWSER: u64 = pipeline::MIN_BLOCK;

/// Most browser processes one worker starts by default, whatever its core count: one
/// encoder per worker does not keep up with more.
const MAX_DEFAULT_BROWSERS: u32 = 4;

/// Browser processes for a worker with `cores` cores: one a core, at least two (one browser
/// waiting on a round trip leaves the other busy), at most [`MAX_DEFAULT_BROWSERS`]. On 2
/// cores two browsers beat three on every example and size of the plan benchmark once the
/// worker's own CPU a frame had come down (docs/BENCHMARKS.md, "Is the default plan the
/// fastest?"): a third browser only adds a launch and competes with the encoder.
pub fn browsers_for_cores(cores: u32) -> u32 {
    cores.clamp(2, MAX_DEFAULT_BROWSERS)
}

/// Browser processes per worker when the spec does not say: chosen from the cores this
/// worker has.
pub fn default_browsers() -> u32 {
    browsers_for_cores(
        std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(2),
    )
}

/// Renders HTML compositions in Chromium.
#[derive(Debug, Clone)]
pub struct BrowserRenderer {
    composition: BrowserComposition,
    vendored: Option<Arc<Vendored>>,
}

impl BrowserRenderer {
    /// A renderer for this composition whose pages reach the network as they like.
    pub fn new(composition: BrowserComposition) -> Self {
        Self {
            composition,
            vendored: None,
        }
    }

    /// Pages answer remote requests from `assets` (URL → bytes, content type), the copies
    /// vendored at plan time; other remote requests fail the chunk unless the composition
    /// allows the network.
    pub fn with_assets(
        mut self,
        assets: impl IntoIterator<Item = (String, Vec<u8>, Option<String>)>,
    ) -> Self {
        use base64::Engine as _;
        let assets = assets
            .into_iter()
            .map(|(url, bytes, ct)| {
                let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
                (url, (Arc::new(b64), ct))
            })
            .collect();
        self.vendored = Some(Arc::new(Vendored {
            assets,
            allow_network: self.composition.allow_network,
        }));
        self
    }
}

pub(crate) fn crashed(chrome_tail: &str, what: &str) -> RenderError {
    RenderError::BrowserCrashed(format!(
        "{what}; last lines of Chromium's stderr:\n{chrome_tail}"
    ))
}

pub(crate) fn cdp_error(e: CdpError, what: &str, tail: &str) -> RenderError {
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
    async fn render_frames(
        &self,
        req: &RenderRequest<'_>,
        frames: &[u64],
    ) -> Result<Vec<std::path::PathBuf>, RenderError> {
        self.frames_in_one_browser(req, frames).await
    }

    async fn render(&self, req: &RenderRequest<'_>) -> Result<RenderedSegment, RenderError> {
        let v = &req.spec.video;
        let frames = req.chunk.len();
        let asked = self.composition.browsers.unwrap_or_else(default_browsers);
        // Browsers share a chunk in blocks of several frames: no more browsers than blocks.
        let most = frames
            .div_ceil(MIN_FRAMES_PER_BROWSER)
            .clamp(1, u64::from(u32::MAX)) as u32;
        let n = asked.clamp(1, most);
        if n < asked {
            tracing::info!(
                chunk = req.chunk.index,
                asked,
                browsers = n,
                "fewer browsers than asked: the chunk has only {frames} frames"
            );
        }

        // The machine's fonts first: a worker with other fonts renders nothing.
        fonts::check_files(&self.composition.fonts).map_err(RenderError::FontMismatch)?;
        let started = Instant::now();
        let (_server, mut pages) = self.launch(req, n).await?;
        if !self.composition.fonts.is_empty() {
            // And the fonts the page's text takes here, before the first frame.
            let seen = match pages.first_mut() {
                Some(p) => p.fonts_in_use().await,
                None => Ok(Vec::new()),
            };
            let checked = seen.and_then(|seen| {
                fonts::check_page(&self.composition.fonts, &seen).map_err(RenderError::FontMismatch)
            });
            if let Err(e) = checked {
                futures::future::join_all(pages.into_iter().map(FramePage::close)).await;
                return Err(e);
            }
        }
        let launch = started.elapsed();

        let output = encoder::chunk_output(req.workdir, req.spec);
        let (pages, captured) = pipeline::capture(
            pages,
            (req.chunk.start, req.chunk.end),
            v,
            Some((req.spec, req.chunk, &output)),
        )
        .await;
        futures::future::join_all(pages.into_iter().map(FramePage::close)).await;
        let totals = captured?;
        let render_time = started.elapsed().saturating_sub(totals.encode_finish);

        let probe_started = Instant::now();
        let artifact = encoder::finish(req.spec, req.chunk, &output).await?;
        let encode_time = totals.encode_finish + probe_started.elapsed();
        let wall = started.elapsed();
        let mut stats = totals.page_stats;
        stats.insert("frames_captured".into(), frames);
        let ms = |d: std::time::Duration| d.as_millis() as u64;
        Ok(RenderedSegment {
            path: output,
            frames: artifact.frames(),
            artifact,
            render_time,
            encode_time,
            stats,
            stages: Some(StageTimings {
                browsers: n,
                launch_ms: ms(launch),
                seek_ms: ms(totals.times.seek),
                settle_ms: ms(totals.times.settle),
                capture_ms: ms(totals.times.capture),
                decode_ms: ms(totals.decode),
                frame_wait_ms: ms(totals.frame_wait),
                encode_wait_ms: ms(totals.encode_wait),
                encode_finish_ms: ms(totals.encode_finish),
                frames_per_s: frames as f64 / wall.as_secs_f64().max(1e-9),
                steady_frame_ms: totals
                    .steady_frame
                    .map(|d| d.as_secs_f64() * 1000.0)
                    .unwrap_or(0.0),
            }),
        })
    }
}

impl BrowserRenderer {
    /// Serves the bundle and starts `n` browsers with the composition loaded (transparent
    /// when the output keeps alpha, answering from the vendored assets); the server must be
    /// kept as long as the pages.
    async fn launch(
        &self,
        req: &RenderRequest<'_>,
        n: u32,
    ) -> Result<(serve::BundleServer, Vec<FramePage>), RenderError> {
        let bundle = req.bundle_dir.ok_or_else(|| {
            RenderError::BadOutput("a browser composition needs its bundle".into())
        })?;
        if !bundle.join(&self.composition.entry).is_file() {
            return Err(RenderError::Composition(format!(
                "entry {} is not in the bundle",
                self.composition.entry
            )));
        }
        let path = page::chromium_path()?;
        let server = serve_bundle(bundle).await?;
        let pages = open_pages(
            &path,
            n,
            req.workdir,
            &server,
            &self.composition,
            &req.spec.video,
            req.spec.output.alpha,
            self.vendored.clone(),
        )
        .await?;
        Ok((server, pages))
    }

    /// One browser renders each frame in turn (a seek each, the frames before it drawn
    /// first as after any jump), each written as an image of `req.spec`'s output.
    async fn frames_in_one_browser(
        &self,
        req: &RenderRequest<'_>,
        frames: &[u64],
    ) -> Result<Vec<std::path::PathBuf>, RenderError> {
        let v = &req.spec.video;
        let (_server, mut pages) = self.launch(req, 1).await?;
        let mut out = Vec::with_capacity(frames.len());
        let mut failed = None;
        for &f in frames {
            let chunk = crate::spec::Chunk {
                index: req.chunk.index,
                start: f,
                end: f + 1,
            };
            let dir = req.workdir.join(format!("frame-{f}"));
            let (back, captured) =
                pipeline::capture(pages, (f, f + 1), v, Some((req.spec, chunk, &dir))).await;
            pages = back;
            let done = match captured {
                Ok(_) => encoder::finish(req.spec, chunk, &dir).await,
                Err(e) => Err(e),
            };
            match done {
                Ok(encoder::Artifact::Images(mut files)) if files.len() == 1 => {
                    out.push(files.remove(0).1)
                }
                Ok(_) => {
                    failed = Some(RenderError::BadOutput(format!(
                        "frame {f} did not render as one image"
                    )));
                    break;
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        futures::future::join_all(pages.into_iter().map(FramePage::close)).await;
        match failed {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}

/// Serves the composition's folder to the page on loopback.
async fn serve_bundle(bundle: &std::path::Path) -> Result<serve::BundleServer, RenderError> {
    serve::BundleServer::start(bundle)
        .await
        .map_err(|source| RenderError::Io {
            context: "cannot serve the composition on loopback".into(),
            source,
        })
}

/// Starts `n` browsers at once (profiles under `profiles`), each with the composition loaded;
/// if any fails, closes the others and returns its error.
#[allow(clippy::too_many_arguments)]
async fn open_pages(
    chromium: &std::path::Path,
    n: u32,
    profiles: &std::path::Path,
    server: &serve::BundleServer,
    composition: &BrowserComposition,
    video: &crate::spec::VideoSpec,
    alpha: bool,
    vendored: Option<Arc<Vendored>>,
) -> Result<Vec<FramePage>, RenderError> {
    let opened = futures::future::join_all((0..n).map(|k| {
        let profile = profiles.join(format!("chromium-profile-{k}"));
        let vendored = vendored.clone();
        async move {
            FramePage::open(
                chromium,
                &profile,
                server,
                composition,
                video,
                alpha,
                vendored,
            )
            .await
        }
    }))
    .await;
    let mut pages = Vec::new();
    let mut failed = None;
    for p in opened {
        match p {
            Ok(p) => pages.push(p),
            Err(e) => {
                failed.get_or_insert(e);
            }
        }
    }
    match failed {
        None => Ok(pages),
        Some(e) => {
            futures::future::join_all(pages.into_iter().map(FramePage::close)).await;
            Err(e)
        }
    }
}

/// The capture ceiling: frames/s that `browsers` browsers reach seeking and capturing
/// `[start, end)` of a composition (already unpacked in `bundle`) with nothing decoded or
/// encoded, measured from the first frame (launch and load excluded). Benchmarks compare the
/// whole pipeline with it.
pub async fn capture_ceiling(
    bundle: &std::path::Path,
    composition: &BrowserComposition,
    video: &crate::spec::VideoSpec,
    (start, end): (u64, u64),
    browsers: u32,
) -> Result<f64, RenderError> {
    let path = page::chromium_path()?;
    let server = serve_bundle(bundle).await?;
    let profiles = tempfile::tempdir().map_err(|source| RenderError::Io {
        context: "cannot create browser profiles".into(),
        source,
    })?;
    let pages = open_pages(
        &path,
        browsers.max(1),
        profiles.path(),
        &server,
        composition,
        video,
        false,
        None,
    )
    .await?;
    let started = Instant::now();
    let (pages, r) = pipeline::capture(pages, (start, end), video, None).await;
    let elapsed = started.elapsed();
    futures::future::join_all(pages.into_iter().map(FramePage::close)).await;
    r?;
    Ok((end - start) as f64 / elapsed.as_secs_f64().max(1e-9))
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

/// What a Helios composition declares about itself (`window.helios.getState()`); fields
/// the composition leaves unset are absent.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
pub struct HeliosMetadata {
    /// Seconds.
    pub duration: Option<f64>,
    /// Frames per second.
    pub fps: Option<f64>,
    /// Pixels.
    pub width: Option<f64>,
    /// Pixels.
    pub height: Option<f64>,
}

/// What a composition says about itself, read once at plan time.
#[derive(Debug, Clone, Default)]
pub struct Inspection {
    /// Its metadata, for a Helios composition (`None` for a plain page).
    pub helios: Option<HeliosMetadata>,
    /// The props a Helios composition holds once given the composition's `props` (its
    /// defaults filled in, validated by its schema); `None` for a plain page.
    pub props: Option<Props>,
    /// Media elements whose sound belongs in the video (when asked for). Sources served
    /// from the bundle come back as bundle paths.
    pub media: Vec<DiscoveredMedia>,
    /// A Helios composition's schema (`helios.schema`: prop name → definition), if any.
    pub schema: Option<serde_json::Map<String, serde_json::Value>>,
    /// A selector for the one `<canvas>` that looked like the whole picture (it fills the
    /// viewport at its own resolution, unstyled, and nothing else has a box), for which
    /// canvas read-back would give the same frames faster. A hint: the page could still
    /// show something else later.
    pub whole_picture_canvas: Option<String>,
}

/// One row of a batch as the composition took it: the props it holds (defaults filled
/// in, validated) and its metadata then, or the composition's refusal.
pub type RowVerdict = Result<(Props, Option<HeliosMetadata>), String>;

const HELIOS_STATE_JS: &str = "(() => {
    const h = window.helios;
    if (!(h && typeof h.getState === 'function')) return null;
    const s = h.getState();
    const num = (v) => (typeof v === 'number' && isFinite(v)) ? v : null;
    return { duration: num(s.duration), fps: num(s.fps), width: num(s.width), height: num(s.height) };
})()";

const HELIOS_SCHEMA_JS: &str = "(() => {
    const h = window.helios;
    if (!(h && h.schema && typeof h.schema === 'object')) return null;
    try { return JSON.parse(JSON.stringify(h.schema)); } catch (e) { return null; }
})()";

/// The selector of the one visible `<canvas>`, if it fills the viewport at its own
/// resolution with no opacity, filter or transform, and no other element has a box.
const WHOLE_PICTURE_CANVAS_JS: &str = "(() => {
    const W = window.innerWidth, H = window.innerHeight;
    const shown = (e) => { const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
    const canvases = Array.from(document.querySelectorAll('canvas')).filter(shown);
    if (canvases.length !== 1) return null;
    const c = canvases[0], r = c.getBoundingClientRect();
    if (r.left !== 0 || r.top !== 0 || r.width !== W || r.height !== H || c.width !== W || c.height !== H) return null;
    const line = new Set();
    for (let e = c; e; e = e.parentElement) line.add(e);
    // The DOM children of an HTML-in-Canvas <canvas layoutsubtree> are drawn by the canvas.
    const inside = (e) => c.hasAttribute('layoutsubtree') && c.contains(e);
    for (const e of document.body.querySelectorAll('*')) {
        if (!line.has(e) && !inside(e) && shown(e) && getComputedStyle(e).visibility !== 'hidden') return null;
    }
    for (const e of line) {
        const s = getComputedStyle(e);
        if (s.opacity !== '1' || s.filter !== 'none' || s.mixBlendMode !== 'normal') return null;
        if (e === c && s.transform !== 'none') return null;
    }
    if (c.id && document.querySelectorAll('#' + CSS.escape(c.id)).length === 1) return '#' + CSS.escape(c.id);
    return 'canvas';
})()";

/// Real milliseconds a page is given to create `window.helios` after it loaded.
const HELIOS_APPEAR_MS: u32 = 250;

/// Loads a composition once (at plan time) as a worker would, props included, and reads
/// its Helios metadata and (if `media`) its media elements. A composition that refuses its
/// props fails here, with its own message.
pub async fn inspect(
    bundle: &std::path::Path,
    composition: &BrowserComposition,
    video: &crate::spec::VideoSpec,
    media: bool,
) -> Result<Inspection, RenderError> {
    let mut inspector = Inspector::open(bundle, composition, video).await?;
    let result = inspector.inspect(media).await;
    inspector.close().await;
    result
}

/// A composition open at plan time, as a worker would open it (`composition.props`
/// given): what it declares, and its verdict on rows of props.
pub struct Inspector {
    page: FramePage,
    base: String,
    // Kept alive while the page is open.
    _server: serve::BundleServer,
    _profile: tempfile::TempDir,
    helios: bool,
    /// The props every row is merged over (JSON), once known.
    held: Option<String>,
    /// Fonts seen at the frames visited.
    fonts: Vec<FontUse>,
}

impl Inspector {
    /// Launches a browser and loads the composition.
    pub async fn open(
        bundle: &std::path::Path,
        composition: &BrowserComposition,
        video: &crate::spec::VideoSpec,
    ) -> Result<Self, RenderError> {
        let path = page::chromium_path()?;
        let server = serve_bundle(bundle).await?;
        let profile = tempfile::tempdir().map_err(|source| RenderError::Io {
            context: "cannot create a browser profile".into(),
            source,
        })?;
        let page = FramePage::open(
            &path,
            profile.path(),
            &server,
            composition,
            video,
            false,
            None,
        )
        .await?;
        Ok(Self {
            page,
            base: server.url(""),
            _server: server,
            _profile: profile,
            helios: false,
            held: None,
            fonts: Vec::new(),
        })
    }

    /// Metadata, schema, props held and (if `media`) media elements.
    pub async fn inspect(&mut self, media: bool) -> Result<Inspection, RenderError> {
        let page = &mut self.page;
        let helios: Option<HeliosMetadata> = page
            .evaluate(
                &format!(
                    "new Promise((resolve) => {{
                        const real = window.__heliosReal;
                        const t0 = real.performanceNow();
                        const look = () => {{
                            if (window.helios && typeof window.helios.getState === 'function') {{
                                resolve({HELIOS_STATE_JS});
                            }} else if (real.performanceNow() - t0 > {HELIOS_APPEAR_MS}) {{
                                resolve(null);
                            }} else {{
                                real.setTimeout(look, 10);
                            }}
                        }};
                        look();
                    }})"
                ),
                "reading the composition's Helios metadata",
            )
            .await?;
        self.helios = helios.is_some();
        let schema = match helios {
            Some(_) => {
                page.evaluate(HELIOS_SCHEMA_JS, "reading the composition's schema")
                    .await?
            }
            None => None,
        };
        let mut found = if media {
            page.evaluate::<serde_json::Value>("window.__heliosSeek(0)", "showing frame 0")
                .await?;
            page.evaluate::<Vec<DiscoveredMedia>>(DISCOVER_JS, "looking for media elements")
                .await?
        } else {
            Vec::new()
        };
        let whole_picture_canvas = page
            .evaluate(
                WHOLE_PICTURE_CANVAS_JS,
                "looking for a canvas that is the picture",
            )
            .await?;
        for m in &mut found {
            if let Some(rel) = m.source.strip_prefix(&self.base) {
                m.source = rel.split(['?', '#']).next().unwrap_or(rel).to_string();
            }
        }
        let props = match (&page.props, &helios) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(_)) => page.current_props().await?,
            (None, None) => None,
        };
        self.held = props
            .as_ref()
            .map(|p| serde_json::Value::Object(p.clone()).to_string());
        Ok(Inspection {
            helios,
            props,
            media: found,
            schema,
            whole_picture_canvas,
        })
    }

    /// Gives a Helios composition one row's props, merged over the props it held after
    /// [`Inspector::inspect`] (never over an earlier row's): the props it then holds and
    /// its metadata, or its refusal. `None` for a page without Helios.
    pub async fn try_row(&mut self, row: &Props) -> Result<Option<RowVerdict>, RenderError> {
        if !self.helios {
            return Ok(None);
        }
        let json = serde_json::Value::Object(row.clone()).to_string();
        let base = self.held.clone().unwrap_or_else(|| "{}".into());
        match self.page.apply_props_over(&json, Some(&base)).await {
            Ok(held) => {
                let meta: Option<HeliosMetadata> = self
                    .page
                    .evaluate(HELIOS_STATE_JS, "reading the composition's metadata")
                    .await?;
                Ok(Some(Ok((held.unwrap_or_else(|| row.clone()), meta))))
            }
            Err(RenderError::Composition(msg)) => Ok(Some(Err(msg))),
            Err(e) => Err(e),
        }
    }

    /// Shows the page at each of `frames` in turn (its clock moved there and settled), so
    /// that what it loads for them is seen, and notes the fonts its text renders with there
    /// (see [`Inspector::fonts`]).
    pub async fn visit(&mut self, frames: &[u64]) -> Result<(), RenderError> {
        let mut times = page::FrameTimes::default();
        for &f in frames {
            self.page.seek(f, &mut times).await?;
            let seen = self.page.fonts_in_use().await?;
            self.fonts.extend(seen);
        }
        self.fonts.sort();
        self.fonts.dedup();
        Ok(())
    }

    /// The fonts the page's text rendered with at the frames visited: family requested →
    /// platform font, web font or the machine's.
    pub fn fonts(&self) -> &[FontUse] {
        &self.fonts
    }

    /// The remote (`http(s)`) URLs the page has requested since it was opened, in order of
    /// first request, without fragments; the composition's own files are not among them.
    pub fn remote_requests(&self) -> Vec<String> {
        self.page.remote_requests()
    }

    /// Closes the browser.
    pub async fn close(self) {
        self.page.close().await;
    }
}
