//! Encoder settings shared by every segment of a job, and the normalization of a
//! renderer's output into a segment.
//!
//! Concatenating with `-c copy` is only valid when every segment was encoded with the same
//! parameters and starts with a keyframe; this module is the one place those parameters
//! are decided.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::media::{self, MediaError, Tool};
use crate::spec::{Chunk, Codec, ImageFormat, JobSpec, OutputKind, SegmentFormat, VideoSpec};

/// Container of a job's segments: MP4/MOV, whose track timescale can be set so that every
/// frame boundary is an exact tick; WebM for VP9 with alpha, which MP4 cannot carry.
pub fn segment_extension(v: &VideoSpec) -> &'static str {
    match v.codec {
        Codec::Vp9 if crate::spec::has_alpha(v.pixel_format()) => "webm",
        Codec::H264 | Codec::H265 | Codec::Vp9 | Codec::Av1 => "mp4",
        Codec::Prores | Codec::Ffv1 => "mov",
    }
}

/// Extension of a segment in storage: `m4s` for fragmented media (no init, placed on the
/// job's timeline), `gifpart` for a GIF's frames (no header), otherwise the file's container.
pub fn stored_extension(spec: &JobSpec) -> &'static str {
    let v = &spec.video;
    if spec.output.kind == OutputKind::Gif {
        return "gifpart";
    }
    match v.segments {
        SegmentFormat::Fragmented => "m4s",
        SegmentFormat::File => segment_extension(v),
    }
}

/// SVT-AV1's own default speed (0 slowest … 13 fastest).
pub const AV1_DEFAULT_PRESET: u32 = 10;
/// SVT-AV1's own default quality (0 best … 63).
pub const AV1_DEFAULT_CRF: u32 = 35;

/// The AV1 encoder a worker uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Av1Encoder {
    /// libsvtav1, the fast one.
    Svt,
    /// libaom-av1, where FFmpeg lacks SVT-AV1.
    Aom,
}

/// SVT-AV1 where this machine's FFmpeg has it, else libaom. `HELIOS_AV1_ENCODER=libaom-av1`
/// picks libaom (to match workers without SVT-AV1: every segment of a job must come from
/// the same encoder, which the segment check enforces).
pub fn av1_encoder() -> Av1Encoder {
    if std::env::var("HELIOS_AV1_ENCODER").as_deref() == Ok("libaom-av1")
        || !media::has_encoder("libsvtav1")
    {
        Av1Encoder::Aom
    } else {
        Av1Encoder::Svt
    }
}

/// Whether a pixel format is Y'CbCr (needs a matrix and a range) rather than RGB or grey.
fn is_yuv(pix_fmt: &str) -> bool {
    ["yuv", "yuva", "nv", "p0", "p2", "p4", "y2", "uyvy", "yuyv"]
        .iter()
        .any(|p| pix_fmt.starts_with(p))
}

/// The filter that turns Chromium's sRGB frames into the output's Y'CbCr with the BT.709
/// matrix at limited range (what the tags say); `None` for RGB pixel formats.
pub fn color_filter(pix_fmt: &str) -> Option<String> {
    // `setparams` marks the frames too: some encoders (ProRes) take the tags from them.
    is_yuv(pix_fmt).then(|| {
        "scale=out_color_matrix=bt709:out_range=tv,\
         setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709:range=tv"
            .to_string()
    })
}

/// Colour tags of the output: BT.709 primaries, transfer and matrix, limited range, so a
/// browser, QuickTime and an editor show the page's colours alike. RGB formats carry
/// primaries and transfer only.
pub fn color_tags(pix_fmt: &str) -> Vec<&'static str> {
    let mut t = vec!["-color_primaries", "bt709", "-color_trc", "bt709"];
    if is_yuv(pix_fmt) {
        t.extend(["-colorspace", "bt709", "-color_range", "tv"]);
    } else {
        t.extend(["-colorspace", "rgb", "-color_range", "pc"]);
    }
    t
}

