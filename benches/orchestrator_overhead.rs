//! Orchestrator overhead per chunk: chunks through the scheduler and the SQLite job store,
//! with the in-process sim adapter (a no-op renderer that still writes a placeholder segment
//! and a report) and in-memory object storage, so what is measured is scheduling, state
//! changes, verification and the commits. Also: raw job-store transactions per second.
//!
//! `cargo bench --bench orchestrator_overhead` prints two Markdown tables. Every case runs in
//! a fresh child process so that its peak RSS is its own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use helios_infra::adapters::sim::SimAdapter;
use helios_infra::orchestrator::{ChunkState, JobStore, Orchestrator, SqliteStore};
use helios_infra::spec::*;
use helios_infra::storage::Storage;

/// The same allocator as the `helios-infra` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CASE_VAR: &str = "HELIOS_BENCH_CASE";
/// Fresh processes per case.
const RUNS: usize = 5;

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

/// Peak resident set of this process, in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

struct Measured {
    wall: Duration,
    transactions: u64,
    changes: u64,
}

async fn scheduling(chunks: u32, concurrency: u32, durable: bool) -> Measured {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<SqliteStore> = Arc::new(if durable {
        SqliteStore::open(&dir.path().join("jobs.db")).unwrap()
    } else {
        SqliteStore::in_memory().unwrap()
    });
    let storage = Storage::open("memory://bench").unwrap();
    let orch = Orchestrator::new(
        store.clone(),
        Arc::new(SimAdapter::new(Duration::ZERO)),
        dir.path(),
    );
    let mut s = spec(chunks);
    s.concurrency = concurrency;
    let job = orch
        .submit(s, &storage, &dir.path().join("out.mp4"))
        .await
        .unwrap();
    let before = store.stats();
    let started = Instant::now();
    let rendered = orch.render_chunks(&job, &storage).await.unwrap();
    let wall = started.elapsed();
    let after = store.stats();
    assert_eq!(rendered, chunks);
    // Zero lost updates: every chunk is done with exactly one attempt, as reread from the
    // database file by a fresh connection.
    drop(orch);
    drop(store);
    if durable {
        let reopened = SqliteStore::open(&dir.path().join("jobs.db")).unwrap();
        let records = reopened.chunks(&job.id).unwrap();
        assert_eq!(records.len(), chunks as usize);
        assert!(records
            .iter()
            .all(|c| c.state == ChunkState::Done && c.attempts == 1 && c.segment.is_some()));
    }
    Measured {
        wall,
        transactions: after.transactions - before.transactions,
        changes: after.changes - before.changes,
    }
}

/// `writers` tasks each commit `per_writer` chunk attempts (begin + commit), awaiting each.
async fn store_throughput(writers: u32, per_writer: u32) -> Measured {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("jobs.db")).unwrap());
    let chunks = writers * per_writer;
    let mut s = spec(chunks);
    s.id = Some("T".into());
    let record = helios_infra::orchestrator::JobRecord {
        id: "T".into(),
        spec: s,
        storage_url: "memory://t".into(),
        output: "/dev/null".into(),
        adapter: "sim".into(),
        adapter_config: "{}".into(),
        download: true,
        state: helios_infra::orchestrator::JobState::Running,
        error: None,
        cancel_requested: false,
        created_ms: 0,
        updated_ms: 0,
        batch: None,
    };
    store.create_job(&record).await.unwrap();
    let before = store.stats();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..writers {
        let store = store.clone();
        tasks.spawn(async move {
            for i in 0..per_writer {
                let idx = w * per_writer + i;
                let attempt = store.begin_attempt("T", idx).await.unwrap();
                let seg = helios_infra::orchestrator::CommittedSegment {
                    attempt,
                    key: format!("k{idx}"),
                    sha256: "0".repeat(64),
                    bytes: 1,
                    frames: 1,
                    worker_ms: 0,
                    media: None,
                };
                assert!(store.commit_chunk("T", idx, &seg).await.unwrap());
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let wall = started.elapsed();
    let after = store.stats();
    Measured {
        wall,
        transactions: after.transactions - before.transactions,
        changes: after.changes - before.changes,
    }
}

fn run_case(case: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let parts: Vec<&str> = case.split(':').collect();
    match parts.as_slice() {
        ["sched", chunks, conc, store] => {
            let (chunks, conc): (u32, u32) = (chunks.parse().unwrap(), conc.parse().unwrap());
            let durable = *store == "file";
            let m = rt.block_on(scheduling(chunks, conc, durable));
            println!(
                "{}\t| {chunks} | {conc} | {} | {:.3} s | {:.1} µs | {} | {:.1} | {:.0} MiB | 0 |",
                m.wall.as_nanos(),
                if durable {
                    "SQLite file (WAL, synchronous=FULL)"
                } else {
                    "SQLite in memory"
                },
                m.wall.as_secs_f64(),
                m.wall.as_secs_f64() * 1e6 / chunks as f64,
                m.transactions,
                m.changes as f64 / m.transactions.max(1) as f64,
                peak_rss_mib(),
            );
        }
        ["store", writers, per] => {
            let (writers, per): (u32, u32) = (writers.parse().unwrap(), per.parse().unwrap());
            let m = rt.block_on(store_throughput(writers, per));
            let secs = m.wall.as_secs_f64();
            println!(
                "{}\t| {writers} | {} | {:.0} | {:.0} | {:.1} |",
                m.wall.as_nanos(),
                m.changes,
                m.transactions as f64 / secs,
                m.changes as f64 / secs,
                m.changes as f64 / m.transactions.max(1) as f64,
            );
        }
        _ => panic!("unknown case {case}"),
    }
}

fn main() {
    if let Ok(case) = std::env::var(CASE_VAR) {
        run_case(&case);
        return;
    }
    let me = std::env::current_exe().unwrap();
    // Each case runs five times, each in a fresh process; the median run's line is shown,
    // with the largest peak RSS of the five.
    let run = |case: &str| {
        let mut runs: Vec<(u128, String, f64)> = (0..RUNS)
            .map(|_| {
                let out = std::process::Command::new(&me)
                    .env(CASE_VAR, case)
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "case {case} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
                let (nanos, line) = text.split_once('\t').expect("case output");
                let rss = line
                    .split('|')
                    .find_map(|c| c.trim().strip_suffix(" MiB"))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0.0);
                (nanos.parse().expect("nanoseconds"), line.to_string(), rss)
            })
            .collect();
        let max_rss = runs.iter().map(|r| r.2).fold(0.0, f64::max);
        runs.sort_by_key(|r| r.0);
        let median = &runs[runs.len() / 2];
        let line = &median.1;
        let line = if line.contains(" MiB") {
            let own = format!("{:.0} MiB", median.2);
            line.replace(&own, &format!("{max_rss:.0} MiB"))
        } else {
            line.clone()
        };
        println!("{line}");
    };
    println!("| chunks | concurrency | job store | wall time | per chunk | transactions | changes per transaction | peak RSS | lost updates |");
    println!("|---:|---:|---|---:|---:|---:|---:|---:|---:|");
    for case in [
        "sched:1000:1:file",
        "sched:1000:16:file",
        "sched:10000:1000:file",
        "sched:10000:1000:memory",
    ] {
        run(case);
    }
    println!();
    println!(
        "| concurrent writers | changes | transactions/s | changes/s | changes per transaction |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for case in ["store:1:2000", "store:16:500", "store:1000:10"] {
        run(case);
    }
}
