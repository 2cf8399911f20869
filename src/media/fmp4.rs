//! Fragmented MP4 (ISO BMFF) surgery, so that segments join by bytes.
//!
//! A worker's FFmpeg writes `ftyp moov (moof mdat)+ mfra` with `default-base-is-moof`
//! (sample data addressed from each `moof`, so fragments can move) but starts every segment
//! at decode time 0 and fragment number 1. [`prepare_segment`] checks the segment's
//! structure, shifts its `tfdt` decode times and `mfhd` sequence numbers to the chunk's place
//! on the job's timeline, and splits it into its init (`ftyp moov`, identical for every chunk
//! of a job) and its media (`moof mdat` pairs). The output is then one init written by
//! [`build_init`] (total duration, edit lists, the audio track), the chunks' media in order,
//! the audio fragments, and an `mfra` index ([`build_mfra`]) — nothing re-muxed.
//!
//! [`scan_media`] reads a media object back from its bytes alone (sample counts, keyframe,
//! decode times), which is how a segment whose report lies is caught while it is joined.

use std::ops::Range;

/// Why bytes are not a fragmented MP4 that can be joined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a joinable fragmented MP4: {0}")]
pub struct Fmp4Error(pub String);

fn bad<T>(msg: impl Into<String>) -> Result<T, Fmp4Error> {
    Err(Fmp4Error(msg.into()))
}

/// A box inside a buffer: its type and byte ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoxRef {
    /// Four-character type.
    pub kind: [u8; 4],
    /// First byte of the header.
    pub start: usize,
    /// First byte of the payload.
    pub body: usize,
    /// One past the last byte.
    pub end: usize,
}

impl BoxRef {
    fn is(&self, kind: &[u8; 4]) -> bool {
        &self.kind == kind
    }
    fn name(&self) -> String {
        String::from_utf8_lossy(&self.kind).into_owned()
    }
}

fn u32_at(d: &[u8], at: usize) -> Result<u32, Fmp4Error> {
    d.get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| Fmp4Error(format!("truncated field at byte {at}")))
}

fn u64_at(d: &[u8], at: usize) -> Result<u64, Fmp4Error> {
    let hi = u32_at(d, at)? as u64;
    let lo = u32_at(d, at + 4)? as u64;
    Ok(hi << 32 | lo)
}

fn put_u32(d: &mut [u8], at: usize, v: u32) {
    d[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

fn put_u64(d: &mut [u8], at: usize, v: u64) {
    d[at..at + 8].copy_from_slice(&v.to_be_bytes());
}

/// The boxes in `d[range]`, in order; every box must lie entirely inside the range.
pub fn boxes(d: &[u8], range: Range<usize>) -> Result<Vec<BoxRef>, Fmp4Error> {
    let mut out = Vec::new();
    let mut at = range.start;
    while at < range.end {
        if range.end - at < 8 {
            return bad(format!("{} stray bytes at offset {at}", range.end - at));
        }
        let size32 = u32_at(d, at)? as u64;
        let kind = [d[at + 4], d[at + 5], d[at + 6], d[at + 7]];
        let (size, header) = match size32 {
            0 => ((range.end - at) as u64, 8),
            1 => (u64_at(d, at + 8)?, 16),
            n => (n, 8),
        };
        if size < header as u64 || size > (range.end - at) as u64 {
            return bad(format!(
                "box {} at offset {at} claims {size} bytes, {} are left",
                String::from_utf8_lossy(&kind),
                range.end - at
            ));
        }
        let end = at + size as usize;
        out.push(BoxRef {
            kind,
            start: at,
            body: at + header,
            end,
        });
        at = end;
    }
    Ok(out)
}

fn children(d: &[u8], b: &BoxRef) -> Result<Vec<BoxRef>, Fmp4Error> {
    boxes(d, b.body..b.end)
}

fn only<'a>(list: &'a [BoxRef], kind: &[u8; 4], parent: &str) -> Result<&'a BoxRef, Fmp4Error> {
    let mut it = list.iter().filter(|b| b.is(kind));
    match (it.next(), it.next()) {
        (Some(b), None) => Ok(b),
        (None, _) => bad(format!(
            "{parent} has no {} box",
            String::from_utf8_lossy(kind)
        )),
        (Some(_), Some(_)) => bad(format!(
            "{parent} has several {} boxes",
            String::from_utf8_lossy(kind)
        )),
    }
}

/// Version and flags of a full box.
fn full(d: &[u8], b: &BoxRef) -> Result<(u8, u32), Fmp4Error> {
    let v = u32_at(d, b.body)?;
    Ok(((v >> 24) as u8, v & 0x00ff_ffff))
}

/// The 32-bit field after a full box's creation and modification times (32 or 64 bits
/// each by version): the timescale of `mvhd` and `mdhd`, the track id of `tkhd`.
fn after_times(d: &[u8], b: &BoxRef) -> Result<u32, Fmp4Error> {
    let (v, _) = full(d, b)?;
    u32_at(d, b.body + if v == 1 { 20 } else { 12 })
}

