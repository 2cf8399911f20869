//! Turning command-line settings into a job spec.

use std::path::Path;

use anyhow::{bail, Context};

use super::args::{PlanSettings, StillFrame};
use crate::media;
use crate::render::browser::{DiscoveredMedia, HeliosMetadata, Inspection};
use crate::spec::{
    plan_chunks, AudioSource, AudioTrack, BrowserComposition, ChunkPlan, Codec, CommandComposition,
    Composition, FontRecord, Fps, FramePattern, FrameRange, ImageFormat, JobSpec, OutputKind,
    OutputSpec, Props, RetryPolicy, SegmentFormat, VideoSpec, SPEC_VERSION,
};
use crate::storage::{self, keys, Storage};

/// Frame rate of a page that does not declare one.
const DEFAULT_FPS: Fps = Fps::new(30, 1);
/// Size of a page that does not declare one.
const DEFAULT_SIZE: (u32, u32) = (1280, 720);

/// Frames per chunk below which extra chunks cost more in start-up than they save.
const MIN_DEFAULT_CHUNK_FRAMES: u64 = 30;

/// Cores one local worker of an HTML composition is planned to have: its browsers and its
/// encoder share them. Measured on 2 cores (docs/BENCHMARKS.md, "Is the default plan the
/// fastest?"): one chunk on one worker with two browsers is the best plan of the grid or
/// within its noise on every row; splits into more workers or chunks pay for extra browser
/// start-ups, encoders and segments.
const CORES_PER_BROWSER_WORKER: u32 = 4;

/// Workers at once when not given: an HTML composition's worker keeps several cores busy
/// by itself (browsers side by side plus the encoder), so on this machine it gets several
/// cores; a command gets one.
pub(super) fn default_workers(page: bool, local: bool) -> u32 {
    let cores = default_concurrency();
    if page && local {
        (cores / CORES_PER_BROWSER_WORKER).max(1)
    } else {
        cores
    }
}

/// Browsers per worker when not given: local workers divide this machine's cores; a
/// remote worker chooses from its own.
pub(super) fn default_browsers(concurrency: u32, local: bool) -> Option<u32> {
    local.then(|| {
        crate::render::browser::browsers_for_cores(
            (default_concurrency() / concurrency.max(1)).max(1),
        )
    })
}

/// Default concurrency: one worker per core.
pub fn default_concurrency() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(2)
}

/// Builds (and validates) a spec; uploads the bundle, if any, to `storage`. `local` says
/// that the workers will share this machine (the local adapter): the default plan of an
/// HTML composition then divides this machine's cores among workers and browsers. For
/// other adapters, each worker chooses its browsers from its own cores.
pub async fn build_spec(
    p: &PlanSettings,
    storage: &Storage,
    local: bool,
    target: &Target<'_>,
) -> anyhow::Result<JobSpec> {
    let source = Source::new(p)?;
    // The page is loaded once here, as a worker would load it, when it has something to
    // say: its Helios metadata, its verdict on the props, its media elements.
    let (inspection, remote, fonts) = match &source.page {
        Some((dir, entry)) if source.wants_inspection(p) => {
            let (i, remote, fonts) =
                inspect_page(dir, entry, p, source.props.clone(), target).await?;
            (Some(i), remote, fonts)
        }
        _ => (None, Vec::new(), Vec::new()),
    };
    let helios = inspection.as_ref().and_then(|i| i.helios.clone());
    let settings = Resolved::new(p, helios.as_ref())?;
    if source.page.is_some() {
        eprintln!("{}", settings.describe());
    }
    check_fonts(&fonts, p.inputs.strict_fonts)?;
    if let (None, Some(sel)) = (
        &p.capture_canvas,
        inspection
            .as_ref()
            .and_then(|i| i.whole_picture_canvas.as_ref()),
    ) {
        eprintln!(
            "hint: the picture looks like one <canvas> ({sel}): --capture-canvas '{sel}' reads \
             its pixels back raw, about twice as fast (only that canvas is captured)"
        );
    }
    // The props as the composition holds them (its defaults filled in); a plain page gets
    // them as given.
    let props = match (&inspection, source.props.clone()) {
        (Some(i), Some(given)) => Some(i.props.clone().unwrap_or(given)),
        (_, given) => given,
    };
    let bundle = source.upload(p, storage).await?;
    let media = inspection.map(|i| i.media).unwrap_or_default();
    // Remote media whose sound is mixed are vendored too, loaded by the page or not.
    let mut remote = remote;
    if !p.inputs.no_vendor {
        for m in &media {
            let url = crate::render::browser::without_fragment(&m.source).to_string();
            if (url.starts_with("http://") || url.starts_with("https://")) && !remote.contains(&url)
            {
                remote.push(url);
            }
        }
    }
    let mut spec = assemble(p, &source, bundle, &settings, props, &media, local, target)?;
    set_network(&mut spec, p, &remote, storage).await?;
    if let Composition::Browser(b) = &mut spec.composition {
        b.fonts = fonts;
    }
    eprintln!("{}", describe_output(&spec));
    if spec.output.kind == OutputKind::Gif && spec.video.fps.as_f64() > 50.0 {
        eprintln!(
            "note: at {} fps a GIF frame lasts under 2 centiseconds, which browsers stretch to 10: it will play slowly there; 50 fps or less plays true everywhere",
            spec.video.fps
        );
    }
    check_audio(&spec, source.bundle_dir(p), Some(storage)).await?;
    Ok(spec)
}