/// Encoder arguments (codec, quality, pixel format, bit-exact flags) for a job.
pub fn codec_args(v: &VideoSpec) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
    let preset = v.preset.as_deref().unwrap_or("medium");
    match v.codec {
        Codec::H264 => {
            push(&["-c:v", "libx264", "-preset", preset]);
            if v.lossless {
                push(&["-qp", "0"]);
            } else {
                push(&["-crf", &v.crf.unwrap_or(20).to_string()]);
            }
        }
        Codec::H265 => {
            push(&["-c:v", "libx265", "-preset", preset, "-tag:v", "hvc1"]);
            if v.lossless {
                push(&["-x265-params", "log-level=error:lossless=1"]);
            } else {
                push(&["-x265-params", "log-level=error"]);
                push(&["-crf", &v.crf.unwrap_or(24).to_string()]);
            }
        }
        Codec::Vp9 => {
            push(&[
                "-c:v",
                "libvpx-vp9",
                "-row-mt",
                "1",
                "-deadline",
                "good",
                "-cpu-used",
                "4",
            ]);
            if v.lossless {
                push(&["-lossless", "1"]);
            } else {
                push(&["-crf", &v.crf.unwrap_or(32).to_string(), "-b:v", "0"]);
            }
        }
        Codec::Prores => {
            // 4444 (with its alpha plane) for 4:4:4 pixel formats, 422 HQ otherwise.
            let pix = v.pixel_format();
            let profile = if pix.starts_with("yuva444") || pix.starts_with("yuv444") {
                "4"
            } else {
                "3"
            };
            push(&[
                "-c:v",
                "prores_ks",
                "-profile:v",
                profile,
                "-vendor",
                "apl0",
            ]);
        }
        Codec::Ffv1 => push(&["-c:v", "ffv1", "-level", "3", "-g", "1", "-slicecrc", "1"]),
        Codec::Av1 => {
            let preset: u32 = v
                .preset
                .as_deref()
                .and_then(|p| p.parse().ok())
                .unwrap_or(AV1_DEFAULT_PRESET);
            let crf = v.crf.unwrap_or(AV1_DEFAULT_CRF).to_string();
            match av1_encoder() {
                Av1Encoder::Svt => push(&[
                    "-c:v",
                    "libsvtav1",
                    "-preset",
                    &preset.to_string(),
                    "-crf",
                    &crf,
                ]),
                // libaom's speed scale is 0-8 (its realtime speeds beyond are other modes).
                Av1Encoder::Aom => push(&[
                    "-c:v",
                    "libaom-av1",
                    "-cpu-used",
                    &(preset * 8).div_ceil(13).min(8).to_string(),
                    "-row-mt",
                    "1",
                    "-crf",
                    &crf,
                    "-b:v",
                    "0",
                ]),
            }
        }
    }
    push(&["-pix_fmt", v.pixel_format()]);
    push(&color_tags(v.pixel_format()));
    // No encoder version strings, dates or metadata: equal frames give equal bytes.
    push(&[
        "-fflags",
        "+bitexact",
        "-flags:v",
        "+bitexact",
        "-map_metadata",
        "-1",
        "-map_chapters",
        "-1",
    ]);
    a
}

