//! Failures, retries, timeouts, crashes and cancellation — through the real binary.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn flaky_renderer_succeeds_through_retries() {
    let env = Env::new();
    // Chunks start at 0, 10, 20…: the ones at 10 and 40 fail their first attempt.
    let r = env.renderer("fail-once:10,40");
    env.ok(&with_renderer(&small_render_args("out.mp4", &[]), &r));
    assert_eq!(probe_stream(&env.path("out.mp4")).0, 60);
    assert_eq!(env.invocations(10), 2);
    assert_eq!(env.invocations(40), 2);
    assert_eq!(env.invocations(20), 1);
    let st = env.status(&env.only_job());
    let chunks = st["chunks"].as_array().unwrap();
    assert_eq!(chunks[1]["attempts"], 2);
    assert_eq!(chunks[1]["committed_attempt"], 2);
    assert_eq!(chunks[2]["attempts"], 1);
    // Every attempt is on record, with its outcome, failure and times.
    assert_eq!(outcomes(&chunks[1]), ["failed", "succeeded"]);
    assert_eq!(outcomes(&chunks[2]), ["succeeded"]);
    let first = &chunks[1]["attempt_list"][0];
    assert_eq!(first["kind"], "renderer_failed", "{first}");
    assert!(first["error"].as_str().unwrap().contains("exit"), "{first}");
    for a in chunks
        .iter()
        .flat_map(|c| c["attempt_list"].as_array().unwrap())
    {
        let (start, end) = (
            a["started_ms"].as_i64().unwrap(),
            a["ended_ms"].as_i64().unwrap(),
        );
        assert!(start > 0 && end >= start, "{a}");
    }
}

/// The outcomes of a chunk's attempts (from `status ID --json`), in order.
fn outcomes(chunk: &serde_json::Value) -> Vec<String> {
    chunk["attempt_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn always_failing_chunk_fails_job_with_chunk_attempts_and_stderr_and_keeps_finished_work() {
    let env = Env::new();
    let r = env.renderer("fail-always:30");
    let out = env.run(&with_renderer(
        &small_render_args("out.mp4", &["--retries", "2", "--concurrency", "2"]),
        &r,
    ));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("chunk 3 (frames 30..40)"), "{err}");
    assert!(err.contains("after 3 attempt(s)"), "{err}");
    assert!(
        err.contains("out of unicorns"),
        "stderr tail missing: {err}"
    );
    assert!(err.contains("resume"), "{err}");
    assert!(!env.path("out.mp4").exists(), "no partial output");
    assert_eq!(env.invocations(30), 3);

    let id = env.only_job();
    let st = env.status(&id);
    assert_eq!(st["state"], "failed");
    let chunks = st["chunks"].as_array().unwrap();
    assert_eq!(chunks[3]["state"], "failed");
    assert_eq!(outcomes(&chunks[3]), ["failed", "failed", "failed"]);
    // Every chunk that finished is kept, with its segment in storage.
    let done: Vec<_> = chunks.iter().filter(|c| c["state"] == "done").collect();
    assert!(!done.is_empty());
    for c in &done {
        assert!(env
            .home()
            .join("storage")
            .join(c["segment"].as_str().unwrap())
            .exists());
    }
}

#[test]
fn hung_renderer_is_killed_at_the_timeout_and_retried() {
    let env = Env::new();
    let r = env.renderer("hang-once:20");
    env.ok(&with_renderer(
        &small_render_args("out.mp4", &["--timeout", "3"]),
        &r,
    ));
    assert_eq!(probe_stream(&env.path("out.mp4")).0, 60);
    assert_eq!(env.invocations(20), 2);
    // The hung process was killed, not left behind.
    let pid: i32 = std::fs::read_to_string(env.path("hung.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!is_running(pid), "hung renderer {pid} still alive");
    let st = env.status(&env.only_job());
    assert_eq!(st["chunks"][2]["attempts"], 2);
    assert_eq!(outcomes(&st["chunks"][2]), ["timed_out", "succeeded"]);
}

/// Whether a process is alive (a zombie waiting for its reaper is not).
fn is_running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => !matches!(
            stat.rsplit(')')
                .next()
                .map(|s| s.trim_start().chars().next()),
            Some(Some('Z' | 'X'))
        ),
        Err(_) => false,
    }
}

