//! Chaos: a 1,000-chunk job on the sim adapter, with the durable SQLite store, where 20% of
//! attempts fail, 2% hang and 2% return corrupt output, still commits every chunk exactly
//! once, each from an attempt that really succeeded.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use helios_infra::adapters::sim::{SimAdapter, SimConfig, SimOutcome};
use helios_infra::orchestrator::{
    AttemptOutcome, ChunkState, Event, JobStore, Orchestrator, Speculation, SqliteStore,
};
use helios_infra::spec::*;
use helios_infra::storage::Storage;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_chunks_survive_failures_hangs_and_corrupt_output() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("jobs.db")).unwrap());
    let storage = Storage::open(dir.path().join("storage").to_str().unwrap()).unwrap();
    let config = SimConfig {
        seed: 20261124,
        latency: (Duration::from_millis(1), Duration::from_millis(5)),
        fail_rate: 0.20,
        hang_rate: 0.02,
        corrupt_rate: 0.02,
        ..SimConfig::default()
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let orch = Orchestrator {
        events: Some(tx),
        ..Orchestrator::new(
            store.clone(),
            Arc::new(SimAdapter::with_config(config.clone())),
            dir.path(),
        )
    };
    let frames = FrameRange::new(0, 1000);
    let spec = JobSpec {
        retry: RetryPolicy {
            max_attempts: 12,
            base_backoff_ms: 1,
            max_backoff_ms: 20,
            timeout_s: 0.25,
        },
        concurrency: 64,
        ..JobSpec::command(
            &["sim", "{output}"],
            64,
            64,
            Fps::new(30, 1),
            frames,
            ChunkPlan::Count(1000),
        )
    };
    let job = orch
        .submit(spec, &storage, &dir.path().join("out.mp4"))
        .await
        .unwrap();
    let rendered = orch.render_chunks(&job, &storage).await.unwrap();
    assert_eq!(rendered, 1000);
    drop(orch);

    let mut commits: HashMap<u32, u32> = HashMap::new();
    let (mut retries, mut timeouts, mut corrupt) = (0, 0, 0);
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::ChunkDone { chunk, .. } => *commits.entry(chunk).or_default() += 1,
            Event::ChunkRetry { error, .. } => {
                retries += 1;
                timeouts += error.contains("timed out") as u32;
                corrupt += error.contains("bytes, report says") as u32;
            }
            _ => {}
        }
    }
    assert_eq!(commits.len(), 1000);
    assert!(
        commits.values().all(|n| *n == 1),
        "a chunk was committed twice"
    );
    assert!(
        retries > 200 && timeouts > 5 && corrupt > 5,
        "chaos was real: {retries} retries, {timeouts} timeouts, {corrupt} corrupt"
    );

    for c in store.chunks(&job.id).unwrap() {
        assert_eq!(c.state, ChunkState::Done);
        let seg = c.segment.expect("committed segment");
        // The committed attempt is one whose draw succeeded, and its bytes are intact.
        assert_eq!(
            config.draw(c.chunk.index, seg.attempt).0,
            SimOutcome::Ok,
            "chunk {}",
            c.chunk.index
        );
        let bytes = storage.get(&seg.key).await.unwrap();
        assert_eq!(bytes.len() as u64, seg.bytes);
        assert_eq!(
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)),
            seg.sha256
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_straggler_gets_a_duplicate_and_the_first_result_wins() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("jobs.db")).unwrap());
    let storage = Storage::open(dir.path().join("storage").to_str().unwrap()).unwrap();
    // Chunk 17's first attempt would take a minute; everything else 20 ms.
    let config = SimConfig {
        latency: (Duration::from_millis(20), Duration::from_millis(20)),
        slow: vec![(17, 1, Duration::from_secs(60))],
        ..SimConfig::default()
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let orch = Orchestrator {
        events: Some(tx),
        speculation: Some(Speculation {
            factor: 3.0,
            min_elapsed: Duration::from_millis(200),
            min_done: 0.75,
        }),
        ..Orchestrator::new(
            store.clone(),
            Arc::new(SimAdapter::with_config(config)),
            dir.path(),
        )
    };
    let frames = FrameRange::new(0, 20);
    let spec = JobSpec {
        retry: RetryPolicy {
            timeout_s: 120.0,
            ..RetryPolicy::default()
        },
        concurrency: 4,
        ..JobSpec::command(
            &["sim", "{output}"],
            64,
            64,
            Fps::new(30, 1),
            frames,
            ChunkPlan::Count(20),
        )
    };
    let job = orch
        .submit(spec, &storage, &dir.path().join("out.mp4"))
        .await
        .unwrap();
    assert_eq!(orch.render_chunks(&job, &storage).await.unwrap(), 20);
    drop(orch);
    let mut speculated = Vec::new();
    let mut done: HashMap<u32, u32> = HashMap::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::ChunkSpeculated { chunk, attempt } => speculated.push((chunk, attempt)),
            Event::ChunkDone { chunk, .. } => *done.entry(chunk).or_default() += 1,
            _ => {}
        }
    }
    assert_eq!(speculated, vec![(17, 2)]);
    assert!(done.values().all(|n| *n == 1) && done.len() == 20);
    let c17 = store
        .chunks(&job.id)
        .unwrap()
        .into_iter()
        .find(|c| c.chunk.index == 17)
        .unwrap();
    assert_eq!(c17.segment.unwrap().attempt, 2, "the duplicate won");
    // The store shows both attempts of chunk 17: the straggler superseded, the duplicate
    // the winner.
    let a17: Vec<_> = store
        .attempts(&job.id)
        .unwrap()
        .into_iter()
        .filter(|a| a.index == 17)
        .map(|a| (a.attempt, a.outcome))
        .collect();
    assert_eq!(
        a17,
        [
            (1, AttemptOutcome::Superseded),
            (2, AttemptOutcome::Succeeded)
        ]
    );
}
