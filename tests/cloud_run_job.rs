//! The cloudrun-job adapter against an HTTP fake of the Cloud Run Admin API (v2 REST, as
//! the official client speaks it: jobs:run, operations, executions, executions:cancel). The
//! fake runs each task the way Cloud Run Jobs does: the real `helios-infra worker run` with
//! the execution's environment overrides plus CLOUD_RUN_TASK_INDEX / _ATTEMPT / _COUNT.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::{body::Bytes, Json, Router};
use common::*;
use serde_json::{json, Value};

const JOB: &str = "projects/p/locations/us-central1/jobs/render";

#[derive(Default)]
struct Exec {
    task_count: i64,
    succeeded: i64,
    failed: i64,
    cancelled: bool,
}

#[derive(Default)]
struct Fake {
    /// (taskCount, HELIOS_TASKS) of every jobs:run.
    runs: Mutex<Vec<(i64, String)>>,
    execs: Mutex<HashMap<String, Exec>>,
    /// The tasks' own environment (their storage endpoint), beside the overrides.
    worker_env: Mutex<Vec<(String, String)>>,
}

fn exec_json(name: &str, e: &Exec, typed: bool) -> Value {
    let finished = e.cancelled || e.succeeded + e.failed >= e.task_count;
    let mut v = json!({
        "name": name,
        "job": "render",
        "taskCount": e.task_count,
        "runningCount": if finished { 0 } else { e.task_count - e.succeeded - e.failed },
        "succeededCount": e.succeeded,
        "failedCount": e.failed,
        "cancelledCount": 0,
        "logUri": "https://console.cloud.google.com/logs/fake",
    });
    if finished {
        v["completionTime"] = json!("2026-01-01T00:00:09Z");
    }
    if typed {
        v["@type"] = json!("type.googleapis.com/google.cloud.run.v2.Execution");
    }
    v
}

fn not_found(what: &str) -> (StatusCode, Json<Value>) {
    (
        StatusCode::NOT_FOUND,
        Json(
            json!({"error": {"code": 404, "message": format!("{what} not found"), "status": "NOT_FOUND"}}),
        ),
    )
}

