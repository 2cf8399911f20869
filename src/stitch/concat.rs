use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::{AudioMix, Segment, StitchError, Stitcher};
use crate::media::{self, Tool};
use crate::spec::Fps;

/// The concat demuxer with `-c copy`: no re-encoding.
#[derive(Debug, Default, Clone)]
pub struct ConcatStitcher;

/// Writes an ffconcat list: absolute, quoted paths and exact per-segment durations.
///
/// Each duration is the difference of the segment's rounded start and end times (in
/// microseconds, FFmpeg's internal clock), so rounding never accumulates across segments.
pub fn concat_list(segments: &[Segment], fps: Fps) -> Result<String, StitchError> {
    let fps = fps.reduced();
    let micros = |frames: u64| -> u64 {
        // round(frames * den / num * 1e6), in integers.
        let n = frames as u128 * fps.den as u128 * 1_000_000;
        let d = fps.num as u128;
        ((n + d / 2) / d) as u64
    };
    let mut out = String::from("ffconcat version 1.0\n");
    let mut start = 0u64;
    for s in segments {
        let p = s.path.to_string_lossy();
        if p.contains('\n') || p.contains('\r') {
            return Err(StitchError::BadPath(s.path.clone()));
        }
        let end = start + s.frames;
        let dur = micros(end) - micros(start);
        out.push_str(&format!(
            "file '{}'\nduration {}.{:06}\n",
            p.replace('\'', "'\\''"),
            dur / 1_000_000,
            dur % 1_000_000
        ));
        start = end;
    }
    Ok(out)
}

/// Container-specific output options.
fn muxer_args(output: &Path, fps: Fps) -> Vec<String> {
    let ext = output
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let ts = fps.timescale().to_string();
    match ext.as_str() {
        "mp4" | "m4v" | "mov" => vec![
            "-movflags".into(),
            "+faststart".into(),
            "-video_track_timescale".into(),
            ts.clone(),
            "-movie_timescale".into(),
            ts,
        ],
        _ => vec![],
    }
}

#[async_trait]
impl Stitcher for ConcatStitcher {
    async fn stitch(
        &self,
        segments: &[Segment],
        fps: Fps,
        audio: Option<&AudioMix>,
        output: &Path,
    ) -> Result<(), StitchError> {
        let io = |context: String| move |source| StitchError::Io { context, source };
        let parent = output
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(io(format!("cannot create {}", parent.display())))?;
        let absolute: Vec<Segment> = segments
            .iter()
            .map(|s| {
                Ok(Segment {
                    path: std::path::absolute(&s.path)
                        .map_err(io(format!("cannot resolve {}", s.path.display())))?,
                    frames: s.frames,
                })
            })
            .collect::<Result<_, StitchError>>()?;
        let list = tempfile::Builder::new()
            .prefix(".helios-concat-")
            .suffix(".txt")
            .tempfile_in(parent)
            .map_err(io(format!(
                "cannot create a list file in {}",
                parent.display()
            )))?;
        tokio::fs::write(list.path(), concat_list(&absolute, fps)?)
            .await
            .map_err(io(format!("cannot write {}", list.path().display())))?;

        // Write next to the output and rename, so a failed stitch never leaves a partial file
        // under the output's name.
        let ext = output.extension().and_then(|e| e.to_str()).unwrap_or("mp4");
        let partial: PathBuf = tempfile::Builder::new()
            .prefix(".helios-partial-")
            .suffix(&format!(".{ext}"))
            .tempfile_in(parent)
            .map_err(io(format!("cannot create a file in {}", parent.display())))?
            .into_temp_path()
            .keep()
            .map_err(|e| StitchError::Io {
                context: "cannot keep temp file".into(),
                source: e.error,
            })?;
        let result = async {
            let mut cmd = Tool::Ffmpeg.command()?;
            cmd.args(["-v", "error", "-y", "-f", "concat", "-safe", "0", "-i"])
                .arg(list.path());
            match audio.filter(|a| !a.inputs.is_empty()) {
                // Video copied; audio mixed and encoded once for the whole timeline.
                Some(mix) => {
                    cmd.args(mix.input_args())
                        .args(["-filter_complex".to_string(), mix.filter_graph(1)])
                        .args(["-map", "0:v", "-map", "[aout]", "-c:v", "copy"])
                        .args(AudioMix::codec_args(&ext.to_ascii_lowercase()));
                }
                None => {
                    cmd.args(["-map", "0:v", "-c", "copy"]);
                }
            }
            cmd.args(muxer_args(output, fps)).arg(&partial);
            media::run(
                Tool::Ffmpeg,
                cmd,
                &format!("concatenating {} segments", segments.len()),
            )
            .await?;
            let expected: u64 = segments.iter().map(|s| s.frames).sum();
            let info = media::probe(&partial).await?;
            if info.frames != expected {
                return Err(StitchError::WrongOutput {
                    path: output.to_path_buf(),
                    got: info.frames,
                    expected,
                });
            }
            // Temp files are created 0600; the output is an ordinary file.
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let _ =
                    tokio::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o644))
                        .await;
            }
            tokio::fs::rename(&partial, output)
                .await
                .map_err(io(format!(
                    "cannot move the output to {}",
                    output.display()
                )))
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&partial).await;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_escapes_quotes_and_keeps_exact_durations() {
        let segs = vec![
            Segment {
                path: "/a/it's.mp4".into(),
                frames: 35,
            },
            Segment {
                path: "/a/b.mp4".into(),
                frames: 35,
            },
        ];
        let l = concat_list(&segs, Fps::new(30000, 1001)).unwrap();
        assert!(l.contains("file '/a/it'\\''s.mp4'"), "{l}");
        assert!(l.contains("duration 1.167833\n"), "{l}");
        assert!(l.contains("duration 1.167834\n"), "{l}");
        assert!(concat_list(
            &[Segment {
                path: "/a\nb".into(),
                frames: 1
            }],
            Fps::new(30, 1)
        )
        .is_err());
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn concat_list_never_panics_and_quotes_every_path(
            names in proptest::collection::vec(".{0,40}", 1..20),
            frames in proptest::collection::vec(1u64..100_000, 1..20),
            num in 1u32..200_000,
            den in 1u32..2_000,
        ) {
            let segs: Vec<Segment> = names.iter().zip(frames.iter().cycle()).map(|(n, f)| Segment { path: format!("/s/{n}").into(), frames: *f }).collect();
            match concat_list(&segs, Fps::new(num, den)) {
                Ok(list) => {
                    // One file line per segment, and durations add up to the exact total.
                    prop_assert_eq!(list.lines().filter(|l| l.starts_with("file '")).count(), segs.len());
                    let total: u64 = segs.iter().map(|s| s.frames).sum();
                    let micros: u128 = list.lines().filter_map(|l| l.strip_prefix("duration ")).map(|d| {
                        let (a, b) = d.split_once('.').unwrap();
                        a.parse::<u128>().unwrap() * 1_000_000 + b.parse::<u128>().unwrap()
                    }).sum();
                    let exact = total as u128 * den as u128 * 1_000_000;
                    let expected = (exact + num as u128 / 2) / num as u128;
                    prop_assert_eq!(micros, expected);
                }
                Err(StitchError::BadPath(p)) => prop_assert!(p.to_string_lossy().contains(['\n', '\r'])),
                Err(e) => prop_assert!(false, "unexpected error {e}"),
            }
        }
    }
}
