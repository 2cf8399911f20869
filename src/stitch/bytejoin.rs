//! The byte join: fragmented segments, already placed on the job's timeline by their
//! workers, concatenated behind one init, with the once-encoded audio and an index at the
//! end. No FFmpeg pass over the video, no probe of any segment: every segment's bytes are
//! hashed and its fragments read while they are copied, so a segment whose report lies
//! (hash, frame count, place on the timeline) is caught here, before the output is kept.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};

use super::audio::AAC_PRIMING_SAMPLES;
use super::{AudioMix, SegmentProblem, StitchError};
use crate::media::fmp4::{self, IndexEntry, InitTrack, TrackDefaults};
use crate::spec::Fps;
use crate::storage::Storage;
use crate::worker::SegmentMedia;

/// A committed segment as the byte join sees it.
#[derive(Debug, Clone)]
pub struct Piece<'a> {
    /// Chunk index.
    pub index: usize,
    /// Storage key of the media.
    pub key: &'a str,
    /// Committed SHA-256.
    pub sha256: &'a str,
    /// Committed size in bytes.
    pub bytes: u64,
    /// Frames the chunk must hold.
    pub frames: u64,
    /// The chunk's first frame, counted from the job's first frame.
    pub first_frame: u64,
    /// What its worker reported.
    pub media: Option<&'a SegmentMedia>,
}

/// The segments checked against each other and the job, ready to join.
#[derive(Debug, Clone)]
pub struct JoinPlan {
    /// The video init shared by every segment.
    pub init: Vec<u8>,
    /// The track's sample defaults.
    pub defaults: TrackDefaults,
    /// Composition delay of the first frame (ticks).
    pub presentation_delay: i64,
    /// Ticks per frame.
    pub tick: u64,
    /// Frames in all.
    pub frames: u64,
}

