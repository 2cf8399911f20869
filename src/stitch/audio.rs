//! The audio timeline, mixed once for the whole video: never per chunk, so there are no
//! seams, no encoder priming gaps between chunks and no drift.
//!
//! Every track is resampled to 48 kHz stereo, trimmed and placed with sample-exact filters
//! (`atrim` in samples, `adelay` in samples), gained, faded, mixed with `amix` without
//! normalisation, and padded or cut to the video's length to the sample.

use crate::media::{self, AudioInfo, MediaError};
use crate::spec::{AudioTrack, Fps, FrameRange};

/// Output sample rate of every mix.
pub const SAMPLE_RATE: u64 = 48_000;

/// Samples FFmpeg's AAC encoder puts before the first real sample (its `initial_padding`).
/// A whole MP4 hides them with an edit list FFmpeg writes; the byte join writes that edit
/// list itself, since a fragmented file's moov is written before any packet.
pub const AAC_PRIMING_SAMPLES: i64 = 1024;

/// A track whose source has been located and probed.
#[derive(Debug, Clone)]
pub struct AudioInput {
    /// Path or URL FFmpeg reads.
    pub location: String,
    /// The track's settings.
    pub track: AudioTrack,
    /// What the source holds.
    pub info: AudioInfo,
}

impl AudioInput {
    /// Probes a located source; fails, naming it, if it has no readable audio.
    pub async fn probe(location: String, track: AudioTrack) -> Result<Self, MediaError> {
        let info = media::probe_audio(&location).await?;
        Ok(Self {
            location,
            track,
            info,
        })
    }
}

/// The whole audio timeline of a video.
#[derive(Debug, Clone)]
pub struct AudioMix {
    /// Tracks, in any order.
    pub inputs: Vec<AudioInput>,
    /// Video frame rate.
    pub fps: Fps,
    /// Frames of the video (the timeline starts at `frames.start`).
    pub frames: FrameRange,
}

fn samples(seconds: f64) -> u64 {
    (seconds * SAMPLE_RATE as f64).round().max(0.0) as u64
}

impl AudioMix {
    /// Samples covering frames `[0, n)` of the video, exactly rounded.
    pub fn frames_to_samples(&self, n: u64) -> u64 {
        let f = self.fps.reduced();
        let num = n as u128 * f.den as u128 * SAMPLE_RATE as u128;
        let den = f.num as u128;
        ((num + den / 2) / den) as u64
    }

    /// Total samples: the video's duration.
    pub fn total_samples(&self) -> u64 {
        self.frames_to_samples(self.frames.len())
    }

