use std::fmt;

use super::{
    Codec, Composition, FramePattern, ImageFormat, JobSpec, OutputKind, PLACEHOLDERS, SPEC_VERSION,
};

/// One problem in a job spec, naming the field it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path of the field, e.g. `video.width` or `chunks[3]`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Why a job spec was rejected.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// Not valid JSON for a job spec (syntax, types or unknown fields).
    #[error("job spec is not valid: {0}")]
    Json(#[source] serde_json::Error),
    /// Well-formed but semantically invalid.
    #[error("job spec is invalid:\n{}", list(.0))]
    Invalid(Vec<FieldError>),
}

/// Most browser processes one worker may run for a chunk.
pub const MAX_BROWSERS: u32 = 64;

fn list(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("  - {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Upper bound on each picture dimension (FFmpeg's encoders top out around here).
const MAX_DIMENSION: u32 = 16_384;

/// Checks a spec; returns every problem found, each naming its field.
pub fn validate(spec: &JobSpec) -> Result<(), SpecError> {
    let mut errs = Vec::new();
    let mut err = |field: &str, message: String| {
        errs.push(FieldError {
            field: field.to_string(),
            message,
        })
    };

    if spec.version != SPEC_VERSION {
        err(
            "version",
            format!(
                "unsupported version {} (this build reads version {SPEC_VERSION})",
                spec.version
            ),
        );
    }
    if let Some(id) = &spec.id {
        if id.is_empty()
            || id.len() > 64
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            err(
                "id",
                format!("{id:?} is not a valid job id (1-64 characters from A-Z a-z 0-9 - _)"),
            );
        }
    }

    // Picture.
    let v = &spec.video;
    for (field, value) in [("video.width", v.width), ("video.height", v.height)] {
        if value == 0 {
            err(field, "must be greater than zero".into());
        } else if value > MAX_DIMENSION {
            err(
                field,
                format!("{value} exceeds the maximum of {MAX_DIMENSION}"),
            );
        }
    }
    let pix = v.pixel_format();
    if !pix.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || pix.is_empty() {
        err(
            "video.pixel_format",
            format!("{pix:?} is not a pixel format name"),
        );
    }
    // Images and GIF frames keep the picture's own pixels: no chroma subsampling.
    let (sub_w, sub_h) = match spec.output.kind {
        OutputKind::Video => chroma_subsampling(pix),
        _ => (false, false),
    };
    if sub_w && v.width % 2 == 1 {
        err(
            "video.width",
            format!(
                "{} is odd, but pixel format {pix} needs an even width (use {} or {})",
                v.width,
                v.width - 1,
                v.width + 1
            ),
        );
    }
    if sub_h && v.height % 2 == 1 {
        err(
            "video.height",
            format!(
                "{} is odd, but pixel format {pix} needs an even height (use {} or {})",
                v.height,
                v.height - 1,
                v.height + 1
            ),
        );
    }
    if v.fps.num == 0 || v.fps.den == 0 {
        err(
            "video.fps",
            format!("{}/{} is not a positive frame rate", v.fps.num, v.fps.den),
        );
    } else if v.fps.as_f64() > 1000.0 {
        err(
            "video.fps",
            format!(
                "{} frames per second is more than the supported 1000",
                v.fps
            ),
        );
    }
    if v.frames.is_empty() {
        err(
            "video.frames",
            format!(
                "[{}, {}) holds zero frames; end must be greater than start",
                v.frames.start, v.frames.end
            ),
        );
    }
    if let Some(crf) = v.crf {
        let max = match v.codec {
            Codec::Vp9 | Codec::Av1 => 63,
            _ => 51,
        };
        if matches!(v.codec, Codec::Prores | Codec::Ffv1) {
            err(
                "video.crf",
                format!("{} does not take a crf", v.codec.name()),
            );
        } else if crf > max {
            err(
                "video.crf",
                format!("{crf} is out of range for {} (0-{max})", v.codec.name()),
            );
        }
    }
    if let Some(preset) = &v.preset {
        if v.codec == Codec::Av1 {
            if !preset.parse::<u8>().is_ok_and(|p| p <= 13) {
                err(
                    "video.preset",
                    format!(
                        "{preset:?} is not an AV1 preset: give a number from 0 (slowest, smallest) to 13 (fastest), SVT-AV1's scale"
                    ),
                );
            }
        } else if preset.is_empty() || !preset.chars().all(|c| c.is_ascii_lowercase()) {
            err(
                "video.preset",
                format!("{preset:?} is not a preset name such as \"medium\""),
            );
        }
    }
    if v.lossless && v.codec == Codec::Av1 {
        err(
            "video.lossless",
            "av1 is not lossless here (SVT-AV1 has no lossless mode); use ffv1, h264 or h265 for lossless output".into(),
        );
    }
    if v.lossless && v.codec == Codec::Prores {
        err(
            "video.lossless",
            "prores is never lossless; use ffv1, h264 or h265 for lossless output".into(),
        );
    }

    check_output(spec, &mut err);
    if let Composition::Browser(b) = &spec.composition {
        for (url, a) in &b.assets {
            let field = format!("composition.assets[{url:?}]");
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                err(&field, "only http(s) resources are vendored".into());
            }
            let hex = a.sha256.len() == 64 && a.sha256.bytes().all(|c| c.is_ascii_hexdigit());
            if !hex || a.key != format!("assets/{}", a.sha256) {
                err(
                    &field,
                    format!(
                        "key {:?} must be assets/<sha256 of its bytes> (64 hex digits)",
                        a.key
                    ),
                );
            }
        }
    }

    // Chunks: contiguous, non-overlapping, exact cover.
    if spec.chunks.is_empty() {
        err("chunks", "no chunks: plan at least one chunk".into());
    }
    let mut expected_start = v.frames.start;
    for (i, c) in spec.chunks.iter().enumerate() {
        let field = format!("chunks[{i}]");
        if c.index as usize != i {
            err(
                &field,
                format!(
                    "index is {} but must be {i} (chunks are numbered in order from 0)",
                    c.index
                ),
            );
        }
        if c.end <= c.start {
            err(
                &field,
                format!("[{}, {}) holds zero frames", c.start, c.end),
            );
        }
        if c.start > expected_start {
            err(
                &field,
                format!("gap: frames {expected_start}..{} are in no chunk", c.start),
            );
        } else if c.start < expected_start {
            err(
                &field,
                format!(
                    "overlap: frames {}..{expected_start} are already in an earlier chunk",
                    c.start
                ),
            );
        }
        expected_start = expected_start.max(c.end);
    }
    if let Some(last) = spec.chunks.last() {
        if last.end < v.frames.end {
            err(
                "chunks",
                format!(
                    "gap: frames {}..{} at the end are in no chunk",
                    last.end, v.frames.end
                ),
            );
        } else if last.end > v.frames.end {
            err(
                "chunks",
                format!(
                    "chunks run to frame {} past the end of video.frames ({})",
                    last.end, v.frames.end
                ),
            );
        }
    }

    // Composition.
    match &spec.composition {
        Composition::Command(c) => {
            for (i, name) in c.pass_env.iter().enumerate() {
                let ok = !name.is_empty()
                    && name.len() <= 128
                    && name
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
                    && !name.starts_with(|ch: char| ch.is_ascii_digit());
                if !ok {
                    err(
                        &format!("composition.pass_env[{i}]"),
                        format!("{name:?} is not an environment variable name (A-Z a-z 0-9 _, not starting with a digit)"),
                    );
                }
            }
            if c.argv.is_empty() || c.argv[0].is_empty() {
                err(
                    "composition.argv",
                    "empty: give the program and its arguments".into(),
                );
            }
            let mut has_output = false;
            for (i, arg) in c.argv.iter().enumerate() {
                match placeholders(arg) {
                    Ok(names) => {
                        for name in names {
                            if !PLACEHOLDERS.contains(&name) {
                                err(
                                    &format!("composition.argv[{i}]"),
                                    format!(
                                        "unknown placeholder {{{name}}} in {arg:?}; known: {}",
                                        known()
                                    ),
                                );
                            }
                            has_output |= name == "output";
                            if name == "bundle" && c.bundle.is_none() {
                                err(
                                    &format!("composition.argv[{i}]"),
                                    "uses {bundle} but the job has no bundle".into(),
                                );
                            }
                        }
                    }
                    Err(msg) => err(&format!("composition.argv[{i}]"), msg),
                }
            }
            if !c.argv.is_empty() && !has_output {
                err(
                    "composition.argv",
                    "no {output} placeholder: the program must be told where to write its frames"
                        .into(),
                );
            }
            if let Some(b) = &c.bundle {
                check_bundle_key(b, "composition.bundle", &mut err);
            }
        }
        Composition::Browser(b) => {
            check_bundle_key(&b.bundle, "composition.bundle", &mut err);
            if let Some(n) = b.browsers {
                if n == 0 {
                    err(
                        "composition.browsers",
                        "must be at least 1 (browser processes per worker)".into(),
                    );
                } else if n > MAX_BROWSERS {
                    err(
                        "composition.browsers",
                        format!("{n} is more than {MAX_BROWSERS} browser processes per worker"),
                    );
                }
            }
            if let Some(sel) = &b.capture_canvas {
                if sel.trim().is_empty() || sel.len() > 200 {
                    err(
                        "composition.capture_canvas",
                        format!("{sel:?} is not a CSS selector"),
                    );
                }
            }
            if !is_safe_relative_path(&b.entry) {
                err(
                    "composition.entry",
                    format!(
                        "{:?} must be a relative path inside the bundle (no '..', no leading '/')",
                        b.entry
                    ),
                );
            }
        }
    }

    // Audio.
    for (i, t) in spec.audio.iter().enumerate() {
        let field = |name: &str| format!("audio[{i}].{name}");
        if t.source.trim().is_empty() {
            err(
                &field("source"),
                "empty: give a file path, a URL or a file in the bundle".into(),
            );
        } else if let super::AudioSource::Bundle(rel) = t.source() {
            if !is_safe_relative_path(&rel) {
                err(
                    &field("source"),
                    format!("{rel:?} must stay inside the bundle (no '..')"),
                );
            } else if spec.composition.bundle().is_none() {
                err(&field("source"), format!("{rel:?} is a relative path but the job has no bundle; use an absolute path or a URL"));
            }
        }
        if t.at_frame >= v.frames.end && !v.frames.is_empty() {
            err(
                &field("at_frame"),
                format!(
                    "{} is at or after the last frame ({}); the track would never play",
                    t.at_frame, v.frames.end
                ),
            );
        }
        for (name, value) in [
            ("trim_start_s", t.trim_start_s),
            ("fade_in_s", t.fade_in_s),
            ("fade_out_s", t.fade_out_s),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                err(
                    &field(name),
                    format!("{value} is not a non-negative number of seconds"),
                );
            }
        }
        if let Some(d) = t.duration_s {
            if !(d.is_finite() && d > 0.0) {
                err(
                    &field("duration_s"),
                    format!("{d} is not a positive number of seconds"),
                );
            }
        }
        if !(t.volume.is_finite() && (0.0..=100.0).contains(&t.volume)) {
            err(
                &field("volume"),
                format!("{} is not a gain between 0 and 100", t.volume),
            );
        }
    }

    // Policy.
    if spec.retry.max_attempts == 0 {
        err("retry.max_attempts", "must be at least 1".into());
    }
    if !(spec.retry.timeout_s.is_finite() && spec.retry.timeout_s > 0.0) {
        err(
            "retry.timeout_s",
            format!(
                "{} is not a positive number of seconds",
                spec.retry.timeout_s
            ),
        );
    }
    if spec.retry.base_backoff_ms > spec.retry.max_backoff_ms {
        err(
            "retry.base_backoff_ms",
            "is greater than retry.max_backoff_ms".into(),
        );
    }
    if spec.concurrency == 0 {
        err("concurrency", "must be at least 1".into());
    }
    if let Some(w) = &spec.webhook {
        if !(w.starts_with("http://") || w.starts_with("https://"))
            || w.len() < 10
            || w.chars().any(char::is_whitespace)
        {
            err("webhook", format!("{w:?} is not an http(s) URL"));
        }
    }

    if errs.is_empty() {
        Ok(())
    } else {
        Err(SpecError::Invalid(errs))
    }
}

