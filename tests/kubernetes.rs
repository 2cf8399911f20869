//! The kubernetes adapter against a fake of the Kubernetes API server. No API server can be
//! installed on these machines, so the fake is strict where it matters:
//! - every Job body is deserialised with `k8s-openapi`'s `Job` and must serialise back to
//!   the same JSON (a field the real server does not know is refused, as with
//!   `fieldValidation=Strict`), and is checked the way the API server validates Indexed
//!   Jobs (names, labels, containers, restart policy, completions, per-index backoff);
//! - requests need the kubeconfig's bearer token; unknown namespaces are 404 and a
//!   forbidden identity is 403, with the real server's `Status` bodies;
//! - every pod is a real `helios-infra worker run` process, started with the pod's own
//!   environment only (the container's `env`, Secrets resolved, `JOB_COMPLETION_INDEX`,
//!   and the image's `PATH`), its arguments after the image's entrypoint, and a pod whose
//!   image cannot be pulled stays `Pending` in `ErrImagePull`.
//!
//! What it does not prove: scheduling, node resources, image pulls, service-account token
//! mounting and the server's admission plug-ins are not modelled; a real cluster's timing
//! (pods taking seconds to start) is not either.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::{body::Bytes, Json, Router};
use common::*;
use k8s_openapi::api::batch::v1::Job;
use serde_json::{json, Value};

const TOKEN: &str = "fake-service-account-token";
const IMAGE: &str = "registry.example/helios-infra:test";

/// One pod: a worker process, or a pod that never starts.
#[derive(Clone, Default)]
struct FakePod {
    name: String,
    index: usize,
    phase: String,
    exit: Option<i32>,
    waiting: Option<(String, String)>,
    pid: Option<u32>,
    /// The environment the process was started with.
    env: BTreeMap<String, String>,
}

struct FakeJob {
    job: Value,
    pods: Vec<FakePod>,
    deleted: bool,
}

#[derive(Default)]
struct Fake {
    /// Namespaces that exist.
    namespaces: Vec<String>,
    /// Tokens that authenticate but may not do anything (403).
    forbidden_token: Option<String>,
    /// Behave like an API server older than 1.29: drop `backoffLimitPerIndex` (a field
    /// it does not know) from the Jobs it stores.
    before_1_29: bool,
    /// Secrets by (namespace, name).
    secrets: HashMap<(String, String), HashMap<String, String>>,
    /// Every Job body POSTed to an existing namespace, as received.
    posted: Mutex<Vec<Value>>,
    /// Every POST of a Job, wherever it went.
    creates: AtomicU32,
    /// Every DELETE: (job name, propagation policy).
    deletes: Mutex<Vec<(String, String)>>,
    jobs: Mutex<BTreeMap<String, FakeJob>>,
    /// A `chunk:attempt` whose pod is SIGKILLed once its renderer hangs (tests/fixtures'
    /// hang-once writes STATE_DIR/hung.pid).
    kill_task: Mutex<Option<(String, std::path::PathBuf)>>,
    names: AtomicU32,
}

fn dns_label(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
}

fn label_ok(k: &str, v: &str) -> bool {
    let name = k.rsplit('/').next().unwrap_or(k);
    let part = |s: &str| {
        s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && s.bytes().next().is_none_or(|b| b.is_ascii_alphanumeric())
            && s.bytes().last().is_none_or(|b| b.is_ascii_alphanumeric())
    };
    !name.is_empty() && part(name) && part(v)
}

