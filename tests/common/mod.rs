//! Shared helpers for the integration tests: a private state directory per test, the real
//! `helios-infra` binary, real FFmpeg.
#![allow(dead_code)]

pub mod peers;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A reqwest client for a test's own requests. The crate builds reqwest without a TLS
/// provider of its own, so the process default is installed first, as the binary does.
pub fn http_client() -> reqwest::Client {
    helios_infra::net::use_ring();
    reqwest::Client::new()
}

/// `render -o OUT` of 60 frames at 64×64 in 6 chunks (x264 ultrafast), then `extra`: the
/// small job the fault-injection tests run through the test renderer.
pub fn small_render_args<'a>(out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    render_args(out, "0..60", "6", extra)
}

/// `render -o OUT` of `frames` at 64×64 in `chunks` chunks (x264 ultrafast), then `extra`.
pub fn render_args<'a>(
    out: &'a str,
    frames: &'a str,
    chunks: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut v = vec![
        "render",
        "-o",
        out,
        "--frames",
        frames,
        "--size",
        "64x64",
        "--chunks",
        chunks,
        "--preset",
        "ultrafast",
    ];
    v.extend_from_slice(extra);
    v
}

/// The path of an example composition (`examples/compositions/NAME`).
pub fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/compositions")
        .join(name)
        .display()
        .to_string()
}

/// `examples/compositions/title-card`, which must have been built.
pub fn title_card() -> String {
    let comp = example("title-card");
    assert!(
        Path::new(&comp).join("dist/main.js").exists(),
        "build the example first: bash scripts/build-examples.sh (the README's test command does)"
    );
    comp
}

/// The score the title card spells in binary along its top edge (16 blocks of 40 px,
/// most significant first, white = 1), from one 640-pixel-wide RGB frame.
pub fn title_card_score(rgb: &[u8]) -> u32 {
    (0..16).fold(0, |acc, bit| {
        let i = (10 * 640 + bit * 40 + 20) * 3;
        let on = (u32::from(rgb[i]) + u32::from(rgb[i + 1]) + u32::from(rgb[i + 2])) / 3 > 128;
        (acc << 1) | u32::from(on)
    })
}

/// The JSON lines of a `--json` output (other lines skipped).
pub fn json_lines(out: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(out)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The check of a `doctor --json` output whose name starts with `name`.
pub fn named<'a>(checks: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    checks
        .iter()
        .find(|c| c["name"].as_str().is_some_and(|n| n.starts_with(name)))
        .unwrap_or_else(|| panic!("no check {name} in {checks:?}"))
}

/// The Kubernetes API server's `Status` answer to a failed request.
pub fn k8s_status(
    code: u16,
    reason: &str,
    message: String,
) -> (axum::http::StatusCode, axum::Json<serde_json::Value>) {
    (
        axum::http::StatusCode::from_u16(code).unwrap(),
        axum::Json(serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": code,
        })),
    )
}