async fn handle(
    State(fake): State<Arc<Fake>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> (StatusCode, Json<Value>) {
    let path = uri.path().trim_start_matches("/v2/").to_string();
    if method == Method::POST && path.ends_with(":run") {
        let job = path.trim_end_matches(":run");
        if job != JOB {
            return not_found(&format!("Resource '{job}'"));
        }
        let req: Value = serde_json::from_slice(&body).unwrap_or_default();
        let ov = &req["overrides"];
        let count = ov["taskCount"].as_i64().unwrap_or(1);
        let env: Vec<(String, String)> = ov["containerOverrides"][0]["env"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|e| {
                (
                    e["name"].as_str().unwrap_or_default().to_string(),
                    e["value"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let tasks = env
            .iter()
            .find(|(k, _)| k == "HELIOS_TASKS")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let n = {
            let mut runs = fake.runs.lock().unwrap();
            runs.push((count, tasks));
            runs.len()
        };
        let name = format!("{JOB}/executions/render-{n}");
        fake.execs.lock().unwrap().insert(
            name.clone(),
            Exec {
                task_count: count,
                ..Exec::default()
            },
        );
        let env: Vec<(String, String)> = fake
            .worker_env
            .lock()
            .unwrap()
            .iter()
            .cloned()
            .chain(env)
            .collect();
        // Run the tasks, two at a time (the job's parallelism).
        let sem = Arc::new(tokio::sync::Semaphore::new(2));
        for index in 0..count {
            let (fake, name, env, sem) = (fake.clone(), name.clone(), env.clone(), sem.clone());
            tokio::spawn(async move {
                let _permit = sem.acquire_owned().await.unwrap();
                if fake.execs.lock().unwrap()[&name].cancelled {
                    return;
                }
                let status = tokio::process::Command::new(env!("CARGO_BIN_EXE_helios-infra"))
                    .args(["worker", "run"])
                    .envs(env)
                    .env("CLOUD_RUN_TASK_INDEX", index.to_string())
                    .env("CLOUD_RUN_TASK_ATTEMPT", "0")
                    .env("CLOUD_RUN_TASK_COUNT", count.to_string())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status()
                    .await
                    .unwrap();
                let mut execs = fake.execs.lock().unwrap();
                let e = execs.get_mut(&name).unwrap();
                if status.success() {
                    e.succeeded += 1;
                } else {
                    e.failed += 1;
                }
            });
        }
        let execs = fake.execs.lock().unwrap();
        let meta = exec_json(&name, &execs[&name], true);
        return (
            StatusCode::OK,
            Json(json!({"name": format!("{name}/op"), "metadata": meta, "done": false})),
        );
    }
    let execs = fake.execs.lock().unwrap();
    if method == Method::GET {
        if let Some(e) = execs.get(&path) {
            return (StatusCode::OK, Json(exec_json(&path, e, false)));
        }
    }
    drop(execs);
    if method == Method::POST && path.ends_with(":cancel") {
        let name = path.trim_end_matches(":cancel").to_string();
        if let Some(e) = fake.execs.lock().unwrap().get_mut(&name) {
            e.cancelled = true;
            return (
                StatusCode::OK,
                Json(json!({"name": format!("{name}/cancel"), "done": true})),
            );
        }
    }
    not_found(&format!("{method} {path}"))
}

/// Serves the fake on loopback from its own thread; returns its URL.
fn start_fake() -> (String, Arc<Fake>) {
    let fake = Arc::new(Fake::default());
    let url = serve_on_loopback(Router::new().fallback(handle).with_state(fake.clone()));
    (url, fake)
}

fn args<'a>(out: &'a str, endpoint: &'a str, job: &'a str, chunks: &'a str) -> Vec<&'a str> {
    vec![
        "render",
        "-o",
        out,
        "--frames",
        "0..30",
        "--size",
        "64x64",
        "--chunks",
        chunks,
        "--concurrency",
        chunks,
        "--lossless",
        "--adapter",
        "cloudrun-job",
        "--cloud-run-job",
        job,
        "--cloud-run-endpoint",
        endpoint,
    ]
}

#[test]
fn a_job_runs_as_one_execution_with_one_task_per_chunk_and_matches_a_local_render() {
    let env = Env::new();
    let r = ffmpeg_renderer();
    let (endpoint, fake) = start_fake();
    let local = [
        "render",
        "-o",
        "local.mp4",
        "--frames",
        "0..30",
        "--size",
        "64x64",
        "--chunks",
        "3",
        "--lossless",
    ];
    env.ok(&with_renderer(&local, &r));
    env.ok(&with_renderer(&args("cloud.mp4", &endpoint, JOB, "3"), &r));
    assert_eq!(
        framemd5(&env.path("cloud.mp4")),
        framemd5(&env.path("local.mp4"))
    );
    let runs = fake.runs.lock().unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].0, 3);
    let mut tasks: Vec<&str> = runs[0].1.split(',').collect();
    tasks.sort();
    assert_eq!(tasks, ["0:1", "1:1", "2:1"]);
    let id = env.status_ids().pop().unwrap();
    let st = env.status(&id);
    assert!(
        st["cost"]["basis"]
            .as_str()
            .unwrap_or_default()
            .contains("Cloud Run Jobs"),
        "{st}"
    );
}

/// The GCP deployment as a whole: Cloud Run Jobs tasks writing their segments to Cloud
/// Storage (fake-gcs-server), the output composed in the bucket and downloaded once.
#[test]
fn a_gs_job_on_cloud_run_jobs_is_composed_in_the_bucket() {
    let env = Env::new();
    let r = ffmpeg_renderer();
    let (endpoint, fake) = start_fake();
    let peer = common::peers::fake_gcs("crj");
    let storage_env = vec![("STORAGE_EMULATOR_HOST".to_string(), peer.endpoint.clone())];
    *fake.worker_env.lock().unwrap() = storage_env.clone();
    let plan = [
        "--frames",
        "0..60",
        "--size",
        "96x64",
        "--chunks",
        "4",
        "--preset",
        "ultrafast",
    ];
    let mut cloud = vec![
        "render",
        "-o",
        "cloud.mp4",
        "--storage",
        "gs://crj/renders",
        "--concurrency",
        "4",
        "--adapter",
        "cloudrun-job",
        "--cloud-run-job",
        JOB,
        "--cloud-run-endpoint",
        &endpoint,
    ];
    cloud.extend_from_slice(&plan);
    env.ok_with_env(&with_renderer(&cloud, &r), storage_env);
    let mut local = vec!["render", "-o", "local.mp4"];
    local.extend_from_slice(&plan);
    env.ok(&with_renderer(&local, &r));
    assert_eq!(
        framemd5(&env.path("cloud.mp4")),
        framemd5(&env.path("local.mp4"))
    );
    assert_eq!(fake.runs.lock().unwrap().len(), 1);
    let id = env
        .status_ids()
        .into_iter()
        .find(|i| env.status(i)["storage"] == "gs://crj/renders")
        .unwrap();
    let st = env.status(&id);
    assert_eq!(st["stitch"], "bytes", "{st}");
    assert_eq!(st["assembly"], "bucket", "{st}");
    // The output object is in the bucket, the size of the download.
    let meta = common::peers::get_json(&format!(
        "{}/storage/v1/b/crj/o/renders%2Fjobs%2F{id}%2Foutput.mp4",
        peer.endpoint
    ));
    assert_eq!(
        meta["size"].as_str().unwrap().parse::<u64>().unwrap(),
        std::fs::metadata(env.path("cloud.mp4")).unwrap().len(),
        "{meta}"
    );
}

#[test]
fn a_failed_task_is_retried_in_a_new_execution() {
    let env = Env::new();
    let r = env.renderer("fail-once:10");
    let (endpoint, fake) = start_fake();
    let out = env.run(&with_renderer(&args("out.mp4", &endpoint, JOB, "3"), &r));
    assert_ok(&out);
    assert_eq!(probe_stream(&env.path("out.mp4")).0, 30);
    let runs = fake.runs.lock().unwrap();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(
        runs[1],
        (1, "1:2".to_string()),
        "only the failed chunk, as attempt 2"
    );
    // The worker's own error came back through storage (not just "ended without a report").
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("chunk 1 (frames 10..20): renderer \"bash\" failed with exit code 1"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_unknown_job_fails_at_once_with_a_clear_error() {
    let env = Env::new();
    let r = ffmpeg_renderer();
    let (endpoint, fake) = start_fake();
    let missing = "projects/p/locations/us-central1/jobs/missing";
    let out = env.run(&with_renderer(
        &args("out.mp4", &endpoint, missing, "2"),
        &r,
    ));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Cloud Run Jobs") && err.contains("not found"),
        "{err}"
    );
    assert!(fake.runs.lock().unwrap().is_empty(), "nothing was started");
    // A bad name is refused before anything is called.
    let out = env.run(&with_renderer(
        &args("out.mp4", &endpoint, "projects/p/jobs/x", "2"),
        &r,
    ));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--cloud-run-job"));
}

#[test]
fn cancel_cancels_the_running_execution() {
    let env = Env::new();
    let r = env.renderer("slow:3");
    let (endpoint, fake) = start_fake();
    let args = with_renderer(&args("out.mp4", &endpoint, JOB, "2"), &r);
    let render = env
        .cmd(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while fake.runs.lock().unwrap().is_empty() {
        assert!(started.elapsed().as_secs() < 60, "no execution started");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let id = env.status_ids().pop().unwrap();
    env.ok(&["cancel", &id]);
    let out = render.wait_with_output().unwrap();
    assert!(!out.status.success());
    let execs = fake.execs.lock().unwrap();
    assert_eq!(execs.len(), 1);
    assert!(
        execs.values().all(|e| e.cancelled),
        "the execution was cancelled before the orchestrator exited"
    );
    assert_eq!(env.status(&id)["state"], "cancelled");
}

#[test]
fn doctor_pings_a_cloud_run_job_task_whose_answer_comes_through_storage() {
    let env = Env::new();
    let (endpoint, fake) = start_fake();
    let out = env.run(&[
        "--json",
        "doctor",
        "--adapter",
        "cloudrun-job",
        "--cloud-run-job",
        JOB,
        "--cloud-run-endpoint",
        &endpoint,
    ]);
    let checks = json_lines(&out.stdout);
    assert!(
        out.status.success(),
        "{checks:?} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ping = named(&checks, "ping (cloud run job)");
    assert!(
        ping["detail"].as_str().unwrap().contains("ffmpeg"),
        "{ping}"
    );
    let runs = fake.runs.lock().unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].0, 1, "one task");
    assert_eq!(runs[0].1, "0:1:ping");
}
