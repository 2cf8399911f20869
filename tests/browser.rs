//! HTML compositions in real Chromium: chunked renders equal one-piece renders, frame f
//! shows time f/fps, seeking costs the same at any frame, page errors are fatal and
//! browser crashes are retried.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// What [`chunked_equals_single`] renders.
const CHUNKED_BASE: [&str; 7] = [
    "--frames",
    "0..30",
    "--size",
    "640x360",
    "--lossless",
    "--concurrency",
    "2",
];

/// A ≥5-chunk lossless render equals the 1-chunk render, frame by frame.
fn chunked_equals_single(name: &str) {
    chunked_equals_single_with(name, &[]);
}

/// [`chunked_equals_single`] with more flags; the env holds `one.mp4`, the 1-chunk render.
fn chunked_equals_single_with(name: &str, extra: &[&str]) -> Env {
    let env = Env::new();
    let comp = example(name);
    let mut a = vec!["render", &comp, "-o", "five.mp4", "--chunks", "5"];
    a.extend(CHUNKED_BASE);
    a.extend(extra);
    env.ok(&a);
    let mut b = vec!["render", &comp, "-o", "one.mp4", "--chunks", "1"];
    b.extend(CHUNKED_BASE);
    b.extend(extra);
    env.ok(&b);
    let five = framemd5(&env.path("five.mp4"));
    assert_eq!(five.len(), 30);
    assert_eq!(
        five,
        framemd5(&env.path("one.mp4")),
        "{name}: 5-chunk render differs from the 1-chunk render"
    );
    let distinct = five.iter().collect::<std::collections::HashSet<_>>().len();
    assert!(
        distinct > 20,
        "{name}: only {distinct} distinct frames; is it animating?"
    );
    env
}

#[test]
fn canvas_example_chunked_equals_single() {
    chunked_equals_single("canvas");
}

#[test]
fn dom_css_example_chunked_equals_single() {
    chunked_equals_single("dom-css");
}

#[test]
fn helios_core_example_chunked_equals_single() {
    let dist = Path::new(&example("helios-core")).join("dist/main.js");
    assert!(
        dist.exists(),
        "build the example first: bash scripts/build-examples.sh (the README's test command does)"
    );
    chunked_equals_single("helios-core");
}

#[test]
fn frame_f_shows_time_f_over_fps_at_ntsc_rate_and_far_into_the_timeline() {
    let env = Env::new();
    let html = std::fs::read_to_string(format!("{}/index.html", example("clock"))).unwrap();
    let dir = env.path("clock");
    std::fs::create_dir_all(&dir).unwrap();
    // Several browsers per worker share each chunk in contiguous blocks; the frames still
    // come out in order, each showing its own time.
    for (frames, fps, browsers) in [
        ("0..40", "30000/1001", "3"),
        ("53990..54022", "30000/1001", "2"),
        ("0..6", "30", "1"),
        ("0..40", "30", "2"),
    ] {
        let page = dir.join(format!("clock-{}.html", fps.replace('/', "_")));
        // Bake the rate into the page (workers open the entry without a query string).
        let baked = html.replacen(
            "<head>",
            &format!("<head><script>history.replaceState(null,'','?fps={fps}')</script>"),
            1,
        );
        std::fs::write(&page, baked).unwrap();
        env.ok(&[
            "render",
            page.to_str().unwrap(),
            "-o",
            "clock.mp4",
            "--frames",
            frames,
            "--fps",
            fps,
            "--size",
            "1280x720",
            "--chunks",
            "2",
            "--browsers",
            browsers,
            "--lossless",
        ]);
        let id = env.status_ids().pop().unwrap();
        for c in env.status(&id)["chunks"].as_array().unwrap() {
            assert_eq!(
                c["stages"]["browsers"].to_string(),
                browsers,
                "{fps} {frames}: {c}"
            );
        }
        let (start, end) = frames.split_once("..").unwrap();
        let (start, end): (u32, u32) = (start.parse().unwrap(), end.parse().unwrap());
        let readings = clock_readings(&env.path("clock.mp4"), 1280, 720);
        assert_eq!(readings.len() as u32, end - start, "{fps} {frames}");
        for (i, rows) in readings.iter().enumerate() {
            let want = start + i as u32;
            assert_eq!(
                rows[0], want,
                "{fps} frame {want}: rAF time reads {}",
                rows[0]
            );
            assert_eq!(
                rows[1], want,
                "{fps} frame {want}: Date.now reads {}",
                rows[1]
            );
            assert_eq!(
                rows[2] & 0xffff,
                want & 0xffff,
                "{fps} frame {want}: CSS animation reads {}",
                rows[2]
            );
            assert_eq!(
                rows[3], want,
                "{fps} frame {want}: performance.now reads {}",
                rows[3]
            );
        }
    }
}