/// What the API server's validation of a batch/v1 Job says about `job` (empty: valid).
fn validate(job: &Job) -> Vec<String> {
    let mut errs = Vec::new();
    let meta = &job.metadata;
    match (&meta.name, &meta.generate_name) {
        (None, None) => errs.push("metadata.name: Required value".into()),
        (_, Some(g)) if !dns_label(g.trim_end_matches('-'), 58) => {
            errs.push(format!("metadata.generateName: Invalid value: {g:?}"))
        }
        _ => {}
    }
    for (k, v) in meta.labels.iter().flatten() {
        if !label_ok(k, v) {
            errs.push(format!("metadata.labels: Invalid value: {k}={v}"));
        }
    }
    let Some(spec) = &job.spec else {
        errs.push("spec: Required value".into());
        return errs;
    };
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    if indexed && spec.completions.is_none() {
        errs.push("spec.completions: Required value: when completion mode is Indexed".into());
    }
    if spec.backoff_limit_per_index.is_some() && !indexed {
        errs.push(
            "spec.backoffLimitPerIndex: Invalid value: requires Indexed completion mode".into(),
        );
    }
    if spec.parallelism.is_some_and(|p| p < 0) || spec.completions.is_some_and(|c| c < 0) {
        errs.push("spec.parallelism/completions: must be greater than or equal to 0".into());
    }
    if spec.active_deadline_seconds.is_some_and(|s| s <= 0) {
        errs.push("spec.activeDeadlineSeconds: must be greater than 0".into());
    }
    let Some(pod) = &spec.template.spec else {
        errs.push("spec.template.spec: Required value".into());
        return errs;
    };
    match pod.restart_policy.as_deref() {
        Some("Never") => {}
        Some("OnFailure") if spec.backoff_limit_per_index.is_none() => {}
        other => errs.push(format!(
            "spec.template.spec.restartPolicy: Unsupported value: {other:?}: supported values: \"OnFailure\", \"Never\" (\"Never\" with backoffLimitPerIndex)"
        )),
    }
    if pod.containers.is_empty() {
        errs.push("spec.template.spec.containers: Required value".into());
    }
    for c in &pod.containers {
        if !dns_label(&c.name, 63) {
            errs.push(format!("containers.name: Invalid value: {:?}", c.name));
        }
        if c.image.as_deref().is_none_or(str::is_empty) {
            errs.push(format!("containers[{}].image: Required value", c.name));
        }
        for e in c.env.iter().flatten() {
            let ok_name = !e.name.is_empty()
                && e.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
                && !e.name.as_bytes()[0].is_ascii_digit();
            if !ok_name {
                errs.push(format!("env[{}].name: Invalid value", e.name));
            }
            if e.value.is_some() && e.value_from.is_some() {
                errs.push(format!(
                    "env[{}].valueFrom: Invalid value: may not be specified when `value` is not empty",
                    e.name
                ));
            }
        }
    }
    for (k, v) in spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.as_ref())
        .into_iter()
        .flatten()
    {
        if !label_ok(k, v) {
            errs.push(format!(
                "spec.template.metadata.labels: Invalid value: {k}={v}"
            ));
        }
    }
    errs
}

fn pod_json(job_name: &str, p: &FakePod) -> Value {
    let mut container = json!({"name": "worker", "ready": false, "restartCount": 0,
        "image": IMAGE, "imageID": ""});
    container["state"] = match (&p.waiting, p.exit) {
        (Some((reason, message)), _) => json!({"waiting": {"reason": reason, "message": message}}),
        (None, Some(code)) => json!({"terminated": {
            "exitCode": code,
            "reason": if code == 0 { "Completed" } else { "Error" },
        }}),
        (None, None) => json!({"running": {"startedAt": "2026-01-01T00:00:00Z"}}),
    };
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": p.name,
            "labels": {"batch.kubernetes.io/job-name": job_name, "job-name": job_name,
                "batch.kubernetes.io/job-completion-index": p.index.to_string()},
            "annotations": {"batch.kubernetes.io/job-completion-index": p.index.to_string()},
        },
        "status": {"phase": p.phase, "containerStatuses": [container]},
    })
}

/// The Job's status from its pods, as the Job controller would write it.
fn refresh_status(j: &mut FakeJob) {
    let count = j.pods.len();
    let succeeded = j.pods.iter().filter(|p| p.phase == "Succeeded").count();
    let failed = j.pods.iter().filter(|p| p.phase == "Failed").count();
    let active = count - succeeded - failed;
    let mut st = json!({"active": active, "succeeded": succeeded, "failed": failed,
        "startTime": "2026-01-01T00:00:00Z"});
    if active == 0 {
        let (t, reason) = if failed == 0 {
            ("Complete", "CompletionsReached")
        } else {
            ("Failed", "FailedIndexes")
        };
        st["conditions"] = json!([{"type": t, "status": "True", "reason": reason}]);
        if failed == 0 {
            st["completionTime"] = json!("2026-01-01T00:00:09Z");
        }
    }
    j.job["status"] = st;
}