/// Sample defaults of a track (`trex`), used where a fragment does not override them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrackDefaults {
    /// Track id.
    pub track_id: u32,
    /// Default sample duration.
    pub duration: u32,
    /// Default sample size.
    pub size: u32,
    /// Default sample flags.
    pub flags: u32,
}

/// What the init segment of a one-track file says about that track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitInfo {
    /// Movie timescale (`mvhd`).
    pub movie_timescale: u32,
    /// The track's media timescale (`mdhd`).
    pub timescale: u32,
    /// The track's sample defaults.
    pub defaults: TrackDefaults,
}

/// Reads the one track of an init segment (`ftyp moov`, or a whole file).
pub fn read_init(d: &[u8]) -> Result<InitInfo, Fmp4Error> {
    let top = boxes(d, 0..d.len())?;
    let moov = only(&top, b"moov", "the file")?;
    let mk = children(d, moov)?;
    let movie_timescale = after_times(d, only(&mk, b"mvhd", "moov")?)?;
    let traks: Vec<_> = mk.iter().filter(|b| b.is(b"trak")).collect();
    if traks.len() != 1 {
        return bad(format!("expected one track, found {}", traks.len()));
    }
    let tk = children(d, traks[0])?;
    let mdia = children(d, only(&tk, b"mdia", "trak")?)?;
    let timescale = after_times(d, only(&mdia, b"mdhd", "mdia")?)?;
    let mvex = children(d, only(&mk, b"mvex", "moov (not a fragmented MP4)")?)?;
    let trex = only(&mvex, b"trex", "mvex")?;
    let defaults = TrackDefaults {
        track_id: u32_at(d, trex.body + 4)?,
        duration: u32_at(d, trex.body + 12)?,
        size: u32_at(d, trex.body + 16)?,
        flags: u32_at(d, trex.body + 20)?,
    };
    if timescale == 0 || movie_timescale == 0 {
        return bad("a timescale is zero");
    }
    Ok(InitInfo {
        movie_timescale,
        timescale,
        defaults,
    })
}

/// The RFC 6381 `codecs` string of an init's first track, as Media Source Extensions and
/// HLS `CODECS` take it (`avc1.64001f`, `vp09.00.10.08`); `None` for codecs it does not
/// describe.
pub fn codecs(d: &[u8]) -> Option<String> {
    let top = boxes(d, 0..d.len()).ok()?;
    let moov = top.iter().find(|b| b.is(b"moov"))?;
    let mk = children(d, moov).ok()?;
    let trak = mk.iter().find(|b| b.is(b"trak"))?;
    let mut level = children(d, trak).ok()?;
    for kind in [b"mdia", b"minf", b"stbl"] {
        let b = *level.iter().find(|b| b.is(kind))?;
        level = children(d, &b).ok()?;
    }
    let stsd = level.iter().find(|b| b.is(b"stsd"))?;
    // version/flags and entry count, then the sample entries.
    let entries = boxes(d, stsd.body + 8..stsd.end).ok()?;
    let entry = entries.first()?;
    let name = entry.name();
    match &entry.kind {
        b"avc1" | b"avc3" | b"vp09" => {
            // A visual sample entry's fixed fields take 78 bytes before its child boxes.
            let kids = boxes(d, entry.body + 78..entry.end).ok()?;
            if let Some(c) = kids.iter().find(|b| b.is(b"avcC")) {
                let p = d.get(c.body + 1..c.body + 4)?;
                return Some(format!("{name}.{:02x}{:02x}{:02x}", p[0], p[1], p[2]));
            }
            let c = kids.iter().find(|b| b.is(b"vpcC"))?;
            // version/flags, profile, level, bit depth (high 4 bits).
            let p = d.get(c.body + 4..c.body + 7)?;
            Some(format!("vp09.{:02}.{:02}.{:02}", p[0], p[1], p[2] >> 4))
        }
        b"mp4a" => Some("mp4a.40.2".into()),
        _ => None,
    }
}

/// Where the tfdt and mfhd fields of one fragment are, and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FragmentFields {
    moof: BoxRef,
    mdat: BoxRef,
    seq_at: usize,
    tfdt_at: usize,
    tfdt_v1: bool,
    decode_time: u64,
    samples: u32,
    duration: u64,
    first_sync: bool,
    first_cto: i64,
    /// Every sample lasts exactly this long (None when they differ).
    uniform: Option<u32>,
}

const SAMPLE_NON_SYNC: u32 = 0x0001_0000;

