//! Encoder settings shared by every segment of a job, and the normalization of a
//! renderer's output into a segment.
//!
//! Concatenating with `-c copy` is only valid when every segment was encoded with the same
//! parameters and starts with a keyframe; this module is the one place those parameters
//! are decided.

use std::path::Path;

use crate::media::{self, MediaError, Tool};
use crate::spec::{Codec, SegmentFormat, VideoSpec};

/// Container of the segments of a codec: MP4/MOV, whose track timescale can be set so that
/// every frame boundary is an exact tick.
pub fn segment_extension(codec: Codec) -> &'static str {
    match codec {
        Codec::H264 | Codec::H265 | Codec::Vp9 => "mp4",
        Codec::Prores | Codec::Ffv1 => "mov",
    }
}

/// Extension of a segment in storage: `m4s` for fragmented media (no init, placed on the
/// job's timeline), otherwise the file's container.
pub fn stored_extension(v: &VideoSpec) -> &'static str {
    match v.segments {
        SegmentFormat::Fragmented => "m4s",
        SegmentFormat::File => segment_extension(v.codec),
    }
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
        Codec::Prores => push(&["-c:v", "prores_ks", "-profile:v", "3", "-vendor", "apl0"]),
        Codec::Ffv1 => push(&["-c:v", "ffv1", "-level", "3", "-g", "1", "-slicecrc", "1"]),
    }
    push(&["-pix_fmt", v.pixel_format()]);
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
    let format = match segment_extension(v.codec) {
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

/// Re-encodes whatever the renderer wrote (any format FFmpeg reads) into a segment with the
/// job's encoder parameters and exact constant-rate timestamps: frame `n` of the chunk gets
/// presentation time `n / fps`, whatever timestamps the input carried.
pub async fn normalize(input: &Path, output: &Path, v: &VideoSpec) -> Result<(), MediaError> {
    let mut cmd = Tool::Ffmpeg.command()?;
    let fps = v.fps.reduced();
    cmd.args(["-v", "error", "-y", "-i"])
        .arg(input)
        .args(["-map", "0:v:0", "-an", "-sn", "-dn"])
        .args([
            "-vf".to_string(),
            format!("setpts=N*{}/{}/TB", fps.den, fps.num),
            "-r".to_string(),
            fps.to_string(),
        ])
        .args(codec_args(v))
        .args(segment_muxer_args(v))
        .arg(output);
    media::run(
        Tool::Ffmpeg,
        cmd,
        &format!("encoding {} into a segment", input.display()),
    )
    .await?;
    Ok(())
}

/// Starts FFmpeg reading raw frames on stdin (`pix_fmt` such as `rgba`, the video's size,
/// one after another in order) and encoding them into a segment with the job's parameters;
/// frame `n` gets presentation time `n / fps`.
pub fn spawn_raw_encoder(
    v: &VideoSpec,
    pix_fmt: &str,
    output: &Path,
) -> Result<tokio::process::Child, MediaError> {
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
    .args(["-r", &fps])
    .args(codec_args(v))
    .args(segment_muxer_args(v))
    .arg(output)
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped());
    crate::process::die_with_parent(&mut cmd);
    cmd.spawn().map_err(|e| MediaError::Spawn {
        tool: "ffmpeg",
        source: e,
    })
}
