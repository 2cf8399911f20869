//! HLS media playlists over fragmented MP4 (RFC 8216, version 7: `EXT-X-MAP` for the init
//! segment): the live playlist of a running job (the committed prefix, `EVENT`) and the
//! VOD rendition of a finished one (byte ranges of the joined output).
//!
//! Durations are exact: a segment's `#EXTINF` is the difference of its end and start times
//! rounded to the microsecond, so the durations of a playlist add up to its last segment's
//! end time (frames ÷ fps, rounded once) — not to a sum of rounding errors.

use std::fmt::Write as _;

use crate::spec::Fps;

/// Where the init segment is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Map {
    /// URI, relative to the playlist.
    pub uri: String,
    /// Byte range inside it: (length, offset).
    pub byterange: Option<(u64, u64)>,
}

/// One media segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// URI, relative to the playlist.
    pub uri: String,
    /// Start time in the track's units (frames for video, samples for audio).
    pub start: u64,
    /// End time (exclusive) in the same units.
    pub end: u64,
    /// Byte range inside the URI: (length, offset).
    pub byterange: Option<(u64, u64)>,
}

/// How a playlist may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Segments are only appended until `#EXT-X-ENDLIST` (a running job).
    Event,
    /// Complete and final.
    Vod,
}

/// Time in microseconds of `units` of a clock of `rate` (units per second as num/den),
/// rounded to the nearest.
fn micros(units: u64, num: u64, den: u64) -> u64 {
    // units ÷ (num/den) seconds = units × den ÷ num.
    let n = u128::from(units) * u128::from(den) * 1_000_000;
    let d = u128::from(num);
    ((n + d / 2) / d) as u64
}

fn seconds(us: u64) -> String {
    format!("{}.{:06}", us / 1_000_000, us % 1_000_000)
}

/// A media playlist. `rate` is the segments' time unit per second as (num, den): the frame
/// rate for video, (sample rate, 1) for audio. `longest` is the longest segment the
/// playlist will ever hold, in the same units (the target duration must not change while a
/// live playlist grows). `ended` adds `#EXT-X-ENDLIST`.
pub fn media_playlist(
    map: &Map,
    segments: &[Segment],
    rate: (u64, u64),
    longest: u64,
    kind: Kind,
    ended: bool,
) -> String {
    let (num, den) = (rate.0.max(1), rate.1.max(1));
    // Rounded to the nearest second, every EXTINF must be at most the target duration.
    let longest_us = segments
        .iter()
        .map(|s| micros(s.end, num, den) - micros(s.start, num, den))
        .max()
        .unwrap_or(0)
        .max(micros(longest, num, den));
    let target = longest_us.div_ceil(1_000_000).max(1);
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:7\n");
    let _ = writeln!(out, "#EXT-X-TARGETDURATION:{target}");
    out.push_str("#EXT-X-MEDIA-SEQUENCE:0\n");
    out.push_str(match kind {
        Kind::Event => "#EXT-X-PLAYLIST-TYPE:EVENT\n",
        Kind::Vod => "#EXT-X-PLAYLIST-TYPE:VOD\n",
    });
    // Every segment starts with a keyframe.
    out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    let _ = write!(out, "#EXT-X-MAP:URI=\"{}\"", map.uri);
    if let Some((len, off)) = map.byterange {
        let _ = write!(out, ",BYTERANGE=\"{len}@{off}\"");
    }
    out.push('\n');
    for s in segments {
        let d = micros(s.end, num, den) - micros(s.start, num, den);
        let _ = writeln!(out, "#EXTINF:{},", seconds(d));
        if let Some((len, off)) = s.byterange {
            let _ = writeln!(out, "#EXT-X-BYTERANGE:{len}@{off}");
        }
        out.push_str(&s.uri);
        out.push('\n');
    }
    if ended {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    out
}

/// `(num, den)` of a frame rate, for [`media_playlist`].
pub fn frame_rate(fps: Fps) -> (u64, u64) {
    (u64::from(fps.num), u64::from(fps.den))
}

/// A master playlist of one video rendition with one audio rendition.
pub fn master_playlist(
    video_uri: &str,
    audio_uri: &str,
    codecs: &str,
    bandwidth: u64,
    size: (u32, u32),
    fps: Fps,
) -> String {
    let rate = fps.num as f64 / fps.den.max(1) as f64;
    format!(
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n\
         #EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"main\",DEFAULT=YES,AUTOSELECT=YES,URI=\"{audio_uri}\"\n\
         #EXT-X-STREAM-INF:BANDWIDTH={bandwidth},CODECS=\"{codecs}\",RESOLUTION={}x{},FRAME-RATE={rate:.3},AUDIO=\"audio\"\n{video_uri}\n",
        size.0, size.1
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(i: u64, start: u64, end: u64) -> Segment {
        Segment {
            uri: format!("{i}.m4s"),
            start,
            end,
            byterange: None,
        }
    }

    fn extinf_sum_us(p: &str) -> u64 {
        p.lines()
            .filter_map(|l| l.strip_prefix("#EXTINF:"))
            .map(|d| {
                let d = d.trim_end_matches(',');
                let (s, us) = d.split_once('.').unwrap();
                s.parse::<u64>().unwrap() * 1_000_000 + us.parse::<u64>().unwrap()
            })
            .sum()
    }

    #[test]
    fn durations_add_up_to_the_frames_over_the_rate_exactly() {
        // 30000/1001 fps in chunks of 7 frames: each is 0.233566… s.
        let segs: Vec<_> = (0..43).map(|i| seg(i, i * 7, (i + 1) * 7)).collect();
        let map = Map {
            uri: "init.mp4".into(),
            byterange: None,
        };
        let p = media_playlist(&map, &segs, (30000, 1001), 7, Kind::Vod, true);
        assert_eq!(extinf_sum_us(&p), micros(301, 30000, 1001));
        assert!(p.contains("#EXT-X-TARGETDURATION:1\n"), "{p}");
        assert!(p.ends_with("42.m4s\n#EXT-X-ENDLIST\n"), "{p}");
        assert!(p.contains("#EXT-X-MAP:URI=\"init.mp4\"\n"));
    }

    #[test]
    fn the_target_duration_covers_the_longest_segment_to_come() {
        let map = Map {
            uri: "o.mp4".into(),
            byterange: Some((900, 0)),
        };
        let mut s = seg(0, 0, 30);
        s.byterange = Some((5000, 900));
        // 30 frames at 30 fps now, but a chunk of 75 frames (2.5 s) is planned.
        let p = media_playlist(&map, &[s], (30, 1), 75, Kind::Event, false);
        assert!(p.contains("#EXT-X-TARGETDURATION:3\n"), "{p}");
        assert!(p.contains("#EXT-X-PLAYLIST-TYPE:EVENT\n"));
        assert!(p.contains("#EXT-X-MAP:URI=\"o.mp4\",BYTERANGE=\"900@0\"\n"));
        assert!(p.contains("#EXTINF:1.000000,\n#EXT-X-BYTERANGE:5000@900\n0.m4s\n"));
        assert!(!p.contains("ENDLIST"));
    }
}