fn parse_fragment(
    d: &[u8],
    moof: BoxRef,
    mdat: BoxRef,
    defaults: &TrackDefaults,
) -> Result<FragmentFields, Fmp4Error> {
    let at = moof.start;
    let mk = children(d, &moof)?;
    let mfhd = only(&mk, b"mfhd", "moof")?;
    let traf = only(&mk, b"traf", "moof (one track per fragment)")?;
    let tk = children(d, traf)?;
    let tfhd = only(&tk, b"tfhd", "traf")?;
    let (_, tf) = full(d, tfhd)?;
    if u32_at(d, tfhd.body + 4)? != defaults.track_id {
        return bad(format!(
            "fragment at {at} is for track {}, not {}",
            u32_at(d, tfhd.body + 4)?,
            defaults.track_id
        ));
    }
    if tf & 0x1 != 0 || tf & 0x2_0000 == 0 {
        return bad(format!(
            "fragment at {at} addresses its data from the file start (needs default-base-is-moof)"
        ));
    }
    let mut p = tfhd.body + 8;
    if tf & 0x2 != 0 {
        p += 4;
    }
    let mut dur = defaults.duration;
    let mut size = defaults.size;
    let mut flags = defaults.flags;
    if tf & 0x8 != 0 {
        dur = u32_at(d, p)?;
        p += 4;
    }
    if tf & 0x10 != 0 {
        size = u32_at(d, p)?;
        p += 4;
    }
    if tf & 0x20 != 0 {
        flags = u32_at(d, p)?;
    }
    let tfdt = only(&tk, b"tfdt", "traf")?;
    let (tv, _) = full(d, tfdt)?;
    let decode_time = if tv == 1 {
        u64_at(d, tfdt.body + 4)?
    } else {
        u32_at(d, tfdt.body + 4)? as u64
    };
    let truns: Vec<_> = tk.iter().filter(|b| b.is(b"trun")).collect();
    if truns.is_empty() {
        return bad(format!("fragment at {at} has no samples (no trun)"));
    }
    let (mut samples, mut duration, mut data_end) = (0u32, 0u64, 0u64);
    let (mut first_sync, mut first_cto) = (false, 0i64);
    let mut uniform: Option<u32> = None;
    let mut mixed = false;
    for (ti, trun) in truns.iter().enumerate() {
        let (rv, rf) = full(d, trun)?;
        let count = u32_at(d, trun.body + 4)?;
        let mut q = trun.body + 8;
        if rf & 0x1 == 0 {
            return bad(format!("fragment at {at} has a trun without a data offset"));
        }
        let offset = u32_at(d, q)? as i32;
        q += 4;
        let mut first_flags = None;
        if rf & 0x4 != 0 {
            first_flags = Some(u32_at(d, q)?);
            q += 4;
        }
        let mut run_bytes = 0u64;
        for i in 0..count {
            let sd = if rf & 0x100 != 0 {
                q += 4;
                u32_at(d, q - 4)?
            } else {
                dur
            };
            let ss = if rf & 0x200 != 0 {
                q += 4;
                u32_at(d, q - 4)?
            } else {
                size
            };
            let sf = if rf & 0x400 != 0 {
                q += 4;
                u32_at(d, q - 4)?
            } else if i == 0 {
                first_flags.unwrap_or(flags)
            } else {
                flags
            };
            let cto = if rf & 0x800 != 0 {
                q += 4;
                let raw = u32_at(d, q - 4)?;
                if rv == 0 {
                    raw as i64
                } else {
                    raw as i32 as i64
                }
            } else {
                0
            };
            if ti == 0 && i == 0 {
                first_sync = sf & SAMPLE_NON_SYNC == 0;
                first_cto = cto;
            }
            match uniform {
                None if !mixed => uniform = Some(sd),
                Some(u) if u != sd => {
                    uniform = None;
                    mixed = true;
                }
                _ => {}
            }
            duration += sd as u64;
            run_bytes += ss as u64;
        }
        if q > trun.end {
            return bad(format!(
                "trun at {} is shorter than its samples",
                trun.start
            ));
        }
        // Sample data must lie inside this fragment's mdat, so the pair moves as a unit.
        let data_start = offset as i64;
        let mdat_body = (mdat.body - moof.start) as i64;
        let mdat_end = (mdat.end - moof.start) as i64;
        if data_start < mdat_body || data_start + run_bytes as i64 > mdat_end {
            return bad(format!("fragment at {at}: sample data is outside its mdat"));
        }
        data_end = data_end.max((data_start as u64) + run_bytes);
        samples = samples
            .checked_add(count)
            .ok_or_else(|| Fmp4Error("too many samples".into()))?;
    }
    let _ = data_end;
    Ok(FragmentFields {
        moof,
        mdat,
        seq_at: mfhd.body + 4,
        tfdt_at: tfdt.body + 4,
        tfdt_v1: tv == 1,
        decode_time,
        samples,
        duration,
        first_sync,
        first_cto,
        uniform,
    })
}

