//! Security: the host environment never reaches workers or renderers; no job spec makes a
//! worker read or write outside its temporary directory and the job's storage prefix.
//! (Bundle extraction and the worker server's token and body limits are tested in
//! `storage::bundle`'s unit tests and tests/http_workers.rs.)

mod common;

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use common::*;

const SECRETS: [(&str, &str); 4] = [
    ("AWS_SECRET_ACCESS_KEY", "aws-sekrit-4711"),
    (
        "GOOGLE_APPLICATION_CREDENTIALS",
        "/secret/gcp-key-4711.json",
    ),
    ("HELIOS_WORKER_TOKEN", "worker-sekrit-4711"),
    ("MY_APP_PASSWORD", "hunter2-4711"),
];

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// A renderer that records its environment, then renders with FFmpeg.
fn env_recording_renderer(state: &Path) -> Vec<String> {
    [
        "bash",
        "-c",
        "env > \"$0/env-$HELIOS_FRAME_START\"; pwd > \"$0/cwd-$HELIOS_FRAME_START\"; \
         [ \"$1\" = \"$HELIOS_OUTPUT\" ] || exit 9; \
         exec ffmpeg -v error -nostdin -f lavfi -i \"testsrc2=size=$HELIOS_WIDTH\"x\"$HELIOS_HEIGHT:rate=$HELIOS_FPS\" \
         -vf \"trim=start_frame=$HELIOS_FRAME_START:end_frame=$HELIOS_FRAME_END\" -c:v ffv1 \"$1\"",
        state.to_str().unwrap(),
        "{output}",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[test]
fn renderers_get_a_clean_environment_and_workers_stay_in_their_temp_dir_and_job_prefix() {
    let env = Env::new();
    let state = env.path("state");
    let tmp = env.path("tmp");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::create_dir_all(&tmp).unwrap();
    let r = env_recording_renderer(&state);
    let args = [
        "render",
        "-o",
        "out.mp4",
        "--frames",
        "0..30",
        "--size",
        "64x64",
        "--chunks",
        "3",
        "--lossless",
    ];
    let tmp_var = [("TMPDIR", tmp.to_str().unwrap())];
    env.ok_with_env(
        &with_renderer(&args, &r),
        tmp_var.into_iter().chain(SECRETS),
    );
    assert_eq!(probe_stream(&env.path("out.mp4")).0, 30);

    for start in [0, 10, 20] {
        let seen = std::fs::read_to_string(state.join(format!("env-{start}"))).unwrap();
        for (k, v) in SECRETS {
            assert!(
                !seen.contains(v) && !seen.contains(&format!("{k}=")),
                "the renderer saw {k}:\n{seen}"
            );
        }
        let vars: Vec<&str> = seen
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, _)| k))
            .collect();
        for var in vars {
            assert!(
                var.starts_with("HELIOS_")
                    || [
                        "PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "TZ", "PWD", "SHLVL", "_",
                        "OLDPWD"
                    ]
                    .contains(&var),
                "unexpected variable {var} in the renderer's environment:\n{seen}"
            );
        }
        assert!(seen.contains(&format!("HELIOS_FRAME_START={start}\n")));
        assert!(seen.contains("TZ=UTC\n"));
        // HOME and TMPDIR are the attempt's private directory, under the worker's TMPDIR.
        let home = seen.lines().find_map(|l| l.strip_prefix("HOME=")).unwrap();
        assert!(
            Path::new(home).starts_with(&tmp),
            "HOME={home} is not under {}",
            tmp.display()
        );
        let cwd = std::fs::read_to_string(state.join(format!("cwd-{start}"))).unwrap();
        assert!(Path::new(cwd.trim()).starts_with(&tmp), "cwd {cwd}");
    }
    // Every attempt's directory is gone: nothing is left in (or outside) the temp dir.
    assert_eq!(files_under(&tmp), Vec::<String>::new());
    // Storage holds only the job's prefix.
    let id = env.only_job();
    for key in files_under(&env.home().join("storage")) {
        assert!(
            key.starts_with(&format!("jobs/{id}/")),
            "{key} is outside the job's prefix"
        );
    }
}