/// The fonts a page used, as the spec records them: a machine font with the SHA-256 of the
/// file fontconfig picks for its family (each family looked up once).
fn font_records(uses: &[crate::render::browser::FontUse]) -> Vec<FontRecord> {
    let mut hashes: std::collections::BTreeMap<String, Option<String>> = Default::default();
    uses.iter()
        .map(|f| FontRecord {
            requested: f.requested.clone(),
            platform: f.platform.clone(),
            web: f.web,
            file_sha256: match f.web {
                true => None,
                false => hashes
                    .entry(f.platform.clone())
                    .or_insert_with(|| crate::render::browser::family_file_sha256(&f.platform))
                    .clone(),
            },
        })
        .collect()
}

/// CSS's generic families, which any machine resolves to one of its fonts.
const GENERIC_FAMILIES: &[&str] = &[
    "serif",
    "sans-serif",
    "monospace",
    "cursive",
    "fantasy",
    "system-ui",
    "ui-serif",
    "ui-sans-serif",
    "ui-monospace",
    "ui-rounded",
    "emoji",
    "math",
    "fangsong",
    "-webkit-body",
];

/// Prints the fonts the page's text renders with, and warns (with `strict`: fails) when a
/// family it asks for first is not available, naming it and the font used instead.
pub(super) fn check_fonts(fonts: &[FontRecord], strict: bool) -> anyhow::Result<()> {
    let mut by_request: std::collections::BTreeMap<&str, Vec<&FontRecord>> = Default::default();
    for f in fonts {
        by_request.entry(f.requested.as_str()).or_default().push(f);
    }
    let mut missing = Vec::new();
    for (requested, used) in &by_request {
        let shown: Vec<String> = used
            .iter()
            .map(|f| match f.web {
                true => format!("{} (web font)", f.platform),
                false => f.platform.clone(),
            })
            .collect();
        eprintln!("fonts: {requested} → {}", shown.join(", "));
        let primary = requested
            .split(',')
            .next()
            .unwrap_or_default()
            .trim()
            .trim_matches(|c| c == '"' || c == '\'')
            .to_string();
        if primary.is_empty() || GENERIC_FAMILIES.contains(&primary.to_ascii_lowercase().as_str()) {
            continue;
        }
        let found = used
            .iter()
            .any(|f| f.web || f.platform.eq_ignore_ascii_case(&primary));
        if !found {
            missing.push(format!(
                "font family '{primary}' is not available: its text renders in {} instead",
                shown.join(", ")
            ));
        }
    }
    for m in &missing {
        eprintln!("warning: {m} (install it on every worker, or load it with @font-face from a file in the composition's folder)");
    }
    if strict && !missing.is_empty() {
        bail!(
            "--strict-fonts: {}; nothing was rendered",
            missing.join("; ")
        );
    }
    Ok(())
}

/// Vendors the remote resources the page loaded when it was planned (unless `--no-vendor`)
/// into the spec, with the network policy of the flags.
pub(super) async fn set_network(
    spec: &mut JobSpec,
    p: &PlanSettings,
    remote: &[String],
    storage: &Storage,
) -> anyhow::Result<()> {
    let Composition::Browser(b) = &mut spec.composition else {
        return Ok(());
    };
    b.allow_network = p.inputs.allow_network || p.inputs.no_vendor;
    if !p.inputs.no_vendor {
        b.assets = super::vendor::vendor(
            remote,
            storage,
            p.inputs.max_asset_mb.saturating_mul(1_000_000),
        )
        .await?;
    }
    Ok(())
}

/// What a job is planned to write: the output's path when it is known (its name decides
/// the kind: a video by its container, a GIF, an image sequence) and, for a still, the frame.
#[derive(Debug, Clone, Copy, Default)]
pub struct Target<'a> {
    /// The output path (`-o`).
    pub output: Option<&'a Path>,
    /// The one frame of a still.
    pub still: Option<StillFrame>,
}

impl<'a> Target<'a> {
    /// A job writing `output`.
    pub fn output(output: &'a Path) -> Self {
        Self {
            output: Some(output),
            still: None,
        }
    }
}