/// The renderer's own counters from a chunk's report in storage.
fn chunk_stats(env: &Env, id: &str) -> serde_json::Value {
    let report = env
        .home()
        .join(format!("storage/jobs/{id}/attempts/0/1.json"));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap();
    v["stats"].clone()
}

/// A chunk's first frame costs the page the same work wherever it is: the frame itself at
/// the timeline's start; after a jump, the two frames before it (drawn, not captured, so
/// that raster state is as in the middle of any other chunking) and the frame.
#[test]
fn seeking_to_frame_54000_costs_the_page_no_more_work_than_frame_30() {
    let env = Env::new();
    let canvas = example("canvas");
    for frames in ["0..3", "30..33", "54000..54003"] {
        env.ok(&[
            "render",
            &canvas,
            "-o",
            "a.mp4",
            "--frames",
            frames,
            "--size",
            "320x180",
            "--chunks",
            "1",
            "--browsers",
            "1",
        ]);
    }
    let ids = env.status_ids();
    let stats: Vec<_> = ids.iter().map(|id| chunk_stats(&env, id)).collect();
    let (start, early, late) = (&stats[0], &stats[1], &stats[2]);
    assert_eq!(start["page_seeks_to_first_frame"], 1, "{start}");
    assert_eq!(early["page_seeks_to_first_frame"], 3, "{early}");
    for key in [
        "page_seeks_to_first_frame",
        "page_rafCallbacks_to_first_frame",
        "page_timerCallbacks_to_first_frame",
        "page_settleRounds_to_first_frame",
    ] {
        assert_eq!(
            early[key], late[key],
            "{key}: start 30 {early} vs start 54000 {late}"
        );
    }
}

#[test]
fn a_page_that_throws_fails_the_job_with_the_page_message_without_retries() {
    let env = Env::new();
    let out = env.run(&[
        "render",
        &example("error"),
        "-o",
        "e.mp4",
        "--frames",
        "0..10",
        "--size",
        "320x180",
        "--chunks",
        "1",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("composition exploded at frame 3"), "{err}");
    assert!(
        err.contains("1 attempt(s)") && err.contains("not retryable"),
        "{err}"
    );
}

#[test]
fn a_missing_resource_fails_the_job_naming_it() {
    let env = Env::new();
    let dir = env.path("broken");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("index.html"),
        "<!doctype html><link rel=icon href='data:,'><img src='missing.png'><p>hi</p>",
    )
    .unwrap();
    let out = env.run(&[
        "render",
        dir.to_str().unwrap(),
        "-o",
        "e.mp4",
        "--frames",
        "0..3",
        "--size",
        "320x180",
        "--chunks",
        "1",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("missing.png") && err.contains("failed to load"),
        "{err}"
    );
}

/// Chromium main processes of chunk workers (the ones with a DevTools port) whose profile
/// is under `dir`.
fn browsers_under(dir: &Path) -> Vec<i32> {
    let needle = dir.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            // A worker's browser (its profile is in the chunk's work dir), not the one that
            // looks for media elements at plan time.
            cmd.contains("--remote-debugging-port")
                && cmd.contains(&needle)
                && cmd.contains("helios-chunk-")
        })
        .collect()
}

