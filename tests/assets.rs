//! Remote resources are vendored at plan time: a composition that loads a web font and an
//! image from a loopback origin renders, in 3 chunks and in 1, with the origin's bytes and
//! without contacting it again; what cannot be vendored fails the plan naming its URL; a
//! page that loads a new URL at a frame the planner did not see fails that chunk (unless
//! `--allow-network`); a batch fetches each URL once.

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use common::*;

/// A loopback origin serving a web font, an image, a JSON document and a 2 MB file; it
/// records every request (path, and whether a browser sent it) and, once closed, answers
/// 503.
struct Origin {
    url: String,
    requests: Arc<Mutex<Vec<(String, bool)>>>,
    closed: Arc<AtomicBool>,
}

impl Origin {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let closed = Arc::new(AtomicBool::new(false));
        let (r, c) = (requests.clone(), closed.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let (r, c) = (r.clone(), c.clone());
                std::thread::spawn(move || {
                    let Some((head, _)) = read_request(&mut conn) else {
                        return;
                    };
                    let path = head
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or("/")
                        .split('?')
                        .next()
                        .unwrap_or("/")
                        .to_string();
                    let browser = head.to_ascii_lowercase().contains("user-agent: mozilla");
                    r.lock().unwrap().push((path.clone(), browser));
                    let (status, ctype, body): (&str, &str, Vec<u8>) = if c.load(Ordering::SeqCst) {
                        ("503 Closed", "text/plain", b"closed".to_vec())
                    } else {
                        match path.as_str() {
                            "/font.ttf" => (
                                "200 OK",
                                "font/ttf",
                                std::fs::read(
                                    "/usr/share/fonts/truetype/dejavu/DejaVuSerif-Bold.ttf",
                                )
                                .unwrap(),
                            ),
                            "/image.png" => ("200 OK", "image/png", red_png()),
                            "/late.json" => {
                                ("200 OK", "application/json", b"{\"late\":true}".to_vec())
                            }
                            "/big.bin" => {
                                ("200 OK", "application/octet-stream", vec![7u8; 2_000_000])
                            }
                            "/tone.wav" => ("200 OK", "audio/wav", tone_wav()),
                            _ => ("404 Not Found", "text/plain", b"no".to_vec()),
                        }
                    };
                    let _ = write!(
                        conn,
                        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nAccess-Control-Allow-Origin: *\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = conn.write_all(&body);
                });
            }
        });
        Self {
            url,
            requests,
            closed,
        }
    }

    fn count(&self, path: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .count()
    }

    fn fetches_not_from_a_browser(&self, path: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, browser)| p == path && !browser)
            .count()
    }

    fn total(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

/// One second of a 440 Hz tone, 48 kHz mono WAV.
fn tone_wav() -> Vec<u8> {
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000:duration=1",
        "-f",
        "wav",
        "-",
    ])
}

/// A 32×32 opaque red PNG.
fn red_png() -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, 32, 32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(&[255, 0, 0].repeat(32 * 32)).unwrap();
    }
    out
}

/// A composition in `dir`: big text in the origin's web font (`font` false: a local
/// fallback only), the origin's image at (8, 80), and (`late`) a fetch of `/late.json` when
/// frame 40 is drawn.
fn composition(dir: &Path, origin: &str, font: bool, late: bool) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let face = if font {
        format!("@font-face {{ font-family: 'Vendored'; src: url('{origin}/font.ttf'); }}")
    } else {
        String::new()
    };
    let late = if late {
        format!(
            "let asked = false;
             const tick = (t) => {{
               if (!asked && Math.round(t * 30 / 1000) === 40) {{ asked = true; fetch('{origin}/late.json'); }}
               requestAnimationFrame(tick);
             }};
             requestAnimationFrame(tick);"
        )
    } else {
        String::new()
    };
    std::fs::write(
        dir.join("index.html"),
        format!(
            r#"<!doctype html><html><head><style>
{face}
html, body {{ margin: 0; background: #fff; }}
p {{ font: 48px 'Vendored', monospace; margin: 8px; }}
img {{ position: absolute; left: 8px; top: 80px; }}
</style></head><body><p>Agile Wq</p><img src="{origin}/image.png">
<script>{late}</script></body></html>"#
        ),
    )
    .unwrap();
    dir.to_str().unwrap().to_string()
}

fn rgb(path: &Path) -> Vec<u8> {
    ffmpeg(&[
        "-i",
        path.to_str().unwrap(),
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-",
    ])
}

#[test]
fn a_planned_job_renders_with_vendored_assets_and_never_contacts_the_origin() {
    let origin = Origin::start();
    let env = Env::new();
    let comp = composition(&env.path("comp"), &origin.url, true, false);
    for (spec, chunks) in [("three.json", "3"), ("one.json", "1")] {
        env.ok(&[
            "plan",
            &comp,
            "--emit",
            spec,
            "--frames",
            "0..30",
            "--size",
            "320x120",
            "--chunks",
            chunks,
            "--lossless",
        ]);
    }
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.path("three.json")).unwrap()).unwrap();
    let assets = spec["composition"]["assets"].as_object().unwrap();
    for path in ["/font.ttf", "/image.png"] {
        let a = &assets[&format!("{}{path}", origin.url)];
        assert!(a["key"].as_str().unwrap().starts_with("assets/"), "{a}");
    }
    assert_eq!(assets.len(), 2, "{assets:?}");
    origin.closed.store(true, Ordering::SeqCst);
    let before = origin.total();

    env.ok(&["run", "three.json", "-o", "three.mp4"]);
    env.ok(&["run", "one.json", "-o", "one.mp4"]);
    assert_eq!(
        origin.total(),
        before,
        "the origin was contacted after planning"
    );
    let (a, b) = (env.path("three.mp4"), env.path("one.mp4"));
    assert_eq!(framemd5(&a), framemd5(&b));
    let frame = rgb(&a);
    let px = |x: usize, y: usize| &frame[(y * 320 + x) * 3..(y * 320 + x) * 3 + 3];
    let red = px(24, 96);
    assert!(
        red[0] > 240 && red[1] < 16 && red[2] < 16,
        "the image is drawn: {red:?}"
    );

    // The text is in the web font: the same page with only the fallback font differs there.
    let fallback = composition(&env.path("fallback"), &origin.url, false, false);
    origin.closed.store(false, Ordering::SeqCst);
    env.ok(&[
        "still",
        &fallback,
        "-o",
        "fallback.png",
        "--size",
        "320x120",
    ]);
    let other = rgb(&env.path("fallback.png"));
    let text = |f: &[u8]| f[..320 * 70 * 3].to_vec();
    assert_ne!(
        text(&frame),
        text(&other),
        "the text is not in the web font"
    );
}

