use std::path::Path;

use serde::Deserialize;

use super::{run, MediaError, Tool};

/// What the stitcher needs to know about a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Codec name (`h264`, `ffv1`…).
    pub codec: String,
    /// Codec profile, if any.
    pub profile: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Pixel format.
    pub pix_fmt: String,
    /// Declared frame rate (`30000/1001`).
    pub frame_rate: String,
    /// Stream time base (`1/90000`).
    pub time_base: String,
    /// Hash of the codec extradata (SPS/PPS): equal for segments from equal encoder settings.
    pub extradata_hash: String,
    /// Number of video packets (= frames for the codecs used here).
    pub frames: u64,
    /// Whether the first packet is a keyframe.
    pub starts_with_keyframe: bool,
}

impl SegmentInfo {
    /// The parameters that must be identical for `concat -c copy` to be valid.
    pub fn codec_parameters(&self) -> String {
        format!(
            "{} {} {}x{} {} {} fps, timebase {}, extradata {}",
            self.codec,
            self.profile,
            self.width,
            self.height,
            self.pix_fmt,
            self.frame_rate,
            self.time_base,
            self.extradata_hash
        )
    }
}

#[derive(Deserialize)]
struct ProbeOut {
    #[serde(default)]
    streams: Vec<ProbeStream>,
    #[serde(default)]
    packets: Vec<ProbePacket>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ProbeStream {
    codec_name: String,
    profile: String,
    width: u32,
    height: u32,
    pix_fmt: String,
    r_frame_rate: String,
    time_base: String,
    extradata_hash: String,
    nb_read_packets: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ProbePacket {
    flags: String,
}

/// Probes the first video stream of a file: parameters, packet count, first-packet flags.
pub async fn probe(path: &Path) -> Result<SegmentInfo, MediaError> {
    let what = format!("probing {}", path.display());
    let bad = |reason: String| MediaError::BadOutput {
        tool: "ffprobe",
        what: what.clone(),
        reason,
    };
    // One pass: stream parameters, the packet count, and every packet's flags (the first
    // tells whether the segment starts on a keyframe).
    let mut cmd = Tool::Ffprobe.command()?;
    cmd.args([
        "-v",
        "error",
        "-select_streams",
        "v:0",
        "-count_packets",
        "-show_data_hash",
        "sha256",
        "-show_entries",
        "stream=codec_name,profile,width,height,pix_fmt,r_frame_rate,time_base,extradata_hash,nb_read_packets:packet=flags",
        "-of",
        "json",
    ])
    .arg(path);
    let out = run(Tool::Ffprobe, cmd, &what).await?;
    let parsed: ProbeOut = serde_json::from_slice(&out).map_err(|e| bad(e.to_string()))?;
    let starts_with_keyframe = parsed
        .packets
        .first()
        .is_some_and(|p| p.flags.starts_with('K'));
    let s = parsed
        .streams
        .into_iter()
        .next()
        .ok_or_else(|| bad("no video stream".into()))?;

    Ok(SegmentInfo {
        frames: s
            .nb_read_packets
            .parse()
            .map_err(|_| bad(format!("packet count {:?}", s.nb_read_packets)))?,
        codec: s.codec_name,
        profile: s.profile,
        width: s.width,
        height: s.height,
        pix_fmt: s.pix_fmt,
        frame_rate: s.r_frame_rate,
        time_base: s.time_base,
        extradata_hash: s.extradata_hash,
        starts_with_keyframe,
    })
}

/// What an audio source holds.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioInfo {
    /// Duration in seconds, when the container knows it.
    pub duration_s: Option<f64>,
    /// Sample rate of the first audio stream.
    pub sample_rate: u32,
    /// Channels of the first audio stream.
    pub channels: u32,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AudioProbe {
    streams: Vec<AudioStream>,
    format: AudioFormat,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AudioStream {
    sample_rate: String,
    channels: u32,
    duration: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AudioFormat {
    duration: String,
}

/// Probes the first audio stream of a file or URL; an error names the source.
pub async fn probe_audio(location: &str) -> Result<AudioInfo, MediaError> {
    let what = format!("audio source {location}");
    let mut cmd = Tool::Ffprobe.command()?;
    cmd.args([
        "-v",
        "error",
        "-select_streams",
        "a:0",
        "-show_entries",
        "stream=sample_rate,channels,duration:format=duration",
        "-of",
        "json",
        location,
    ]);
    let out = run(Tool::Ffprobe, cmd, &what).await?;
    let p: AudioProbe = serde_json::from_slice(&out).map_err(|e| MediaError::BadOutput {
        tool: "ffprobe",
        what: what.clone(),
        reason: e.to_string(),
    })?;
    let s = p
        .streams
        .into_iter()
        .next()
        .ok_or_else(|| MediaError::BadOutput {
            tool: "ffprobe",
            what: what.clone(),
            reason: "it has no audio stream".into(),
        })?;
    Ok(AudioInfo {
        duration_s: s
            .duration
            .parse()
            .ok()
            .or_else(|| p.format.duration.parse().ok()),
        sample_rate: s.sample_rate.parse().unwrap_or(0),
        channels: s.channels,
    })
}