/// The pod's environment: only what its spec says (values, Secrets, the completion
/// index), plus the image's PATH. Err: why the container cannot be created.
fn pod_env(
    fake: &Fake,
    ns: &str,
    container: &k8s_openapi::api::core::v1::Container,
    index: usize,
) -> Result<BTreeMap<String, String>, String> {
    let mut env = BTreeMap::new();
    env.insert(
        "PATH".to_string(),
        std::env::var("PATH").unwrap_or_default(),
    );
    env.insert("JOB_COMPLETION_INDEX".to_string(), index.to_string());
    for e in container.env.iter().flatten() {
        let value = match (&e.value, &e.value_from) {
            (Some(v), _) => v.clone(),
            (None, Some(from)) => {
                if let Some(s) = &from.secret_key_ref {
                    fake.secrets
                        .get(&(ns.to_string(), s.name.clone()))
                        .and_then(|m| m.get(&s.key))
                        .cloned()
                        .ok_or_else(|| format!("secret \"{}\" not found", s.name))?
                } else if let Some(f) = &from.field_ref {
                    match f.field_path.as_str() {
                        "metadata.annotations['batch.kubernetes.io/job-completion-index']" => {
                            index.to_string()
                        }
                        other => return Err(format!("unsupported fieldRef {other}")),
                    }
                } else {
                    return Err("unsupported valueFrom".into());
                }
            }
            (None, None) => String::new(),
        };
        env.insert(e.name.clone(), value);
    }
    Ok(env)
}