/// One line for people: what the job will write.
pub fn describe_output(spec: &JobSpec) -> String {
    let o = &spec.output;
    let alpha = if o.alpha { " with alpha" } else { "" };
    let format = o.format.map(|f| f.extension()).unwrap_or("png");
    match o.kind {
        OutputKind::Video => {
            let v = &spec.video;
            let color = if crate::render::encoder::color_filter(v.pixel_format()).is_some() {
                ", BT.709 limited range"
            } else {
                ""
            };
            format!(
                "output: video, {} {}{color}{alpha}",
                v.codec.name(),
                v.pixel_format()
            )
        }
        OutputKind::Gif => format!(
            "output: GIF, one palette for the whole video, {}",
            match o.loop_count {
                Some(0) => "loops forever".to_string(),
                Some(n) => format!("loops {n} times"),
                None => "plays once".to_string(),
            }
        ),
        OutputKind::Images => format!(
            "output: image sequence, {} {format} images{alpha} named {}",
            spec.frame_count(),
            o.pattern.as_deref().unwrap_or_default()
        ),
        OutputKind::Still => format!(
            "output: still, {format} image{alpha} of frame {}",
            spec.video.frames.start
        ),
    }
}

/// The output section, codec and pixel format for the flags and the target.
fn output_settings(
    p: &PlanSettings,
    t: &Target<'_>,
) -> anyhow::Result<(OutputSpec, Codec, Option<String>)> {
    let path = t.output;
    let name = path
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = path
        .and_then(|p| p.extension())
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .unwrap_or_default();
    let shown = path.map(|p| p.display().to_string()).unwrap_or_default();
    let mut o = OutputSpec {
        alpha: p.transparent,
        quality: p.quality,
        ..Default::default()
    };
    o.kind = if t.still.is_some() {
        OutputKind::Still
    } else if FramePattern::is_pattern(&name) {
        OutputKind::Images
    } else if ext == "gif" {
        OutputKind::Gif
    } else if ImageFormat::from_extension(&ext).is_some() {
        let folder = path
            .and_then(|p| p.parent())
            .filter(|d| !d.as_os_str().is_empty())
            .map(|d| format!("{}/", d.display()))
            .unwrap_or_default();
        bail!(
            "-o {shown}: one .{ext} image holds one frame; for an image per frame give a pattern such as {folder}%05d.{ext}, for one frame use `helios-infra still`"
        );
    } else {
        OutputKind::Video
    };
    if o.kind != OutputKind::Video {
        let video_flags: Vec<&str> = [
            ("--codec", p.codec.is_some()),
            ("--crf", p.crf.is_some()),
            ("--preset", p.preset.is_some()),
            ("--pix-fmt", p.pix_fmt.is_some()),
            ("--lossless", p.lossless),
        ]
        .into_iter()
        .filter_map(|(flag, set)| set.then_some(flag))
        .collect();
        if !video_flags.is_empty() {
            let what = match o.kind {
                OutputKind::Gif => "a GIF is written with its own palette encoder",
                OutputKind::Still => "a still is written as one image",
                _ => "an image sequence is written image by image",
            };
            bail!(
                "-o {shown}: {} {} for video outputs; {what}, not encoded as video (drop {}, or write a video such as out.mp4)",
                video_flags.join(", "),
                if video_flags.len() == 1 { "is" } else { "are" },
                if video_flags.len() == 1 { "it" } else { "them" }
            );
        }
    }
    match o.kind {
        OutputKind::Still => {
            let ext = if ext.is_empty() { "png" } else { ext.as_str() };
            o.format = Some(ImageFormat::from_extension(ext).ok_or_else(|| {
                anyhow::anyhow!("-o {shown}: a still is a .png, .jpg (.jpeg) or .webp image")
            })?);
        }
        OutputKind::Images => {
            let fp = FramePattern::parse(&name).map_err(|e| anyhow::anyhow!("-o {shown}: {e}"))?;
            o.format = Some(
                fp.extension()
                    .and_then(ImageFormat::from_extension)
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "-o {shown}: an image sequence is .png, .jpg (.jpeg) or .webp images; end the pattern with one of these extensions"
                        )
                    })?,
            );
            o.pattern = Some(name);
        }
        OutputKind::Gif => {
            o.loop_count = if p.no_loop {
                None
            } else {
                Some(p.loop_count.unwrap_or(0))
            };
        }
        OutputKind::Video => {}
    }
    if o.kind != OutputKind::Gif && (p.loop_count.is_some() || p.no_loop) {
        bail!("--loop and --no-loop are for GIF outputs (-o out.gif)");
    }
    let codec = match p.codec {
        Some(c) => c,
        None => match ext.as_str() {
            "webm" => Codec::Vp9,
            "mov" | "qt" if p.transparent => Codec::Prores,
            _ => Codec::H264,
        },
    };
    let pix_fmt = p
        .pix_fmt
        .clone()
        .or_else(|| match (o.kind, p.transparent, codec) {
            (OutputKind::Video, true, Codec::Prores) => Some("yuva444p10le".into()),
            (OutputKind::Video, true, Codec::Vp9) => Some("yuva420p".into()),
            _ => None,
        });
    if p.transparent {
        let keeps = match o.kind {
            OutputKind::Video => matches!(codec, Codec::Prores | Codec::Vp9),
            OutputKind::Gif => false,
            OutputKind::Images | OutputKind::Still => o.format.is_some_and(|f| f.carries_alpha()),
        };
        if !keeps {
            let what = match o.kind {
                OutputKind::Video => format!("{} video", codec.name()),
                OutputKind::Gif => "a GIF".into(),
                _ => format!(".{ext} images"),
            };
            bail!(
                "--transparent: -o {shown} ({what}) cannot carry alpha; use {}",
                crate::spec::ALPHA_OUTPUTS
            );
        }
    }
    Ok((o, codec, pix_fmt))
}