#[test]
fn a_killed_browser_is_retried_and_the_job_succeeds() {
    let env = Env::new();
    let tmp: PathBuf = env.path("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let child = env
        .cmd(&[
            "render",
            &example("dom-css"),
            "-o",
            "k.mp4",
            "--frames",
            "0..90",
            "--size",
            "640x360",
            "--chunks",
            "2",
            "--concurrency",
            "1",
            // The estimate's probe has a browser of its own: this test kills a chunk's.
            "--no-probe",
        ])
        .env("TMPDIR", &tmp)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill a worker's browser while it renders (retrying if the one found had just finished).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < deadline,
            "no browser could be killed mid-chunk"
        );
        let Some(pid) = browsers_under(&tmp).first().copied() else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        std::thread::sleep(Duration::from_millis(300));
        let killed = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .stderr(Stdio::null())
            .status()
            .unwrap();
        if killed.success() {
            break;
        }
    }
    let out = child.wait_with_output().unwrap();
    assert_ok(&out);
    assert_eq!(probe_stream(&env.path("k.mp4")).0, 90);
    let st = env.status(&env.status_ids()[0]);
    let attempts: u64 = st["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["attempts"].as_u64().unwrap())
        .sum();
    assert!(
        attempts >= 3,
        "the killed browser's chunk was retried: {st}"
    );
}

/// A page that paints, as clock-style bit squares, the frame read from
/// `document.timeline.currentTime` (row y=16, canvas 2D) and from the rAF timestamp through
/// WebGL scissored clears (row y=80).
const TIMELINE_AND_WEBGL: &str = r#"<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,">
<style>html,body{margin:0;background:#000;overflow:hidden}canvas{position:absolute;left:0;top:0}</style></head>
<body><canvas id="c2" width="1280" height="72"></canvas><canvas id="gl" width="1280" height="720" style="top:0"></canvas>
<script>
const c2 = document.getElementById('c2').getContext('2d');
const gl = document.getElementById('gl').getContext('webgl', { preserveDrawingBuffer: true });
function bits(n, draw) { for (let i = 0; i < 24; i++) if ((n >> i) & 1) draw(16 + 52 * i); }
function frame(ts) {
  const fromTimeline = Math.round(document.timeline.currentTime * 30 / 1000);
  c2.fillStyle = '#000'; c2.fillRect(0, 0, 1280, 72); c2.fillStyle = '#fff';
  bits(fromTimeline, x => c2.fillRect(x, 16, 48, 48));
  if (gl) {
    const n = Math.round(ts * 30 / 1000);
    gl.disable(gl.SCISSOR_TEST); gl.clearColor(0, 0, 0, 0); gl.clear(gl.COLOR_BUFFER_BIT);
    gl.enable(gl.SCISSOR_TEST); gl.clearColor(1, 1, 1, 1);
    bits(n, x => { gl.scissor(x, 720 - 80 - 48, 48, 48); gl.clear(gl.COLOR_BUFFER_BIT); });
  }
  requestAnimationFrame(frame);
}
requestAnimationFrame(frame);
</script></body></html>"#;

#[test]
fn document_timeline_and_webgl_follow_virtual_time() {
    let env = Env::new();
    let dir = env.path("tl");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), TIMELINE_AND_WEBGL).unwrap();
    env.ok(&[
        "render",
        dir.to_str().unwrap(),
        "-o",
        "tl.mp4",
        "--frames",
        "1000..1006",
        "--size",
        "1280x720",
        "--chunks",
        "2",
        "--lossless",
    ]);
    for (i, rows) in clock_readings(&env.path("tl.mp4"), 1280, 720)
        .iter()
        .enumerate()
    {
        let want = 1000 + i as u32;
        assert_eq!(
            rows[0], want,
            "frame {want}: document.timeline reads {}",
            rows[0]
        );
        assert_eq!(rows[1], want, "frame {want}: WebGL shows {}", rows[1]);
    }
}