    /// FFmpeg input arguments, for inputs numbered from `first_index`.
    pub fn input_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        for i in &self.inputs {
            if i.track.looped {
                a.extend(["-stream_loop".to_string(), "-1".to_string()]);
            }
            a.extend(["-i".to_string(), i.location.clone()]);
        }
        a
    }

    /// The `-filter_complex` graph for inputs numbered from `first_index`; its output pad is
    /// `[aout]`.
    pub fn filter_graph(&self, first_index: usize) -> String {
        let total = self.total_samples();
        let mut chains = Vec::new();
        let mut labels = String::new();
        for (n, input) in self.inputs.iter().enumerate() {
            let t = &input.track;
            // Where the track starts on the video's timeline; a track that started before the
            // first rendered frame is cut by the part already played instead.
            let (delay, lead) = if t.at_frame >= self.frames.start {
                (self.frames_to_samples(t.at_frame - self.frames.start), 0)
            } else {
                (0, self.frames_to_samples(self.frames.start - t.at_frame))
            };
            let start = samples(t.trim_start_s) + lead;
            let room = total.saturating_sub(delay);
            let wanted = match (t.duration_s, t.looped) {
                (Some(d), _) => samples(d).saturating_sub(lead),
                (None, true) => room,
                (None, false) => match input.info.duration_s {
                    Some(d) => samples(d).saturating_sub(start),
                    None => room,
                },
            };
            let len = wanted.min(room);
            let mut f = vec![
                format!("aresample={SAMPLE_RATE}"),
                "aformat=sample_fmts=fltp:channel_layouts=stereo".to_string(),
                format!("atrim=start_sample={start}:end_sample={}", start + len),
                "asetpts=PTS-STARTPTS".to_string(),
                format!("volume={}", t.volume),
            ];
            if t.fade_in_s > 0.0 {
                f.push(format!(
                    "afade=t=in:ss=0:ns={}",
                    samples(t.fade_in_s).min(len).max(1)
                ));
            }
            if t.fade_out_s > 0.0 {
                let ns = samples(t.fade_out_s).min(len).max(1);
                f.push(format!("afade=t=out:ss={}:ns={ns}", len - ns.min(len)));
            }
            if delay > 0 {
                f.push(format!("adelay=delays={delay}S:all=1"));
            }
            chains.push(format!("[{}:a:0]{}[a{n}]", first_index + n, f.join(",")));
            labels.push_str(&format!("[a{n}]"));
        }
        let mixed = if self.inputs.len() > 1 {
            chains.push(format!(
                "{labels}amix=inputs={}:normalize=0:duration=longest:dropout_transition=0[mix]",
                self.inputs.len()
            ));
            "[mix]".to_string()
        } else {
            labels
        };
        chains.push(format!(
            "{mixed}apad=whole_len={total},atrim=end_sample={total}[aout]"
        ));
        chains.join(";")
    }

    /// Mixes and encodes the whole timeline once into a fragmented MP4 of AAC (one track,
    /// fragments of about two seconds) for the byte join. The file starts with the encoder's
    /// priming ([`AAC_PRIMING_SAMPLES`]), which the output's edit list hides.
    pub async fn encode_fragmented(&self, out: &std::path::Path) -> Result<(), MediaError> {
        let mut cmd = media::Tool::Ffmpeg.command()?;
        cmd.args(["-v", "error", "-y"])
            .args(self.input_args())
            .args(["-filter_complex".to_string(), self.filter_graph(0)])
            .args(["-map", "[aout]"])
            .args(Self::codec_args("mp4"))
            .args([
                "-fflags",
                "+bitexact",
                "-flags:a",
                "+bitexact",
                "-map_metadata",
                "-1",
                "-movflags",
                "+empty_moov+default_base_moof",
                "-frag_duration",
                "2000000",
                "-f",
                "mp4",
            ])
            .arg(out);
        media::run(media::Tool::Ffmpeg, cmd, "encoding the audio mix").await?;
        Ok(())
    }

    /// Audio codec arguments for an output container: AAC for MP4, Opus for WebM, PCM for MOV.
    pub fn codec_args(ext: &str) -> Vec<String> {
        let a: &[&str] = match ext {
            "webm" => &["-c:a", "libopus", "-b:a", "160k"],
            "mov" => &["-c:a", "pcm_s16le"],
            _ => &["-c:a", "aac", "-b:a", "192k"],
        };
        let mut v: Vec<String> = a.iter().map(|s| s.to_string()).collect();
        v.extend(["-ar".to_string(), SAMPLE_RATE.to_string()]);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(track: AudioTrack, duration: f64) -> AudioInput {
        AudioInput {
            location: "a.wav".into(),
            track,
            info: AudioInfo {
                duration_s: Some(duration),
                sample_rate: 44_100,
                channels: 1,
            },
        }
    }

    #[test]
    fn placement_is_sample_exact() {
        let mut t = AudioTrack::new("a.wav", 45);
        t.fade_out_s = 0.5;
        let mix = AudioMix {
            inputs: vec![input(t, 10.0)],
            fps: Fps::new(30000, 1001),
            frames: FrameRange::new(15, 315),
        };
        // 300 frames at 30000/1001 = 10.01 s = 480480 samples.
        assert_eq!(mix.total_samples(), 480_480);
        let g = mix.filter_graph(1);
        // Starts 30 frames in: 30 * 1001/30000 * 48000 = 48048 samples.
        assert!(g.contains("adelay=delays=48048S"), "{g}");
        assert!(
            g.contains("apad=whole_len=480480,atrim=end_sample=480480[aout]"),
            "{g}"
        );
        assert!(g.starts_with("[1:a:0]"), "{g}");
        assert!(!g.contains("amix"), "{g}");
    }

    #[test]
    fn tracks_are_mixed_without_normalisation() {
        let mix = AudioMix {
            inputs: vec![
                input(AudioTrack::new("a", 0), 1.0),
                input(AudioTrack::new("b", 0), 1.0),
            ],
            fps: Fps::new(30, 1),
            frames: FrameRange::new(0, 30),
        };
        assert!(mix.filter_graph(1).contains("amix=inputs=2:normalize=0"));
    }

    #[test]
    fn track_started_before_the_range_is_cut_not_delayed() {
        let mix = AudioMix {
            inputs: vec![input(AudioTrack::new("a", 0), 10.0)],
            fps: Fps::new(25, 1),
            frames: FrameRange::new(50, 100),
        };
        let g = mix.filter_graph(1);
        assert!(
            g.contains("atrim=start_sample=96000:end_sample=192000"),
            "{g}"
        );
        assert!(!g.contains("adelay"), "{g}");
    }
}
