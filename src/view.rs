//! A job as people and the API see it — the view `status` prints and the dashboard serves:
//! state, progress, playable prefix, spend, cost, how it is stitched, its chunks and attempts,
//! all read from the job store (and the reports in storage).

use std::path::Path;

use serde_json::json;

use crate::adapters::config::{AdapterConfig, AdapterKind};
use crate::orchestrator::{AttemptRecord, ChunkRecord, ChunkState, JobLock, JobRecord, JobState};

use crate::orchestrator::spend::scope_of;
use crate::orchestrator::JobStore;

/// Compute used by a job's committed attempts on a priced engine, and what it costs at
/// its price (`--worker-hour-usd` for local and HTTP workers). Worker time is known for
/// committed attempts; failed attempts count as requests only. The spend ledger
/// ([`spend_json`]) counts every attempt.
pub fn cost(job: &JobRecord, chunks: &[ChunkRecord]) -> Option<serde_json::Value> {
    let config: AdapterConfig = serde_json::from_str(&job.adapter_config).ok()?;
    let price = config.price();
    if price.is_free() {
        return None;
    }
    let seconds: f64 = chunks
        .iter()
        .filter_map(|c| c.segment.as_ref())
        .map(|s| s.worker_ms as f64 / 1000.0)
        .sum();
    let requests: u64 = chunks.iter().map(|c| c.attempts as u64).sum();
    let memory_mb = config.memory_mb.unwrap_or(4096);
    let gb_seconds = seconds * memory_mb as f64 / 1024.0;
    let usd = price.of(seconds, requests as f64);
    let mut v = json!({
        "worker_seconds": (seconds * 1000.0).round() / 1000.0,
        "gb_seconds": (gb_seconds * 1000.0).round() / 1000.0,
        "requests": requests,
        "estimated_usd": (usd * 1e6).round() / 1e6,
        "basis": price.basis,
    });
    if config.kind == AdapterKind::Kubernetes {
        v["pod_seconds"] = v["worker_seconds"].clone();
    }
    Some(v)
}

/// What a job has spent (its ledger: every billed task, failed and superseded ones
/// included), its cap (its own, or its batch's) and the estimate made before it ran.
pub fn spend_json(store: &dyn JobStore, job: &JobRecord) -> serde_json::Value {
    let scope = scope_of(job);
    let spent = store.spent(&job.id).unwrap_or_default();
    let own = store.cost_plan(&job.id).unwrap_or_default();
    // A row of a batch has the batch's cap; a job alone, its own (one lookup).
    let plan = if scope == job.id {
        own.clone()
    } else {
        store.cost_plan(scope).unwrap_or_default()
    };
    let estimate = own
        .estimate
        .or(plan.estimate)
        .and_then(|e| serde_json::from_str::<serde_json::Value>(&e).ok());
    let mut v = json!({
        "spent_usd": (spent.usd * 1e9).round() / 1e9,
        "tasks": spent.tasks,
        "worker_seconds": spent.billed_ms as f64 / 1000.0,
        "cap_usd": plan.cap_usd,
        "scope": scope,
        "estimate": estimate,
    });
    if scope != job.id {
        let all = store.spent(scope).unwrap_or_default();
        v["scope_spent_usd"] = json!((all.usd * 1e9).round() / 1e9);
    }
    v
}

/// Adds `spend` (see [`spend_json`]) and, for a job stopped by its cap, `stop_reason`.
pub fn add_spend(v: &mut serde_json::Value, store: &dyn JobStore, job: &JobRecord) {
    v["spend"] = spend_json(store, job);
    if job.state == JobState::Stopped {
        v["stop_reason"] = json!("budget");
    }
}

/// The spend of a job in one line for people.
pub fn spend_line(store: &dyn JobStore, job: &JobRecord) -> Option<String> {
    let s = spend_json(store, job);
    let spent = s["spent_usd"].as_f64().unwrap_or(0.0);
    let cap = s["cap_usd"].as_f64();
    let est = s["estimate"]["usd"].as_f64();
    if spent == 0.0 && cap.is_none() && est.is_none_or(|e| e == 0.0) {
        return None;
    }
    let mut line = format!("spend: {} spent", crate::cost::format_usd(spent));
    if let Some(all) = s["scope_spent_usd"].as_f64() {
        line.push_str(&format!(
            " ({} by batch {})",
            crate::cost::format_usd(all),
            s["scope"].as_str().unwrap_or_default()
        ));
    }
    if let Some(c) = cap {
        line.push_str(&format!(", cap {}", crate::cost::format_usd(c)));
    }
    if let (Some(e), Some(w)) = (est, s["estimate"]["wall_s"].as_f64()) {
        line.push_str(&format!(
            ", estimate {} and {w:.1} s",
            crate::cost::format_usd(e)
        ));
    }
    Some(line)
}

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