/// What is rendered: an HTML composition (its folder and entry page) or a command, and
/// the props given on the command line; checked against the other settings.
pub(super) struct Source {
    pub page: Option<(std::path::PathBuf, String)>,
    pub props: Option<Props>,
}

impl Source {
    pub fn new(p: &PlanSettings) -> anyhow::Result<Self> {
        // An HTML composition (a folder or a page), or a command after `--`.
        let page = match (&p.composition, p.argv.is_empty()) {
            (Some(c), true) => Some(composition_entry(c)?),
            (None, false) => None,
            (Some(c), false) => bail!("give either a composition ({}) or a command after `--`, not both", c.display()),
            (None, true) => bail!(
                "nothing to render: give an HTML composition (a folder with index.html, or an .html file) or a renderer command after `--`"
            ),
        };
        if page.is_some() && p.bundle.is_some() {
            bail!("--bundle is for commands; an HTML composition's folder is its bundle");
        }
        if page.is_none() && p.browsers.is_some() {
            bail!("--browsers is for HTML compositions; a renderer command runs once per chunk");
        }
        if p.browsers == Some(0) {
            bail!("--browsers must be at least 1 (browser processes per worker), or left out to let each worker choose from its cores");
        }
        if page.is_some() && !p.pass_env.is_empty() {
            bail!("--pass-env is for renderer commands; an HTML composition runs in a browser that never sees the worker's environment");
        }
        if p.chunks == Some(0) {
            bail!("--chunks must be at least 1");
        }
        if p.frames_per_chunk == Some(0) {
            bail!("--frames-per-chunk must be at least 1");
        }
        let props = match &p.props {
            Some(_) if page.is_none() => bail!(
                "--props is for HTML compositions; a renderer command gets its settings in its arguments"
            ),
            Some(arg) => Some(parse_props(arg)?),
            None => None,
        };
        Ok(Self { page, props })
    }

    /// Whether the page has something to say at plan time: metadata the flags leave out,
    /// a verdict on props, media elements.
    pub fn wants_inspection(&self, p: &PlanSettings) -> bool {
        let wants_metadata =
            (p.frames.is_none() && p.duration.is_none()) || p.fps.is_none() || p.size.is_none();
        self.page.is_some()
            && (wants_metadata || self.props.is_some() || !p.no_media_audio || !p.inputs.no_vendor)
    }

    /// The folder packed as the job's bundle.
    pub fn bundle_dir<'a>(&'a self, p: &'a PlanSettings) -> Option<&'a Path> {
        self.page
            .as_ref()
            .map(|(dir, _)| dir.as_path())
            .or(p.bundle.as_deref())
    }

    /// Packs and uploads the bundle (once: it is content-addressed); its storage key.
    pub async fn upload(
        &self,
        p: &PlanSettings,
        storage: &Storage,
    ) -> anyhow::Result<Option<String>> {
        match self.bundle_dir(p) {
            Some(dir) => Ok(Some(upload_bundle(dir, storage).await?)),
            None => Ok(None),
        }
    }
}