/// The fragments of a media range: `moof mdat` pairs and nothing else.
fn fragments(
    d: &[u8],
    range: Range<usize>,
    defaults: &TrackDefaults,
) -> Result<Vec<FragmentFields>, Fmp4Error> {
    let list = boxes(d, range)?;
    let mut out = Vec::new();
    let mut it = list.into_iter();
    while let Some(b) = it.next() {
        if !b.is(b"moof") {
            return bad(format!(
                "unexpected {} box at {} among fragments",
                b.name(),
                b.start
            ));
        }
        let mdat = it
            .next()
            .filter(|m| m.is(b"mdat"))
            .ok_or_else(|| Fmp4Error(format!("moof at {} is not followed by its mdat", b.start)))?;
        out.push(parse_fragment(d, b, mdat, defaults)?);
    }
    Ok(out)
}

/// A fragment of a segment's media, as the join and the index need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Fragment {
    /// Offset of its `moof` from the start of the media.
    pub offset: u64,
    /// Decode time of its first sample (track timescale).
    pub decode_time: u64,
    /// Samples it holds.
    pub samples: u32,
    /// Size of its `moof` box, so it can be read back alone (a range read).
    #[serde(default)]
    pub moof_len: u32,
}

/// What a media range holds, read from its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaScan {
    /// Fragments in order.
    pub fragments: Vec<Fragment>,
    /// Samples (frames) in all.
    pub samples: u64,
    /// Whether the first sample is a sync sample (keyframe).
    pub keyframe_first: bool,
    /// Decode time of the first sample.
    pub decode_start: u64,
    /// Decode time after the last sample.
    pub decode_end: u64,
    /// Composition offset of the first sample: how far presentation lags decoding.
    pub presentation_delay: i64,
}

fn summarize(
    frags: &[FragmentFields],
    media_start: usize,
    tick: Option<u64>,
) -> Result<MediaScan, Fmp4Error> {
    let first = frags
        .first()
        .ok_or_else(|| Fmp4Error("no fragments".into()))?;
    let mut t = first.decode_time;
    for f in frags {
        if f.decode_time != t {
            return bad(format!(
                "fragment at {} starts at decode time {}, expected {t} (a gap or an overlap)",
                f.moof.start, f.decode_time
            ));
        }
        if let Some(tick) = tick {
            if f.uniform.map(u64::from) != Some(tick) {
                return bad(format!(
                    "fragment at {} has samples that do not last exactly one frame ({tick} ticks)",
                    f.moof.start
                ));
            }
        }
        t += f.duration;
    }
    Ok(MediaScan {
        fragments: frags
            .iter()
            .map(|f| Fragment {
                offset: (f.moof.start - media_start) as u64,
                decode_time: f.decode_time,
                samples: f.samples,
                moof_len: (f.moof.end - f.moof.start) as u32,
            })
            .collect(),
        samples: frags.iter().map(|f| f.samples as u64).sum(),
        keyframe_first: first.first_sync,
        decode_start: first.decode_time,
        decode_end: t,
        presentation_delay: first.first_cto,
    })
}

/// Reads media bytes (`moof mdat` pairs, as stored for a segment) with the track defaults
/// of its init: counts samples and checks that decode times are continuous and, when
/// `tick` is given, that every sample lasts exactly `tick`.
pub fn scan_media(
    d: &[u8],
    defaults: &TrackDefaults,
    tick: Option<u64>,
) -> Result<MediaScan, Fmp4Error> {
    let frags = fragments(d, 0..d.len(), defaults)?;
    summarize(&frags, 0, tick)
}

/// What one fragment's header says, read from its `moof` and its `mdat`'s header alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentHead {
    /// Samples.
    pub samples: u32,
    /// Decode time of the first sample.
    pub decode_time: u64,
    /// Decode time the samples span.
    pub duration: u64,
    /// Whether the first sample is a sync sample.
    pub first_sync: bool,
    /// Size of the `moof` and the `mdat` together: where the next fragment starts.
    pub len: u64,
}