/// Checks the workers' reports against each other and the job — codec parameters, init,
/// frame counts, keyframes, places on the timeline — without reading a segment. The
/// majority's init is the reference; every disagreeing segment is a problem.
pub fn plan(pieces: &[Piece<'_>], fps: Fps) -> Result<JoinPlan, Vec<SegmentProblem>> {
    let tick = fps.ticks_per_frame();
    let mut votes: HashMap<(&str, &str, i64), usize> = HashMap::new();
    for p in pieces {
        if let Some(m) = p.media {
            if let Some(f) = &m.fragmented {
                *votes
                    .entry((m.params.as_str(), f.init.as_str(), f.presentation_delay))
                    .or_default() += 1;
            }
        }
    }
    // Most votes wins; ties go to the earliest segment's.
    let reference = pieces
        .iter()
        .filter_map(|p| {
            let m = p.media?;
            let f = m.fragmented.as_ref()?;
            Some((m.params.as_str(), f.init.as_str(), f.presentation_delay))
        })
        .max_by_key(|k| (votes[k], std::cmp::Reverse(0)));
    let mut problems = Vec::new();
    for p in pieces {
        let mut why = Vec::new();
        match (p.media, p.media.and_then(|m| m.fragmented.as_ref())) {
            (Some(m), Some(f)) => {
                let key = (m.params.as_str(), f.init.as_str(), f.presentation_delay);
                if Some(key) != reference {
                    why.push(format!(
                        "encoded differently from the other segments ({})",
                        m.params
                    ));
                }
                if m.frames != p.frames {
                    why.push(format!("holds {} frames, expected {}", m.frames, p.frames));
                }
                if !m.keyframe_first {
                    why.push("does not start with a keyframe".into());
                }
                let start = p.first_frame * tick;
                let end = (p.first_frame + p.frames) * tick;
                if (f.decode_start, f.decode_end) != (start, end) {
                    why.push(format!(
                        "covers decode times {}..{}, expected {start}..{end}",
                        f.decode_start, f.decode_end
                    ));
                }
            }
            _ => why.push("its report has no fragment layout (written by an older worker?)".into()),
        }
        if !why.is_empty() {
            problems.push(SegmentProblem {
                index: p.index,
                reason: why.join("; "),
            });
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let Some((_, init_b64, delay)) = reference else {
        return Err(vec![SegmentProblem {
            index: 0,
            reason: "no segments".into(),
        }]);
    };
    let fail = |reason: String| {
        vec![SegmentProblem {
            index: pieces.first().map(|p| p.index).unwrap_or(0),
            reason,
        }]
    };
    let init = base64::engine::general_purpose::STANDARD
        .decode(init_b64)
        .map_err(|e| fail(format!("its init is not base64: {e}")))?;
    let info = fmp4::read_init(&init).map_err(|e| fail(e.to_string()))?;
    if info.timescale != fps.timescale() || info.movie_timescale != fps.timescale() {
        return Err(fail(format!(
            "its init has timescales {}/{}, expected {}",
            info.movie_timescale,
            info.timescale,
            fps.timescale()
        )));
    }
    Ok(JoinPlan {
        init,
        defaults: info.defaults,
        presentation_delay: delay,
        tick,
        frames: pieces.iter().map(|p| p.frames).sum(),
    })
}

/// The audio of the output as fragments: its init and its media, renumbered as track 2.
pub(crate) struct AudioFragments {
    init: Vec<u8>,
    media: Vec<u8>,
    index: Vec<IndexEntry>,
    /// Samples encoded, priming and padding included.
    encoded: u64,
}

async fn audio_fragments(
    mix: &AudioMix,
    tmp: Option<&Path>,
    first_seq: u32,
) -> Result<AudioFragments, StitchError> {
    let tmp = tmp.ok_or_else(|| StitchError::Io {
        context: "encoding the audio".into(),
        source: std::io::Error::other("no scratch directory was given for it"),
    })?;
    let path = tmp.join("audio.mp4");
    mix.encode_fragmented(&path).await?;
    let mut bytes = tokio::fs::read(&path).await.map_err(|e| StitchError::Io {
        context: format!("cannot read {}", path.display()),
        source: e,
    })?;
    let bad = |e: fmp4::Fmp4Error| StitchError::Io {
        context: "the encoded audio".into(),
        source: std::io::Error::other(e),
    };
    let top = fmp4::boxes(&bytes, 0..bytes.len()).map_err(bad)?;
    let moov_end = top
        .iter()
        .find(|b| &b.kind == b"moov")
        .map(|b| b.end)
        .ok_or_else(|| bad(fmp4::Fmp4Error("no moov".into())))?;
    let media_end = match top.last() {
        Some(b) if &b.kind == b"mfra" => b.start,
        _ => bytes.len(),
    };
    let info = fmp4::read_init(&bytes[..moov_end]).map_err(bad)?;
    let scan = fmp4::retrack_media(
        &mut bytes[moov_end..media_end],
        &info.defaults,
        2,
        first_seq,
    )
    .map_err(bad)?;
    Ok(AudioFragments {
        init: bytes[..moov_end].to_vec(),
        media: bytes[moov_end..media_end].to_vec(),
        index: scan
            .fragments
            .iter()
            .map(|f| IndexEntry {
                time: f.decode_time,
                moof_offset: f.offset,
            })
            .collect(),
        encoded: scan.decode_end - scan.decode_start,
    })
}

/// The output's init (the video track, the audio track if any, the duration, gapless
/// data) and the audio as fragments (encoded once, here, in `tmp`).
pub(crate) async fn prepare(
    plan: &JoinPlan,
    audio: Option<&AudioMix>,
    tmp: Option<&Path>,
) -> Result<(Vec<u8>, Option<AudioFragments>), StitchError> {
    let duration = plan.frames * plan.tick;
    let mix = audio.filter(|a| !a.inputs.is_empty());
    let audio = match mix {
        Some(mix) => {
            let first_seq = u32::try_from(plan.frames + 1).unwrap_or(u32::MAX);
            Some(audio_fragments(mix, tmp, first_seq).await?)
        }
        None => None,
    };
    let mut tracks = vec![InitTrack {
        init: &plan.init,
        media_time: plan.presentation_delay,
    }];
    if let Some(a) = &audio {
        tracks.push(InitTrack {
            init: &a.init,
            media_time: AAC_PRIMING_SAMPLES,
        });
    }
    let udta = audio.as_ref().zip(mix).map(|(a, mix)| {
        let real = mix.total_samples();
        let padding = a.encoded.saturating_sub(real + AAC_PRIMING_SAMPLES as u64);
        fmp4::gapless_udta(AAC_PRIMING_SAMPLES as u32, padding as u32, real)
    });
    let init =
        fmp4::build_init(&tracks, duration, udta.as_deref()).map_err(|e| StitchError::Io {
            context: "building the output's init".into(),
            source: std::io::Error::other(e),
        })?;
    Ok((init, audio))
}

/// What follows the video: the audio fragments (placed at `offset` in the output) and the
/// index of every fragment.
pub(crate) fn tail(
    audio: Option<&AudioFragments>,
    video_index: Vec<IndexEntry>,
    offset: u64,
) -> Vec<u8> {
    let mut tracks = vec![(1u32, video_index)];
    let mut out = Vec::new();
    if let Some(a) = audio {
        tracks.push((
            2,
            a.index
                .iter()
                .map(|e| IndexEntry {
                    time: e.time,
                    moof_offset: offset + e.moof_offset,
                })
                .collect(),
        ));
        out.extend_from_slice(&a.media);
    }
    out.extend(fmp4::build_mfra(&tracks));
    out
}

/// Reads one segment's media: the backing file of local storage, or the object.
async fn read_piece(storage: &Storage, key: &str) -> Result<Bytes, String> {
    if let Some(path) = storage.local_path(key) {
        return tokio::fs::read(&path)
            .await
            .map(Bytes::from)
            .map_err(|e| format!("cannot read {}: {e}", path.display()));
    }
    storage.get(key).await.map_err(|e| e.to_string())
}

/// The output file, written on the blocking pool a whole segment at a time: one system
/// call per segment and no copy through an async buffer.
struct Sink(Option<std::fs::File>);

impl Sink {
    async fn write(&mut self, data: Bytes) -> std::io::Result<()> {
        use std::io::Write as _;
        let mut file = self
            .0
            .take()
            .ok_or_else(|| std::io::Error::other("an earlier write failed"))?;
        let file = tokio::task::spawn_blocking(move || file.write_all(&data).map(|_| file))
            .await
            .map_err(std::io::Error::other)??;
        self.0 = Some(file);
        Ok(())
    }
}

/// What a segment must be, from its committed report.
struct Expected {
    sha256: String,
    bytes: u64,
    frames: u64,
    first_frame: u64,
}

impl Expected {
    fn of(p: &Piece<'_>) -> Self {
        Self {
            sha256: p.sha256.to_string(),
            bytes: p.bytes,
            frames: p.frames,
            first_frame: p.first_frame,
        }
    }
}

/// Segments at most this large are read into a buffer that is hashed, parsed and written
/// from while it is still in the CPU's cache; larger ones are mapped instead, so memory
/// stays bounded whatever a chunk holds.
const READ_WHOLE_MAX: u64 = 64 << 20;

/// Local storage: every segment is read once, hashed, parsed and written at its own place in
/// the output (known in advance from the committed sizes) by one thread per core, each
/// taking the next segment. Nothing is copied twice and no segment waits for another.
/// Returns the output file (if still usable), and the fragment index, the offset after the
/// last segment and the segments that failed their check.
async fn copy_and_check(
    file: std::fs::File,
    paths: &[PathBuf],
    pieces: &[Piece<'_>],
    plan: &JoinPlan,
    start: u64,
) -> (
    Option<std::fs::File>,
    std::io::Result<(Vec<IndexEntry>, u64, Vec<SegmentProblem>)>,
) {
    let mut offsets = Vec::with_capacity(pieces.len());
    let mut end = start;
    for p in pieces {
        offsets.push(end);
        end += p.bytes;
    }
    let jobs: Vec<(PathBuf, Expected, u64)> = pieces
        .iter()
        .zip(paths)
        .zip(&offsets)
        .map(|((p, path), &at)| (path.clone(), Expected::of(p), at))
        .collect();
    let plan = plan.clone();
    let joined = tokio::task::spawn_blocking(move || {
        let results = write_pieces(&file, &jobs, &plan);
        (file, results)
    })
    .await;
    let (mut file, results) = match joined {
        Ok(v) => v,
        Err(e) => return (None, Err(std::io::Error::other(e))),
    };
    let mut problems = Vec::new();
    let mut index = Vec::new();
    for ((p, at), r) in pieces.iter().zip(&offsets).zip(results) {
        match r {
            Ok(frags) => index.extend(frags.iter().map(|f| IndexEntry {
                time: f.decode_time,
                moof_offset: at + f.offset,
            })),
            Err(PieceError::Bad(reason)) => problems.push(SegmentProblem {
                index: p.index,
                reason,
            }),
            Err(PieceError::Write(e)) => return (None, Err(e)),
        }
    }
    // What follows is written at the file's position.
    use std::io::Seek as _;
    if let Err(e) = file.seek(std::io::SeekFrom::Start(end)) {
        return (None, Err(e));
    }
    (Some(file), Ok((index, end, problems)))
}

/// One segment's outcome: its fragments, or why it is not in the output.
type PieceResult = Result<Vec<fmp4::Fragment>, PieceError>;

/// Why one segment did not make it into the output.
enum PieceError {
    /// The segment is not what its report says (or cannot be read): re-render it.
    Bad(String),
    /// The output could not be written.
    Write(std::io::Error),
}

/// Checks and writes every segment at its offset, on one thread per core (at most 4);
/// results in the order of `jobs`.
fn write_pieces(
    out: &std::fs::File,
    jobs: &[(PathBuf, Expected, u64)],
    plan: &JoinPlan,
) -> Vec<PieceResult> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 4)
        .min(jobs.len().max(1));
    let next = AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<PieceResult>>> =
        jobs.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut buf = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((path, expect, at)) = jobs.get(i) else {
                        break;
                    };
                    let r = write_piece(out, path, expect, *at, plan, &mut buf);
                    if let Ok(mut slot) = slots[i].lock() {
                        *slot = Some(r);
                    }
                }
            });
        }
    });
    slots
        .into_iter()
        .map(|m| {
            m.into_inner().ok().flatten().unwrap_or_else(|| {
                Err(PieceError::Write(std::io::Error::other(
                    "a join thread stopped early",
                )))
            })
        })
        .collect()
}

