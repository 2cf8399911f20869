//! The Cloud Run adapter authenticates with Google ID tokens whose audience is the service
//! URL: minted from a service-account key (signed JWT exchanged at the key's token_uri) or
//! fetched from the metadata server. Both are played by a loopback fake of Google's
//! endpoints; the service is a real `worker serve` expecting exactly the minted token.

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use common::*;

/// A fake of Google's token endpoint and metadata server: answers with `token` when the
/// request asks for `audience`, and records what it was asked.
fn fake_google(token: &'static str, audience: String) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { break };
            let (head, body) = read_request(&mut conn).unwrap_or_default();
            let body = String::from_utf8_lossy(&body).to_string();
            let line = head.lines().next().unwrap_or_default().to_string();
            log.lock().unwrap().push(format!("{line}\n{body}"));
            let wanted = url_encode(&audience);
            let ok = if line
                .starts_with("GET /computeMetadata/v1/instance/service-accounts/default/identity")
            {
                head.to_ascii_lowercase()
                    .contains("metadata-flavor: google")
                    && line.contains(&format!("audience={wanted}"))
            } else if line.starts_with("POST /token") {
                // The assertion is a JWT whose payload names the service as target_audience.
                body.split('&')
                    .find_map(|kv| kv.strip_prefix("assertion="))
                    .and_then(|jwt| jwt.split('.').nth(1).map(str::to_string))
                    .and_then(|p| {
                        base64::engine::general_purpose::URL_SAFE_NO_PAD
                            .decode(p)
                            .ok()
                    })
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                    .is_some_and(|claims| claims["target_audience"] == audience.as_str())
                    && body.contains(
                        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer",
                    )
            } else {
                false
            };
            let (status, body) = match (ok, line.starts_with("POST")) {
                (true, true) => ("200 OK", format!("{{\"id_token\":\"{token}\"}}")),
                (true, false) => ("200 OK", token.to_string()),
                (false, _) => ("400 Bad Request", "{\"error\":\"bad request\"}".to_string()),
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (addr, seen)
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn render_on(env: &Env, service: &str, vars: &[(&str, String)]) -> std::process::Output {
    let r = ffmpeg_renderer();
    let mut cmd = env.cmd(&with_renderer(
        &[
            "render",
            "-o",
            "run.mp4",
            "--frames",
            "0..20",
            "--size",
            "64x64",
            "--chunks",
            "2",
            "--adapter",
            "cloudrun",
            "--service",
            service,
        ],
        &r,
    ));
    cmd.env_remove("HELIOS_WORKER_TOKEN")
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env_remove("GCE_METADATA_HOST")
        .envs(vars.iter().map(|(k, v)| (k, v)));
    cmd.output().unwrap()
}

#[test]
fn cloud_run_calls_carry_an_id_token_from_a_service_account_key() {
    let service = WorkerServer::start(Some("sa-minted-id-token"));
    let (google, seen) = fake_google("sa-minted-id-token", service.url.clone());
    let env = Env::new();
    let pem = std::process::Command::new("openssl")
        .args(["genrsa", "2048"])
        .output()
        .unwrap();
    assert!(pem.status.success());
    let key = serde_json::json!({
        "type": "service_account",
        "client_email": "renderer@example-project.iam.gserviceaccount.com",
        "private_key": String::from_utf8(pem.stdout).unwrap(),
        "token_uri": format!("http://{google}/token"),
    });
    std::fs::write(env.path("key.json"), key.to_string()).unwrap();
    let out = render_on(
        &env,
        &service.url,
        &[(
            "GOOGLE_APPLICATION_CREDENTIALS",
            env.path("key.json").display().to_string(),
        )],
    );
    assert_ok(&out);
    assert_eq!(probe_stream(&env.path("run.mp4")).0, 20);
    // One token for the whole job: cached, not minted per chunk.
    assert_eq!(seen.lock().unwrap().len(), 1, "{:?}", seen.lock().unwrap());
}

#[test]
fn cloud_run_calls_carry_an_id_token_from_the_metadata_server() {
    let service = WorkerServer::start(Some("metadata-id-token"));
    let (google, _) = fake_google("metadata-id-token", service.url.clone());
    let env = Env::new();
    let out = render_on(&env, &service.url, &[("GCE_METADATA_HOST", google)]);
    assert_ok(&out);
}

#[test]
fn a_wrong_id_token_is_refused_by_the_service() {
    let service = WorkerServer::start(Some("the-right-token"));
    let (google, _) = fake_google("some-other-token", service.url.clone());
    let env = Env::new();
    let out = render_on(&env, &service.url, &[("GCE_METADATA_HOST", google)]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused the credentials"));
}