/// Reads a fragment from its first `moof_len + 16` bytes (the `moof` and the header of the
/// `mdat` after it), as a range read of a stored segment gives them; checks that its
/// samples' data lies in that `mdat` and, with `tick`, that every sample lasts `tick`.
pub fn read_fragment_head(
    d: &[u8],
    moof_len: usize,
    defaults: &TrackDefaults,
    tick: Option<u64>,
) -> Result<FragmentHead, Fmp4Error> {
    let top = boxes(d, 0..moof_len.min(d.len()))?;
    let moof = match top.as_slice() {
        [m] if m.is(b"moof") => *m,
        _ => return bad("the fragment does not start with one moof of the reported size"),
    };
    if d.len() < moof_len + 8 || &d[moof_len + 4..moof_len + 8] != b"mdat" {
        return bad("the moof is not followed by an mdat");
    }
    let (size, header) = match u32_at(d, moof_len)? {
        1 => (u64_at(d, moof_len + 8)?, 16),
        0 => return bad("an mdat of unknown size cannot be joined"),
        n => (n as u64, 8),
    };
    if size < header as u64 {
        return bad("mdat smaller than its header");
    }
    let mdat = BoxRef {
        kind: *b"mdat",
        start: moof_len,
        body: moof_len + header,
        end: moof_len
            .checked_add(usize::try_from(size).map_err(|_| Fmp4Error("mdat too large".into()))?)
            .ok_or_else(|| Fmp4Error("mdat too large".into()))?,
    };
    let f = parse_fragment(d, moof, mdat, defaults)?;
    if let Some(tick) = tick {
        if f.uniform.map(u64::from) != Some(tick) {
            return bad(format!(
                "the fragment has samples that do not last exactly one frame ({tick} ticks)"
            ));
        }
    }
    Ok(FragmentHead {
        samples: f.samples,
        decode_time: f.decode_time,
        duration: f.duration,
        first_sync: f.first_sync,
        len: moof_len as u64 + size,
    })
}

/// A segment file split for joining.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedSegment {
    /// `ftyp` + `moov`: the same bytes for every chunk encoded with the job's settings.
    pub init: Range<usize>,
    /// The `moof mdat` pairs, shifted to the chunk's place on the timeline.
    pub media: Range<usize>,
    /// The track's timescale and defaults.
    pub info: InitInfo,
    /// What the media holds (offsets relative to `media.start`).
    pub scan: MediaScan,
}

/// Checks a worker's fragmented segment and shifts it in place so that it starts at frame
/// `first_frame` of the job's timeline (decode time `first_frame × tick`, fragment numbers
/// from `first_frame + 1`). Every sample must last exactly `tick` and the first fragment
/// must start at decode time 0.
pub fn prepare_segment(
    d: &mut [u8],
    first_frame: u64,
    tick: u64,
) -> Result<PreparedSegment, Fmp4Error> {
    let top = boxes(d, 0..d.len())?;
    let kinds: Vec<[u8; 4]> = top.iter().map(|b| b.kind).collect();
    if kinds.first() != Some(b"ftyp") || kinds.get(1) != Some(b"moov") {
        return bad("the file does not start with ftyp and moov");
    }
    let init = 0..top[1].end;
    let info = read_init(&d[init.clone()])?;
    let media_start = top[1].end;
    // Everything up to an optional trailing mfra is fragments.
    let media_end = match top.last() {
        Some(b) if b.is(b"mfra") => b.start,
        _ => d.len(),
    };
    let frags = fragments(d, media_start..media_end, &info.defaults)?;
    let first = frags
        .first()
        .ok_or_else(|| Fmp4Error("the segment has no fragments".into()))?;
    if first.decode_time != 0 {
        return bad(format!(
            "the first fragment starts at decode time {}, expected 0",
            first.decode_time
        ));
    }
    let shift = first_frame
        .checked_mul(tick)
        .ok_or_else(|| Fmp4Error("decode time overflows".into()))?;
    for (i, f) in frags.iter().enumerate() {
        let seq = first_frame + i as u64 + 1;
        let seq = u32::try_from(seq)
            .map_err(|_| Fmp4Error(format!("fragment number {seq} does not fit 32 bits")))?;
        put_u32(d, f.seq_at, seq);
        let t = f.decode_time + shift;
        if f.tfdt_v1 {
            put_u64(d, f.tfdt_at, t);
        } else {
            let t = u32::try_from(t)
                .map_err(|_| Fmp4Error("a 32-bit tfdt cannot hold this decode time".into()))?;
            put_u32(d, f.tfdt_at, t);
        }
    }
    let frags = fragments(d, media_start..media_end, &info.defaults)?;
    let scan = summarize(&frags, media_start, Some(tick))?;
    Ok(PreparedSegment {
        init,
        media: media_start..media_end,
        info,
        scan,
    })
}

/// Renumbers the fragments of a one-track media range in place: track id `track_id`,
/// fragment numbers from `first_seq`. Returns what the media holds.
pub fn retrack_media(
    d: &mut [u8],
    defaults: &TrackDefaults,
    track_id: u32,
    first_seq: u32,
) -> Result<MediaScan, Fmp4Error> {
    let frags = fragments(d, 0..d.len(), defaults)?;
    for (i, f) in frags.iter().enumerate() {
        put_u32(d, f.seq_at, first_seq + i as u32);
        let mk = children(d, &f.moof)?;
        let traf = only(&mk, b"traf", "moof")?;
        let tk = children(d, traf)?;
        let tfhd = only(&tk, b"tfhd", "traf")?;
        put_u32(d, tfhd.body + 4, track_id);
    }
    let renamed = TrackDefaults {
        track_id,
        ..*defaults
    };
    scan_media(d, &renamed, None)
}