/// One segment: read (into `buf`, or mapped when large), checked against its report, and
/// written at `at` only if it passes.
fn write_piece(
    out: &std::fs::File,
    path: &Path,
    expect: &Expected,
    at: u64,
    plan: &JoinPlan,
    buf: &mut Vec<u8>,
) -> PieceResult {
    use std::io::Read as _;
    use std::os::unix::fs::FileExt as _;
    let unreadable =
        |e: std::io::Error| PieceError::Bad(format!("cannot read {}: {e}", path.display()));
    let mut src = std::fs::File::open(path).map_err(unreadable)?;
    let len = src.metadata().map_err(unreadable)?.len();
    if len != expect.bytes {
        return Err(PieceError::Bad(format!(
            "holds {len} bytes, its report says {}",
            expect.bytes
        )));
    }
    let map;
    let bytes: &[u8] = if len <= READ_WHOLE_MAX {
        buf.clear();
        buf.reserve(len as usize);
        src.read_to_end(buf).map_err(unreadable)?;
        buf
    } else {
        map = map_segment(&src).map_err(unreadable)?;
        &map
    };
    let frags = check_piece(bytes, expect, plan).map_err(PieceError::Bad)?;
    out.write_all_at(bytes, at).map_err(PieceError::Write)?;
    Ok(frags)
}

