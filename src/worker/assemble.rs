//! Assembly tasks: a worker joins a run of small objects — the output's init, segments too
//! small to be parts of a multipart upload on their own (S3 refuses parts under 5 MiB but
//! the last), the audio and index tail — into one part, so that their bytes never pass
//! through the orchestrator. Every segment is checked against its committed report while it
//! is read (size, SHA-256); one that differs fails the task naming its chunk
//! ([`FailureKind::BadSegment`]), and the orchestrator renders that chunk again.

use std::time::Instant;

use md5::Md5;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{storage_failure, ChunkReport, ChunkRequest, FailureKind, Timings, WorkerFailure};
use crate::storage::{keys, Storage, StorageError};

/// What an assembly task joins, in order (`jobs/<id>/assembly/<index>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssemblyTask {
    /// The objects, in output order.
    pub sources: Vec<AssemblySource>,
}

/// One object of an assembly task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssemblySource {
    /// Storage key.
    pub key: String,
    /// Its size.
    pub bytes: u64,
    /// Its hex SHA-256 as committed.
    pub sha256: String,
    /// The chunk whose segment it is, if it is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk: Option<u32>,
}

/// Runs assembly task `req.chunk`: reads the task, joins its sources into
/// `jobs/<id>/assembly/<index>/<attempt>.part` and reports the part like a segment.
pub async fn run_task(req: &ChunkRequest) -> Result<ChunkReport, WorkerFailure> {
    let started = Instant::now();
    let (storage, spec_key) = Storage::open_object_url(&req.job)
        .map_err(|e| WorkerFailure::fatal(FailureKind::InvalidRequest, e.to_string()))?;
    let job = keys::job_of_spec_key(&spec_key)
        .ok_or_else(|| {
            WorkerFailure::fatal(
                FailureKind::InvalidRequest,
                format!("{} is not a job.json URL", req.job),
            )
        })?
        .to_string();
    let task_key = keys::assembly_task(&job, req.chunk);
    let task: AssemblyTask = match storage.get(&task_key).await {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| {
            WorkerFailure::fatal(FailureKind::InvalidRequest, format!("{task_key}: {e}"))
        })?,
        Err(StorageError::NotFound { .. }) => {
            return Err(WorkerFailure::fatal(
                FailureKind::InvalidRequest,
                format!("no assembly task at {}", storage.url_for(&task_key)),
            ))
        }
        Err(e) => return Err(storage_failure(e)),
    };
    let fetch_started = Instant::now();
    let mut part = Vec::with_capacity(task.sources.iter().map(|s| s.bytes as usize).sum());
    for s in &task.sources {
        let bytes = storage.get(&s.key).await.map_err(|e| match (e, s.chunk) {
            (StorageError::NotFound { .. }, Some(c)) => {
                bad_segment(c, format!("{} is missing", s.key))
            }
            (e, _) => storage_failure(e),
        })?;
        let sha = hex::encode(Sha256::digest(&bytes));
        if bytes.len() as u64 != s.bytes || sha != s.sha256 {
            let why = format!(
                "{} holds {} bytes with SHA-256 {sha}, its report says {} bytes, {}",
                s.key,
                bytes.len(),
                s.bytes,
                s.sha256
            );
            return Err(match s.chunk {
                Some(c) => bad_segment(c, why),
                None => WorkerFailure::retryable(FailureKind::Storage, why),
            });
        }
        part.extend_from_slice(&bytes);
    }
    let fetch_ms = fetch_started.elapsed().as_millis() as u64;
    let sha256 = hex::encode(Sha256::digest(&part));
    let md5 = hex::encode(Md5::digest(&part));
    let bytes = part.len() as u64;
    let key = keys::assembly_part(&job, req.chunk, req.attempt);
    let upload_started = Instant::now();
    storage
        .put(&key, part.into())
        .await
        .map_err(storage_failure)?;
    let report = ChunkReport {
        job: job.clone(),
        chunk: req.chunk,
        attempt: req.attempt,
        start: 0,
        end: 0,
        frames: 0,
        segment: key,
        bytes,
        sha256,
        md5: Some(md5),
        timings: Timings {
            fetch_ms,
            upload_ms: upload_started.elapsed().as_millis() as u64,
            total_ms: started.elapsed().as_millis() as u64,
            ..Timings::default()
        },
        stats: [("sources".to_string(), task.sources.len() as u64)].into(),
        stages: None,
        media: None,
        ping: None,
    };
    let json = serde_json::to_vec(&report)
        .map_err(|e| WorkerFailure::retryable(FailureKind::Internal, e.to_string()))?;
    storage
        .put(
            &keys::attempt_report(&job, req.chunk, req.attempt),
            json.into(),
        )
        .await
        .map_err(storage_failure)?;
    Ok(report)
}

fn bad_segment(chunk: u32, why: String) -> WorkerFailure {
    WorkerFailure {
        chunk: Some(chunk),
        ..WorkerFailure::fatal(
            FailureKind::BadSegment,
            format!("the segment of chunk {chunk} is not what its report says: {why}"),
        )
    }
}