/// Starts the pods of a new Job: each a real worker process.
fn start_pods(fake: &Arc<Fake>, ns: &str, name: &str, job: &Job) {
    let spec = job.spec.clone().unwrap_or_default();
    let pod_spec = spec.template.spec.clone().unwrap_or_default();
    let c = pod_spec
        .containers
        .iter()
        .find(|c| c.name == "worker")
        .unwrap_or(&pod_spec.containers[0])
        .clone();
    for index in 0..spec.completions.unwrap_or(1) as usize {
        let pod_name = format!(
            "{name}-{index}-{}",
            fake.names.fetch_add(1, Ordering::SeqCst)
        );
        let mut pod = FakePod {
            name: pod_name.clone(),
            index,
            phase: "Pending".into(),
            ..FakePod::default()
        };
        let env = pod_env(fake, ns, &c, index);
        match (&env, c.image.as_deref()) {
            (_, Some(img)) if img != IMAGE => {
                pod.waiting = Some((
                    "ErrImagePull".into(),
                    format!("rpc error: failed to pull and unpack image \"{img}\": not found"),
                ))
            }
            (Err(e), _) => pod.waiting = Some(("CreateContainerConfigError".into(), e.clone())),
            (Ok(env), _) => {
                // The image's entrypoint is helios-infra; a command replaces it.
                let mut argv: Vec<String> = c
                    .command
                    .clone()
                    .unwrap_or_else(|| vec![env!("CARGO_BIN_EXE_helios-infra").to_string()]);
                argv.extend(c.args.clone().unwrap_or_default());
                let mut cmd = tokio::process::Command::new(&argv[0]);
                cmd.args(&argv[1..])
                    .env_clear()
                    .envs(env)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .process_group(0);
                let mut child = cmd.spawn().expect("start the pod's process");
                pod.phase = "Running".into();
                pod.pid = child.id();
                pod.env = env.clone();
                let task = env
                    .get("HELIOS_TASKS")
                    .and_then(|l| l.split(',').nth(index))
                    .unwrap_or_default()
                    .to_string();
                let (fake, name, pod_name) = (fake.clone(), name.to_string(), pod_name.clone());
                tokio::spawn(async move {
                    let kill = fake.kill_task.lock().unwrap().clone();
                    let code = match kill {
                        Some((t, hung)) if t == task => {
                            loop {
                                if let Ok(Some(s)) = child.try_wait() {
                                    break s.code().unwrap_or(137);
                                }
                                if hung.exists() {
                                    // The node lost the pod: nothing gets to write anything.
                                    kill_pod(child.id().unwrap());
                                    let _ = child.wait().await;
                                    *fake.kill_task.lock().unwrap() = None;
                                    break 137;
                                }
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                        _ => child
                            .wait()
                            .await
                            .map(|s| s.code().unwrap_or(137))
                            .unwrap_or(1),
                    };
                    let mut jobs = fake.jobs.lock().unwrap();
                    if let Some(j) = jobs.get_mut(&name) {
                        if let Some(p) = j.pods.iter_mut().find(|p| p.name == pod_name) {
                            p.exit = Some(code);
                            p.phase = if code == 0 { "Succeeded" } else { "Failed" }.into();
                        }
                        refresh_status(j);
                    }
                });
            }
        }
        let mut jobs = fake.jobs.lock().unwrap();
        let j = jobs.get_mut(name).unwrap();
        j.pods.push(pod);
        refresh_status(j);
    }
}

/// SIGKILL to a pod's whole process group.
fn kill_pod(pid: u32) {
    use nix::sys::signal::{killpg, Signal};
    let _ = killpg(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL);
}

async fn handle(
    State(fake): State<Arc<Fake>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Json<Value>) {
    let bearer = bearer(&headers);
    if bearer != TOKEN && Some(&bearer) != fake.forbidden_token.as_ref() {
        return k8s_status(401, "Unauthorized", "Unauthorized".into());
    }
    let parts: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let (ns, resource, name) = match parts.as_slice() {
        ["apis", "batch", "v1", "namespaces", ns, "jobs"] => (*ns, "jobs", None),
        ["apis", "batch", "v1", "namespaces", ns, "jobs", name] => (*ns, "jobs", Some(*name)),
        ["api", "v1", "namespaces", ns, "pods"] => (*ns, "pods", None),
        _ => {
            return k8s_status(
                404,
                "NotFound",
                format!("the server could not find {}", uri.path()),
            )
        }
    };
    if Some(&bearer) == fake.forbidden_token.as_ref() {
        let verb = match method {
            Method::POST => "create",
            Method::DELETE => "delete",
            _ => "get",
        };
        return k8s_status(
            403,
            "Forbidden",
            format!("{resource} is forbidden: User \"system:serviceaccount:{ns}:default\" cannot {verb} resource \"{resource}\" in API group \"batch\" in the namespace \"{ns}\""),
        );
    }
    if method == Method::POST {
        fake.creates.fetch_add(1, Ordering::SeqCst);
    }
    if !fake.namespaces.iter().any(|n| n == ns) {
        if method == Method::POST {
            return k8s_status(404, "NotFound", format!("namespaces \"{ns}\" not found"));
        }
        if name.is_none() {
            // Listing in a namespace that does not exist is an empty list on a real server.
            return (
                StatusCode::OK,
                Json(json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": []})),
            );
        }
    }
    match (method, resource, name) {
        (Method::POST, "jobs", None) => {
            let raw: Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => return k8s_status(400, "BadRequest", format!("invalid JSON: {e}")),
            };
            fake.posted.lock().unwrap().push(raw.clone());
            let job: Job = match serde_json::from_value(raw.clone()) {
                Ok(j) => j,
                Err(e) => {
                    return k8s_status(
                        400,
                        "BadRequest",
                        format!("Job in version \"v1\" cannot be handled as a Job: {e}"),
                    )
                }
            };
            if serde_json::to_value(&job).unwrap() != raw {
                return k8s_status(
                    400,
                    "BadRequest",
                    format!(
                    "strict decoding error: the body has fields batch/v1 Job does not know: {raw}"
                ),
                );
            }
            let errs = validate(&job);
            if !errs.is_empty() {
                return k8s_status(
                    422,
                    "Invalid",
                    format!("Job.batch is invalid: {}", errs.join(", ")),
                );
            }
            let n = fake.names.fetch_add(1, Ordering::SeqCst);
            let name = match (&job.metadata.name, &job.metadata.generate_name) {
                (Some(n), _) => n.clone(),
                (None, Some(g)) => format!("{g}{:05x}", n * 7919 % 0xfffff),
                _ => unreachable!(),
            };
            let mut stored = raw.clone();
            if fake.before_1_29 {
                if let Some(spec) = stored["spec"].as_object_mut() {
                    spec.remove("backoffLimitPerIndex");
                }
            }
            stored["metadata"]["name"] = json!(name);
            stored["metadata"]["namespace"] = json!(ns);
            stored["metadata"]["uid"] = json!(format!("uid-{n}"));
            fake.jobs.lock().unwrap().insert(
                name.clone(),
                FakeJob {
                    job: stored.clone(),
                    pods: Vec::new(),
                    deleted: false,
                },
            );
            start_pods(&fake, ns, &name, &job);
            (StatusCode::CREATED, Json(stored))
        }
        (Method::GET, "jobs", Some(name)) => match fake.jobs.lock().unwrap().get(name) {
            Some(j) if !j.deleted => (StatusCode::OK, Json(j.job.clone())),
            _ => k8s_status(404, "NotFound", format!("jobs.batch \"{name}\" not found")),
        },
        (Method::DELETE, "jobs", Some(name)) => {
            let opts: k8s_openapi::apimachinery::pkg::apis::meta::v1::DeleteOptions =
                serde_json::from_slice(&body).unwrap_or_default();
            let policy = opts.propagation_policy.unwrap_or_else(|| "Orphan".into());
            fake.deletes
                .lock()
                .unwrap()
                .push((name.to_string(), policy.clone()));
            let mut jobs = fake.jobs.lock().unwrap();
            let Some(j) = jobs.get_mut(name).filter(|j| !j.deleted) else {
                return k8s_status(404, "NotFound", format!("jobs.batch \"{name}\" not found"));
            };
            j.deleted = true;
            if policy != "Orphan" {
                for p in &j.pods {
                    if let (Some(pid), None) = (p.pid, p.exit) {
                        kill_pod(pid);
                    }
                }
            }
            (StatusCode::OK, Json(j.job.clone()))
        }
        (Method::GET, "pods", None) => {
            let selector = uri
                .query()
                .unwrap_or_default()
                .split('&')
                .find_map(|kv| kv.strip_prefix("labelSelector="))
                .map(|s| s.replace("%3D", "=").replace("%2F", "/"))
                .unwrap_or_default();
            let Some(job_name) = selector.strip_prefix("batch.kubernetes.io/job-name=") else {
                return k8s_status(
                    400,
                    "BadRequest",
                    format!("unexpected selector {selector:?}"),
                );
            };
            let jobs = fake.jobs.lock().unwrap();
            let items: Vec<Value> = jobs
                .get(job_name)
                .filter(|j| !j.deleted)
                .map(|j| j.pods.iter().map(|p| pod_json(job_name, p)).collect())
                .unwrap_or_default();
            (
                StatusCode::OK,
                Json(
                    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}),
                ),
            )
        }
        (m, r, n) => k8s_status(405, "MethodNotAllowed", format!("{m} {r} {n:?}")),
    }
}