/// Moves `from` to `to`, replacing the file there without renaming over it: on ext4 a
/// rename over an existing file makes the kernel write the new file's data out at once
/// (`auto_da_alloc`), which costs more than the whole join. The old file is moved aside
/// first and removed after; a reader sees the old file, then briefly none, then the new
/// one, never a partial file, and a failed move puts the old file back.
fn replace_file(from: &Path, to: &Path) -> std::io::Result<()> {
    let existing = std::fs::symlink_metadata(to).is_ok_and(|m| m.is_file());
    if !existing {
        return std::fs::rename(from, to);
    }
    let name = to
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let aside = to.with_file_name(format!(".{name}.{}.old", ulid::Ulid::new()));
    std::fs::rename(to, &aside)?;
    if let Err(e) = std::fs::rename(from, to) {
        let _ = std::fs::rename(&aside, to);
        return Err(e);
    }
    let _ = std::fs::remove_file(&aside);
    Ok(())
}

/// A segment's bytes, mapped rather than read: the kernel is copying the same pages into
/// the output, and a mapping reads them from the page cache without a second copy.
fn map_segment(file: &std::fs::File) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: nothing modifies a committed segment in storage (a retry writes a new
    // attempt's key), so the mapped bytes cannot change under the hash. (Only someone
    // truncating the file from outside during the join could make the mapping fault.)
    unsafe { memmap2::Mmap::map(file) }
}

/// Hashes a segment's bytes and reads its fragments: what it really holds.
fn check_piece(
    bytes: &[u8],
    piece: &Expected,
    plan: &JoinPlan,
) -> Result<Vec<fmp4::Fragment>, String> {
    let sha = hex::encode(Sha256::digest(bytes));
    if sha != piece.sha256 {
        return Err(format!(
            "content hash {sha} does not match the reported {}",
            piece.sha256
        ));
    }
    let scan =
        fmp4::scan_media(bytes, &plan.defaults, Some(plan.tick)).map_err(|e| e.to_string())?;
    if scan.samples != piece.frames {
        return Err(format!(
            "holds {} frames, expected {}",
            scan.samples, piece.frames
        ));
    }
    if !scan.keyframe_first {
        return Err("does not start with a keyframe".into());
    }
    let start = piece.first_frame * plan.tick;
    if scan.decode_start != start {
        return Err(format!(
            "starts at decode time {}, expected {start}",
            scan.decode_start
        ));
    }
    Ok(scan.fragments)
}

