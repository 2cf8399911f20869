//! The HLS rendition of a finished byte-joined job (`-o out.m3u8`): VOD playlists next to
//! the output MP4 that address its fragments by byte range — one media segment per chunk,
//! exactly as the chunks were rendered — so no media is copied or re-muxed, and for an
//! output kept in a bucket nothing but the playlists (and two small inits when there is
//! audio) is written, by reading only the output's head and its fragment index.
//!
//! Without audio, `out.m3u8` is the media playlist and its `#EXT-X-MAP` is the output's own
//! init (a byte range). With audio, the output's init holds both tracks; players want one
//! track per rendition, so each track gets its own init (`out-video-init.mp4`,
//! `out-audio-init.mp4`: the same `moov` with the other track left out), `out-video.m3u8`
//! and `out-audio.m3u8` address the video and audio fragments in `out.mp4`, and `out.m3u8`
//! is the master playlist with the audio as an `#EXT-X-MEDIA` rendition.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::{JobRecord, OrchestratorError};
use crate::media::fmp4::{self, IndexEntry};
use crate::media::hls;
use crate::storage::Storage;

/// Where the output's bytes are: the downloaded file, or the object in storage.
enum Media<'a> {
    File(PathBuf),
    Object(&'a Storage, String),
}

fn failed(what: &str, e: impl std::fmt::Display) -> OrchestratorError {
    OrchestratorError::Io {
        context: format!("writing the HLS rendition: {what}"),
        source: std::io::Error::other(e.to_string()),
    }
}

impl Media<'_> {
    async fn size(&self) -> Result<u64, OrchestratorError> {
        match self {
            Media::File(p) => tokio::fs::metadata(p)
                .await
                .map(|m| m.len())
                .map_err(|e| failed(&p.display().to_string(), e)),
            Media::Object(s, key) => s
                .size(key)
                .await?
                .ok_or_else(|| failed(key, "the output is not in storage")),
        }
    }

    async fn range(&self, r: std::ops::Range<u64>) -> Result<Vec<u8>, OrchestratorError> {
        match self {
            Media::File(p) => {
                use std::io::{Read, Seek};
                let p = p.clone();
                tokio::task::spawn_blocking(move || {
                    let mut f = std::fs::File::open(&p)?;
                    f.seek(std::io::SeekFrom::Start(r.start))?;
                    let mut buf = vec![0; (r.end - r.start) as usize];
                    f.read_exact(&mut buf)?;
                    Ok::<_, std::io::Error>(buf)
                })
                .await
                .map_err(|e| failed("reading the output", e))?
                .map_err(|e| failed("reading the output", e))
            }
            Media::Object(s, key) => Ok(s.get_range(key, r).await?.to_vec()),
        }
    }
}

/// The size of the box whose header starts `h`.
fn box_size(h: &[u8]) -> Option<u64> {
    let size = u32::from_be_bytes(h.get(0..4)?.try_into().ok()?) as u64;
    match size {
        1 => Some(u64::from_be_bytes(h.get(8..16)?.try_into().ok()?)),
        0 => None,
        n => Some(n),
    }
}

/// The output's `ftyp moov`.
async fn head(media: &Media<'_>, size: u64) -> Result<Vec<u8>, OrchestratorError> {
    let mut at = 0;
    for kind in [b"ftyp", b"moov"] {
        let h = media.range(at..(at + 16).min(size)).await?;
        if h.get(4..8) != Some(kind.as_slice()) {
            return Err(failed(
                "the output",
                format!("expected {} at byte {at}", String::from_utf8_lossy(kind)),
            ));
        }
        at += box_size(&h).ok_or_else(|| failed("the output", "a box without a size"))?;
    }
    media.range(0..at).await
}

/// The output's fragment index (`mfra`, found through the `mfro` that ends the file) and
/// where it starts.
async fn index(
    media: &Media<'_>,
    size: u64,
) -> Result<(Vec<(u32, Vec<IndexEntry>)>, u64), OrchestratorError> {
    let tail = media.range(size.saturating_sub(16)..size).await?;
    if tail.get(4..8) != Some(b"mfro".as_slice()) {
        return Err(failed(
            "the output",
            "it does not end with an mfra index (not a byte-joined output)",
        ));
    }
    let len = u64::from(u32::from_be_bytes([tail[12], tail[13], tail[14], tail[15]]));
    let start = size
        .checked_sub(len)
        .ok_or_else(|| failed("the output", "its index is larger than the file"))?;
    let mfra = media.range(start..size).await?;
    let tracks = fmp4::read_mfra(&mfra).map_err(|e| failed("the output's index", e))?;
    Ok((tracks, start))
}