/// Serves the fake on loopback from its own thread; returns its URL.
fn start_fake(fake: Fake) -> (String, Arc<Fake>) {
    let fake = Arc::new(fake);
    let url = serve_on_loopback(Router::new().fallback(handle).with_state(fake.clone()));
    (url, fake)
}

fn fake_with(ns: &[&str]) -> Fake {
    Fake {
        namespaces: ns.iter().map(|s| s.to_string()).collect(),
        ..Fake::default()
    }
}

/// A kubeconfig for the fake, written into the test's directory.
fn kubeconfig(env: &Env, server: &str, token: &str) -> String {
    let path = env.path("kubeconfig.yaml");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {server}\nusers:\n- name: renderer\n  user:\n    token: {token}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: renderer\n    namespace: helios\ncurrent-context: fake\n"
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

/// `render -o OUT` of 40 lossless 64×64 frames in CHUNKS chunks, all at once.
fn render_args<'a>(out: &'a str, chunks: &'a str) -> Vec<&'a str> {
    let frames = ["--frames", "0..40", "--size", "64x64", "--lossless"];
    let mut v = vec![
        "render",
        "-o",
        out,
        "--chunks",
        chunks,
        "--concurrency",
        chunks,
    ];
    v.extend_from_slice(&frames);
    v
}

/// [`render_args`] on the kubernetes adapter with the fake's image, then `extra`.
fn k8s_args<'a>(out: &'a str, chunks: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = render_args(out, chunks);
    v.extend_from_slice(&["--adapter", "kubernetes", "--k8s-image", IMAGE]);
    v.extend_from_slice(extra);
    v
}

