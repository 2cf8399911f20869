//! `status`: jobs and chunks from the job store.

use std::path::Path;

use serde_json::json;

use crate::orchestrator::{ChunkRecord, ChunkState, JobLock, JobRecord, JobState};

/// The state to show: a `running` job whose orchestrator is gone is `interrupted`.
pub fn shown_state(job: &JobRecord, locks: &Path) -> &'static str {
    match job.state {
        JobState::Running | JobState::Stitching | JobState::Queued
            if !JobLock::is_held(locks, &job.id) =>
        {
            "interrupted"
        }
        s => s.as_str(),
    }
}

fn frames_done(chunks: &[ChunkRecord]) -> u64 {
    chunks
        .iter()
        .filter(|c| c.state == ChunkState::Done)
        .map(|c| c.chunk.len())
        .sum()
}

/// A job as JSON.
pub fn job_json(
    job: &JobRecord,
    chunks: &[ChunkRecord],
    locks: &Path,
    with_chunks: bool,
) -> serde_json::Value {
    let mut v = json!({
        "id": job.id,
        "state": shown_state(job, locks),
        "stored_state": job.state.as_str(),
        "adapter": job.adapter,
        "output": job.output,
        "storage": job.storage_url,
        "frames": job.spec.frame_count(),
        "frames_done": frames_done(chunks),
        "chunks": chunks.len(),
        "chunks_done": chunks.iter().filter(|c| c.state == ChunkState::Done).count(),
        "error": job.error,
        "created_ms": job.created_ms,
        "updated_ms": job.updated_ms,
    });
    if with_chunks {
        v["chunk_list"] = chunks
            .iter()
            .map(|c| {
                json!({
                    "index": c.chunk.index,
                    "start": c.chunk.start,
                    "end": c.chunk.end,
                    "state": c.state.as_str(),
                    "attempts": c.attempts,
                    "committed_attempt": c.segment.as_ref().map(|s| s.attempt),
                    "segment": c.segment.as_ref().map(|s| &s.key),
                    "sha256": c.segment.as_ref().map(|s| &s.sha256),
                    "bytes": c.segment.as_ref().map(|s| s.bytes),
                    "worker_ms": c.segment.as_ref().map(|s| s.worker_ms),
                    "error": c.error,
                })
            })
            .collect();
    }
    v
}

/// One line per job.
pub fn job_line(job: &JobRecord, chunks: &[ChunkRecord], locks: &Path) -> String {
    let total = job.spec.frame_count();
    let done = frames_done(chunks);
    format!(
        "{}  {:<11}  {:>5.1}%  {}/{} frames  {}/{} chunks  {}",
        job.id,
        shown_state(job, locks),
        if total == 0 {
            0.0
        } else {
            done as f64 * 100.0 / total as f64
        },
        done,
        total,
        chunks
            .iter()
            .filter(|c| c.state == ChunkState::Done)
            .count(),
        chunks.len(),
        job.output
    )
}

/// A job in detail.
pub fn job_detail(job: &JobRecord, chunks: &[ChunkRecord], locks: &Path) -> String {
    let mut s = job_line(job, chunks, locks);
    s.push('\n');
    if let Some(e) = &job.error {
        s.push_str(&format!("error: {e}\n"));
    }
    if shown_state(job, locks) == "interrupted"
        || matches!(job.state, JobState::Failed | JobState::Cancelled)
    {
        s.push_str(&format!("resume with: helios-infra resume {}\n", job.id));
    }
    s.push_str("chunk  frames            state    attempts  detail\n");
    for c in chunks {
        let detail = match (&c.segment, &c.error) {
            (Some(seg), _) => format!(
                "attempt {} · {} bytes · {} ms",
                seg.attempt, seg.bytes, seg.worker_ms
            ),
            (None, Some(e)) => e.lines().next().unwrap_or_default().to_string(),
            _ => String::new(),
        };
        s.push_str(&format!(
            "{:>5}  {:>7}..{:<7}  {:<7}  {:>8}  {}\n",
            c.chunk.index,
            c.chunk.start,
            c.chunk.end,
            c.state.as_str(),
            c.attempts,
            detail
        ));
    }
    s
}
