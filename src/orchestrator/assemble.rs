//! In-bucket stitching on S3: the output is a multipart upload whose parts are copied
//! server-side from the segment objects (see `stitch::bucket` for how parts are cut), so no
//! segment's bytes pass through the orchestrator.
//!
//! What the orchestrator reads and writes itself: each fragment's header (its `moof`, a few
//! hundred bytes) to check the segment's frames and place on the timeline against the bytes
//! really stored — read in the downloaded output when the job downloads it (`-o`), so the
//! orchestrator receives the output and nothing else, or by range reads of the segments
//! when the output stays in the bucket; the output's init and its tail (the audio, encoded once,
//! and the index), a few kilobytes plus the audio. Hashes are checked where bytes are read
//! (assembly tasks, on workers) and, for segments copied as they are, by the ETag S3 gives
//! each copied part (the MD5 of its bytes), compared with the MD5 the worker reported.
//! The output object appears only when the upload completes; a crash before that leaves no
//! output, and the next attempt aborts the abandoned upload first.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use md5::Md5;
use sha2::{Digest, Sha256};

use super::spend::Work;
use super::{JobRecord, Orchestrator, OrchestratorError};
use crate::adapters::{ChunkRequest, FailureKind, WorkerFailure};
use crate::media::fmp4::{self, IndexEntry};
use crate::stitch::bucket::{self, Item, Part};
use crate::stitch::bytejoin::{self, JoinPlan, Piece};
use crate::stitch::{AudioMix, SegmentProblem, StitchError};
use crate::storage::gcs::GcsBucket;
use crate::storage::s3::S3Bucket;
use crate::storage::{keys, Storage, StorageError};
use crate::worker::assemble::{AssemblySource, AssemblyTask};

/// Range reads of fragment headers in flight at once.
const HEAD_READS: usize = 16;
/// Part copies in flight at once.
const PART_COPIES: usize = 8;