/// Runs the orchestrator with the kubeconfig and a fast poll.
fn run_k8s(env: &Env, kubeconfig: &str, args: &[&str]) -> std::process::Output {
    env.cmd(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HELIOS_K8S_POLL_MS", "100")
        .output()
        .expect("run helios-infra")
}

fn posted_tasks(fake: &Fake) -> Vec<(i64, String)> {
    fake.posted
        .lock()
        .unwrap()
        .iter()
        .map(|j| {
            let env = &j["spec"]["template"]["spec"]["containers"][0]["env"];
            let tasks = env
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == "HELIOS_TASKS")
                .map(|e| e["value"].as_str().unwrap().to_string())
                .unwrap();
            (j["spec"]["completions"].as_i64().unwrap(), tasks)
        })
        .collect()
}

#[test]
fn a_four_chunk_job_is_one_indexed_job_and_equals_a_local_render() {
    let env = Env::new();
    let r = ffmpeg_renderer();
    let (server, fake) = start_fake(fake_with(&["helios"]));
    let kc = kubeconfig(&env, &server, TOKEN);
    let local = render_args("local.mp4", "4");
    env.ok(&with_renderer(&local, &r));
    let out = run_k8s(
        &env,
        &kc,
        &with_renderer(&k8s_args("k8s.mp4", "4", &[]), &r),
    );
    assert_ok(&out);
    assert_eq!(
        framemd5(&env.path("k8s.mp4")),
        framemd5(&env.path("local.mp4"))
    );
    let posted = fake.posted.lock().unwrap().clone();
    assert_eq!(
        posted.len(),
        1,
        "one Indexed Job for the 4 chunks: {posted:?}"
    );
    let spec = &posted[0]["spec"];
    assert_eq!(spec["completionMode"], "Indexed");
    assert_eq!(
        (spec["completions"].as_i64(), spec["parallelism"].as_i64()),
        (Some(4), Some(4))
    );
    assert_eq!(
        spec["backoffLimitPerIndex"], 0,
        "Kubernetes never retries by itself"
    );
    assert!(spec["ttlSecondsAfterFinished"].as_i64().is_some());
    assert_eq!(spec["template"]["spec"]["restartPolicy"], "Never");
    assert_eq!(
        posted[0]["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "helios-infra"
    );
    let mut tasks: Vec<String> = posted_tasks(&fake)[0]
        .1
        .split(',')
        .map(String::from)
        .collect();
    tasks.sort();
    assert_eq!(tasks, ["0:1", "1:1", "2:1", "3:1"]);
    // The namespace came from the kubeconfig context.
    assert_eq!(
        fake.jobs.lock().unwrap().values().next().unwrap().job["metadata"]["namespace"],
        "helios"
    );
    let id = env.status_ids().pop().unwrap();
    let st = env.status(&id);
    assert!(
        st["cost"]["basis"]
            .as_str()
            .unwrap_or_default()
            .contains("Kubernetes pod-seconds"),
        "{st}"
    );
    assert!(st["cost"]["pod_seconds"].as_f64().unwrap() > 0.0, "{st}");
}

/// Renders 4 chunks with the test renderer in `mode` (after `prepare` sets up the fake)
/// and checks that chunk 1 alone ran again, as attempt 2, in a second Job; returns the
/// orchestrator's stderr.
fn chunk_1_runs_again(env: &Env, mode: &str, prepare: impl FnOnce(&Fake)) -> String {
    let r = env.renderer(mode);
    let (server, fake) = start_fake(fake_with(&["helios"]));
    prepare(&fake);
    let kc = kubeconfig(env, &server, TOKEN);
    let out = run_k8s(env, &kc, &with_renderer(&k8s_args("out.mp4", "4", &[]), &r));
    assert_ok(&out);
    assert_eq!(probe_stream(&env.path("out.mp4")).0, 40);
    let posted = posted_tasks(&fake);
    assert_eq!(posted.len(), 2, "{posted:?}");
    assert_eq!(
        posted[1],
        (1, "1:2".to_string()),
        "only chunk 1, as attempt 2"
    );
    assert!(
        fake.kill_task.lock().unwrap().is_none(),
        "a planned kill happened"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_failed_pod_is_retried_in_a_new_job() {
    let env = Env::new();
    let err = chunk_1_runs_again(&env, "fail-once:10", |_| {});
    // The worker's own error came back through storage.
    assert!(
        err.contains("renderer \"bash\" failed with exit code 1"),
        "{err}"
    );
}

#[test]
fn a_pod_killed_without_a_report_is_retried() {
    let env = Env::new();
    let hung = env.path("hung.pid");
    let err = chunk_1_runs_again(&env, "hang-once:10", |fake| {
        *fake.kill_task.lock().unwrap() = Some(("1:1".into(), hung));
    });
    assert!(
        err.contains("ended without a report") && err.contains("exit code 137"),
        "{err}"
    );
    let id = env.status_ids().pop().unwrap();
    let st = env.status(&id);
    let outcomes: Vec<&str> = st["chunks"][1]["attempt_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["failed", "succeeded"], "{st}");
}

#[test]
fn cancel_deletes_the_job_and_its_pods() {
    let env = Env::new();
    let r = env.renderer("slow:60");
    let (server, fake) = start_fake(fake_with(&["helios"]));
    let kc = kubeconfig(&env, &server, TOKEN);
    let args = with_renderer(&k8s_args("out.mp4", "2", &[]), &r);
    let render = env
        .cmd(&args)
        .env("KUBECONFIG", &kc)
        .env("HELIOS_K8S_POLL_MS", "100")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let running = || {
        fake.jobs
            .lock()
            .unwrap()
            .values()
            .any(|j| j.pods.iter().filter(|p| p.phase == "Running").count() == 2)
    };
    while !running() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the pods never ran"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let pids: Vec<u32> = fake
        .jobs
        .lock()
        .unwrap()
        .values()
        .flat_map(|j| j.pods.iter().filter_map(|p| p.pid))
        .collect();
    let id = env.status_ids().pop().unwrap();
    env.ok(&["cancel", &id]);
    let out = render.wait_with_output().unwrap();
    assert!(!out.status.success());
    let deletes = fake.deletes.lock().unwrap().clone();
    let name = fake.jobs.lock().unwrap().keys().next().unwrap().clone();
    assert_eq!(deletes, [(name, "Background".to_string())]);
    // The pods' processes are gone (the fake kills them as the garbage collector would).
    std::thread::sleep(Duration::from_millis(200));
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists() || {
                let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                s.contains(") Z ")
            },
            "pod process {pid} still runs"
        );
    }
    assert_eq!(env.status(&id)["state"], "cancelled");
}

#[test]
fn an_unknown_namespace_a_forbidden_identity_and_an_image_that_cannot_be_pulled_are_fatal_and_named(
) {
    let env = Env::new();
    let r = ffmpeg_renderer();
    let (server, fake) = start_fake(Fake {
        forbidden_token: Some("read-only".into()),
        ..fake_with(&["helios"])
    });
    let kc = kubeconfig(&env, &server, TOKEN);
    let out = run_k8s(
        &env,
        &kc,
        &with_renderer(&k8s_args("a.mp4", "2", &["--k8s-namespace", "nope"]), &r),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("namespace \"nope\" not found") && err.contains("--k8s-namespace"),
        "{err}"
    );
    assert_eq!(
        fake.creates.load(Ordering::SeqCst),
        1,
        "a fatal error is not retried"
    );

    let kc = kubeconfig(&env, &server, "read-only");
    let out = run_k8s(&env, &kc, &with_renderer(&k8s_args("b.mp4", "2", &[]), &r));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("forbidden") && err.contains("deploy-kubernetes.md"),
        "{err}"
    );

    let kc = kubeconfig(&env, &server, TOKEN);
    let mut args = k8s_args("c.mp4", "2", &[]);
    let at = args.iter().position(|a| *a == IMAGE).unwrap();
    args[at] = "registry.example/typo:latest";
    let out = run_k8s(&env, &kc, &with_renderer(&args, &r));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot start: ErrImagePull") && err.contains("typo:latest"),
        "{err}"
    );

    // No image at all is refused before anything is sent.
    let before = fake.creates.load(Ordering::SeqCst);
    let args: Vec<&str> = k8s_args("d.mp4", "2", &[])
        .into_iter()
        .filter(|a| *a != IMAGE && *a != "--k8s-image")
        .collect();
    let out = run_k8s(&env, &kc, &with_renderer(&args, &r));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--k8s-image"));
    assert_eq!(fake.creates.load(Ordering::SeqCst), before);
}