fn make_box(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(payload.len() + 8);
    v.extend_from_slice(&((payload.len() + 8) as u32).to_be_bytes());
    v.extend_from_slice(kind);
    v.extend_from_slice(payload);
    v
}

fn make_full(kind: &[u8; 4], version: u8, flags: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(payload.len() + 4);
    p.extend_from_slice(&((version as u32) << 24 | (flags & 0xff_ffff)).to_be_bytes());
    p.extend_from_slice(payload);
    make_box(kind, &p)
}

/// An edit list showing `duration` (movie timescale) of media starting at `media_time`.
fn edts(duration: u64, media_time: i64) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&1u32.to_be_bytes());
    let v1 = duration > u32::MAX as u64 || media_time > i32::MAX as i64;
    if v1 {
        p.extend_from_slice(&duration.to_be_bytes());
        p.extend_from_slice(&media_time.to_be_bytes());
    } else {
        p.extend_from_slice(&(duration as u32).to_be_bytes());
        p.extend_from_slice(&(media_time as i32).to_be_bytes());
    }
    p.extend_from_slice(&1u16.to_be_bytes());
    p.extend_from_slice(&0u16.to_be_bytes());
    make_box(b"edts", &make_full(b"elst", v1 as u8, 0, &p))
}

/// A track for [`build_init`]: an init segment holding one track, and how it is shown.
#[derive(Debug, Clone, Copy)]
pub struct InitTrack<'a> {
    /// `ftyp moov` of a one-track fragmented file.
    pub init: &'a [u8],
    /// Media time (track timescale) of the first sample shown: the video's composition delay,
    /// the audio encoder's priming.
    pub media_time: i64,
}

/// Rewrites a `trak` for the output: new track id and duration, an edit list in place of
/// any other.
fn rewrite_trak(
    d: &[u8],
    trak: &BoxRef,
    track_id: u32,
    duration: u64,
    media_time: i64,
) -> Result<Vec<u8>, Fmp4Error> {
    let mut payload = Vec::new();
    for c in children(d, trak)? {
        if c.is(b"edts") {
            continue;
        }
        if c.is(b"tkhd") {
            let mut t = d[c.start..c.end].to_vec();
            let (v, _) = full(d, &c)?;
            let body = c.body - c.start;
            let (id_at, dur_at) = if v == 1 {
                (body + 20, body + 28)
            } else {
                (body + 12, body + 20)
            };
            if t.len() < dur_at + if v == 1 { 8 } else { 4 } {
                return bad("tkhd is too short");
            }
            put_u32(&mut t, id_at, track_id);
            if v == 1 {
                put_u64(&mut t, dur_at, duration);
            } else {
                put_u32(&mut t, dur_at, u32::try_from(duration).unwrap_or(u32::MAX));
            }
            payload.extend_from_slice(&t);
            payload.extend_from_slice(&edts(duration, media_time));
            continue;
        }
        payload.extend_from_slice(&d[c.start..c.end]);
    }
    Ok(make_box(b"trak", &payload))
}

/// `udta` holding iTunes gapless information (`iTunSMPB`): the encoder priming, the padding
/// after the last real sample and the real samples. An edit list alone only shifts the
/// timestamps of a fragmented file; FFmpeg and Apple's players drop the priming samples
/// when they read this.
pub fn gapless_udta(priming: u32, padding: u32, samples: u64) -> Vec<u8> {
    let value = format!(
        " 00000000 {priming:08X} {padding:08X} {samples:016X} 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000"
    );
    let mut data = Vec::new();
    data.extend_from_slice(&1u32.to_be_bytes()); // UTF-8
    data.extend_from_slice(&0u32.to_be_bytes()); // locale
    data.extend_from_slice(value.as_bytes());
    let mut custom = make_full(b"mean", 0, 0, b"com.apple.iTunes");
    custom.extend(make_full(b"name", 0, 0, b"iTunSMPB"));
    custom.extend(make_box(b"data", &data));
    let ilst = make_box(b"ilst", &make_box(b"----", &custom));
    let mut hdlr = Vec::new();
    hdlr.extend_from_slice(&0u32.to_be_bytes()); // pre_defined
    hdlr.extend_from_slice(b"mdir");
    hdlr.extend_from_slice(b"appl");
    hdlr.extend_from_slice(&[0; 9]); // reserved, empty name
    let mut meta = make_full(b"hdlr", 0, 0, &hdlr);
    meta.extend(ilst);
    make_box(b"udta", &make_full(b"meta", 0, 0, &meta))
}