/// Muxer arguments for a segment: exact timescale, container format.
pub fn segment_muxer_args(v: &VideoSpec) -> Vec<String> {
    let ts = v.fps.timescale().to_string();
    let format = match segment_extension(v) {
        // Matroska keeps VP9's alpha (BlockAdditional); its clock is in milliseconds.
        "webm" => return ["-f", "webm"].map(String::from).to_vec(),
        "mov" => "mov",
        _ => "mp4",
    };
    let mut a: Vec<String> = [
        "-video_track_timescale",
        &ts,
        "-movie_timescale",
        &ts,
        "-f",
        format,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if v.segments == SegmentFormat::Fragmented {
        // A fragment per keyframe, data addressed from each moof so fragments can move.
        a.extend(["-movflags", "+frag_keyframe+empty_moov+default_base_moof"].map(String::from));
    }
    a
}

/// Where a chunk's FFmpeg writes in `workdir`: the segment file, or the folder of a chunk's
/// images.
pub fn chunk_output(workdir: &Path, spec: &JobSpec) -> PathBuf {
    match spec.output.kind {
        OutputKind::Images | OutputKind::Still => workdir.join("frames"),
        OutputKind::Gif => workdir.join("part.gif"),
        OutputKind::Video => workdir.join(format!("segment.{}", segment_extension(&spec.video))),
    }
}

/// The file FFmpeg writes for frame `frame` of an image output in `dir`.
pub fn image_path(dir: &Path, spec: &JobSpec, frame: u64) -> PathBuf {
    dir.join(format!("{frame}.{}", image_format(spec).extension()))
}

fn image_format(spec: &JobSpec) -> ImageFormat {
    spec.output.format.unwrap_or(ImageFormat::Png)
}

/// Encoder arguments of an image output.
fn image_args(spec: &JobSpec) -> Vec<String> {
    let o = &spec.output;
    let q = o.quality();
    let a: Vec<String> = match image_format(spec) {
        ImageFormat::Png => vec![
            "-c:v".into(),
            "png".into(),
            "-pix_fmt".into(),
            if o.alpha { "rgba" } else { "rgb24" }.into(),
        ],
        ImageFormat::Jpeg => vec![
            "-c:v".into(),
            "mjpeg".into(),
            // FFmpeg's JPEG scale: 2 (best) … 31.
            "-q:v".into(),
            (2 + ((100 - q.clamp(1, 100)) * 29 + 49) / 99).to_string(),
            "-pix_fmt".into(),
            "yuvj420p".into(),
        ],
        ImageFormat::Webp if q >= 100 => vec![
            "-c:v".into(),
            "libwebp".into(),
            "-lossless".into(),
            "1".into(),
            "-pix_fmt".into(),
            "bgra".into(),
        ],
        ImageFormat::Webp => vec![
            "-c:v".into(),
            "libwebp".into(),
            "-quality".into(),
            q.to_string(),
            "-pix_fmt".into(),
            if o.alpha { "yuva420p" } else { "yuv420p" }.into(),
        ],
    };
    a.into_iter()
        .chain(
            [
                "-fflags",
                "+bitexact",
                "-flags:v",
                "+bitexact",
                "-map_metadata",
                "-1",
            ]
            .map(String::from),
        )
        .collect()
}

/// Everything after the input: filters, encoder and muxer arguments, and the output, for a
/// chunk of `spec` written to `output` (see [`chunk_output`]).
fn output_args(
    spec: &JobSpec,
    chunk: Chunk,
    output: &Path,
    first_filter: Option<String>,
) -> Vec<OsString> {
    let v = &spec.video;
    let mut a: Vec<OsString> = Vec::new();
    match spec.output.kind {
        OutputKind::Video => {
            if let Some(vf) = video_filters(first_filter, v.pixel_format()) {
                a.extend(["-vf".into(), vf.into()]);
            }
            a.extend(codec_args(v).into_iter().map(OsString::from));
            a.extend(segment_muxer_args(v).into_iter().map(OsString::from));
            a.push(output.into());
        }
        OutputKind::Gif => {
            // Input 1 is the job's palette (see `extra_inputs`).
            let first = first_filter.map(|f| format!("{f},")).unwrap_or_default();
            a.extend(
                [
                    "-lavfi".to_string(),
                    format!(
                        "[0:v]{first}format=rgb24[f];[f][1:v]paletteuse=dither=sierra2_4a:diff_mode=none[o]"
                    ),
                    "-map".into(),
                    "[o]".into(),
                    "-c:v".into(),
                    "gif".into(),
                    "-fflags".into(),
                    "+bitexact".into(),
                    "-flags:v".into(),
                    "+bitexact".into(),
                    "-f".into(),
                    "gif".into(),
                ]
                .map(OsString::from),
            );
            a.push(output.into());
        }
        OutputKind::Images | OutputKind::Still => {
            if let Some(vf) = first_filter {
                a.extend(["-vf".into(), vf.into()]);
            }
            a.extend(image_args(spec).into_iter().map(OsString::from));
            // Files named by the composition's frame index; the worker gives them the
            // pattern's names.
            a.extend(
                [
                    "-start_number".to_string(),
                    chunk.start.to_string(),
                    "-f".into(),
                    "image2".into(),
                ]
                .map(OsString::from),
            );
            a.push(
                output
                    .join(format!("%d.{}", image_format(spec).extension()))
                    .into(),
            );
        }
    }
    a
}

/// The palette a GIF chunk draws with: `palette.png` beside its output, put there by the
/// worker before rendering.
pub fn palette_path(output: &Path) -> PathBuf {
    output.with_file_name("palette.png")
}

/// Inputs after the frames: a GIF's palette.
fn extra_inputs(spec: &JobSpec, output: &Path) -> Vec<OsString> {
    match spec.output.kind {
        OutputKind::Gif => vec!["-i".into(), palette_path(output).into()],
        _ => Vec::new(),
    }
}

/// Prepares where FFmpeg writes (an image output's folder).
fn prepare(spec: &JobSpec, output: &Path) -> Result<(), MediaError> {
    if spec.output.kind.is_image() {
        std::fs::create_dir_all(output).map_err(|e| MediaError::Spawn {
            tool: "ffmpeg",
            source: e,
        })?;
    }
    Ok(())
}

/// `first` (if any) followed by the colour conversion, as one `-vf` chain.
fn video_filters(first: Option<String>, pix_fmt: &str) -> Option<String> {
    let chain: Vec<String> = first.into_iter().chain(color_filter(pix_fmt)).collect();
    (!chain.is_empty()).then(|| chain.join(","))
}

/// Re-encodes whatever the renderer wrote (any format FFmpeg reads) into the chunk's output
/// (see [`chunk_output`]) with the job's encoder parameters and exact constant-rate
/// timestamps: frame `n` of the chunk gets presentation time `n / fps`, whatever timestamps
/// the input carried.
pub async fn normalize(
    input: &Path,
    output: &Path,
    spec: &JobSpec,
    chunk: Chunk,
) -> Result<(), MediaError> {
    prepare(spec, output)?;
    let mut cmd = Tool::Ffmpeg.command()?;
    let fps = spec.video.fps.reduced();
    let map: &[&str] = match spec.output.kind {
        // The filter graph maps the GIF's frames.
        OutputKind::Gif => &[],
        _ => &["-map", "0:v:0"],
    };
    cmd.args(["-v", "error", "-y", "-i"])
        .arg(input)
        .args(extra_inputs(spec, output))
        .args(map)
        .args(["-an", "-sn", "-dn", "-r", &fps.to_string()])
        .args(output_args(
            spec,
            chunk,
            output,
            Some(format!("setpts=N*{}/{}/TB", fps.den, fps.num)),
        ));
    media::run(
        Tool::Ffmpeg,
        cmd,
        &format!("encoding {} into a segment", input.display()),
    )
    .await?;
    Ok(())
}

/// Starts FFmpeg reading raw frames on stdin (`pix_fmt` such as `rgba`, the video's size,
/// one after another in order) and encoding them into the chunk's output (see
/// [`chunk_output`]) with the job's parameters; frame `n` gets presentation time `n / fps`.
pub fn spawn_raw_encoder(
    spec: &JobSpec,
    chunk: Chunk,
    pix_fmt: &str,
    output: &Path,
) -> Result<tokio::process::Child, MediaError> {
    prepare(spec, output)?;
    let v = &spec.video;
    let mut cmd = Tool::Ffmpeg.command()?;
    let fps = v.fps.reduced().to_string();
    cmd.args([
        "-v",
        "error",
        "-y",
        "-f",
        "rawvideo",
        "-pix_fmt",
        pix_fmt,
        "-s",
        &format!("{}x{}", v.width, v.height),
        "-framerate",
        &fps,
        "-i",
        "-",
    ])
    .args(extra_inputs(spec, output))
    .args(["-r", &fps])
    .args(output_args(spec, chunk, output, None))
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped());
    crate::process::die_with_parent(&mut cmd);
    cmd.spawn().map_err(|e| MediaError::Spawn {
        tool: "ffmpeg",
        source: e,
    })
}