#[test]
fn the_orchestrators_environment_never_reaches_a_pod() {
    let env = Env::new();
    let r = ffmpeg_renderer();
    let mut secret = HashMap::new();
    secret.insert("key".to_string(), "from-the-secret".to_string());
    let mut fake = fake_with(&["helios"]);
    fake.secrets
        .insert(("helios".into(), "render-storage".into()), secret);
    let (server, fake) = start_fake(fake);
    let kc = kubeconfig(&env, &server, TOKEN);
    std::fs::write(
        env.path("job.yaml"),
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  labels:\n    team: video\nspec:\n  template:\n    spec:\n      serviceAccountName: renderer\n      containers:\n      - name: worker\n        image: registry.example/old:1\n        env:\n        - name: STORAGE_KEY\n          valueFrom:\n            secretKeyRef: {name: render-storage, key: key}\n",
    )
    .unwrap();
    let args = with_renderer(
        &k8s_args("out.mp4", "2", &["--k8s-job-template", "job.yaml"]),
        &r,
    );
    let out = env
        .cmd(&args)
        .env("KUBECONFIG", &kc)
        .env("HELIOS_K8S_POLL_MS", "100")
        .env("HELIOS_CANARY", "orchestrator-only-value")
        .env("AWS_SECRET_ACCESS_KEY", "orchestrator-secret")
        .output()
        .unwrap();
    assert_ok(&out);
    let posted = fake.posted.lock().unwrap().clone();
    let body = serde_json::to_string(&posted).unwrap();
    for leak in [
        "orchestrator-only-value",
        "orchestrator-secret",
        "HELIOS_CANARY",
        "AWS_SECRET_ACCESS_KEY",
    ] {
        assert!(!body.contains(leak), "{leak} reached a Job: {body}");
    }
    assert_eq!(
        posted[0]["metadata"]["labels"]["team"], "video",
        "the template's own parts stay"
    );
    assert_eq!(
        posted[0]["spec"]["template"]["spec"]["serviceAccountName"],
        "renderer"
    );
    let jobs = fake.jobs.lock().unwrap();
    let pods: Vec<&FakePod> = jobs.values().flat_map(|j| j.pods.iter()).collect();
    assert_eq!(pods.len(), 2);
    for p in pods {
        let names: Vec<&str> = p.env.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "HELIOS_JOB_URL",
                "HELIOS_TASKS",
                "JOB_COMPLETION_INDEX",
                "PATH",
                "STORAGE_KEY"
            ],
            "only what the Job names"
        );
        assert_eq!(p.env["STORAGE_KEY"], "from-the-secret");
    }
}