/// Builds the output's init: the first track's `ftyp` and `moov` with the whole duration
/// (`mvhd`, `tkhd`, `mehd`), an edit list per track, the tracks renumbered 1, 2, …, and
/// `udta` (e.g. [`gapless_udta`]) after them. `duration` is in the first track's movie
/// timescale.
pub fn build_init(
    tracks: &[InitTrack<'_>],
    duration: u64,
    udta: Option<&[u8]>,
) -> Result<Vec<u8>, Fmp4Error> {
    let first = tracks
        .first()
        .ok_or_else(|| Fmp4Error("no tracks".into()))?;
    let d = first.init;
    let top = boxes(d, 0..d.len())?;
    let ftyp = only(&top, b"ftyp", "the init")?;
    let moov = only(&top, b"moov", "the init")?;
    let mk = children(d, moov)?;
    let mvhd = only(&mk, b"mvhd", "moov")?;
    let mut mvhd_bytes = d[mvhd.start..mvhd.end].to_vec();
    let (v, _) = full(d, mvhd)?;
    let body = mvhd.body - mvhd.start;
    let (dur_at, next_at) = if v == 1 {
        (body + 24, body + 104)
    } else {
        (body + 16, body + 96)
    };
    if mvhd_bytes.len() < next_at + 4 {
        return bad("mvhd is too short");
    }
    if v == 1 {
        put_u64(&mut mvhd_bytes, dur_at, duration);
    } else {
        put_u32(
            &mut mvhd_bytes,
            dur_at,
            u32::try_from(duration).unwrap_or(u32::MAX),
        );
    }
    put_u32(&mut mvhd_bytes, next_at, tracks.len() as u32 + 1);

    let mut traks = Vec::new();
    let mut trexes = Vec::new();
    for (i, t) in tracks.iter().enumerate() {
        let id = i as u32 + 1;
        let d = t.init;
        let top = boxes(d, 0..d.len())?;
        let moov = only(&top, b"moov", "an init")?;
        let mk = children(d, moov)?;
        let trak_list: Vec<_> = mk.iter().filter(|b| b.is(b"trak")).collect();
        if trak_list.len() != 1 {
            return bad(format!(
                "init {i} has {} tracks, expected one",
                trak_list.len()
            ));
        }
        traks.extend(rewrite_trak(d, trak_list[0], id, duration, t.media_time)?);
        let mvex = children(d, only(&mk, b"mvex", "moov")?)?;
        let trex = only(&mvex, b"trex", "mvex")?;
        let mut trex_bytes = d[trex.start..trex.end].to_vec();
        let at = trex.body - trex.start + 4;
        if trex_bytes.len() < at + 4 {
            return bad("trex is too short");
        }
        put_u32(&mut trex_bytes, at, id);
        trexes.extend(trex_bytes);
    }
    let mehd = if duration > u32::MAX as u64 {
        make_full(b"mehd", 1, 0, &duration.to_be_bytes())
    } else {
        make_full(b"mehd", 0, 0, &(duration as u32).to_be_bytes())
    };
    let mut mvex = mehd;
    mvex.extend(trexes);
    let mut moov_payload = mvhd_bytes;
    moov_payload.extend(traks);
    moov_payload.extend(make_box(b"mvex", &mvex));
    if let Some(u) = udta {
        moov_payload.extend_from_slice(u);
    }
    let mut out = d[ftyp.start..ftyp.end].to_vec();
    out.extend(make_box(b"moov", &moov_payload));
    Ok(out)
}

/// One entry of the random-access index: a fragment's first decode time and where its
/// `moof` is in the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// Decode time (track timescale).
    pub time: u64,
    /// Absolute offset of the `moof` in the output.
    pub moof_offset: u64,
}

/// The `mfra` box that ends the output: per track, where each fragment starts, so players
/// can seek and interleave tracks without reading every fragment.
pub fn build_mfra(tracks: &[(u32, Vec<IndexEntry>)]) -> Vec<u8> {
    let mut payload = Vec::new();
    for (id, entries) in tracks {
        let mut p = Vec::with_capacity(12 + entries.len() * 19);
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&0u32.to_be_bytes()); // 1-byte traf/trun/sample numbers
        p.extend_from_slice(&(entries.len() as u32).to_be_bytes());
        for e in entries {
            p.extend_from_slice(&e.time.to_be_bytes());
            p.extend_from_slice(&e.moof_offset.to_be_bytes());
            p.extend_from_slice(&[1, 1, 1]);
        }
        payload.extend(make_full(b"tfra", 1, 0, &p));
    }
    let total = (payload.len() + 8 + 16) as u32;
    payload.extend(make_full(b"mfro", 0, 0, &total.to_be_bytes()));
    make_box(b"mfra", &payload)
}

/// One track of a (multi-track) init.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackInfo {
    /// Track id (`tkhd`).
    pub id: u32,
    /// Media timescale (`mdhd`).
    pub timescale: u32,
    /// Handler type (`hdlr`): `vide`, `soun`, …
    pub handler: [u8; 4],
}