/// Polls `status --json` until `pred` holds.
fn wait_for(env: &Env, what: &str, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = env.run(&["status", "--json"]);
        if out.status.success() {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) {
                if let Some(job) = v.as_array().and_then(|a| a.first()) {
                    if pred(job) {
                        return job.clone();
                    }
                }
            }
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sigkill_then_resume_rerenders_only_missing_chunks() {
    let env = Env::new();
    let r = env.renderer("slow:0.5");
    let mut child = env
        .cmd(&with_renderer(
            &small_render_args("out.mp4", &["--concurrency", "1"]),
            &r,
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let job = wait_for(&env, "two finished chunks", |j| {
        j["chunks_done"].as_u64().unwrap_or(0) >= 2
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let id = job["id"].as_str().unwrap().to_string();

    let before = env.status(&id);
    assert_eq!(before["state"], "interrupted");
    let done_before: Vec<(u64, u64)> = before["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["state"] == "done")
        .map(|c| {
            (
                c["start"].as_u64().unwrap(),
                c["committed_attempt"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(done_before.len() >= 2 && done_before.len() < 6, "{before}");

    env.ok(&["resume", &id]);
    assert_eq!(framemd5(&env.path("out.mp4")).len(), 60);
    let after = env.status(&id);
    assert_eq!(after["state"], "succeeded");
    // The attempt in flight at the kill is on record as interrupted, and nothing is left
    // running.
    let all: Vec<String> = after["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(outcomes)
        .collect();
    assert!(all.iter().any(|o| o == "interrupted"), "{all:?}");
    assert!(
        all.iter().all(|o| o == "succeeded" || o == "interrupted"),
        "{all:?}"
    );
    for (start, attempt) in done_before {
        assert_eq!(
            env.invocations(start),
            1,
            "chunk at {start} was rendered again"
        );
        let c = after["chunks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["start"] == start)
            .unwrap();
        assert_eq!(c["committed_attempt"].as_u64().unwrap(), attempt);
    }
}

#[test]
fn cancel_stops_the_job_and_resume_finishes_it() {
    let env = Env::new();
    let r = env.renderer("slow:1");
    let child = env
        .cmd(&with_renderer(
            &small_render_args("out.mp4", &["--concurrency", "1"]),
            &r,
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let job = wait_for(&env, "one finished chunk", |j| {
        j["chunks_done"].as_u64().unwrap_or(0) >= 1
    });
    let id = job["id"].as_str().unwrap().to_string();
    env.ok(&["cancel", &id]);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st = env.status(&id);
    assert_eq!(st["state"], "cancelled");
    assert!(
        st["chunks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["state"] == "done" || c["state"] == "pending"),
        "{st}"
    );
    // Cancelling again is refused: the job has ended.
    assert!(!env.run(&["cancel", &id]).status.success());
    env.ok(&["resume", &id]);
    assert_eq!(env.status(&id)["state"], "succeeded");
    assert_eq!(probe_stream(&env.path("out.mp4")).0, 60);
}

#[test]
fn worker_run_prints_report_or_classified_error() {
    let env = Env::new();
    let r = ffmpeg_renderer();
    env.ok(&with_renderer(
        &[
            "plan", "--emit", "job.json", "--frames", "0..20", "--size", "64x64", "--chunks", "2",
        ],
        &r,
    ));
    // Put a spec with an id into storage the way the orchestrator does.
    let mut spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(env.path("job.json")).unwrap()).unwrap();
    spec["id"] = "manual1".into();
    let key = env.path("store/jobs/manual1/job.json");
    std::fs::create_dir_all(key.parent().unwrap()).unwrap();
    std::fs::write(&key, spec.to_string()).unwrap();
    let url = format!("file://{}", key.display());

    let out = env.ok(&[
        "worker",
        "run",
        "--job",
        &url,
        "--chunk",
        "1",
        "--attempt",
        "4",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["frames"], 10);
    assert_eq!(report["segment"], "jobs/manual1/attempts/1/4.mp4");
    assert_eq!(report["sha256"].as_str().unwrap().len(), 64);
    assert!(env.path("store/jobs/manual1/attempts/1/4.mp4").exists());
    assert!(env.path("store/jobs/manual1/attempts/1/4.json").exists());

    // As a Cloud Run Jobs task: job URL, chunk and attempt from the environment.
    let out = env
        .cmd(&["worker", "run"])
        .env("HELIOS_JOB_URL", &url)
        .env("CLOUD_RUN_TASK_INDEX", "0")
        .env("CLOUD_RUN_TASK_ATTEMPT", "1")
        .output()
        .unwrap();
    assert_ok(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["segment"], "jobs/manual1/attempts/0/2.mp4");

    let out = env.run(&["worker", "run", "--job", &url, "--chunk", "9"]);
    assert_eq!(out.status.code(), Some(65));
    let err: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(err["error"]["retryable"], false);
    assert_eq!(err["error"]["kind"], "invalid_request");
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no chunk 9"));
}

#[test]
fn corrupted_segment_is_rendered_again_never_stitched() {
    let env = Env::new();
    let r = env.renderer("ok");
    env.ok(&with_renderer(
        &small_render_args("out.mp4", &["--lossless"]),
        &r,
    ));
    let id = env.only_job();
    let reference = framemd5(&env.path("out.mp4"));
    let st = env.status(&id);
    let seg = env
        .home()
        .join("storage")
        .join(st["chunks"][2]["segment"].as_str().unwrap());
    // Damage one committed segment and lose the output: resume must notice on verification.
    let mut bytes = std::fs::read(&seg).unwrap();
    let mid = bytes.len() / 2;
    bytes.truncate(mid);
    std::fs::write(&seg, bytes).unwrap();
    std::fs::remove_file(env.path("out.mp4")).unwrap();

    env.ok(&["resume", &id]);
    assert_eq!(framemd5(&env.path("out.mp4")), reference);
    assert_eq!(
        env.invocations(20),
        2,
        "the damaged chunk is rendered again"
    );
    assert_eq!(env.invocations(30), 1, "intact chunks are not");
    let after = env.status(&id);
    assert_eq!(after["chunks"][2]["committed_attempt"], 2);
}

/// A receiver that answers 500 to its first request and 200 afterwards, keeping
/// (headers, body) of each request.
/// Requests a receiver got: (headers, body).
type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;

fn flaky_receiver() -> (String, Received) {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hooks/render", listener.local_addr().unwrap());
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = got.clone();
    std::thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
            let Ok(mut conn) = conn else { break };
            if let Some((head, body)) = read_request(&mut conn) {
                log.lock()
                    .unwrap()
                    .push((head, String::from_utf8_lossy(&body).to_string()));
            }
            let status = if n == 0 {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    (url, got)
}

#[test]
fn webhooks_are_signed_with_hmac_sha256_and_retried() {
    use hmac::Mac;
    let env = Env::new();
    let (url, got) = flaky_receiver();
    let r = ffmpeg_renderer();
    env.ok(&with_renderer(
        &[
            "render",
            "-o",
            "w.mp4",
            "--frames",
            "0..10",
            "--size",
            "64x64",
            "--chunks",
            "2",
            "--webhook",
            &url,
            "--webhook-secret",
            "hush",
        ],
        &r,
    ));
    let got = got.lock().unwrap().clone();
    assert_eq!(
        got.len(),
        2,
        "the first delivery failed (500) and was retried"
    );
    let (head, body) = &got[1];
    let note: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(note["event"], "job.succeeded");
    assert_eq!(note["frames"], 10);
    assert!(note["output"].as_str().unwrap().ends_with("w.mp4"));
    let sig = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("x-helios-signature:")
                .then(|| l.split_once(':').unwrap().1.trim().to_string())
        })
        .expect("signature header");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"hush").unwrap();
    mac.update(body.as_bytes());
    assert_eq!(
        sig,
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    );
}

#[test]
fn a_failed_job_notifies_its_webhook_with_the_error() {
    let env = Env::new();
    let (url, got) = flaky_receiver();
    let r = env.renderer("fail-always:0");
    let out = env.run(&with_renderer(
        &small_render_args("f.mp4", &["--retries", "0", "--webhook", &url]),
        &r,
    ));
    assert!(!out.status.success());
    let got = got.lock().unwrap().clone();
    let note: serde_json::Value = serde_json::from_str(&got.last().unwrap().1).unwrap();
    assert_eq!(note["event"], "job.failed");
    assert!(
        note["error"].as_str().unwrap().contains("out of unicorns"),
        "{note}"
    );
}