fn known() -> String {
    PLACEHOLDERS
        .iter()
        .map(|p| format!("{{{p}}}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether a pixel format subsamples chroma horizontally / vertically.
/// Video outputs that keep an alpha channel, for errors.
pub const ALPHA_OUTPUTS: &str = ".mov (ProRes 4444), .webm (VP9), .png or .webp images";

/// Whether a pixel format carries alpha.
pub fn has_alpha(pix: &str) -> bool {
    let p = pix.to_ascii_lowercase();
    p.starts_with("yuva")
        || p.starts_with("rgba")
        || p.starts_with("bgra")
        || p.starts_with("gbrap")
        || p.starts_with("argb")
        || p.starts_with("abgr")
        || p.starts_with("ya")
}

/// The `output` section, and how it fits `video`.
fn check_output(spec: &JobSpec, err: &mut impl FnMut(&str, String)) {
    let (o, v) = (&spec.output, &spec.video);
    if o.hls && (o.kind != OutputKind::Video || v.segments != super::SegmentFormat::Fragmented) {
        err(
            "output.hls",
            "an HLS rendition addresses the fragments of a byte-joined video: it needs a video job with video.segments \"fragmented\"".into(),
        );
    }
    let image = o.kind.is_image();
    match (image, o.format) {
        (true, None) => err(
            "output.format",
            "an image output needs a format: png, jpeg or webp".into(),
        ),
        (false, Some(_)) => err(
            "output.format",
            format!("is for images and stills, not a {:?} output", o.kind).to_lowercase(),
        ),
        _ => {}
    }
    match (o.kind, &o.pattern) {
        (OutputKind::Images, None) => err(
            "output.pattern",
            "an image sequence needs a file name pattern such as %05d.png".into(),
        ),
        (OutputKind::Images, Some(p)) => match FramePattern::parse(p) {
            Err(e) => err("output.pattern", e),
            Ok(fp) => {
                let ext = fp.extension().and_then(ImageFormat::from_extension);
                if o.format.is_some() && ext != o.format {
                    err(
                        "output.pattern",
                        format!(
                            "{p:?} does not end in the extension of the format ({})",
                            o.format.map(|f| f.extension()).unwrap_or_default()
                        ),
                    );
                }
            }
        },
        (_, Some(_)) => err(
            "output.pattern",
            "is for image sequences (kind images)".into(),
        ),
        _ => {}
    }
    if let Some(q) = o.quality {
        if !matches!(o.format, Some(ImageFormat::Jpeg | ImageFormat::Webp)) {
            err(
                "output.quality",
                "is for JPEG and WebP images; PNG is lossless".into(),
            );
        } else if !(1..=100).contains(&q) {
            err("output.quality", format!("{q} is out of range (1-100)"));
        }
    }
    if o.loop_count.is_some() && o.kind != OutputKind::Gif {
        err("output.loop", "is for GIF outputs".into());
    }
    if o.kind == OutputKind::Still && v.frames.len() != 1 {
        err(
            "video.frames",
            format!(
                "a still is one frame, not {}..{}",
                v.frames.start, v.frames.end
            ),
        );
    }
    if o.kind != OutputKind::Video {
        for (field, set) in [
            ("video.crf", v.crf.is_some()),
            ("video.preset", v.preset.is_some()),
            ("video.pixel_format", v.pixel_format.is_some()),
            ("video.lossless", v.lossless),
        ] {
            if set {
                err(
                    field,
                    format!(
                        "is a video encoder setting; a {} output has none",
                        match o.kind {
                            OutputKind::Gif => "GIF",
                            OutputKind::Still => "still",
                            _ => "image sequence",
                        }
                    ),
                );
            }
        }
    }
    if o.alpha {
        let keeps = match o.kind {
            OutputKind::Video => {
                let pix = v.pixel_format();
                match v.codec {
                    Codec::Prores | Codec::Vp9 if has_alpha(pix) => true,
                    Codec::Prores | Codec::Vp9 => {
                        err(
                            "video.pixel_format",
                            format!(
                                "{pix} has no alpha channel; transparent {} needs {}",
                                v.codec.name(),
                                if v.codec == Codec::Prores {
                                    "yuva444p10le (ProRes 4444)"
                                } else {
                                    "yuva420p"
                                }
                            ),
                        );
                        true
                    }
                    _ => false,
                }
            }
            OutputKind::Gif => false,
            OutputKind::Images | OutputKind::Still => o.format.is_some_and(|f| f.carries_alpha()),
        };
        if !keeps {
            err(
                "output.alpha",
                format!(
                    "a {} output cannot carry alpha; transparent output needs {ALPHA_OUTPUTS}",
                    describe_kind(spec)
                ),
            );
        }
    }
}

/// "h264 video", "GIF", "jpeg images", for errors.
fn describe_kind(spec: &JobSpec) -> String {
    match spec.output.kind {
        OutputKind::Video => format!("{} video", spec.video.codec.name()),
        OutputKind::Gif => "GIF".into(),
        OutputKind::Images | OutputKind::Still => format!(
            "{} image",
            spec.output.format.map(|f| f.extension()).unwrap_or("image")
        ),
    }
}

fn chroma_subsampling(pix: &str) -> (bool, bool) {
    let p = pix.to_ascii_lowercase();
    if p.starts_with("yuv420")
        || p.starts_with("yuvj420")
        || p.starts_with("yuva420")
        || p.starts_with("nv12")
        || p.starts_with("nv21")
        || p.starts_with("p010")
    {
        (true, true)
    } else if p.starts_with("yuv422")
        || p.starts_with("yuvj422")
        || p.starts_with("yuva422")
        || p.starts_with("nv16")
        || p.starts_with("yuyv")
        || p.starts_with("uyvy")
    {
        (true, false)
    } else {
        (false, false)
    }
}

fn check_bundle_key(key: &str, field: &str, err: &mut impl FnMut(&str, String)) {
    let ok = key
        .strip_prefix("bundles/")
        .and_then(|rest| rest.strip_suffix(".tar.zst"))
        .is_some_and(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()));
    if !ok {
        err(
            field,
            format!("{key:?} is not a bundle key (bundles/<sha256>.tar.zst)"),
        );
    }
}

/// A path that stays inside the directory it is relative to.
pub(crate) fn is_safe_relative_path(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && !p.contains('\\')
        && !p.contains('\0')
        && p.split('/').all(|seg| seg != "..")
}

/// Placeholder names used in `arg`; `{{` and `}}` are literal braces.
pub(crate) fn placeholders(arg: &str) -> Result<Vec<&str>, String> {
    let mut names = Vec::new();
    let bytes = arg.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' if bytes.get(i + 1) == Some(&b'{') => i += 2,
            b'}' if bytes.get(i + 1) == Some(&b'}') => i += 2,
            b'{' => {
                let Some(len) = arg[i + 1..].find('}') else {
                    return Err(format!(
                        "unclosed '{{' in {arg:?} (write '{{{{' for a literal brace)"
                    ));
                };
                names.push(&arg[i + 1..i + 1 + len]);
                i += len + 2;
            }
            b'}' => {
                return Err(format!(
                    "stray '}}' in {arg:?} (write '}}}}' for a literal brace)"
                ))
            }
            _ => i += 1,
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::*;

    fn spec() -> JobSpec {
        JobSpec {
            concurrency: 2,
            ..JobSpec::command(
                &["render", "{start}", "{output}"],
                320,
                240,
                Fps::new(30, 1),
                FrameRange::new(0, 100),
                ChunkPlan::Count(4),
            )
        }
    }

    fn fields(s: &JobSpec) -> Vec<String> {
        match validate(s) {
            Ok(()) => vec![],
            Err(SpecError::Invalid(e)) => e.into_iter().map(|e| e.field).collect(),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn valid_spec_passes() {
        assert!(validate(&spec()).is_ok());
    }

    #[test]
    fn gaps_and_overlaps_name_the_chunk() {
        let mut s = spec();
        s.chunks[1].start += 1;
        assert_eq!(fields(&s), vec!["chunks[1]"]);
        let mut s = spec();
        s.chunks[2].start -= 1;
        let e = validate(&s).unwrap_err().to_string();
        assert!(e.contains("chunks[2]") && e.contains("overlap"), "{e}");
    }

    #[test]
    fn odd_size_with_yuv420p_is_rejected() {
        let mut s = spec();
        s.video.width = 321;
        let e = validate(&s).unwrap_err().to_string();
        assert!(e.contains("video.width") && e.contains("yuv420p"), "{e}");
        s.video.pixel_format = Some("yuv444p".into());
        assert!(validate(&s).is_ok());
    }

    #[test]
    fn unknown_placeholder_is_rejected() {
        let mut s = spec();
        if let Composition::Command(c) = &mut s.composition {
            c.argv.push("{frame}".into());
        }
        let e = validate(&s).unwrap_err().to_string();
        assert!(
            e.contains("composition.argv[3]") && e.contains("{frame}"),
            "{e}"
        );
    }

    #[test]
    fn zero_frames_rejected() {
        let mut s = spec();
        s.video.frames = FrameRange::new(5, 5);
        assert!(fields(&s).contains(&"video.frames".to_string()));
    }

    #[test]
    fn placeholder_parser_handles_escapes() {
        assert_eq!(placeholders("a{start}-{{x}}").unwrap(), vec!["start"]);
        assert!(placeholders("{open").is_err());
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let mut v = serde_json::to_value(spec()).unwrap();
        v["video"]["colour"] = serde_json::json!("red");
        let e = crate::spec::parse(&v.to_string()).unwrap_err().to_string();
        assert!(e.contains("colour"), "{e}");
        let mut v = serde_json::to_value(spec()).unwrap();
        v["composition"]["shell"] = serde_json::json!(true);
        let e = crate::spec::parse(&v.to_string()).unwrap_err().to_string();
        assert!(e.contains("shell"), "{e}");
    }

    #[test]
    fn outputs_that_drop_alpha_or_mix_kinds_are_refused() {
        use crate::spec::{ImageFormat, OutputKind, OutputSpec};
        let mut s = spec();
        s.output.alpha = true;
        assert_eq!(fields(&s), ["output.alpha"]);
        s.video.codec = Codec::Prores;
        assert_eq!(fields(&s), ["video.pixel_format"]);
        s.video.pixel_format = Some("yuva444p10le".into());
        assert!(fields(&s).is_empty());
        s.video.codec = Codec::Av1;
        assert_eq!(fields(&s), ["output.alpha"]);

        let mut s = spec();
        s.output = OutputSpec {
            kind: OutputKind::Images,
            format: Some(ImageFormat::Jpeg),
            pattern: Some("%05d.png".into()),
            alpha: true,
            quality: Some(101),
            ..OutputSpec::default()
        };
        s.video.crf = Some(20);
        let f = fields(&s);
        for want in [
            "output.pattern",
            "output.quality",
            "output.alpha",
            "video.crf",
        ] {
            assert!(f.iter().any(|x| x == want), "{want} in {f:?}");
        }
        // Images keep every pixel: odd sizes are fine.
        let mut s = spec();
        s.output = OutputSpec {
            kind: OutputKind::Images,
            format: Some(ImageFormat::Png),
            pattern: Some("%d.png".into()),
            ..OutputSpec::default()
        };
        s.video.width = 333;
        assert!(fields(&s).is_empty(), "{:?}", fields(&s));
        // A still is one frame.
        s.output.kind = OutputKind::Still;
        s.output.pattern = None;
        assert_eq!(fields(&s), ["video.frames"]);
    }
}