/// Every track of an init (`ftyp moov`, or the start of a file up to its `moov`'s end).
pub fn tracks(d: &[u8]) -> Result<Vec<TrackInfo>, Fmp4Error> {
    let top = boxes(d, 0..d.len())?;
    let moov = only(&top, b"moov", "the init")?;
    let mut out = Vec::new();
    for trak in children(d, moov)?.iter().filter(|b| b.is(b"trak")) {
        let tk = children(d, trak)?;
        let id = after_times(d, only(&tk, b"tkhd", "trak")?)?;
        let mdia = children(d, only(&tk, b"mdia", "trak")?)?;
        let timescale = after_times(d, only(&mdia, b"mdhd", "mdia")?)?;
        let hdlr = only(&mdia, b"hdlr", "mdia")?;
        let h = d
            .get(hdlr.body + 8..hdlr.body + 12)
            .ok_or_else(|| Fmp4Error("hdlr is too short".into()))?;
        out.push(TrackInfo {
            id,
            timescale,
            handler: [h[0], h[1], h[2], h[3]],
        });
    }
    Ok(out)
}

/// The init of one track of a multi-track init: `ftyp`, and `moov` with its `mvhd`, that
/// track's `trak`, `mvex` with only that track's `trex`, and whatever else `moov` holds
/// (`udta`). Fragments of that track play behind it unchanged (same track id).
pub fn keep_track(d: &[u8], id: u32) -> Result<Vec<u8>, Fmp4Error> {
    let top = boxes(d, 0..d.len())?;
    let ftyp = only(&top, b"ftyp", "the init")?;
    let moov = only(&top, b"moov", "the init")?;
    let ids: Vec<u32> = tracks(d)?.iter().map(|t| t.id).collect();
    if !ids.contains(&id) {
        return bad(format!("the init has no track {id} (it has {ids:?})"));
    }
    let mut payload = Vec::new();
    let mut trak_index = 0;
    for b in children(d, moov)? {
        if b.is(b"trak") {
            if ids[trak_index] == id {
                payload.extend_from_slice(&d[b.start..b.end]);
            }
            trak_index += 1;
        } else if b.is(b"mvex") {
            let mut mvex = Vec::new();
            for c in children(d, &b)? {
                if c.is(b"trex") && u32_at(d, c.body + 4)? != id {
                    continue;
                }
                mvex.extend_from_slice(&d[c.start..c.end]);
            }
            payload.extend(make_box(b"mvex", &mvex));
        } else {
            payload.extend_from_slice(&d[b.start..b.end]);
        }
    }
    let mut out = d[ftyp.start..ftyp.end].to_vec();
    out.extend(make_box(b"moov", &payload));
    Ok(out)
}

/// The random-access index of a file from its `mfra` box (`d` holds the box whole): per
/// track, each indexed fragment's decode time and `moof` offset.
pub fn read_mfra(d: &[u8]) -> Result<Vec<(u32, Vec<IndexEntry>)>, Fmp4Error> {
    let top = boxes(d, 0..d.len())?;
    let mfra = only(&top, b"mfra", "the index")?;
    let mut out = Vec::new();
    for tfra in children(d, mfra)?.iter().filter(|b| b.is(b"tfra")) {
        let (v, _) = full(d, tfra)?;
        let id = u32_at(d, tfra.body + 4)?;
        let sizes = u32_at(d, tfra.body + 8)?;
        // Bytes of the traf, trun and sample numbers after each entry's time and offset.
        let tail =
            ((sizes >> 4) & 3) as usize + ((sizes >> 2) & 3) as usize + (sizes & 3) as usize + 3;
        let n = u32_at(d, tfra.body + 12)? as usize;
        let mut at = tfra.body + 16;
        let mut entries = Vec::with_capacity(n.min(1 << 20));
        for _ in 0..n {
            let (time, offset) = if v == 1 {
                (u64_at(d, at)?, u64_at(d, at + 8)?)
            } else {
                (u32_at(d, at)? as u64, u32_at(d, at + 4)? as u64)
            };
            at += if v == 1 { 16 } else { 8 } + tail;
            if at > tfra.end {
                return bad("tfra is shorter than its entries");
            }
            entries.push(IndexEntry {
                time,
                moof_offset: offset,
            });
        }
        out.push((id, entries));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_reject_sizes_past_the_end() {
        let mut d = make_box(b"free", &[0; 4]);
        assert_eq!(boxes(&d, 0..d.len()).unwrap().len(), 1);
        d[3] = 200;
        assert!(boxes(&d, 0..d.len()).is_err());
        assert!(boxes(&d[..5], 0..5).is_err());
    }

    #[test]
    fn mfra_ends_with_its_own_size() {
        let m = build_mfra(&[(
            1,
            vec![IndexEntry {
                time: 0,
                moof_offset: 100,
            }],
        )]);
        let n = m.len();
        assert_eq!(
            u32::from_be_bytes(m[n - 4..].try_into().unwrap()) as usize,
            n
        );
        let top = boxes(&m, 0..n).unwrap();
        assert_eq!(top.len(), 1);
        assert!(top[0].is(b"mfra"));
    }
}