#[test]
fn what_cannot_be_vendored_fails_the_plan_naming_it() {
    let origin = Origin::start();
    let env = Env::new();
    let dir = env.path("missing");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("index.html"),
        format!("<img src=\"{}/nothing.png\">", origin.url),
    )
    .unwrap();
    let r = env.run(&[
        "render",
        dir.to_str().unwrap(),
        "-o",
        "x.mp4",
        "--frames",
        "0..3",
    ]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success());
    assert!(
        err.contains(&format!("{}/nothing.png", origin.url)) && err.contains("404"),
        "{err}"
    );
    assert!(!env.path("x.mp4").exists());

    let dir = env.path("big");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("index.html"),
        format!("<script>fetch('{}/big.bin')</script>", origin.url),
    )
    .unwrap();
    let r = env.run(&[
        "render",
        dir.to_str().unwrap(),
        "-o",
        "y.mp4",
        "--frames",
        "0..3",
        "--max-asset-mb",
        "1",
    ]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success());
    assert!(
        err.contains("/big.bin") && err.contains("--max-asset-mb 1"),
        "{err}"
    );
    // Nothing was submitted.
    let jobs = env.ok(&["status", "--json"]);
    assert_eq!(String::from_utf8_lossy(&jobs.stdout).trim(), "[]");
}

#[test]
fn a_new_url_at_frame_40_fails_its_chunk_unless_the_network_is_allowed() {
    let origin = Origin::start();
    let env = Env::new();
    let comp = composition(&env.path("late"), &origin.url, true, true);
    let args = [
        "render",
        comp.as_str(),
        "-o",
        "late.mp4",
        "--frames",
        "0..60",
        "--size",
        "320x120",
        "--chunks",
        "2",
    ];
    let r = env.run(&args);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success(), "{err}");
    assert!(err.contains(&format!("{}/late.json", origin.url)), "{err}");
    assert!(err.contains("--allow-network"), "{err}");
    let id = env.only_job();
    assert_eq!(env.attempts(&id)[1], 1, "a fatal error is not retried");
    assert_eq!(origin.count("/late.json"), 0);

    let mut allowed = args.to_vec();
    allowed[3] = "allowed.mp4";
    allowed.push("--allow-network");
    env.ok(&allowed);
    assert_eq!(origin.count("/late.json"), 1);
    assert_eq!(probe_stream(&env.path("allowed.mp4")).0, 60);
}

#[test]
fn a_batch_fetches_each_url_once() {
    let origin = Origin::start();
    let env = Env::new();
    let comp = composition(&env.path("batch"), &origin.url, true, false);
    std::fs::write(env.path("rows.jsonl"), "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n").unwrap();
    env.ok(&[
        "batch",
        &comp,
        "--props-file",
        "rows.jsonl",
        "-o",
        "out/{row}.png",
        "--frame",
        "3",
        "--size",
        "320x120",
    ]);
    for path in ["/font.ttf", "/image.png"] {
        assert_eq!(origin.fetches_not_from_a_browser(path), 1, "{path}");
    }
    // Only the planner's page and the vendoring fetch: no worker asked.
    assert_eq!(
        origin.count("/image.png"),
        2,
        "{:?}",
        origin.requests.lock().unwrap()
    );
    for n in 1..=3 {
        let f = rgb(&env.path(&format!("out/{n}.png")));
        assert_eq!(
            &f[(96 * 320 + 24) * 3..(96 * 320 + 24) * 3 + 3],
            [255, 0, 0]
        );
    }
}

#[test]
fn remote_audio_is_mixed_from_its_vendored_copy() {
    let origin = Origin::start();
    let env = Env::new();
    let dir = env.path("audio");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("index.html"),
        format!(
            "<!doctype html><body style=\"background:#123\"><audio src=\"{}/tone.wav\" preload=\"none\"></audio></body>",
            origin.url
        ),
    )
    .unwrap();
    env.ok(&[
        "plan",
        dir.to_str().unwrap(),
        "--emit",
        "spec.json",
        "--frames",
        "0..30",
        "--size",
        "64x64",
    ]);
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.path("spec.json")).unwrap()).unwrap();
    assert!(
        spec["composition"]["assets"]
            .get(format!("{}/tone.wav", origin.url))
            .is_some(),
        "{spec}"
    );
    origin.closed.store(true, Ordering::SeqCst);
    let before = origin.total();
    env.ok(&["run", "spec.json", "-o", "a.mp4"]);
    assert_eq!(
        origin.total(),
        before,
        "the origin was contacted after planning"
    );
    let samples = decode_audio(&env.path("a.mp4"));
    let level = rms(&samples, 0.1, 0.9);
    assert!(level > 0.05, "the tone is in the mix: rms {level}");
}
