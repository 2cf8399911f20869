//! Orchestrator overhead per chunk: 1,000 chunks through the scheduler and the durable
//! SQLite job store, with the in-process sim adapter (a no-op renderer) and in-memory
//! object storage, so what is measured is scheduling, state changes and verification.
//!
//! `cargo bench --bench orchestrator_overhead` prints a Markdown table.

use std::sync::Arc;
use std::time::{Duration, Instant};

use helios_infra::adapters::sim::SimAdapter;
use helios_infra::orchestrator::{JobStore, Orchestrator, SqliteStore};
use helios_infra::spec::*;
use helios_infra::stitch::ConcatStitcher;
use helios_infra::storage::Storage;
use tokio_util::sync::CancellationToken;

fn spec(chunks: u32) -> JobSpec {
    let frames = FrameRange::new(0, chunks as u64);
    JobSpec::command(
        &["noop", "{output}"],
        64,
        64,
        Fps::new(30, 1),
        frames,
        ChunkPlan::Count(chunks),
    )
}

async fn measure(chunks: u32, concurrency: u32, durable: bool) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<SqliteStore> = Arc::new(if durable {
        SqliteStore::open(&dir.path().join("jobs.db")).unwrap()
    } else {
        SqliteStore::in_memory().unwrap()
    });
    let storage =
        Storage::open(&format!("memory://bench-{chunks}-{concurrency}-{durable}")).unwrap();
    let orch = Orchestrator {
        store: store.clone(),
        adapter: Arc::new(SimAdapter::new(Duration::ZERO)),
        adapter_config: "{}".into(),
        stitcher: Arc::new(ConcatStitcher),
        state_dir: dir.path().to_path_buf(),
        events: None,
        cancel: CancellationToken::new(),
        webhook_secret: None,
        speculation: None,
    };
    let mut s = spec(chunks);
    s.concurrency = concurrency;
    let job = orch
        .submit(s, &storage, &dir.path().join("out.mp4"))
        .await
        .unwrap();
    let started = Instant::now();
    let rendered = orch.render_chunks(&job, &storage).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(rendered, chunks);
    assert!(store
        .chunks(&job.id)
        .unwrap()
        .iter()
        .all(|c| c.segment.is_some()));
    elapsed
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    println!("| chunks | concurrency | job store | wall time | per chunk |");
    println!("|---:|---:|---|---:|---:|");
    for (chunks, conc, durable) in [(1000, 1, true), (1000, 16, true), (1000, 16, false)] {
        let best = (0..3)
            .map(|_| rt.block_on(measure(chunks, conc, durable)))
            .min()
            .unwrap();
        println!(
            "| {chunks} | {conc} | {} | {:.3} s | {:.0} µs |",
            if durable {
                "SQLite file (WAL, synchronous=FULL)"
            } else {
                "SQLite in memory"
            },
            best.as_secs_f64(),
            best.as_secs_f64() * 1e6 / chunks as f64
        );
    }
}