/// The job spec for resolved settings, props and discovered media; validated.
#[allow(clippy::too_many_arguments)]
pub(super) fn assemble(
    p: &PlanSettings,
    source: &Source,
    bundle: Option<String>,
    settings: &Resolved,
    props: Option<Props>,
    media: &[DiscoveredMedia],
    local: bool,
    target: &Target<'_>,
) -> anyhow::Result<JobSpec> {
    let page = &source.page;
    let (fps, (width, height)) = (settings.fps.0, settings.size.0);
    let range = settings.range_for(target.still)?;
    let (output, codec, pixel_format) = output_settings(p, target)?;
    let concurrency = p
        .concurrency
        .unwrap_or_else(|| default_workers(page.is_some(), local));
    let plan = match (p.chunks, p.frames_per_chunk) {
        (Some(n), _) => ChunkPlan::Count(n),
        (None, Some(f)) => ChunkPlan::FramesPerChunk(f),
        (None, None) => {
            let by_size = range.len().div_ceil(MIN_DEFAULT_CHUNK_FRAMES).max(1);
            // Two chunks per command worker even out uneven chunks; a browser worker
            // balances its own browsers, and every extra chunk costs a start-up.
            let per_worker = if page.is_some() { 1 } else { 2 };
            ChunkPlan::Count((u64::from(concurrency) * per_worker).min(by_size) as u32)
        }
    };
    let browsers = match p.browsers {
        Some(n) => Some(n),
        None if page.is_some() => default_browsers(concurrency, local),
        None => None,
    };
    let bundle_dir = source.bundle_dir(p);
    let mut audio: Vec<AudioTrack> = p
        .audio
        .iter()
        .map(|(file, frame)| AudioTrack::new(audio_source(file, bundle_dir), *frame))
        .collect();
    audio.extend(discovered_audio(media, fps));
    let spec = JobSpec {
        version: SPEC_VERSION,
        id: None,
        composition: match (page, bundle) {
            (Some((_, entry)), Some(bundle)) => Composition::Browser(BrowserComposition {
                entry: entry.clone(),
                bundle,
                seed: None,
                capture_canvas: p.capture_canvas.clone(),
                browsers,
                props,
                assets: Default::default(),
                allow_network: false,
                fonts: Vec::new(),
            }),
            (_, bundle) => Composition::Command(CommandComposition {
                argv: p.argv.clone(),
                bundle,
                pass_env: p.pass_env.clone(),
            }),
        },
        video: VideoSpec {
            width,
            height,
            fps,
            frames: range,
            codec,
            crf: p.crf,
            preset: p.preset.clone(),
            pixel_format,
            lossless: p.lossless,
            // Chosen from the output by `render` and `run` (SegmentFormat::for_output).
            segments: SegmentFormat::File,
        },
        output,
        audio,
        chunks: plan_chunks(range, plan),
        retry: RetryPolicy {
            max_attempts: p.retries.saturating_add(1),
            timeout_s: p.timeout,
            ..RetryPolicy::default()
        },
        concurrency,
        webhook: p.webhook.clone(),
        source: Some(match &p.composition {
            Some(c) => c.display().to_string(),
            None => shell_words(&p.argv),
        }),
    };
    crate::spec::validate(&spec)?;
    if let (Some(n), Some(fewest)) = (p.browsers, spec.chunks.iter().map(|c| c.len()).min()) {
        if u64::from(n) > fewest {
            eprintln!(
                "note: --browsers {n} is more than the {fewest} frames of the shortest chunk; \
                 a worker starts at most one browser per {} frames of its chunk",
                crate::render::browser::MIN_FRAMES_PER_BROWSER
            );
        }
    }
    Ok(spec)
}

/// The sound of a composition's `<audio>`/`<video>` elements, as audio tracks.
pub(super) fn discovered_audio(media: &[DiscoveredMedia], fps: Fps) -> Vec<AudioTrack> {
    let fps = fps.as_f64();
    media
        .iter()
        .map(|m| {
            tracing::info!(source = %m.source, offset_s = m.offset_s, "audio from a media element");
            let mut t =
                AudioTrack::new(m.source.clone(), (m.offset_s * fps).round().max(0.0) as u64);
            t.trim_start_s = m.seek_s.max(0.0);
            t.fade_in_s = m.fade_in_s.max(0.0);
            t.fade_out_s = m.fade_out_s.max(0.0);
            t.volume = m.volume.clamp(0.0, 100.0);
            t.looped = m.looped;
            t
        })
        .collect()
}

/// Loads the page once, as a worker would (with the props), for its metadata, its
/// verdict on the props and (unless `--no-media-audio`) its media elements; then shows it
/// at a few frames of the job and returns the remote URLs it requested (to vendor).
async fn inspect_page(
    dir: &Path,
    entry: &str,
    p: &PlanSettings,
    props: Option<Props>,
    target: &Target<'_>,
) -> anyhow::Result<(Inspection, Vec<String>, Vec<FontRecord>)> {
    let composition = BrowserComposition {
        entry: entry.to_string(),
        bundle: String::new(),
        seed: None,
        capture_canvas: None,
        browsers: None,
        props,
        assets: Default::default(),
        allow_network: true,
        fonts: Vec::new(),
    };
    let video = probe_video(p);
    let failed = |e: crate::render::RenderError| match (&composition.props, &e) {
        (Some(_), crate::render::RenderError::Composition(msg))
            if msg.contains("refused its props") =>
        {
            anyhow::anyhow!("--props: {msg}; nothing was rendered")
        }
        _ => anyhow::Error::new(e).context(format!(
            "loading {} to read its settings and media (media: skip with --no-media-audio)",
            dir.join(entry).display()
        )),
    };
    let mut inspector = crate::render::browser::Inspector::open(dir, &composition, &video)
        .await
        .map_err(failed)?;
    let looked = async {
        let inspection = inspector.inspect(!p.no_media_audio).await.map_err(failed)?;
        let (remote, fonts) =
            look_around(&mut inspector, p, inspection.helios.as_ref(), target.still).await;
        Ok::<_, anyhow::Error>((inspection, remote, fonts))
    }
    .await;
    inspector.close().await;
    looked
}

/// Shows an inspected page at a few frames of the job and returns what it showed there:
/// the remote URLs it requested (none with `--no-vendor`) and the fonts its text used. A
/// page that fails at one of the frames is left to fail in its chunk, where the error is
/// reported as the render's; what it showed until then is kept.
pub(super) async fn look_around(
    inspector: &mut crate::render::browser::Inspector,
    p: &PlanSettings,
    helios: Option<&HeliosMetadata>,
    still: Option<StillFrame>,
) -> (Vec<String>, Vec<FontRecord>) {
    if let Ok(range) = Resolved::new(p, helios).and_then(|r| r.range_for(still)) {
        if let Err(e) = inspector.visit(&sample_frames(range)).await {
            tracing::debug!(error = %e, "the page failed while planned; using what it showed");
        }
    }
    let remote = match p.inputs.no_vendor {
        true => Vec::new(),
        false => inspector.remote_requests(),
    };
    (remote, font_records(inspector.fonts()))
}