/// The chunks and frames that play now: the committed prefix from the first frame.
fn playable(chunks: &[ChunkRecord]) -> (usize, u64) {
    let prefix = crate::orchestrator::playable_prefix(chunks);
    (prefix.len(), prefix.iter().map(|c| c.chunk.len()).sum())
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
    let composition = job
        .spec
        .source
        .clone()
        .unwrap_or_else(|| match &job.spec.composition {
            crate::spec::Composition::Browser(b) => b.entry.clone(),
            crate::spec::Composition::Command(c) => c.argv.join(" "),
        });
    let playable = playable(chunks);
    let mut v = json!({
        "id": job.id,
        "composition": composition,
        "state": shown_state(job, locks),
        "stored_state": job.state.as_str(),
        "adapter": job.adapter,
        "output": job.output,
        "downloaded": job.download,
        "storage": job.storage_url,
        "frames": job.spec.frame_count(),
        "frames_done": frames_done(chunks),
        // The contiguous prefix of committed chunks from the first frame: what plays now.
        "playable_chunks": playable.0,
        "playable_frames": playable.1,
        "chunk_count": chunks.len(),
        // The plan: workers at once and, for a page, browsers per worker (null: the
        // worker chooses from its own cores).
        "concurrency": job.spec.concurrency,
        "browsers": match &job.spec.composition {
            crate::spec::Composition::Browser(b) => json!(b.browsers),
            crate::spec::Composition::Command(_) => serde_json::Value::Null,
        },
        "chunks_done": chunks.iter().filter(|c| c.state == ChunkState::Done).count(),
        "error": job.error,
        "created_ms": job.created_ms,
        "updated_ms": job.updated_ms,
    });
    if let Some(c) = cost(job, chunks) {
        v["cost"] = c;
    }
    let (stitch, how) = stitch_method(job);
    v["stitch"] = json!(stitch);
    v["stitch_method"] = json!(how);
    v["assembly"] = json!(assembly(job).0);
    v["output_url"] = json!(output_url(job));
    v["output_kind"] = json!(job.spec.output.kind);
    if job.spec.output.hls {
        // The rendition's playlist, beside the MP4 it addresses.
        v["hls_playlist"] = json!(if job.download {
            std::path::Path::new(&job.output)
                .with_extension("m3u8")
                .display()
                .to_string()
        } else {
            output_url(job)
                .rsplit_once('.')
                .map(|(stem, _)| format!("{stem}.m3u8"))
                .unwrap_or_default()
        });
    }
    if with_chunks {
        v["chunks"] = chunks
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

/// Adds every attempt of each chunk (start, end, outcome, failure) to the chunks of
/// `job_json`'s output, as `attempt_list`.
pub fn add_attempts(v: &mut serde_json::Value, attempts: &[AttemptRecord]) {
    let Some(list) = v["chunks"].as_array_mut() else {
        return;
    };
    // Grouped once by chunk: a live dashboard calls this every poll, for thousands of chunks.
    let mut by_chunk: std::collections::HashMap<u64, Vec<serde_json::Value>> =
        std::collections::HashMap::new();
    for a in attempts {
        by_chunk.entry(u64::from(a.index)).or_default().push(json!({
            "attempt": a.attempt,
            "started_ms": a.started_ms,
            "ended_ms": a.ended_ms,
            "outcome": a.outcome.as_str(),
            "kind": a.kind,
            "error": a.error,
        }));
    }
    for entry in list.iter_mut() {
        let mine = entry["index"]
            .as_u64()
            .and_then(|i| by_chunk.remove(&i))
            .unwrap_or_default();
        entry["attempt_list"] = serde_json::Value::Array(mine);
    }
}

/// Adds each committed attempt's timings and per-stage breakdown (from its report in
/// storage) to the chunks of `job_json`'s output. Reports that cannot be read are skipped:
/// status never fails because storage is slow or gone.
pub async fn add_reports(v: &mut serde_json::Value, job: &JobRecord, chunks: &[ChunkRecord]) {
    use futures::StreamExt as _;
    let Ok(storage) = crate::storage::Storage::open(&job.storage_url) else {
        return;
    };
    let storage = &storage;
    // Owned keys: a future borrowing each chunk record is not `Send` for every lifetime,
    // which a server's handler needs.
    let keys: Vec<Option<String>> = chunks
        .iter()
        .map(|c| {
            let seg = c.segment.as_ref()?;
            Some(crate::storage::keys::attempt_report(
                &job.id,
                c.chunk.index,
                seg.attempt,
            ))
        })
        .collect();
    let reports: Vec<Option<crate::worker::protocol::ChunkReport>> =
        futures::stream::iter(keys.into_iter().map(|key| async move {
            let bytes = storage.get(&key?).await.ok()?;
            serde_json::from_slice(&bytes).ok()
        }))
        .buffered(16)
        .collect()
        .await;
    let Some(list) = v["chunks"].as_array_mut() else {
        return;
    };
    for (entry, report) in list.iter_mut().zip(reports) {
        if let Some(r) = report {
            entry["timings"] = json!(r.timings);
            if let Some(st) = r.stages {
                entry["stages"] = json!(st);
            }
        }
    }
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
/// How a job's segments are joined: a short name and a description.
pub fn stitch_method(job: &JobRecord) -> (&'static str, &'static str) {
    use crate::spec::OutputKind;
    match job.spec.output.kind {
        OutputKind::Gif => return ("gif", "byte join of GIF parts under one header and palette"),
        OutputKind::Images | OutputKind::Still => {
            return (
                "place",
                "each image checked against its report and placed (nothing joined)",
            )
        }
        OutputKind::Video => {}
    }
    let f = job.spec.video.segments;
    let name = match f {
        crate::spec::SegmentFormat::File => "concat",
        crate::spec::SegmentFormat::Fragmented => "bytes",
    };
    (name, f.describe())
}

/// Where a job's output is put together: `bucket` (S3 parts copied server-side, or Cloud
/// Storage composition; no segment passes through the orchestrator) or `orchestrator`.
pub fn assembly(job: &JobRecord) -> (&'static str, &'static str) {
    let fragmented = job.spec.video.segments == crate::spec::SegmentFormat::Fragmented;
    let url = job.storage_url.as_str();
    let cloud = url.starts_with("s3://") || url.starts_with("gs://");
    if job.spec.output.kind.is_image() && cloud && !job.download {
        return (
            "bucket",
            "inside the bucket (each image copied server-side, checked by its MD5)",
        );
    }
    match (fragmented, url) {
        (true, u) if u.starts_with("s3://") => (
            "bucket",
            "inside the bucket (an S3 multipart upload whose parts are copied from the segments)",
        ),
        (true, u) if u.starts_with("gs://") => (
            "bucket",
            "inside the bucket (Cloud Storage composes the segments)",
        ),
        _ => ("orchestrator", "on the orchestrator's machine"),
    }
}

/// Where the stitched output is kept in the job's storage.
pub fn output_url(job: &JobRecord) -> String {
    let key = match job.spec.output.kind {
        crate::spec::OutputKind::Images => crate::storage::keys::frames(&job.id) + "/",
        _ => job.output_key(),
    };
    format!("{}/{}", job.storage_url.trim_end_matches('/'), key)
}

pub fn job_detail(job: &JobRecord, chunks: &[ChunkRecord], locks: &Path) -> String {
    let mut s = job_line(job, chunks, locks);
    s.push('\n');
    if let Some(e) = &job.error {
        s.push_str(&format!("error: {e}\n"));
    }
    if job.download {
        s.push_str(&format!(
            "output: {} (kept in storage at {})\n",
            job.output,
            output_url(job)
        ));
    } else {
        s.push_str(&format!(
            "output: in storage only, at {}\n",
            output_url(job)
        ));
    }
    s.push_str(&format!(
        "stitch: {}, assembled {}\n",
        stitch_method(job).1,
        assembly(job).1
    ));
    let (_, playable) = playable(chunks);
    if live_unavailable(job).is_none() {
        s.push_str(&format!(
            "playable: {playable} of {} frames (from the first; watch at /jobs/{}/live.m3u8 in `helios-infra ui`)\n",
            job.spec.frame_count(),
            job.id
        ));
    } else {
        s.push_str(&format!(
            "playable: {playable} of {} frames (from the first)\n",
            job.spec.frame_count()
        ));
    }
    if let Some(c) = cost(job, chunks) {
        s.push_str(&format!(
            "compute: {} worker-seconds, {} GB-seconds, {} requests, about ${:.4} ({})\n",
            c["worker_seconds"],
            c["gb_seconds"],
            c["requests"],
            c["estimated_usd"].as_f64().unwrap_or(0.0),
            c["basis"].as_str().unwrap_or("")
        ));
    }
    if job.state == JobState::Stopped {
        s.push_str(&format!(
            "stopped by its cost cap: resume with a higher one: helios-infra resume {} --max-cost USD\n",
            scope_of(job)
        ));
    } else if shown_state(job, locks) == "interrupted"
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

/// Why a job has no live video, if it has none.
pub fn live_unavailable(job: &JobRecord) -> Option<String> {
    if job.spec.output.kind != crate::spec::OutputKind::Video {
        return Some(format!(
            "job {} renders {:?} output, not a video: there is nothing to play live",
            job.id, job.spec.output.kind
        ));
    }
    if job.spec.video.segments != crate::spec::SegmentFormat::Fragmented {
        return Some(format!(
            "job {}'s segments are whole files joined by FFmpeg's concat demuxer; live playback needs byte-joinable segments (fragmented MP4: an .mp4, .m4v or .m3u8 output of H.264, H.265, VP9 or AV1, not --lossless)",
            job.id
        ));
    }
    None
}