#[test]
fn canvas_read_back_gives_the_same_frames_as_screenshots() {
    let env = Env::new();
    let canvas = example("canvas");
    let base = [
        "--frames",
        "100..112",
        "--size",
        "1280x720",
        "--chunks",
        "2",
        "--lossless",
    ];
    let mut a = vec!["render", &canvas, "-o", "shots.mp4"];
    a.extend(base);
    env.ok(&a);
    let mut b = vec![
        "render",
        &canvas,
        "-o",
        "readback.mp4",
        "--capture-canvas",
        "#stage",
    ];
    b.extend(base);
    env.ok(&b);
    assert_eq!(
        framemd5(&env.path("readback.mp4")),
        framemd5(&env.path("shots.mp4"))
    );
    // A selector that matches nothing fails the job, saying so.
    let out = env.run(&[
        "render",
        &canvas,
        "-o",
        "x.mp4",
        "--frames",
        "0..2",
        "--size",
        "1280x720",
        "--chunks",
        "1",
        "--capture-canvas",
        "#nope",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no <canvas> matches #nope"));
}

/// Average PSNR (dB) of two videos' frames, by FFmpeg's psnr filter.
fn psnr(a: &Path, b: &Path) -> f64 {
    let out = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-i"])
        .arg(a)
        .arg("-i")
        .arg(b)
        .args(["-lavfi", "[0][1]psnr", "-f", "null", "-"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    let avg = log
        .rsplit("average:")
        .next()
        .and_then(|t| t.split_whitespace().next())
        .unwrap_or_else(|| panic!("no PSNR in {log}"));
    if avg == "inf" {
        return f64::INFINITY;
    }
    avg.parse()
        .unwrap_or_else(|_| panic!("PSNR {avg:?} in {log}"))
}

/// HTML-in-Canvas: the dom-css scene inside `<canvas layoutsubtree>`, drawn by its `paint`
/// event, captured by read-back (no screenshot). Every frame is its own (chunked equals
/// whole, the scene animates) and the picture is the DOM page's (by PSNR: the canvas's
/// raster differs from the compositor's by rounding only).
#[test]
fn a_dom_scene_drawn_into_a_canvas_is_read_back_frame_exact() {
    let env = chunked_equals_single_with("dom-canvas", &["--capture-canvas", "#stage"]);
    let dom = example("dom-css");
    let mut c = vec!["render", &dom, "-o", "dom.mp4", "--chunks", "1"];
    c.extend(&CHUNKED_BASE[..5]);
    env.ok(&c);
    let db = psnr(&env.path("one.mp4"), &env.path("dom.mp4"));
    assert!(
        db > 45.0,
        "the canvas's picture is {db:.1} dB from the DOM page's"
    );
}

/// A WebGL canvas as Three.js makes it (no `preserveDrawingBuffer`, no 2D context to read),
/// painting the rAF frame as clock bits on row y=80.
const WEBGL_ONLY: &str = r#"<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,">
<style>html,body{margin:0;background:#000;overflow:hidden}canvas{display:block}</style></head>
<body><canvas id="gl" width="1280" height="720"></canvas>
<script>
const gl = document.getElementById('gl').getContext('webgl');
function frame(ts) {
  const n = Math.round(ts * 30 / 1000);
  gl.disable(gl.SCISSOR_TEST); gl.clearColor(0, 0, 0, 1); gl.clear(gl.COLOR_BUFFER_BIT);
  gl.enable(gl.SCISSOR_TEST); gl.clearColor(1, 1, 1, 1);
  for (let i = 0; i < 24; i++) if ((n >> i) & 1) { gl.scissor(16 + 52 * i, 720 - 80 - 48, 48, 48); gl.clear(gl.COLOR_BUFFER_BIT); }
  requestAnimationFrame(frame);
}
requestAnimationFrame(frame);
</script></body></html>"#;

#[test]
fn canvas_read_back_takes_webgl_canvases_and_refuses_a_canvas_of_the_wrong_size() {
    let env = Env::new();
    let dir = env.path("gl");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), WEBGL_ONLY).unwrap();
    let page = dir.to_str().unwrap();
    env.ok(&[
        "render",
        page,
        "-o",
        "gl.mp4",
        "--frames",
        "3000..3020",
        "--size",
        "1280x720",
        "--chunks",
        "2",
        "--browsers",
        "2",
        "--lossless",
        "--capture-canvas",
        "#gl",
    ]);
    let rows = clock_readings(&env.path("gl.mp4"), 1280, 720);
    assert_eq!(rows.len(), 20);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r[1], 3000 + i as u32, "frame {}", 3000 + i);
    }
    let out = env.run(&[
        "render",
        page,
        "-o",
        "small.mp4",
        "--frames",
        "0..2",
        "--size",
        "640x360",
        "--chunks",
        "1",
        "--capture-canvas",
        "#gl",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("canvas #gl is 1280x720, the video is 640x360"),
        "{err}"
    );
}

#[test]
fn plan_hints_at_canvas_read_back_only_when_one_canvas_is_the_whole_picture() {
    let env = Env::new();
    let plan = |dir: &str, extra: &[&str]| {
        let mut a = vec![
            "plan", "--emit", "job.json", dir, "--frames", "0..10", "--size", "1280x720",
        ];
        a.extend(extra);
        let out = env.run(&a);
        assert_ok(&out);
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let hint = "hint: the picture looks like one <canvas> (#stage): --capture-canvas '#stage'";
    assert!(plan(&example("canvas"), &[]).contains(hint));
    // Not when asked for already, nor for DOM pages or pages with a second canvas.
    assert!(!plan(&example("canvas"), &["--capture-canvas", "#stage"]).contains("hint:"));
    assert!(!plan(&example("dom-css"), &[]).contains("hint:"));
    // A DOM scene drawn into a <canvas layoutsubtree> is that canvas's picture.
    assert!(plan(&example("dom-canvas"), &[])
        .contains("hint: the picture looks like one <canvas> (#stage): --capture-canvas '#stage'"));
    let dir = env.path("tl");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), TIMELINE_AND_WEBGL).unwrap();
    assert!(!plan(dir.to_str().unwrap(), &[]).contains("hint:"));
}

#[test]
fn a_type_error_names_its_class_message_and_where_it_was_thrown() {
    let env = Env::new();
    let dir = env.path("typeerror");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("index.html"),
        "<!doctype html><link rel=icon href='data:,'><body style='background:#123'>\n\
         <script>\n\
         function draw(ts) {\n\
           if (ts >= 100) { const scene = null; scene.render(); }\n\
           requestAnimationFrame(draw);\n\
         }\n\
         requestAnimationFrame(draw);\n\
         </script>",
    )
    .unwrap();
    let out = env.run(&[
        "render",
        dir.to_str().unwrap(),
        "-o",
        "t.mp4",
        "--frames",
        "0..12",
        "--size",
        "320x180",
        "--chunks",
        "1",
        "--browsers",
        "2",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("TypeError: Cannot read properties of null"),
        "{err}"
    );
    assert!(err.contains("index.html:4"), "where it was thrown: {err}");
    assert!(
        err.contains("1 attempt(s)") && err.contains("not retryable"),
        "{err}"
    );
}

#[test]
fn more_browsers_than_frames_are_clamped_and_said_so() {
    let env = Env::new();
    let out = env.ok(&[
        "render",
        &example("clock"),
        "-o",
        "c.mp4",
        "--frames",
        "0..30",
        "--size",
        "640x360",
        "--chunks",
        "2",
        "--browsers",
        "40",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--browsers 40 is more than the 15 frames of the shortest chunk"),
        "{err}"
    );
    assert_eq!(probe_stream(&env.path("c.mp4")).0, 30);
    let st = env.status(&env.only_job());
    let used: Vec<u64> = st["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["stages"]["browsers"].as_u64().unwrap())
        .collect();
    // One browser per 8 frames at most: 15 frames share 2 browsers.
    assert_eq!(used, vec![2, 2], "{st}");
}