/// One rendition's segments: byte ranges and times (track units) from its index entries,
/// grouped where `cut` (asked of each entry after the first, in order) says a segment
/// starts; `end` is where the track's bytes end and `end_time` its last time.
fn segments(
    entries: &[IndexEntry],
    mut cut: impl FnMut(u64) -> bool,
    end: u64,
    end_time: u64,
    uri: &str,
) -> Vec<hls::Segment> {
    let starts: Vec<&IndexEntry> = entries
        .iter()
        .enumerate()
        .filter(|(i, e)| *i == 0 || cut(e.time))
        .map(|(_, e)| e)
        .collect();
    starts
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let (next_off, next_time) = starts
                .get(i + 1)
                .map(|n| (n.moof_offset, n.time))
                .unwrap_or((end, end_time));
            hls::Segment {
                uri: uri.to_string(),
                start: e.time,
                end: next_time,
                byterange: Some((next_off - e.moof_offset, e.moof_offset)),
            }
        })
        .collect()
}

/// Names of the rendition's files, beside the output: the playlist the user asked for and
/// the rest.
struct Names {
    playlist: String,
    video: String,
    audio: String,
    video_init: String,
    audio_init: String,
    media: String,
}

impl Names {
    fn for_stem(stem: &str, media: &str) -> Self {
        Self {
            playlist: format!("{stem}.m3u8"),
            video: format!("{stem}-video.m3u8"),
            audio: format!("{stem}-audio.m3u8"),
            video_init: format!("{stem}-video-init.mp4"),
            audio_init: format!("{stem}-audio-init.mp4"),
            media: media.to_string(),
        }
    }
}