/// What a chunk's FFmpeg wrote, checked.
#[derive(Debug, Clone)]
pub enum Artifact {
    /// A segment, as probing found it.
    Segment(crate::media::SegmentInfo),
    /// One image per frame, in frame order.
    Images(Vec<(u64, PathBuf)>),
    /// A GIF part: its header and its frames' blocks, timed on the job's timeline.
    Gif(crate::media::gif::GifPart),
}

impl Artifact {
    /// Frames it holds.
    pub fn frames(&self) -> u64 {
        match self {
            Artifact::Segment(i) => i.frames,
            Artifact::Images(files) => files.len() as u64,
            Artifact::Gif(part) => part.frames,
        }
    }
}

/// Checks what FFmpeg wrote for `chunk` at `output`: a segment is probed (size, frame
/// count); an image output must hold exactly one non-empty file per frame.
pub async fn finish(
    spec: &JobSpec,
    chunk: Chunk,
    output: &Path,
) -> Result<Artifact, crate::render::RenderError> {
    use crate::render::RenderError;
    let v = &spec.video;
    if spec.output.kind.is_image() {
        let mut files = Vec::with_capacity(chunk.len() as usize);
        for f in chunk.start..chunk.end {
            let p = image_path(output, spec, f);
            match tokio::fs::metadata(&p).await {
                Ok(m) if m.len() > 0 => files.push((f, p)),
                _ => {
                    return Err(RenderError::BadOutput(format!(
                        "the image of frame {f} was not written (chunk {}, frames {}..{})",
                        chunk.index, chunk.start, chunk.end
                    )))
                }
            }
        }
        let written = std::fs::read_dir(output).map(|d| d.count()).unwrap_or(0);
        if written != files.len() {
            return Err(RenderError::BadOutput(format!(
                "{written} images were written for the {} frames of chunk {}",
                files.len(),
                chunk.index
            )));
        }
        return Ok(Artifact::Images(files));
    }
    if spec.output.kind == OutputKind::Gif {
        let bytes = tokio::fs::read(output).await.map_err(|e| RenderError::Io {
            context: format!("reading the GIF part of chunk {}", chunk.index),
            source: e,
        })?;
        let part = media::gif::split(&bytes, chunk.start - v.frames.start, v.fps)
            .map_err(|e| RenderError::BadOutput(format!("chunk {}: {e}", chunk.index)))?;
        let (w, h) = (
            u16::from_le_bytes([part.header[6], part.header[7]]),
            u16::from_le_bytes([part.header[8], part.header[9]]),
        );
        if (u32::from(w), u32::from(h)) != (v.width, v.height) || part.frames != chunk.len() {
            return Err(RenderError::BadOutput(format!(
                "the GIF part of chunk {} is {w}x{h} with {} frames, expected {}x{} with {}",
                chunk.index,
                part.frames,
                v.width,
                v.height,
                chunk.len()
            )));
        }
        return Ok(Artifact::Gif(part));
    }
    let info = media::probe(output).await?;
    if (info.width, info.height) != (v.width, v.height) {
        return Err(RenderError::BadOutput(format!(
            "the segment of chunk {} is {}x{}, the job is {}x{}",
            chunk.index, info.width, info.height, v.width, v.height
        )));
    }
    if info.frames != chunk.len() {
        return Err(RenderError::BadOutput(format!(
            "wrote {} frames for chunk {} (frames {}..{}) but {} were expected",
            info.frames,
            chunk.index,
            chunk.start,
            chunk.end,
            chunk.len()
        )));
    }
    Ok(Artifact::Segment(info))
}