/// Up to five frames spread over a range (its first and last included).
fn sample_frames(range: FrameRange) -> Vec<u64> {
    if range.end == u64::MAX || range.is_empty() {
        return vec![range.start];
    }
    let last = range.end - 1;
    let mut f: Vec<u64> = (0..5u64)
        .map(|i| range.start + (last - range.start) * i / 4)
        .collect();
    f.dedup();
    f
}

/// The video a page is opened at for plan-time inspection: the flags' size and rate, else
/// the defaults (a composition's own are not known yet).
pub(super) fn probe_video(p: &PlanSettings) -> VideoSpec {
    let (width, height) = p.size.unwrap_or(DEFAULT_SIZE);
    VideoSpec {
        width,
        height,
        fps: p.fps.unwrap_or(DEFAULT_FPS),
        frames: FrameRange::new(0, 1),
        codec: p.codec.unwrap_or_default(),
        crf: None,
        preset: None,
        pixel_format: None,
        lossless: false,
        segments: SegmentFormat::File,
    }
}

/// `--props JSON` or `--props @FILE`: a JSON object.
fn parse_props(arg: &str) -> anyhow::Result<Props> {
    let (text, origin) = match arg.strip_prefix('@') {
        Some(file) => (
            std::fs::read_to_string(file)
                .with_context(|| format!("--props @{file}: cannot read {file}"))?,
            format!("--props @{file}"),
        ),
        None => (arg.to_string(), "--props".to_string()),
    };
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(other) => bail!(
            "{origin}: props must be a JSON object such as {{\"title\":\"Ada\"}}, not {}",
            json_kind(&other)
        ),
        Err(e) => bail!("{origin}: not valid JSON ({e}); give an object such as {{\"title\":\"Ada\"}} or @file.json"),
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Where a setting came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Flag,
    Composition,
    Default,
}

impl Origin {
    fn say(self) -> &'static str {
        match self {
            Origin::Flag => "command line",
            Origin::Composition => "composition",
            Origin::Default => "default",
        }
    }
}

/// Frames, rate and size: the command line's, else the composition's, else the defaults.
pub(super) struct Resolved {
    frames: (FrameRange, Origin),
    fps: (Fps, Origin),
    size: ((u32, u32), Origin),
}

impl Resolved {
    pub fn new(p: &PlanSettings, helios: Option<&HeliosMetadata>) -> anyhow::Result<Self> {
        let h = helios.cloned().unwrap_or_default();
        let fps = match (p.fps, h.fps) {
            (Some(f), _) => (f, Origin::Flag),
            (None, Some(x)) => (
                x.to_string()
                    .parse::<Fps>()
                    .map_err(|e| anyhow::anyhow!("the composition's fps {x}: {e}; give --fps"))?,
                Origin::Composition,
            ),
            (None, None) => (DEFAULT_FPS, Origin::Default),
        };
        let size = match (p.size, h.width, h.height) {
            (Some(s), _, _) => (s, Origin::Flag),
            (None, Some(w), Some(hh)) => {
                let px = |v: f64, what: &str| {
                    if v.is_finite() && v >= 1.0 && v.fract() == 0.0 && v <= f64::from(u32::MAX) {
                        Ok(v as u32)
                    } else {
                        Err(anyhow::anyhow!(
                            "the composition's {what} {v} is not a whole number of pixels; give --size"
                        ))
                    }
                };
                ((px(w, "width")?, px(hh, "height")?), Origin::Composition)
            }
            _ => (DEFAULT_SIZE, Origin::Default),
        };
        let frames = match (p.frames, p.duration, h.duration) {
            (Some((s, e)), _, _) => (FrameRange::new(s, e), Origin::Flag),
            (None, Some(secs), _) => {
                if !(secs.is_finite() && secs > 0.0) {
                    bail!("--duration {secs} is not a positive number of seconds");
                }
                let n = (secs * fps.0.as_f64()).round() as u64;
                (FrameRange::new(0, n), Origin::Flag)
            }
            (None, None, Some(secs)) => {
                if !(secs.is_finite() && secs > 0.0) {
                    bail!(
                        "the composition's duration is {secs} s: nothing to render; give --frames or --duration"
                    );
                }
                // As Helios' own renderer counts them: a last partial frame is rendered.
                let n = (secs * h.fps.unwrap_or(fps.0.as_f64()) - 1e-9).ceil().max(1.0) as u64;
                (FrameRange::new(0, n), Origin::Composition)
            }
            // A still of a page without a duration: any frame.
            (None, None, None) if p.still => (FrameRange::new(0, u64::MAX), Origin::Default),
            (None, None, None) => match helios {
                Some(_) => bail!(
                    "the composition's Helios instance declares no duration; say how much to render: --frames START..END or --duration SECONDS"
                ),
                None => bail!("say how much to render: --frames START..END or --duration SECONDS"),
            },
        };
        Ok(Self { frames, fps, size })
    }