/// Asserts that a finished process succeeded, showing its stderr if not.
pub fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test's private working directory and `--home`.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn home(&self) -> PathBuf {
        self.path(".helios")
    }

    /// `helios-infra --home <tmp>/.helios ARGS…` run in the temp dir.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_helios-infra"));
        c.current_dir(self.dir.path())
            .arg("--home")
            .arg(self.home())
            .args(args);
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run helios-infra")
    }

    /// Runs and asserts success, returning the output.
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "helios-infra {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        out
    }

    /// Like [`Env::ok`], with extra environment variables for the process.
    pub fn ok_with_env<K: AsRef<std::ffi::OsStr>, V: AsRef<std::ffi::OsStr>>(
        &self,
        args: &[&str],
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Output {
        let out = self
            .cmd(args)
            .envs(vars)
            .output()
            .expect("run helios-infra");
        assert_ok(&out);
        out
    }

    /// `status ID --json`.
    /// Starts `args` (a render) in the background with these variables, and waits until
    /// the store has its job: the process and the job id.
    pub fn spawn_render(
        &self,
        args: &[&str],
        vars: &[(&'static str, String)],
    ) -> (std::process::Child, String) {
        let before = self.status_ids();
        let child = self
            .cmd(args)
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let id = loop {
            if let Some(id) = self.status_ids().into_iter().find(|i| !before.contains(i)) {
                break id;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        (child, id)
    }

    pub fn status(&self, id: &str) -> serde_json::Value {
        let out = self.ok(&["status", id, "--json"]);
        serde_json::from_slice(&out.stdout).expect("status json")
    }

    /// How many attempts each chunk of a job has had, by chunk index.
    pub fn attempts(&self, id: &str) -> Vec<u64> {
        self.status(id)["chunks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["attempts"].as_u64().unwrap())
            .collect()
    }

    /// Names of the files in the test's directory that contain `part` (an output and any
    /// staging file beside it).
    pub fn files_like(&self, part: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path("."))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(part))
            .collect();
        names.sort();
        names
    }

    /// The only job's id.
    pub fn only_job(&self) -> String {
        let out = self.ok(&["status", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let jobs = v.as_array().unwrap();
        assert_eq!(jobs.len(), 1, "{v}");
        jobs[0]["id"].as_str().unwrap().to_string()
    }

    /// The fault-injecting test renderer (tests/fixtures/renderer.sh) as a command after `--`.
    pub fn renderer(&self, mode: &str) -> Vec<String> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/renderer.sh");
        [
            "bash",
            script.to_str().unwrap(),
            self.dir.path().to_str().unwrap(),
            mode,
            "{start}",
            "{end}",
            "{fps}",
            "{width}",
            "{height}",
            "{output}",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// How often the test renderer was started for a chunk starting at `start`.
    pub fn invocations(&self, start: u64) -> usize {
        std::fs::read_to_string(self.path("invocations.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.trim() == start.to_string())
            .count()
    }
}

/// A renderer that needs only FFmpeg: testsrc2, trimmed to the chunk, written lossless.
pub fn ffmpeg_renderer() -> Vec<String> {
    [
        "ffmpeg",
        "-v",
        "error",
        "-nostdin",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size={width}x{height}:rate={fps}",
        "-vf",
        "trim=start_frame={start}:end_frame={end}",
        "-c:v",
        "ffv1",
        "{output}",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Joins fixed args with a renderer argv after `--`.
pub fn with_renderer<'a>(args: &[&'a str], argv: &'a [String]) -> Vec<&'a str> {
    let mut v: Vec<&str> = args.to_vec();
    v.push("--");
    v.extend(argv.iter().map(String::as_str));
    v
}

/// Decoded frame hashes (`-f framemd5`), one per frame, without the header.
pub fn framemd5(path: &Path) -> Vec<String> {
    framemd5_of(path.to_str().unwrap(), &[], None)
}

/// [`framemd5`] of any input FFmpeg opens (a URL), with input options `pre`, of the first
/// `frames` frames (all with `None`).
pub fn framemd5_of(input: &str, pre: &[&str], frames: Option<usize>) -> Vec<String> {
    let n = frames.map(|n| n.to_string());
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin"])
        .args(pre)
        .args(["-i", input])
        .args(n.iter().flat_map(|n| ["-frames:v", n.as_str()]))
        .args(["-map", "0:v:0", "-f", "framemd5", "-"])
        .output()
        .expect("ffmpeg");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        // Keep only the hash column: timestamps are checked separately.
        .map(|l| l.rsplit(',').next().unwrap().trim().to_string())
        .collect()
}

/// ffprobe of the first video stream: (frames, duration_ts, time_base).
pub fn probe_stream(path: &Path) -> (u64, u64, String) {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-count_packets",
            "-show_entries",
            "stream=nb_read_packets,duration_ts,time_base",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .expect("ffprobe");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &v["streams"][0];
    (
        s["nb_read_packets"].as_str().unwrap().parse().unwrap(),
        s["duration_ts"].as_u64().unwrap_or(0),
        s["time_base"].as_str().unwrap().to_string(),
    )
}

/// Presentation timestamps of every video packet, in stream time base, sorted.
pub fn packet_pts(path: &Path) -> Vec<i64> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=pts",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe");
    let mut pts: Vec<i64> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect();
    pts.sort();
    pts
}

/// Runs FFmpeg with the given arguments, asserting success.
pub fn ffmpeg(args: &[&str]) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Every frame of a video or image decoded to RGBA, as stored (no frame-rate conversion);
/// `pre` goes before `-i` (e.g. `-c:v libvpx-vp9`, the decoder that keeps VP9's alpha).
pub fn decode_rgba(path: &Path, pre: &[&str]) -> Vec<u8> {
    let mut args: Vec<&str> = pre.to_vec();
    args.extend([
        "-i",
        path.to_str().unwrap(),
        "-vsync",
        "passthrough",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgba",
        "-",
    ]);
    ffmpeg(&args)
}

/// The first audio stream decoded to mono 48 kHz f32 samples.
pub fn decode_audio(path: &Path) -> Vec<f32> {
    let raw = ffmpeg(&[
        "-i",
        path.to_str().unwrap(),
        "-map",
        "0:a:0",
        "-ac",
        "1",
        "-ar",
        "48000",
        "-f",
        "f32le",
        "-",
    ]);
    raw.chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Mean luma of every decoded video frame (downscaled), in decode order.
pub fn frame_brightness(path: &Path) -> Vec<f64> {
    let raw = ffmpeg(&[
        "-i",
        path.to_str().unwrap(),
        "-map",
        "0:v:0",
        "-vf",
        "scale=8:8,format=gray",
        "-f",
        "rawvideo",
        "-",
    ]);
    raw.chunks_exact(64)
        .map(|f| f.iter().map(|&b| b as f64).sum::<f64>() / 64.0)
        .collect()
}

/// Writes the tone [`assert_continuous_sine`] checks: 12 s of 440 Hz at amplitude 0.5,
/// 48 kHz.
pub fn write_test_tone(path: &Path) {
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=f=440:r=48000:d=12",
        "-af",
        "volume=4",
        path.to_str().unwrap(),
    ]);
}

/// Checks that `samples` (48 kHz) are a continuous 440 Hz sine of amplitude 0.5: no jump
/// between samples steeper than the sine's own (with room for AAC's coding noise) — a gap or
/// click at a boundary jumps by up to the amplitude — and the sine's level in every whole
/// second but the last.
pub fn assert_continuous_sine(samples: &[f32]) {
    let allowed = 0.5 * 2.0 * std::f64::consts::PI * 440.0 / 48000.0 * 1.3 + 0.01;
    let (worst_at, worst) = samples[..samples.len().saturating_sub(1024)]
        .windows(2)
        .map(|w| (w[1] - w[0]).abs() as f64)
        .enumerate()
        .fold((0, 0.0), |acc, (i, d)| if d > acc.1 { (i, d) } else { acc });
    assert!(
        worst <= allowed,
        "discontinuity of {worst:.4} at {:.4}s (allowed {allowed:.4})",
        worst_at as f64 / 48000.0
    );
    let seconds = samples.len() / 48000;
    for second in 0..seconds.saturating_sub(1) {
        let r = rms(samples, second as f64 + 0.1, second as f64 + 0.9);
        assert!(
            (r - 0.5 / 2f64.sqrt()).abs() < 0.02,
            "rms {r} in second {second}"
        );
    }
}

/// Root mean square of samples `[from, to)` seconds at 48 kHz.
pub fn rms(samples: &[f32], from: f64, to: f64) -> f64 {
    let (a, b) = ((from * 48000.0) as usize, (to * 48000.0) as usize);
    let s = &samples[a..b];
    (s.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>() / s.len() as f64).sqrt()
}

/// A `helios-infra worker serve` process on a free loopback port, killed on drop.
pub struct WorkerServer {
    pub child: std::process::Child,
    pub url: String,
    pub addr: String,
}

impl WorkerServer {
    /// `n` workers with these variables in their environment, and their URLs as
    /// `--workers` takes them (comma-separated).
    pub fn pool(n: usize, vars: &[(&'static str, String)]) -> (Vec<Self>, String) {
        let workers: Vec<Self> = (0..n).map(|_| Self::start_with_env(None, vars)).collect();
        let urls = workers
            .iter()
            .map(|w| w.url.clone())
            .collect::<Vec<_>>()
            .join(",");
        (workers, urls)
    }

    pub fn start(token: Option<&str>) -> Self {
        Self::start_with_env(token, &[])
    }

    /// A worker with these variables in its own environment (its storage endpoint…).
    pub fn start_with_env(token: Option<&str>, vars: &[(&'static str, String)]) -> Self {
        use std::io::BufRead;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_helios-infra"));
        cmd.args(["worker", "serve", "--listen", "127.0.0.1:0"]);
        cmd.envs(vars.iter().map(|(k, v)| (k, v)));
        match token {
            Some(t) => cmd.args(["--token", t]),
            None => cmd.arg("--no-auth"),
        };
        let mut child = cmd
            .env_remove("HELIOS_WORKER_TOKEN")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start worker serve");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .expect("listening line")
            .to_string();
        let addr = url.trim_start_matches("http://").to_string();
        Self { child, url, addr }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for WorkerServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw HTTP/1.1 request (Connection: close); returns (status, body).
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let (status, _, body) = http_full(addr, method, path, headers, body);
    (status, body)
}

/// A raw HTTP/1.1 request (Connection: close; `Host: addr` unless `headers` name one);
/// returns (status, response head, body).
pub fn http_full(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .map(|(h, b)| (h.to_string(), b.to_string()))
        .unwrap_or_default();
    (status, head, body)
}

impl Env {
    /// Ids of all jobs, oldest first.
    pub fn status_ids(&self) -> Vec<String> {
        let out = self.ok(&["status", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_str().unwrap().to_string())
            .collect()
    }
}

/// Reads one HTTP/1.1 request (headers, then a Content-Length body) from a connection.
pub fn read_request(conn: &mut std::net::TcpStream) -> Option<(String, Vec<u8>)> {
    use std::io::Read;
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    loop {
        let n = conn.read(&mut tmp).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            while buf.len() < i + 4 + len {
                let n = conn.read(&mut tmp).ok()?;
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&tmp[..n]);
            }
            let end = (i + 4 + len).min(buf.len());
            return Some((head, buf[i + 4..end].to_vec()));
        }
    }
}

/// The bearer token of a request a test's fake received (empty when there is none).
pub fn bearer(headers: &axum::http::HeaderMap) -> String {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string()
}

/// Serves `app` on a loopback port from its own thread and runtime (a test's fake of a
/// cloud API); returns its base URL.
pub fn serve_on_loopback(app: axum::Router) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    format!("http://{}", rx.recv().unwrap())
}

/// Reads the 24-bit numbers painted by examples/compositions/clock (rows at y = 16, 80,
/// 144, 208: rAF timestamp, Date.now, CSS animation, performance.now) from decoded frames.
pub fn clock_readings(video: &Path, width: usize, height: usize) -> Vec<[u32; 4]> {
    let raw = ffmpeg(&[
        "-i",
        video.to_str().unwrap(),
        "-f",
        "rawvideo",
        "-pix_fmt",
        "gray",
        "-",
    ]);
    raw.chunks_exact(width * height)
        .map(|frame| {
            let mut rows = [0u32; 4];
            for (r, y) in [16usize, 80, 144, 208].iter().enumerate() {
                for bit in 0..24 {
                    let (cx, cy) = (40 + 52 * bit, y + 24);
                    if frame[cy * width + cx] >= 128 {
                        rows[r] |= 1 << bit;
                    }
                }
            }
            rows
        })
        .collect()
}

/// Spins `n` threads until dropped: a machine under load.
pub struct BusyLoops(
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    Vec<std::thread::JoinHandle<()>>,
);

impl BusyLoops {
    pub fn start(n: usize) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                })
            })
            .collect();
        Self(stop, threads)
    }
}

impl Drop for BusyLoops {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.1.drain(..) {
            let _ = t.join();
        }
    }
}

/// A running `helios-infra ui` on a free loopback port, stopped when dropped.
pub struct Ui {
    pub child: std::process::Child,
    pub addr: String,
}

impl Ui {
    pub fn start(env: &Env, extra: &[&str]) -> Ui {
        Self::start_with_env(env, extra, &[])
    }

    /// With these variables in its environment (its storage's endpoint and credentials).
    pub fn start_with_env(env: &Env, extra: &[&str], vars: &[(&'static str, String)]) -> Ui {
        use std::io::BufRead;
        let mut args = vec!["ui", "--listen", "127.0.0.1:0", "--json"];
        args.extend(extra);
        let mut child = env
            .cmd(&args)
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).expect("listening event");
        let url = v["url"].as_str().unwrap();
        let addr = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        Ui { child, addr }
    }

    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
        http(&self.addr, "GET", path, headers, b"")
    }

    pub fn json(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.get(path, &[]);
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
    }
}

impl Drop for Ui {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