#[test]
fn a_renderer_gets_exactly_the_variables_the_job_names() {
    let env = Env::new();
    let state = env.path("state");
    std::fs::create_dir_all(&state).unwrap();
    let r = env_recording_renderer(&state);
    let args = [
        "render",
        "-o",
        "out.mp4",
        "--frames",
        "0..10",
        "--size",
        "64x64",
        "--chunks",
        "1",
        "--pass-env",
        "RENDER_QUALITY,NOT_SET_ANYWHERE",
    ];
    let quality = [("RENDER_QUALITY", "ultra")];
    env.ok_with_env(
        &with_renderer(&args, &r),
        quality.into_iter().chain(SECRETS),
    );
    let seen = std::fs::read_to_string(state.join("env-0")).unwrap();
    assert!(seen.contains("RENDER_QUALITY=ultra\n"), "{seen}");
    assert!(!seen.contains("NOT_SET_ANYWHERE"), "{seen}");
    for (k, v) in SECRETS {
        assert!(!seen.contains(v), "the renderer saw {k}:\n{seen}");
    }
    // The spec carries the name, never the value.
    let id = env.only_job();
    let spec =
        std::fs::read_to_string(env.home().join(format!("storage/jobs/{id}/job.json"))).unwrap();
    assert!(
        spec.contains("RENDER_QUALITY") && !spec.contains("ultra"),
        "{spec}"
    );
    // A name that is not a variable name is refused.
    let bad = env.run(&with_renderer(
        &[
            "render",
            "-o",
            "x.mp4",
            "--frames",
            "0..10",
            "--size",
            "64x64",
            "--pass-env",
            "A=B",
        ],
        &r,
    ));
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("composition.pass_env[0]"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

/// An HTTP worker in front of a real `worker serve` that records each request.
/// Requests seen by the proxy: (head, body).
type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

fn recording_proxy(target: String) -> (String, Seen) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { break };
            let Some((head, body)) = read_request(&mut conn) else {
                continue;
            };
            log.lock().unwrap().push((head.clone(), body.clone()));
            let mut lines = head.lines();
            let path = lines
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .unwrap_or("/")
                .to_string();
            let auth: Vec<(&str, &str)> = lines
                .filter_map(|l| l.split_once(':'))
                .filter(|(k, _)| k.eq_ignore_ascii_case("authorization"))
                .map(|(k, v)| (k, v.trim()))
                .collect();
            let mut headers = auth;
            headers.push(("Content-Type", "application/json"));
            let (status, reply) = http(&target, "POST", &path, &headers, &body);
            let _ = write!(
                conn,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                reply.len()
            );
        }
    });
    (url, seen)
}

#[test]
fn http_workers_receive_only_the_chunk_request() {
    let env = Env::new();
    let worker = WorkerServer::start(Some("tok"));
    let (proxy, seen) = recording_proxy(worker.addr.clone());
    let r = ffmpeg_renderer();
    let args = [
        "render",
        "-o",
        "out.mp4",
        "--frames",
        "0..20",
        "--size",
        "64x64",
        "--chunks",
        "2",
        "--lossless",
        "--adapter",
        "http",
        "--workers",
        &proxy,
        "--worker-token",
        "tok",
    ];
    env.ok_with_env(&with_renderer(&args, &r), SECRETS);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "one request per chunk");
    for (head, body) in seen.iter() {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["attempt", "chunk", "job"], "payload {v}");
        let text = format!("{head}\n{}", String::from_utf8_lossy(body));
        for (k, secret) in SECRETS {
            assert!(!text.contains(secret), "{k} was sent to a worker:\n{text}");
        }
    }
}

#[test]
fn hostile_specs_are_refused_before_anything_is_read_or_written() {
    let env = Env::new();
    let canary = env.path("outside");
    std::fs::create_dir_all(&canary).unwrap();
    std::fs::write(canary.join("secret.txt"), "do not read").unwrap();
    let r = ffmpeg_renderer();
    env.ok(&with_renderer(
        &[
            "plan",
            "--emit",
            "base.json",
            "--frames",
            "0..10",
            "--size",
            "64x64",
            "--chunks",
            "1",
        ],
        &r,
    ));
    let base: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(env.path("base.json")).unwrap()).unwrap();
    let with = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut spec = base.clone();
        edit(&mut spec);
        spec
    };
    let bundle = format!("bundles/{}.tar.zst", "0".repeat(64));
    let cases = [
        ("id", with(&|s| s["id"] = "../../outside".into())),
        (
            "composition.bundle",
            with(&|s| s["composition"]["bundle"] = "bundles/../../outside/secret.txt".into()),
        ),
        (
            "composition.entry",
            with(&|s| {
                s["composition"] = serde_json::json!({
                    "kind": "browser", "entry": "../outside/secret.txt", "bundle": bundle,
                })
            }),
        ),
        (
            "audio[0].source",
            with(&|s| s["audio"] = serde_json::json!([{"source": "../outside/secret.txt"}])),
        ),
    ];
    for (field, spec) in cases {
        std::fs::write(env.path("hostile.json"), spec.to_string()).unwrap();
        let out = env.run(&["run", "hostile.json", "-o", "o.mp4"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{field}: accepted");
        assert!(err.contains(&format!("- {field}: ")), "{field}: {err}");
    }
    assert!(env.status_ids().is_empty(), "no hostile job was recorded");
    assert!(!env.path("o.mp4").exists());
    assert_eq!(files_under(&canary), ["secret.txt"]);

    // A spec planted directly in storage (bypassing `run`) is refused by the worker itself.
    let storage = env.path("store");
    let planted = storage.join("jobs/evil/job.json");
    std::fs::create_dir_all(planted.parent().unwrap()).unwrap();
    let evil = with(&|s| s["id"] = "../../outside".into());
    std::fs::write(&planted, evil.to_string()).unwrap();
    let url = format!("file://{}", planted.display());
    let out = env.run(&[
        "worker",
        "run",
        "--job",
        &url,
        "--chunk",
        "0",
        "--attempt",
        "1",
    ]);
    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("- id: "), "{text}");
    assert_eq!(files_under(&canary), ["secret.txt"]);
    assert_eq!(files_under(&storage), ["jobs/evil/job.json"]);
}