    /// The frames to render: all of them, or a still's one frame, which must lie in the
    /// composition's range when the composition has one.
    pub fn range_for(&self, still: Option<StillFrame>) -> anyhow::Result<FrameRange> {
        let (range, origin) = self.frames;
        let Some(still) = still else {
            return Ok(range);
        };
        let fps = self.fps.0;
        let f = match still {
            StillFrame::Frame(f) => f,
            StillFrame::Time(t) => {
                if !(t.is_finite() && t >= 0.0) {
                    bail!("--time {t} is not a time in seconds from the start (0 or more)");
                }
                // The frame on screen at t: the last one that starts at or before it.
                (t * fps.as_f64() + 1e-9).floor() as u64
            }
        };
        let what = match still {
            StillFrame::Frame(_) => format!("frame {f}"),
            StillFrame::Time(t) => format!("--time {t} (frame {f} at {fps} fps)"),
        };
        if origin != Origin::Default && !(range.start..range.end).contains(&f) {
            bail!(
                "{what} is outside the composition: its frames are {}..{} ({} s at {fps} fps); give a frame from {} to {}",
                range.start,
                range.end,
                format_secs(fps.seconds(range.len())),
                range.start,
                range.end - 1
            );
        }
        Ok(FrameRange::new(f, f + 1))
    }

    /// One line for people: each value and where it came from.
    pub fn describe(&self) -> String {
        let (range, fo) = self.frames;
        let (fps, ro) = self.fps;
        let ((w, h), so) = self.size;
        if range.end == u64::MAX {
            return format!(
                "plan: the page declares no duration, {fps} fps ({}), {w}x{h} ({})",
                ro.say(),
                so.say()
            );
        }
        format!(
            "plan: frames {}..{} ({} s, {}), {fps} fps ({}), {w}x{h} ({})",
            range.start,
            range.end,
            format_secs(fps.seconds(range.len())),
            fo.say(),
            ro.say(),
            so.say()
        )
    }
}

fn format_secs(s: f64) -> String {
    let t = format!("{s:.3}");
    t.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The spec's `source` for a command-line audio file: URLs as they are, files inside the
/// bundle folder relative to it, other files as absolute paths.
fn audio_source(file: &str, bundle: Option<&Path>) -> String {
    if file.starts_with("http://") || file.starts_with("https://") || file.starts_with("file://") {
        return file.to_string();
    }
    let path = std::path::absolute(file).unwrap_or_else(|_| Path::new(file).to_path_buf());
    if let Some(root) = bundle.and_then(|b| std::path::absolute(b).ok()) {
        if let Ok(rel) = path.strip_prefix(&root) {
            return rel.to_string_lossy().into_owned();
        }
    }
    path.to_string_lossy().into_owned()
}

/// Fails at plan time, naming the file, when an audio source is missing or unreadable.
/// Sources inside a bundle are checked in the bundle folder when it is at hand.
/// A URL vendored at plan time is probed in its stored copy (from `storage`).
pub async fn check_audio(
    spec: &JobSpec,
    bundle: Option<&Path>,
    storage: Option<&Storage>,
) -> anyhow::Result<()> {
    let scratch = tempfile::tempdir().context("cannot make a temporary folder")?;
    for (i, t) in spec.audio.iter().enumerate() {
        let location = match (t.source(), spec.vendored_audio(t).zip(storage)) {
            (AudioSource::Url(_), Some((a, st))) => st
                .fetch_to_dir(&a.key, scratch.path())
                .await
                .with_context(|| format!("audio track {i}: the vendored copy of {}", t.source))?
                .display()
                .to_string(),
            (AudioSource::Url(u), _) => u,
            (AudioSource::Path(p), _) => {
                if !p.is_file() {
                    bail!(
                        "audio track {i}: {} does not exist or is not a file",
                        p.display()
                    );
                }
                p.display().to_string()
            }
            (AudioSource::Bundle(rel), _) => match bundle {
                Some(dir) => {
                    let p = dir.join(&rel);
                    if !p.is_file() {
                        bail!(
                            "audio track {i}: {rel} is not a file in the bundle {}",
                            dir.display()
                        );
                    }
                    p.display().to_string()
                }
                None => continue,
            },
        };
        media::probe_audio(&location)
            .await
            .with_context(|| format!("audio track {i}: {} cannot be used as audio", t.source))?;
    }
    Ok(())
}

/// The bundle folder and entry page of an HTML composition given as a folder (its
/// `index.html`) or as a page.
fn composition_entry(c: &Path) -> anyhow::Result<(std::path::PathBuf, String)> {
    if c.is_dir() {
        if !c.join("index.html").is_file() {
            bail!(
                "{} has no index.html; give the page itself (e.g. {}/main.html)",
                c.display(),
                c.display()
            );
        }
        return Ok((c.to_path_buf(), "index.html".to_string()));
    }
    let is_html = c
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("html") || e.eq_ignore_ascii_case("htm"));
    if !c.is_file() || !is_html {
        bail!(
            "{} is neither a folder with index.html nor an .html file",
            c.display()
        );
    }
    let dir = c
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let entry = c
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("index.html")
        .to_string();
    Ok((dir, entry))
}