/// Writes the rendition of `job`'s finished output; returns where its playlist is (a path,
/// or the storage URL when the output stays in storage).
pub(super) async fn write(job: &JobRecord, storage: &Storage) -> Result<String, OrchestratorError> {
    let (media, names, dir) = if job.download {
        let path = PathBuf::from(&job.output);
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "output".into());
        let file = path
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "output.mp4".into());
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        (Media::File(path), Names::for_stem(&stem, &file), Some(dir))
    } else {
        let key = job.output_key();
        let file = key.rsplit('/').next().unwrap_or("output.mp4").to_string();
        (
            Media::Object(storage, key),
            Names::for_stem("output", &file),
            None,
        )
    };
    let size = media.size().await?;
    let head = head(&media, size).await?;
    let (index, index_start) = index(&media, size).await?;
    let tracks = fmp4::tracks(&head).map_err(|e| failed("the output's init", e))?;
    let video = tracks
        .iter()
        .find(|t| &t.handler == b"vide")
        .ok_or_else(|| failed("the output", "it has no video track"))?;
    let audio = tracks.iter().find(|t| &t.handler == b"soun");
    let entries = |id: u32| {
        index
            .iter()
            .find(|(t, _)| *t == id)
            .map(|(_, e)| e.as_slice())
            .unwrap_or_default()
    };
    let (video_entries, audio_entries) = (entries(video.id), audio.map(|a| entries(a.id)));

    // Video: one segment per chunk, cut where a chunk's first frame starts.
    let spec = &job.spec;
    let tick = spec.video.fps.ticks_per_frame();
    let first = spec.video.frames.start;
    let starts: std::collections::BTreeSet<u64> = spec
        .chunks
        .iter()
        .map(|c| (c.start - first) * tick)
        .collect();
    let video_end = audio_entries
        .and_then(|a| a.first())
        .map(|e| e.moof_offset)
        .unwrap_or(index_start);
    let frames = spec.frame_count();
    let mut video_segments = segments(
        video_entries,
        |t| starts.contains(&t),
        video_end,
        frames * tick,
        &names.media,
    );
    // In frames, so that durations are exact at the frame rate.
    for s in &mut video_segments {
        s.start /= tick;
        s.end /= tick;
    }
    if video_segments.len() != spec.chunks.len() {
        return Err(failed(
            "the output's index",
            format!(
                "it starts {} video segments for {} chunks",
                video_segments.len(),
                spec.chunks.len()
            ),
        ));
    }
    let longest = spec.chunks.iter().map(|c| c.len()).max().unwrap_or(1);
    let rate = hls::frame_rate(spec.video.fps);
    let mut files: Vec<(String, Bytes)> = Vec::new();
    let init_len = head.len() as u64;
    match (audio, audio_entries) {
        (Some(a), Some(a_entries)) if !a_entries.is_empty() => {
            let video_init =
                fmp4::keep_track(&head, video.id).map_err(|e| failed("the video init", e))?;
            let audio_init =
                fmp4::keep_track(&head, a.id).map_err(|e| failed("the audio init", e))?;
            // The audio's last time: its last fragment, read whole (it is small).
            let last = a_entries
                .last()
                .map(|e| e.moof_offset)
                .unwrap_or(index_start);
            let defaults = fmp4::read_init(&audio_init)
                .map_err(|e| failed("the audio init", e))?
                .defaults;
            let tail = media.range(last..index_start).await?;
            let end_time = fmp4::scan_media(&tail, &defaults, None)
                .map_err(|e| failed("the last audio fragment", e))?
                .decode_end;
            // About one chunk of audio a segment.
            let span = longest * u64::from(a.timescale) * u64::from(spec.video.fps.den)
                / u64::from(spec.video.fps.num.max(1));
            let cut_every = span.max(1);
            let first_time = a_entries.first().map(|e| e.time).unwrap_or(0);
            let mut next_cut = first_time + cut_every;
            let audio_segments = segments(
                a_entries,
                |t| {
                    let cut = t >= next_cut;
                    if cut {
                        next_cut = t + cut_every;
                    }
                    cut
                },
                index_start,
                end_time,
                &names.media,
            );
            let audio_longest = audio_segments
                .iter()
                .map(|s| s.end - s.start)
                .max()
                .unwrap_or(1);
            let video_pl = hls::media_playlist(
                &hls::Map {
                    uri: names.video_init.clone(),
                    byterange: None,
                },
                &video_segments,
                rate,
                longest,
                hls::Kind::Vod,
                true,
            );
            let audio_pl = hls::media_playlist(
                &hls::Map {
                    uri: names.audio_init.clone(),
                    byterange: None,
                },
                &audio_segments,
                (u64::from(a.timescale), 1),
                audio_longest,
                hls::Kind::Vod,
                true,
            );
            let codecs = [fmp4::codecs(&video_init), fmp4::codecs(&audio_init)]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(",");
            let peak = peak_bits_per_second(&video_segments, rate)
                + peak_bits_per_second(&audio_segments, (u64::from(a.timescale), 1));
            let master = hls::master_playlist(
                &names.video,
                &names.audio,
                &codecs,
                peak,
                (spec.video.width, spec.video.height),
                spec.video.fps,
            );
            files.push((names.video_init.clone(), Bytes::from(video_init)));
            files.push((names.audio_init.clone(), Bytes::from(audio_init)));
            files.push((names.video.clone(), Bytes::from(video_pl)));
            files.push((names.audio.clone(), Bytes::from(audio_pl)));
            files.push((names.playlist.clone(), Bytes::from(master)));
        }
        _ => {
            let pl = hls::media_playlist(
                &hls::Map {
                    uri: names.media.clone(),
                    byterange: Some((init_len, 0)),
                },
                &video_segments,
                rate,
                longest,
                hls::Kind::Vod,
                true,
            );
            files.push((names.playlist.clone(), Bytes::from(pl)));
        }
    }
    // The playlist the user named goes last: once it is there, everything it names is.
    match dir {
        Some(dir) => {
            for (name, data) in files {
                let path = dir.join(&name);
                let tmp = dir.join(format!(".{name}.partial"));
                tokio::fs::write(&tmp, &data)
                    .await
                    .map_err(|e| failed(&tmp.display().to_string(), e))?;
                tokio::fs::rename(&tmp, &path)
                    .await
                    .map_err(|e| failed(&path.display().to_string(), e))?;
            }
            Ok(dir.join(&names.playlist).display().to_string())
        }
        None => {
            let folder = job
                .output_key()
                .rsplit_once('/')
                .map(|(d, _)| d.to_string())
                .unwrap_or_default();
            for (name, data) in files {
                storage.put(&format!("{folder}/{name}"), data).await?;
            }
            let key = format!("{folder}/{}", names.playlist);
            Ok(match storage.local_path(&key) {
                Some(p) => p.display().to_string(),
                None => storage.url_for(&key),
            })
        }
    }
}

/// The highest bit rate of any one segment (for `BANDWIDTH`).
fn peak_bits_per_second(segments: &[hls::Segment], rate: (u64, u64)) -> u64 {
    segments
        .iter()
        .filter_map(|s| {
            let bytes = s.byterange?.0;
            let units = (s.end - s.start).max(1);
            // bytes × 8 ÷ (units × den ÷ num) seconds.
            Some(bytes * 8 * rate.0 / (units * rate.1.max(1)))
        })
        .max()
        .unwrap_or(0)
}
