//! Every frame is exactly frame f, whatever framework draws it and however busy the machine
//! is: the framework clocks of examples/compositions/clocks (React, React with Framer Motion,
//! Vue, Svelte, Preact with signals, GSAP, Lottie, Three.js) and plain pages that draw in
//! tasks of their own (a MessageChannel, setTimeout(0), promises, fetch, postMessage) show
//! their own index on every frame, in one chunk and in four chunks two at a time, at 30 and
//! 30000/1001 fps, with two busy loops beside the render and two browsers per worker. A page
//! that never settles fails, naming the frame.

mod common;

use std::path::Path;

use common::*;

/// The frames every clock is rendered at: four chunks of 16, enough for two browsers each.
const FRAMES: (u32, u32) = (0, 64);

/// The path of framework clock `name`, which must have been built.
fn clock(name: &str) -> String {
    let comp = example(&format!("clocks/{name}"));
    assert!(
        Path::new(&comp).join("dist/main.js").exists(),
        "build the examples first: bash scripts/build-examples.sh (the README's test command does)"
    );
    comp
}

/// Renders `comp` at `fps` as `chunks` chunks, two at a time, two browsers per worker,
/// lossless at 1280×256 (the strip's rows are all above y = 256), and checks that every
/// frame's four rows read its own index. Returns the job's id.
fn every_frame_shows_its_index(env: &Env, comp: &str, fps: &str, chunks: u32) -> String {
    let out = format!("clock-{chunks}-{}.mp4", fps.replace('/', "_"));
    let frames = format!("{}..{}", FRAMES.0, FRAMES.1);
    let chunks_arg = chunks.to_string();
    env.ok(&[
        "render",
        comp,
        "-o",
        &out,
        "--frames",
        &frames,
        "--fps",
        fps,
        "--size",
        "1280x256",
        "--chunks",
        &chunks_arg,
        "--concurrency",
        "2",
        "--browsers",
        "2",
        "--lossless",
    ]);
    let readings = clock_readings(&env.path(&out), 1280, 256);
    assert_eq!(
        readings.len() as u32,
        FRAMES.1 - FRAMES.0,
        "{comp} at {fps} in {chunks} chunks: frame count"
    );
    let wrong: Vec<String> = readings
        .iter()
        .enumerate()
        .filter_map(|(i, rows)| {
            let want = FRAMES.0 + i as u32;
            (rows.iter().any(|&r| r != want)).then(|| format!("frame {want} shows {rows:?}"))
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{comp} at {fps} in {chunks} chunks: {} of {} frames do not show their own index: {}",
        wrong.len(),
        readings.len(),
        wrong.join("; ")
    );
    env.status_ids().pop().expect("a job")
}

/// One chunk and four chunks, at 30 and 30000/1001 fps, beside two busy loops.
fn conformance(name: &str) {
    let env = Env::new();
    let comp = clock(name);
    let _load = BusyLoops::start(2);
    for fps in ["30", "30000/1001"] {
        for chunks in [1, 4] {
            let id = every_frame_shows_its_index(&env, &comp, fps, chunks);
            // The settle step is measured apart in every chunk's stage timings.
            for c in env.status(&id)["chunks"].as_array().unwrap() {
                assert!(
                    c["stages"]["settle_ms"].is_u64(),
                    "{name}: no settle_ms in {c}"
                );
            }
        }
    }
}

#[test]
fn react_clock_shows_every_frame() {
    conformance("react");
}

#[test]
fn react_framer_motion_clock_shows_every_frame() {
    conformance("react-framer-motion");
}

#[test]
fn vue_clock_shows_every_frame() {
    conformance("vue");
}

#[test]
fn svelte_clock_shows_every_frame() {
    conformance("svelte");
}

#[test]
fn preact_signals_clock_shows_every_frame() {
    conformance("preact");
}

#[test]
fn gsap_clock_shows_every_frame() {
    conformance("gsap");
}

#[test]
fn lottie_clock_shows_every_frame() {
    conformance("lottie");
}

#[test]
fn three_clock_shows_every_frame() {
    conformance("three");
}

/// A plain page (no Helios) whose rows are drawn by work its animation loop only starts:
/// row 0 from a MessageChannel task, row 1 from a setTimeout(0), an idle callback and a
/// promise chain, row 2 from the answer to a fetch (and its body), row 3 from a message the
/// page posts to itself.
const TASK_CLOCK: &str = r#"<!doctype html><html><head><meta charset="utf-8">
<link rel="icon" href="data:,">
<style>html,body{margin:0;background:#000;width:1280px;height:720px;overflow:hidden}
.b{position:absolute;width:48px;height:48px;background:#000}</style></head><body><script>
const FPS = window.__HELIOS_CONFIG__.fps.num / window.__HELIOS_CONFIG__.fps.den;
const rows = [16, 80, 144, 208].map((y) => Array.from({ length: 24 }, (_, i) => {
  const d = document.createElement('div');
  d.className = 'b'; d.style.left = (16 + 52 * i) + 'px'; d.style.top = y + 'px';
  document.body.appendChild(d); return d;
}));
const paint = (row, n) => rows[row].forEach((d, i) => { d.style.background = (n >>> i) & 1 ? '#fff' : '#000'; });
const channel = new MessageChannel();
channel.port1.onmessage = (e) => paint(0, e.data);
window.addEventListener('message', (e) => { if (e.data && e.data.row3 !== undefined) paint(3, e.data.row3); });
const frame = (ts) => {
  const n = Math.round(ts * FPS / 1000);
  channel.port2.postMessage(n);
  setTimeout(() => requestIdleCallback(() => Promise.resolve(n).then((v) => v)
    .then((v) => new Promise((r) => queueMicrotask(() => r(v)))).then((v) => paint(1, v))), 0);
  fetch('./n.json').then((r) => r.json()).then((j) => paint(2, n + j.add));
  window.postMessage({ row3: n }, '*');
  requestAnimationFrame(frame);
};
requestAnimationFrame(frame);
</script></body></html>"#;

#[test]
fn a_plain_page_drawing_in_tasks_promises_and_fetches_shows_every_frame() {
    let env = Env::new();
    let dir = env.path("tasks");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), TASK_CLOCK).unwrap();
    std::fs::write(dir.join("n.json"), r#"{"add":0}"#).unwrap();
    let _load = BusyLoops::start(2);
    for fps in ["30", "30000/1001"] {
        for chunks in [1, 4] {
            every_frame_shows_its_index(&env, dir.to_str().unwrap(), fps, chunks);
        }
    }
}

/// A page that starts, at 0.5 s (frame 15 at 30 fps), work that re-posts itself forever.
fn never_settles(kind: &str) -> String {
    let repost = match kind {
        "message" => "const c = new MessageChannel(); c.port1.onmessage = () => c.port2.postMessage(0); c.port2.postMessage(0);",
        "timeout" => "const again = () => setTimeout(again, 0); again();",
        other => panic!("unknown kind {other}"),
    };
    format!(
        r#"<!doctype html><html><head><link rel="icon" href="data:,"></head>
<body style="margin:0;background:#123"><script>
let started = false;
const frame = (ts) => {{
  if (ts >= 500 && !started) {{ started = true; {repost} }}
  requestAnimationFrame(frame);
}};
requestAnimationFrame(frame);
</script></body></html>"#
    )
}

#[test]
fn a_page_that_never_settles_fails_naming_the_frame_without_retries() {
    for kind in ["message", "timeout"] {
        let env = Env::new();
        let dir = env.path("busy");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.html"), never_settles(kind)).unwrap();
        let out = env.run(&[
            "render",
            dir.to_str().unwrap(),
            "-o",
            "out.mp4",
            "--frames",
            "0..30",
            "--fps",
            "30",
            "--size",
            "320x180",
            "--chunks",
            "1",
            "--browsers",
            "1",
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{kind}: the render succeeded");
        assert!(
            stderr.contains("frame 15") && stderr.contains("never settled"),
            "{kind}: the error does not name frame 15 as never settled:\n{stderr}"
        );
        assert!(
            !env.path("out.mp4").exists(),
            "{kind}: an output was written"
        );
        let id = env.only_job();
        assert_eq!(
            env.attempts(&id),
            vec![1],
            "{kind}: a page that never settles is the composition's fault, not retried"
        );
    }
}