/// Packs a folder and uploads it unless a bundle with the same content is already stored.
pub(super) async fn upload_bundle(dir: &Path, storage: &Storage) -> anyhow::Result<String> {
    if !dir.is_dir() {
        bail!("--bundle {} is not a directory", dir.display());
    }
    let d = dir.to_path_buf();
    let packed = tokio::task::spawn_blocking(move || storage::pack_dir(&d)).await??;
    let key = keys::bundle(&packed.sha256);
    if storage.size(&key).await?.is_none() {
        storage
            .put(&key, packed.bytes.into())
            .await
            .context("uploading the bundle")?;
    }
    Ok(key)
}

/// Fails now, not after the render, when `-o` cannot be written: a directory, a parent
/// folder that cannot be made, a folder without write permission.
pub fn check_writable(output: &Path) -> anyhow::Result<()> {
    if output.is_dir() {
        bail!(
            "-o {}: is a directory; give the output file's name, e.g. -o {}",
            output.display(),
            output.join("output.mp4").display()
        );
    }
    let parent = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| {
        anyhow::anyhow!(
            "-o {}: cannot create the folder {}: {e}; choose another path",
            output.display(),
            parent.display()
        )
    })?;
    tempfile::Builder::new()
        .prefix(".helios-check-")
        .tempfile_in(parent)
        .map_err(|e| {
            anyhow::anyhow!(
                "-o {}: cannot write in {}: {e}; choose a folder you can write to",
                output.display(),
                parent.display()
            )
        })?;
    Ok(())
}

/// Refuses an output that is not what the job writes: a container that cannot hold the
/// job's video codec, an image sequence without a frame number pattern, another format.
pub fn check_output(output: &Path, spec: &JobSpec) -> anyhow::Result<()> {
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = output
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .unwrap_or_default();
    let shown = output.display();
    let o = &spec.output;
    let format = o.format.map(|f| f.extension()).unwrap_or("png");
    match o.kind {
        OutputKind::Video => {
            if FramePattern::is_pattern(&name)
                || ext == "gif"
                || ImageFormat::from_extension(&ext).is_some()
            {
                bail!(
                    "-o {shown}: this job writes a {} video; give a video file (e.g. out.mp4), or plan the job for images or a GIF (plan -o {shown})",
                    spec.video.codec.name()
                );
            }
            let codec = spec.video.codec;
            let ok = codec.containers();
            if ext == "m3u8" {
                if !codec.joins_by_bytes() || spec.video.lossless {
                    bail!("-o {shown}: HLS output is fragmented MP4 of H.264, H.265, VP9 or AV1 (not --lossless); this job is {}{}", codec.name(), if spec.video.lossless { ", lossless" } else { "" });
                }
                return Ok(());
            }
            let fits = ok.contains(&ext.as_str()) || (ext == "m4v" && ok.contains(&"mp4"));
            if !fits {
                bail!(
                    "-o {shown}: a .{ext} file cannot hold {} video; use one of: {}",
                    codec.name(),
                    ok.iter()
                        .map(|e| format!(".{e}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        OutputKind::Gif if ext != "gif" => {
            bail!("-o {shown}: this job writes a GIF; give a .gif file")
        }
        OutputKind::Gif => {}
        OutputKind::Images => {
            let fp = FramePattern::parse(&name).map_err(|e| {
                anyhow::anyhow!("-o {shown}: this job writes an image per frame: {e}")
            })?;
            if fp.extension().and_then(ImageFormat::from_extension) != o.format {
                bail!(
                    "-o {shown}: this job writes .{format} images; end the pattern with .{format}"
                );
            }
        }
        OutputKind::Still => {
            if ImageFormat::from_extension(&ext) != o.format {
                bail!("-o {shown}: this job writes one .{format} image; give a .{format} file");
            }
        }
    }
    Ok(())
}

/// For `run`: an image sequence's files take the names `-o` gives them.
pub fn adopt_output(output: &Path, spec: &mut JobSpec) {
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if spec.output.kind == OutputKind::Images && FramePattern::is_pattern(&name) {
        spec.output.pattern = Some(name);
    }
}

/// A command as a person would type it (each word quoted only when it has to be), for
/// showing; it is never run through a shell.
fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|w| {
            let plain = !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./:=,+@%{}".contains(&b));
            if plain {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// For an HLS output (`-o out.m3u8`): marks the job to write its rendition and returns the
/// media file the playlists address (`out.mp4`, beside the playlist); any other output is
/// returned as it is.
pub fn hls_media(output: &Path, spec: &mut JobSpec) -> std::path::PathBuf {
    let hls = output
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("m3u8"));
    if hls {
        spec.output.hls = true;
        output.with_extension("mp4")
    } else {
        output.to_path_buf()
    }
}
