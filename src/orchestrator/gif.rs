//! GIF jobs: the palette made once before the chunks (a task on a worker, through the
//! job's adapter), and the join: one header, the loop extension, every chunk's frames in
//! order by their bytes, the trailer.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::spend::Work;
use super::{ChunkRecord, JobRecord, Orchestrator, OrchestratorError};
use crate::adapters::{ChunkRequest, FailureKind, WorkerFailure};
use crate::media::gif;
use crate::stitch::{check_segments, SegmentProblem};
use crate::storage::{keys, Storage};

impl Orchestrator {
    /// Makes the job's palette (`jobs/<id>/palette.png`) unless it is there: the palette
    /// task runs on a worker, with the job's retries and timeout; its result is checked
    /// (size) and copied into place, which commits it.
    pub(super) async fn ensure_palette(
        &self,
        job: &JobRecord,
        storage: &Storage,
    ) -> Result<(), OrchestratorError> {
        let key = keys::palette(&job.id);
        if storage.size(&key).await?.is_some() {
            return Ok(());
        }
        let job_url = storage.url_for(&keys::job_spec(&job.id));
        let timeout = Duration::from_secs_f64(job.spec.retry.timeout_s.max(1.0));
        let attempts = job.spec.retry.max_attempts.max(1);
        let mut last = String::new();
        for attempt in 1..=attempts {
            if self.cancel.is_cancelled() {
                return Err(OrchestratorError::Cancelled {
                    job: job.id.clone(),
                });
            }
            if attempt > 1 {
                tokio::time::sleep(crate::backoff::delay(&job.spec.retry, attempt - 1)).await;
            }
            // Task names carry a run-unique id: palette attempts count from 1 every run.
            let _ticket = self
                .meter
                .admit(
                    &*self.store,
                    job,
                    format!("palette attempt {attempt} ({})", ulid::Ulid::new()),
                    Work::Frames(crate::spec::palette_samples(job.spec.video.frames).len() as u64),
                )
                .map_err(|over| self.over_budget(job, over))?;
            let req = ChunkRequest {
                palette: true,
                ..ChunkRequest::render(job_url.clone(), 0, attempt)
            };
            let answer = tokio::select! {
                a = tokio::time::timeout(timeout, self.adapter.run_chunk(&req)) => match a {
                    Ok(a) => a,
                    Err(_) => Err(WorkerFailure::retryable(
                        FailureKind::Timeout,
                        format!("the palette task timed out after {}s", timeout.as_secs_f64()),
                    )),
                },
                _ = self.cancel.cancelled() => continue,
            };
            match answer {
                Ok(report) => {
                    let want = keys::palette_attempt(&job.id, attempt);
                    match storage.size(&report.segment).await? {
                        Some(n) if report.segment == want && n == report.bytes && n > 0 => {
                            storage.copy(&want, &key).await?;
                            return Ok(());
                        }
                        _ => {
                            last = format!(
                                "the palette task reported {} ({} bytes), expected {want}",
                                report.segment, report.bytes
                            )
                        }
                    }
                }
                Err(f) if f.retryable => last = f.message,
                Err(f) => {
                    last = f.message;
                    break;
                }
            }
            tracing::warn!(job = %job.id, attempt, error = %last, "palette task failed");
        }
        Err(OrchestratorError::Palette {
            job: job.id.clone(),
            message: last,
        })
    }

    /// Joins the committed GIF parts: their headers must be equal (same size, same
    /// palette), each part's bytes are checked against its report as they are read.
    pub(super) async fn join_gif(
        &self,
        job: &JobRecord,
        storage: &Storage,
        chunks: &[ChunkRecord],
        tmp: &Path,
    ) -> Result<Result<PathBuf, Vec<SegmentProblem>>, OrchestratorError> {
        let mut problems = Vec::new();
        let mut reported = Vec::new();
        for c in chunks {
            match c
                .segment
                .as_ref()
                .and_then(|s| Some((s, s.media.as_ref()?)))
            {
                Some((seg, m)) => reported.push((c, seg, m)),
                None => problems.push(SegmentProblem {
                    index: c.chunk.index as usize,
                    reason: format!("chunk {} has no committed GIF part", c.chunk.index),
                }),
            }
        }
        if problems.is_empty() {
            let infos: Vec<_> = reported
                .iter()
                .map(|(c, _, m)| (m.params.as_str(), m.frames, m.keyframe_first, c.chunk.len()))
                .collect();
            for p in check_segments(&infos) {
                problems.push(SegmentProblem {
                    index: reported[p.index].0.chunk.index as usize,
                    reason: p.reason,
                });
            }
        }
        let header = reported
            .first()
            .and_then(|(_, _, m)| m.gif_header.as_deref())
            .and_then(|h| base64::engine::general_purpose::STANDARD.decode(h).ok());
        let Some(header) = header.filter(|_| problems.is_empty()) else {
            if problems.is_empty() {
                problems.push(SegmentProblem {
                    index: 0,
                    reason: "chunk 0 reported no GIF header".into(),
                });
            }
            return Ok(Err(problems));
        };

        let output = match job.download {
            true => PathBuf::from(&job.output),
            false => tmp.join(format!("output.{}", job.output_ext())),
        };
        let staging = tmp.join("joined.gif");
        let mut out = header;
        let loops = job.spec.output.loop_count;
        if let Some(n) = loops {
            out.extend_from_slice(&gif::loop_extension(n.min(u32::from(u16::MAX)) as u16));
        }
        for (c, seg, _) in &reported {
            // Read once: hashed and joined from the same bytes.
            let bytes = storage.get(&seg.key).await?;
            let sha = hex::encode(Sha256::digest(&bytes));
            if sha != seg.sha256 {
                problems.push(SegmentProblem {
                    index: c.chunk.index as usize,
                    reason: format!(
                        "content hash {sha} does not match the committed {}",
                        seg.sha256
                    ),
                });
                continue;
            }
            out.extend_from_slice(&bytes);
        }
        if !problems.is_empty() {
            return Ok(Err(problems));
        }
        out.push(gif::TRAILER);
        let io = |what: &str, e: std::io::Error| OrchestratorError::Io {
            context: format!("{what} {}", output.display()),
            source: e,
        };
        tokio::fs::write(&staging, &out)
            .await
            .map_err(|e| io("cannot write", e))?;
        crate::failpoint::hit("after-concat");
        storage.put_file(&job.output_key(), &staging).await?;
        crate::failpoint::hit("after-upload");
        if job.download {
            if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(|e| io("cannot create the folder of", e))?;
            }
            if tokio::fs::rename(&staging, &output).await.is_err() {
                tokio::fs::copy(&staging, &output)
                    .await
                    .map_err(|e| io("cannot write", e))?;
            }
        }
        Ok(Ok(PathBuf::from(&job.output)))
    }
}
