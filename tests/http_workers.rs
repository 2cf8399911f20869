//! Chunks on `worker serve` processes over HTTP (the self-hosted pool and the Cloud Run
//! protocol), with real servers on loopback.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

fn lossless_args<'a>(out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "render",
        "-o",
        out,
        "--frames",
        "0..60",
        "--size",
        "64x64",
        "--chunks",
        "6",
        "--lossless",
    ];
    v.extend_from_slice(extra);
    v
}

#[test]
fn a_pool_of_http_workers_renders_the_same_frames_as_local_workers() {
    let env = Env::new();
    let servers: Vec<_> = (0..3)
        .map(|_| WorkerServer::start(Some("s3cret")))
        .collect();
    let urls = servers
        .iter()
        .map(|s| s.url.clone())
        .collect::<Vec<_>>()
        .join(",");
    let r = ffmpeg_renderer();
    env.ok(&with_renderer(
        &lossless_args(
            "remote.mp4",
            &[
                "--adapter",
                "http",
                "--workers",
                &urls,
                "--worker-token",
                "s3cret",
                "--concurrency",
                "3",
            ],
        ),
        &r,
    ));
    env.ok(&with_renderer(&lossless_args("local.mp4", &[]), &r));
    assert_eq!(
        framemd5(&env.path("remote.mp4")),
        framemd5(&env.path("local.mp4"))
    );
    let st = env.status(&env.status_ids()[0]);
    assert_eq!(st["adapter"], "http");
}

#[test]
fn missing_or_wrong_tokens_and_oversized_bodies_are_refused() {
    let server = WorkerServer::start(Some("right"));
    let body = br#"{"job":"file:///nonexistent/jobs/x/job.json","chunk":0}"#;
    let (status, _) = http(
        &server.addr,
        "POST",
        "/v1/chunks",
        &[("Content-Type", "application/json")],
        body,
    );
    assert_eq!(status, 401, "no token");
    let (status, _) = http(
        &server.addr,
        "POST",
        "/v1/chunks",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", "Bearer wrong"),
        ],
        body,
    );
    assert_eq!(status, 401, "wrong token");
    let (status, answer) = http(
        &server.addr,
        "POST",
        "/v1/chunks",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", "Bearer right"),
        ],
        body,
    );
    assert_eq!(status, 422, "right token reaches the worker: {answer}");
    assert!(answer.contains("no job spec"), "{answer}");
    let big = vec![b'x'; 200 * 1024];
    let (status, _) = http(
        &server.addr,
        "POST",
        "/v1/chunks",
        &[("Authorization", "Bearer right")],
        &big,
    );
    assert_eq!(status, 413, "oversized body");
    let (status, health) = http(&server.addr, "GET", "/healthz", &[], b"");
    assert_eq!(status, 200);
    assert!(health.contains("\"ok\""));

    // Through the CLI, a wrong token fails the job at once (fatal), naming the cause.
    let env = Env::new();
    let r = ffmpeg_renderer();
    let out = env.run(&with_renderer(
        &lossless_args(
            "o.mp4",
            &[
                "--adapter",
                "http",
                "--workers",
                &server.url,
                "--worker-token",
                "nope",
            ],
        ),
        &r,
    ));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused the credentials"));
}

#[test]
fn serve_refuses_to_start_without_a_token_or_no_auth() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_helios-infra"))
        .args(["worker", "serve", "--listen", "127.0.0.1:0"])
        .env_remove("HELIOS_WORKER_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-auth"));
}

#[test]
fn a_worker_killed_mid_chunk_is_replaced_and_the_job_succeeds() {
    let env = Env::new();
    let a = WorkerServer::start(Some("t"));
    let b = WorkerServer::start(Some("t"));
    let urls = format!("{},{}", a.url, b.url);
    let r = env.renderer("slow:1.5");
    let job = env
        .cmd(&with_renderer(
            &lossless_args(
                "out.mp4",
                &[
                    "--adapter",
                    "http",
                    "--workers",
                    &urls,
                    "--worker-token",
                    "t",
                    "--concurrency",
                    "2",
                    "--retries",
                    "3",
                ],
            ),
            &r,
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until worker a is busy with a chunk, then kill it.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, health) = http(&a.addr, "GET", "/healthz", &[], b"");
        if health.contains("\"busy\":true") {
            break;
        }
        assert!(Instant::now() < deadline, "worker a never got a chunk");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut a = a;
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let out = job.wait_with_output().unwrap();
    assert_ok(&out);
    assert_eq!(probe_stream(&env.path("out.mp4")).0, 60);
    let st = env.status(&env.status_ids()[0]);
    let retried = st["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["attempts"].as_u64().unwrap() > 1)
        .count();
    assert!(retried >= 1, "the killed worker's chunk was retried: {st}");
    drop(b);
}

#[test]
fn a_busy_worker_answers_429_and_the_job_backs_off_until_it_succeeds() {
    let env = Env::new();
    let only = WorkerServer::start(None);
    let r = env.renderer("slow:0.3");
    // Two chunks at once against one worker: every other request is refused with 429.
    let out = env.run(&with_renderer(
        &lossless_args(
            "out.mp4",
            &[
                "-v",
                "--adapter",
                "http",
                "--workers",
                &only.url,
                "--concurrency",
                "2",
            ],
        ),
        &r,
    ));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("throttled; backing off") && log.contains("backoff_ms"),
        "backoff not in the logs:\n{log}"
    );
    assert_eq!(probe_stream(&env.path("out.mp4")).0, 60);
}

/// A "worker" that reads each request and hangs up without answering; counts requests.
fn hang_up_worker() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { break };
            if read_request(&mut conn).is_some() {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            drop(conn);
        }
    });
    (url, count)
}

#[test]
fn a_worker_that_keeps_losing_chunks_is_blocklisted_and_the_job_succeeds() {
    let env = Env::new();
    let good = WorkerServer::start(Some("t"));
    let (bad, requests) = hang_up_worker();
    let r = ffmpeg_renderer();
    let workers = format!("{bad},{}", good.url);
    let out = env.run(&with_renderer(
        &lossless_args(
            "b.mp4",
            &[
                "--adapter",
                "http",
                "--workers",
                &workers,
                "--worker-token",
                "t",
                "--concurrency",
                "1",
                "--retries",
                "4",
                "--max-worker-failures",
                "2",
                "--worker-rest",
                "0",
            ],
        ),
        &r,
    ));
    assert_ok(&out);
    assert_eq!(
        requests.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "blocklisted after 2 lost chunks"
    );
    assert_eq!(probe_stream(&env.path("b.mp4")).0, 60);
}

#[test]
fn the_job_fails_when_no_healthy_worker_is_left() {
    let env = Env::new();
    let (a, _) = hang_up_worker();
    let (b, _) = hang_up_worker();
    let r = ffmpeg_renderer();
    let workers = format!("{a},{b}");
    let out = env.run(&with_renderer(
        &lossless_args(
            "x.mp4",
            &[
                "--adapter",
                "http",
                "--workers",
                &workers,
                "--retries",
                "10",
                "--max-worker-failures",
                "2",
                "--worker-rest",
                "0",
            ],
        ),
        &r,
    ));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no healthy http worker left"), "{err}");
}