fn is_md5(tag: &str) -> bool {
    tag.len() == 32 && tag.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Where fragment headers are read from.
#[derive(Clone, Copy)]
enum Heads<'a> {
    /// Range reads of each segment's object in the bucket.
    Bucket(&'a Storage),
    /// The downloaded output: each segment at its offset in the file.
    Output(&'a std::fs::File),
}

impl Heads<'_> {
    /// Bytes `range` of a segment that starts at `base` in the output.
    async fn read(&self, key: &str, base: u64, range: Range<u64>) -> Result<Vec<u8>, String> {
        match self {
            Heads::Bucket(storage) => storage
                .get_range(key, range)
                .await
                .map(|b| b.to_vec())
                .map_err(|e| e.to_string()),
            Heads::Output(file) => {
                use std::os::unix::fs::FileExt;
                // A few hundred bytes from the page cache: no need to leave the thread.
                let mut buf = vec![0u8; (range.end - range.start) as usize];
                file.read_exact_at(&mut buf, base + range.start)
                    .map_err(|e| format!("cannot read the downloaded output: {e}"))?;
                Ok(buf)
            }
        }
    }
}

/// Reads every fragment header of a segment (from the bucket, or from the downloaded
/// output where it starts at `base`) and checks it against the job: frames, keyframe
/// first, decode times, fragments tiling the object exactly.
async fn check_heads(
    heads: Heads<'_>,
    piece: &Piece<'_>,
    base: u64,
    plan: &JoinPlan,
) -> Result<(), String> {
    let bytes = piece.bytes;
    let frags = piece
        .media
        .and_then(|m| m.fragmented.as_ref())
        .map(|f| f.fragments.as_slice())
        .ok_or("its report has no fragment layout")?;
    let mut offset = 0u64;
    let mut decode = piece.first_frame * plan.tick;
    let mut samples = 0u64;
    for (i, f) in frags.iter().enumerate() {
        if f.offset != offset || f.moof_len == 0 {
            return Err(format!(
                "its report puts fragment {i} at byte {}, the fragments before end at {offset}",
                f.offset
            ));
        }
        let want = f.moof_len as u64 + 16;
        let end = (offset + want).min(bytes);
        let head = heads.read(piece.key, base, offset..end).await?;
        let h =
            fmp4::read_fragment_head(&head, f.moof_len as usize, &plan.defaults, Some(plan.tick))
                .map_err(|e| format!("fragment {i}: {e}"))?;
        if h.decode_time != decode {
            return Err(format!(
                "fragment {i} starts at decode time {}, expected {decode}",
                h.decode_time
            ));
        }
        if i == 0 && !h.first_sync {
            return Err("does not start with a keyframe".into());
        }
        samples += h.samples as u64;
        decode += h.duration;
        offset += h.len;
    }
    if offset != bytes {
        return Err(format!(
            "its fragments cover {offset} bytes, the object has {bytes}"
        ));
    }
    if samples != piece.frames {
        return Err(format!("holds {samples} frames, expected {}", piece.frames));
    }
    Ok(())
}

/// [`check_heads`] for every segment, a few at a time; the segments that fail. With
/// [`Heads::Output`], the first segment starts at `first` in the file.
async fn check_all_heads(
    heads: Heads<'_>,
    pieces: &[Piece<'_>],
    first: u64,
    plan: &JoinPlan,
) -> Vec<SegmentProblem> {
    let bases = pieces.iter().scan(first, |at, p| {
        let base = *at;
        *at += p.bytes;
        Some(base)
    });
    let checks: Vec<Result<(), String>> = futures::stream::iter(
        pieces
            .iter()
            .zip(bases)
            .map(|(p, base)| check_heads(heads, p, base, plan)),
    )
    .buffered(HEAD_READS)
    .collect()
    .await;
    pieces
        .iter()
        .zip(checks)
        .filter_map(|(p, c)| {
            c.err().map(|reason| SegmentProblem {
                index: p.index,
                reason,
            })
        })
        .collect()
}

/// Before assembling: the fragment headers of every segment, read from the bucket, for a
/// job whose output stays there (a downloaded one is checked in its download).
async fn check_in_bucket_unless_downloaded(
    job: &JobRecord,
    storage: &Storage,
    pieces: &[Piece<'_>],
    plan: &JoinPlan,
) -> Result<(), Stop> {
    if job.download {
        return Ok(());
    }
    let problems = check_all_heads(Heads::Bucket(storage), pieces, 0, plan).await;
    match problems.is_empty() {
        true => Ok(()),
        false => Err(Stop::Problems(problems)),
    }
}

/// The segments whose MD5 in a Cloud Storage bucket differs from their report's.
async fn md5_problems(
    gcs: &GcsBucket,
    pieces: &[Piece<'_>],
) -> Result<Vec<SegmentProblem>, StorageError> {
    let md5s: Vec<_> = futures::stream::iter(pieces.iter().map(|p| gcs.md5(p.key)))
        .buffered(HEAD_READS)
        .collect()
        .await;
    let mut problems = Vec::new();
    for (p, stored) in pieces.iter().zip(md5s) {
        let reported = p.media.and_then(|m| m.md5.as_ref());
        if let (Some(r), Some(s)) = (reported, stored?) {
            if !r.eq_ignore_ascii_case(&s) {
                problems.push(SegmentProblem {
                    index: p.index,
                    reason: format!("{} has MD5 {s} in the bucket, its report says {r}", p.key),
                });
            }
        }
    }
    Ok(problems)
}

/// The segments whose bytes in `file` (laid end to end from `first`) do not have their
/// committed SHA-256.
fn check_hashes(file: &std::fs::File, pieces: &[Piece<'_>], first: u64) -> Vec<SegmentProblem> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 1 << 20];
    let mut at = first;
    let mut problems = Vec::new();
    for p in pieces {
        let (mut hasher, mut left, mut pos) = (Sha256::new(), p.bytes, at);
        let mut failed = None;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            match file.read_exact_at(&mut buf[..n], pos) {
                Ok(()) => hasher.update(&buf[..n]),
                Err(e) => {
                    failed = Some(format!("cannot be read back from the output: {e}"));
                    break;
                }
            }
            left -= n as u64;
            pos += n as u64;
        }
        let reason = failed.or_else(|| {
            let got = hex::encode(hasher.finalize());
            (!got.eq_ignore_ascii_case(p.sha256)).then(|| {
                format!(
                    "{} has SHA-256 {got} in the output, its report says {}",
                    p.key, p.sha256
                )
            })
        });
        if let Some(reason) = reason {
            problems.push(SegmentProblem {
                index: p.index,
                reason,
            });
        }
        at += p.bytes;
    }
    problems
}

/// Downloads the assembled output to the job's output path, checking every segment's
/// fragment headers in the downloaded bytes first (so a `-o` job reads nothing from the
/// bucket but the output itself) and, with `hashes`, every segment's SHA-256 (for stores
/// that did not check the segments' bytes while assembling). A file that fails is never
/// left at the output path, and the object is deleted so that nothing takes it for a
/// finished output.
async fn download_checked(
    job: &JobRecord,
    storage: &Storage,
    out_key: &str,
    pieces: &[Piece<'_>],
    (init_bytes, hashes): (u64, bool),
    plan: &JoinPlan,
) -> Result<PathBuf, Stop> {
    let output = PathBuf::from(&job.output);
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let staging = output.with_file_name(format!(".{name}.helios-check"));
    storage.download(out_key, &staging).await?;
    let io =
        |context: String| move |source| Stop::Failed(StorageError::Io { context, source }.into());
    let checked = async {
        let file = std::fs::File::open(&staging)
            .map_err(io(format!("cannot read {}", staging.display())))?;
        let mut problems = check_all_heads(Heads::Output(&file), pieces, init_bytes, plan).await;
        if hashes && problems.is_empty() {
            problems = check_hashes(&file, pieces, init_bytes);
        }
        if !problems.is_empty() {
            let _ = storage.delete(out_key).await;
            return Err(Stop::Problems(problems));
        }
        std::fs::rename(&staging, &output).map_err(io(format!(
            "cannot move the download to {}",
            output.display()
        )))
    }
    .await;
    if checked.is_err() {
        let _ = std::fs::remove_file(&staging);
    }
    checked.map(|()| output)
}

/// An object of the output the orchestrator writes itself (the init, the tail).
async fn put_piece(storage: &Storage, key: String, data: Vec<u8>) -> Result<Item, StorageError> {
    let item = Item {
        sha256: hex::encode(Sha256::digest(&data)),
        md5: Some(hex::encode(Md5::digest(&data))),
        bytes: data.len() as u64,
        key: key.clone(),
        chunk: None,
    };
    storage.put(&key, data.into()).await?;
    Ok(item)
}

/// What an assembly inside a bucket works from: the job, its storage, its checked
/// segments (with their committed sizes and reports), the join plan, the audio mix and a
/// scratch directory.
#[derive(Clone, Copy)]
pub(super) struct Join<'a> {
    pub job: &'a JobRecord,
    pub storage: &'a Storage,
    pub pieces: &'a [Piece<'a>],
    pub plan: &'a JoinPlan,
    pub audio: Option<&'a AudioMix>,
    pub tmp: Option<&'a Path>,
}

/// Why an assembly stopped.
enum Stop {
    /// Segments to render again.
    Problems(Vec<SegmentProblem>),
    /// Anything else.
    Failed(OrchestratorError),
}

impl From<OrchestratorError> for Stop {
    fn from(e: OrchestratorError) -> Self {
        Stop::Failed(e)
    }
}

impl From<StorageError> for Stop {
    fn from(e: StorageError) -> Self {
        Stop::Failed(e.into())
    }
}

impl Orchestrator {
    /// Joins fragmented segments inside an S3 bucket into `jobs/<id>/output.<ext>` and
    /// downloads the result to the job's output path.
    pub(super) async fn assemble_in_bucket(
        &self,
        j: &Join<'_>,
        bucket: &S3Bucket,
    ) -> Result<Result<PathBuf, Vec<SegmentProblem>>, OrchestratorError> {
        match self.assemble(j, bucket).await {
            Ok(path) => Ok(Ok(path)),
            Err(Stop::Problems(p)) => Ok(Err(p)),
            Err(Stop::Failed(e)) => Err(e),
        }
    }

    async fn assemble(&self, j: &Join<'_>, bucket: &S3Bucket) -> Result<PathBuf, Stop> {
        let Join {
            job,
            storage,
            pieces,
            plan,
            ..
        } = *j;
        // 1. Every segment's fragment headers, read back from the bucket — unless the
        // output is downloaded, whose bytes are checked instead (below).
        check_in_bucket_unless_downloaded(job, storage, pieces, plan).await?;
        // 2. The init and the tail, written by the orchestrator (the only bytes it sends).
        let items = self.items(j).await?;

        // 3. Runs of small objects joined by workers.
        let total: u64 = items.iter().map(|i| i.bytes).sum();
        let parts = bucket::partition(&items, bucket::min_part(total));
        let first_task = job.spec.chunks.len() as u32;
        let joins: Vec<(usize, Vec<usize>)> = parts
            .iter()
            .enumerate()
            .filter_map(|(n, p)| match p {
                Part::Join(v) => Some((n, v.clone())),
                Part::Copy(_) => None,
            })
            .collect();
        let joined: Vec<Result<(usize, Item), Stop>> =
            futures::stream::iter(joins.into_iter().map(|(n, v)| {
                let items = &items;
                async move {
                    let task = first_task + n as u32;
                    let sources = v.iter().map(|i| &items[*i]).collect::<Vec<_>>();
                    self.run_assembly_task(job, storage, task, &sources)
                        .await
                        .map(|item| (n, item))
                }
            }))
            .buffer_unordered(job.spec.concurrency.max(1) as usize)
            .collect()
            .await;
        let mut sources: Vec<Option<Item>> = parts
            .iter()
            .map(|p| match p {
                Part::Copy(i) => Some(items[*i].clone()),
                Part::Join(_) => None,
            })
            .collect();
        let mut problems = Vec::new();
        for r in joined {
            match r {
                Ok((n, item)) => sources[n] = Some(item),
                Err(Stop::Problems(p)) => problems.extend(p),
                Err(e) => return Err(e),
            }
        }

        // 4. The multipart upload: every part copied inside the bucket. Parts are copied
        // even when a join found a bad segment, so one round finds every bad segment.
        let out_key = job.output_key();
        let aborted = bucket.abort_uploads(&out_key).await?;
        if aborted > 0 {
            tracing::info!(job = %job.id, aborted, "aborted an unfinished upload of the output");
        }
        let upload = bucket.create_upload(&out_key, "video/mp4").await?;
        let numbered: Vec<(i32, Item)> = sources
            .into_iter()
            .enumerate()
            .filter_map(|(n, s)| s.map(|s| (n as i32 + 1, s)))
            .collect();
        let tags = match self.copy_parts(bucket, &out_key, &upload, &numbered).await {
            Ok(t) if problems.is_empty() => t,
            Ok(_) => {
                let _ = bucket.abort(&out_key, &upload).await;
                return Err(Stop::Problems(problems));
            }
            Err(Stop::Problems(p)) => {
                let _ = bucket.abort(&out_key, &upload).await;
                problems.extend(p);
                return Err(Stop::Problems(problems));
            }
            Err(e) => {
                let _ = bucket.abort(&out_key, &upload).await;
                return Err(e);
            }
        };
        crate::failpoint::hit("mid-assembly");
        if let Err(e) = bucket.complete(&out_key, &upload, &tags).await {
            let _ = bucket.abort(&out_key, &upload).await;
            return Err(e.into());
        }
        crate::failpoint::hit("after-assembly");
        // What assembly wrote besides the output is of no further use.
        if let Ok(keys) = storage.list(&keys::assembly(&job.id)).await {
            for k in keys {
                let _ = storage.delete(&k).await;
            }
        }

        // 5. One download, to the output path, checked there (unless the output stays in
        // the bucket).
        if job.download {
            let init = (items[0].bytes, false);
            return download_checked(job, storage, &out_key, pieces, init, plan).await;
        }
        Ok(PathBuf::from(&job.output))
    }

    /// The output's objects in order: the init and the tail (written here), the segments
    /// between them.
    async fn items(&self, j: &Join<'_>) -> Result<Vec<Item>, Stop> {
        let Join {
            job,
            storage,
            pieces,
            plan,
            audio,
            tmp,
        } = *j;
        let (init, audio) = bytejoin::prepare(plan, audio, tmp)
            .await
            .map_err(|e| self.stitch_error(job, e))?;
        let mut offset = init.len() as u64;
        let mut video_index = Vec::new();
        for p in pieces {
            if let Some(f) = p.media.and_then(|m| m.fragmented.as_ref()) {
                video_index.extend(f.fragments.iter().map(|fr| IndexEntry {
                    time: fr.decode_time,
                    moof_offset: offset + fr.offset,
                }));
            }
            offset += p.bytes;
        }
        let tail = bytejoin::tail(audio.as_ref(), video_index, offset);
        let mut items =
            vec![put_piece(storage, keys::assembly_piece(&job.id, "init.mp4"), init).await?];
        for p in pieces {
            items.push(Item {
                key: p.key.to_string(),
                bytes: p.bytes,
                sha256: p.sha256.to_string(),
                md5: p.media.and_then(|m| m.md5.clone()),
                chunk: Some(p.index as u32),
            });
        }
        items.push(put_piece(storage, keys::assembly_piece(&job.id, "tail.mp4"), tail).await?);
        Ok(items)
    }

    /// Joins fragmented segments inside a Cloud Storage bucket by object composition (no
    /// minimum size, so no assembly tasks): segments are checked by their fragment headers
    /// and by the MD5 Cloud Storage computed for them, then composed with the init and the
    /// tail, 32 at a time as a tree, into `jobs/<id>/output.<ext>`.
    pub(super) async fn compose_in_bucket(
        &self,
        j: &Join<'_>,
        gcs: &GcsBucket,
    ) -> Result<Result<PathBuf, Vec<SegmentProblem>>, OrchestratorError> {
        let Join {
            job,
            storage,
            pieces,
            plan,
            ..
        } = *j;
        let run = async {
            check_in_bucket_unless_downloaded(job, storage, pieces, plan).await?;
            let items = self.items(j).await?;
            let init_key = keys::assembly_piece(&job.id, "init.mp4");
            let tail_key = keys::assembly_piece(&job.id, "tail.mp4");
            let cleanup = |extra: Vec<String>| async move {
                for k in extra.iter().chain([&init_key, &tail_key]) {
                    let _ = storage.delete(k).await;
                }
            };
            // Without a download, the MD5 Cloud Storage computed for each segment is the
            // check of its bytes; with one, the download is (no request a segment).
            if !job.download {
                let problems = md5_problems(gcs, pieces).await?;
                if !problems.is_empty() {
                    cleanup(Vec::new()).await;
                    return Err(Stop::Problems(problems));
                }
            }
            let out_key = job.output_key();
            let keys_in_order: Vec<String> = items.iter().map(|i| i.key.clone()).collect();
            let scratch = keys::assembly_piece(&job.id, "compose");
            let made = gcs.compose_tree(&keys_in_order, &out_key, &scratch).await;
            crate::failpoint::hit("after-assembly");
            cleanup(made.as_ref().cloned().unwrap_or_default()).await;
            made?;
            if job.download {
                // The bucket's MD5s were not read: the segments' bytes are checked in the
                // download instead, against their SHA-256.
                let init = (items[0].bytes, true);
                return download_checked(job, storage, &out_key, pieces, init, plan).await;
            }
            Ok(PathBuf::from(&job.output))
        };
        match run.await {
            Ok(path) => Ok(Ok(path)),
            Err(Stop::Problems(p)) => Ok(Err(p)),
            Err(Stop::Failed(e)) => Err(e),
        }
    }

    fn stitch_error(&self, job: &JobRecord, e: StitchError) -> Stop {
        Stop::Failed(OrchestratorError::Stitch {
            job: job.id.clone(),
            source: e,
        })
    }

    async fn copy_parts(
        &self,
        bucket: &S3Bucket,
        out_key: &str,
        upload: &str,
        sources: &[(i32, Item)],
    ) -> Result<Vec<(i32, String)>, Stop> {
        let results: Vec<Result<(i32, String), Stop>> =
            futures::stream::iter(sources.iter().map(|(number, item)| async move {
                let number = *number;
                let tag = bucket.copy_part(out_key, upload, number, &item.key).await?;
                // S3 gives a copied part's MD5 as its ETag (buckets without KMS keys): a
                // segment that is not what its worker hashed is caught without reading it.
                if let Some(md5) = &item.md5 {
                    if is_md5(&tag) && !tag.eq_ignore_ascii_case(md5) {
                        let reason = format!(
                            "{} has MD5 {tag} in the bucket, its report says {md5}",
                            item.key
                        );
                        return Err(match item.chunk {
                            Some(c) => Stop::Problems(vec![SegmentProblem {
                                index: c as usize,
                                reason,
                            }]),
                            None => Stop::Failed(OrchestratorError::Io {
                                context: "in-bucket assembly".into(),
                                source: std::io::Error::other(reason),
                            }),
                        });
                    }
                }
                Ok((number, tag))
            }))
            .buffer_unordered(PART_COPIES)
            .collect()
            .await;
        let mut tags = Vec::with_capacity(results.len());
        let mut problems = Vec::new();
        for r in results {
            match r {
                Ok(t) => tags.push(t),
                Err(Stop::Problems(p)) => problems.extend(p),
                Err(e) => return Err(e),
            }
        }
        if !problems.is_empty() {
            return Err(Stop::Problems(problems));
        }
        tags.sort();
        Ok(tags)
    }

    /// Runs one assembly task on a worker, with the job's retry policy; returns the part it
    /// wrote.
    async fn run_assembly_task(
        &self,
        job: &JobRecord,
        storage: &Storage,
        task: u32,
        sources: &[&Item],
    ) -> Result<Item, Stop> {
        let spec = AssemblyTask {
            sources: sources
                .iter()
                .map(|i| AssemblySource {
                    key: i.key.clone(),
                    bytes: i.bytes,
                    sha256: i.sha256.clone(),
                    chunk: i.chunk,
                })
                .collect(),
        };
        let json = serde_json::to_vec(&spec).map_err(|e| OrchestratorError::Io {
            context: "cannot serialize an assembly task".into(),
            source: e.into(),
        })?;
        storage
            .put(&keys::assembly_task(&job.id, task), json.into())
            .await?;
        let expected: u64 = sources.iter().map(|i| i.bytes).sum();
        let job_url = storage.url_for(&keys::job_spec(&job.id));
        let timeout = Duration::from_secs_f64(job.spec.retry.timeout_s.max(1.0));
        let attempts = job.spec.retry.max_attempts.max(1);
        let mut last = String::new();
        for attempt in 1..=attempts {
            if self.cancel.is_cancelled() {
                return Err(Stop::Failed(OrchestratorError::Cancelled {
                    job: job.id.clone(),
                }));
            }
            let _ticket = self
                .meter
                .admit(
                    &*self.store,
                    job,
                    format!("assemble {task} attempt {attempt} ({})", ulid::Ulid::new()),
                    Work::Fixed,
                )
                .map_err(|over| Stop::Failed(self.over_budget(job, over)))?;
            let req = ChunkRequest {
                assemble: true,
                ..ChunkRequest::render(job_url.clone(), task, attempt)
            };
            let answer = match tokio::time::timeout(timeout, self.adapter.run_chunk(&req)).await {
                Ok(a) => a,
                Err(_) => Err(WorkerFailure::retryable(
                    FailureKind::Timeout,
                    format!("assembly task {task} timed out"),
                )),
            };
            match answer {
                Ok(report) => {
                    let want_key = keys::assembly_part(&job.id, task, attempt);
                    if report.segment != want_key || report.bytes != expected {
                        last = format!(
                            "assembly task {task} wrote {} bytes to {}, expected {expected} bytes at {want_key}",
                            report.bytes, report.segment
                        );
                        continue;
                    }
                    return Ok(Item {
                        key: report.segment,
                        bytes: report.bytes,
                        sha256: report.sha256,
                        md5: report.md5,
                        chunk: None,
                    });
                }
                Err(f) if f.kind == FailureKind::BadSegment => {
                    let index = f.chunk.unwrap_or(0) as usize;
                    return Err(Stop::Problems(vec![SegmentProblem {
                        index,
                        reason: f.message,
                    }]));
                }
                Err(f) if f.retryable => last = f.message,
                Err(f) => {
                    last = f.message;
                    break;
                }
            }
        }
        Err(Stop::Failed(OrchestratorError::Io {
            context: format!("in-bucket assembly of job {}", job.id),
            source: std::io::Error::other(last),
        }))
    }
}