#[test]
fn an_api_server_older_than_1_29_is_refused_and_its_job_deleted() {
    let env = Env::new();
    let r = ffmpeg_renderer();
    let (server, fake) = start_fake(Fake {
        before_1_29: true,
        ..fake_with(&["helios"])
    });
    let kc = kubeconfig(&env, &server, TOKEN);
    let out = run_k8s(
        &env,
        &kc,
        &with_renderer(&k8s_args("out.mp4", "2", &[]), &r),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs Kubernetes 1.29 or newer"), "{err}");
    let name = fake.jobs.lock().unwrap().keys().next().unwrap().clone();
    assert_eq!(
        fake.deletes.lock().unwrap().clone(),
        [(name, "Background".to_string())],
        "the Job it could not trust is gone"
    );
    assert_eq!(fake.creates.load(Ordering::SeqCst), 1, "not retried");
}

#[test]
fn doctor_pings_a_worker_pod_whose_answer_comes_through_storage() {
    let env = Env::new();
    let (server, fake) = start_fake(fake_with(&["helios"]));
    let kc = kubeconfig(&env, &server, TOKEN);
    let out = env
        .cmd(&[
            "--json",
            "doctor",
            "--adapter",
            "kubernetes",
            "--k8s-image",
            IMAGE,
        ])
        .env("KUBECONFIG", &kc)
        .env("HELIOS_K8S_POLL_MS", "100")
        .output()
        .unwrap();
    let checks = json_lines(&out.stdout);
    assert!(
        out.status.success(),
        "{checks:?} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ping = named(&checks, "ping (kubernetes job)");
    assert!(
        ping["detail"].as_str().unwrap().contains("Chromium"),
        "{ping}"
    );
    // One Indexed Job with one ping task ran, and left nothing in storage.
    let tasks = posted_tasks(&fake);
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(tasks[0].1, "0:1:ping");
    let jobs = env.home().join("storage/jobs");
    let left: Vec<_> = std::fs::read_dir(&jobs)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}