/// Joins the pieces into `output` on local disk: init, the segments' media in order, the
/// audio fragments, the index. Segments that fail their check are returned as problems
/// (and nothing is written under the output's name).
pub async fn join_local(
    storage: &Storage,
    pieces: &[Piece<'_>],
    plan: &JoinPlan,
    audio: Option<&AudioMix>,
    tmp: Option<&Path>,
    output: &Path,
) -> Result<Result<(), Vec<SegmentProblem>>, StitchError> {
    let io = |context: String| move |source| StitchError::Io { context, source };
    let parent = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    tokio::fs::create_dir_all(&parent)
        .await
        .map_err(io(format!("cannot create {}", parent.display())))?;
    let (init, audio) = prepare(plan, audio, tmp).await?;

    // Written through the handle the temp file was created with: reopening it with
    // O_TRUNC would make ext4 flush the whole output to disk when it is closed
    // (`auto_da_alloc`), which costs more than the join itself.
    let (file, partial) = tempfile::Builder::new()
        .prefix(".helios-partial-")
        .suffix(".mp4")
        .tempfile_in(&parent)
        .map_err(io(format!("cannot create a file in {}", parent.display())))?
        .into_parts();
    let partial: PathBuf = partial.keep().map_err(|e| StitchError::Io {
        context: "cannot keep temp file".into(),
        source: e.error,
    })?;
    let result = async {
        let mut out = Sink(Some(file));
        let write_err = |e: std::io::Error| StitchError::Io {
            context: format!("cannot write {}", partial.display()),
            source: e,
        };
        let mut offset = init.len() as u64;
        out.write(Bytes::from(init)).await.map_err(write_err)?;
        let (video_index, end, problems) = match pieces
            .iter()
            .map(|p| storage.local_path(p.key))
            .collect::<Option<Vec<PathBuf>>>()
        {
            Some(paths) => {
                let file = out
                    .0
                    .take()
                    .ok_or_else(|| write_err(std::io::Error::other("lost the output file")))?;
                let (file, r) = copy_and_check(file, &paths, pieces, plan, offset).await;
                out.0 = file;
                r.map_err(write_err)?
            }
            None => {
                let mut video_index = Vec::new();
                let mut problems = Vec::new();
                // Read and check a few segments ahead of the writer, on the blocking pool.
                let mut checked = futures::stream::iter(pieces.iter().map(|p| {
                    let plan = plan.clone();
                    let expect = Expected::of(p);
                    async move {
                        let bytes = read_piece(storage, p.key).await?;
                        tokio::task::spawn_blocking(move || {
                            check_piece(&bytes, &expect, &plan).map(|f| (bytes, f))
                        })
                        .await
                        .map_err(|e| e.to_string())?
                    }
                }))
                .buffered(3);
                let mut i = 0;
                while let Some(r) = checked.next().await {
                    let index = pieces[i].index;
                    i += 1;
                    match r {
                        Ok((bytes, frags)) if problems.is_empty() => {
                            video_index.extend(frags.iter().map(|f| IndexEntry {
                                time: f.decode_time,
                                moof_offset: offset + f.offset,
                            }));
                            offset += bytes.len() as u64;
                            out.write(bytes).await.map_err(write_err)?;
                        }
                        Ok(_) => {}
                        Err(reason) => problems.push(SegmentProblem { index, reason }),
                    }
                }
                (video_index, offset, problems)
            }
        };
        let offset = end;
        if !problems.is_empty() {
            return Ok(Err(problems));
        }
        out.write(Bytes::from(tail(audio.as_ref(), video_index, offset)))
            .await
            .map_err(write_err)?;
        drop(out);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ =
                tokio::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o644)).await;
        }
        let (from, to) = (partial.clone(), output.to_path_buf());
        tokio::task::spawn_blocking(move || replace_file(&from, &to))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|r| r)
            .map_err(io(format!(
                "cannot move the output to {}",
                output.display()
            )))?;
        Ok(Ok(()))
    }
    .await;
    if !matches!(result, Ok(Ok(()))) {
        let _ = tokio::fs::remove_file(&partial).await;
    }
    result
}
