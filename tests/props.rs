//! Data-driven renders in real Chromium with `@helios-project/core`: a composition's own
//! duration, rate and size fill what the command line leaves out; `--props` reaches the
//! composition (validated by its schema) and plain pages alike.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// Width, height and frame rate of the first video stream, and its frame count.
fn probe(path: &Path) -> (u64, u64, String, u64) {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-count_packets",
            "-show_entries",
            "stream=width,height,r_frame_rate,nb_read_packets",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .expect("ffprobe");
    assert_ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &v["streams"][0];
    let num = |k: &str| {
        s[k].as_u64()
            .or_else(|| s[k].as_str().and_then(|t| t.parse().ok()))
            .unwrap()
    };
    (
        num("width"),
        num("height"),
        s["r_frame_rate"].as_str().unwrap().to_string(),
        num("nb_read_packets"),
    )
}

/// Frame `n` of a video as RGB bytes.
fn frame_rgb(path: &Path, n: u64) -> Vec<u8> {
    ffmpeg(&[
        "-i",
        path.to_str().unwrap(),
        "-vf",
        &format!("select=eq(n\\,{n})"),
        "-frames:v",
        "1",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-",
    ])
}

fn pixel(rgb: &[u8], width: usize, x: usize, y: usize) -> [u8; 3] {
    let i = (y * width + x) * 3;
    [rgb[i], rgb[i + 1], rgb[i + 2]]
}

fn near(got: [u8; 3], want: [u8; 3]) -> bool {
    got.iter().zip(want).all(|(a, b)| a.abs_diff(b) <= 12)
}

fn plan_json(env: &Env, args: &[&str]) -> (serde_json::Value, String) {
    let mut a = vec!["plan", "--emit", "-"];
    a.extend(args);
    let out = env.ok(&a);
    (
        serde_json::from_slice(&out.stdout).unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_helios_composition_sets_its_own_duration_rate_and_size_and_shows_its_props() {
    let env = Env::new();
    let comp = title_card();
    let out = env.ok(&[
        "render",
        &comp,
        "-o",
        "inline.mp4",
        "--chunks",
        "2",
        "--props",
        r#"{"title":"Ada","score":1815}"#,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "frames 0..48 (2 s, composition), 24 fps (composition), 640x360 (composition)"
        ),
        "{err}"
    );
    let video = env.path("inline.mp4");
    assert_eq!(probe(&video), (640, 360, "24/1".into(), 48));
    for n in [0, 47] {
        let rgb = frame_rgb(&video, n);
        assert_eq!(title_card_score(&rgb), 1815, "frame {n}");
        // The schema's default colour, as no prop overrides it.
        assert!(
            near(pixel(&rgb, 640, 20, 100), [0x20, 0x40, 0x80]),
            "frame {n}"
        );
    }

    std::fs::write(
        env.path("props.json"),
        r##"{"score": 42, "color": "#ff0000"}"##,
    )
    .unwrap();
    env.ok(&[
        "render",
        &comp,
        "-o",
        "file.mp4",
        "--frames",
        "0..6",
        "--props",
        "@props.json",
    ]);
    let video = env.path("file.mp4");
    assert_eq!(probe(&video), (640, 360, "24/1".into(), 6));
    let rgb = frame_rgb(&video, 5);
    assert_eq!(title_card_score(&rgb), 42);
    assert!(near(pixel(&rgb, 640, 20, 100), [0xff, 0, 0]));
}

#[test]
fn the_plan_records_the_merged_props_and_flags_override_the_composition() {
    let env = Env::new();
    let comp = title_card();
    let (spec, err) = plan_json(&env, &[&comp, "--props", r#"{"score":7}"#]);
    assert!(err.contains("(composition)"), "{err}");
    assert_eq!(
        spec["video"]["fps"],
        serde_json::json!({"num": 24, "den": 1})
    );
    assert_eq!(
        (
            spec["video"]["width"].as_u64(),
            spec["video"]["height"].as_u64()
        ),
        (Some(640), Some(360))
    );
    assert_eq!(spec["video"]["frames"]["end"], 48);
    // Shallowly merged over the composition's defaults, as the composition holds them.
    assert_eq!(
        spec["composition"]["props"],
        serde_json::json!({"title": "Hello", "score": 7, "color": "#204080"})
    );

    let (spec, err) = plan_json(
        &env,
        &[&comp, "--fps", "12", "--size", "320x180", "--duration", "1"],
    );
    assert!(
        err.contains(
            "frames 0..12 (1 s, command line), 12 fps (command line), 320x180 (command line)"
        ),
        "{err}"
    );
    assert_eq!(spec["video"]["frames"]["end"], 12);
    assert_eq!(spec["video"]["width"], 320);
    assert!(spec["composition"].get("props").is_none(), "{spec}");
}

#[test]
fn a_schema_violation_is_named_before_anything_renders() {
    let env = Env::new();
    let comp = title_card();
    for (props, needles) in [
        (r#"{"score":-1}"#, &["--props", "score", ">= 0"][..]),
        (r#"{"score":"many"}"#, &["score", "Expected number"][..]),
        (r#"{"title":"x","score":3,"color":12}"#, &["color"][..]),
    ] {
        let out = env.run(&["render", &comp, "-o", "bad.mp4", "--props", props]);
        assert!(!out.status.success(), "{props} should be refused");
        let err = String::from_utf8_lossy(&out.stderr);
        for n in needles {
            assert!(err.contains(n), "{props}: expected {n:?} in:\n{err}");
        }
    }
    // Refused at plan time: no job, no attempt, no output.
    let status = env.ok(&["status", "--json"]);
    let jobs: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(jobs, serde_json::json!([]));
    assert!(!env.path("bad.mp4").exists());

    for (props, needle) in [
        ("[1,2]", "must be a JSON object"),
        ("{oops", "not valid JSON"),
        ("@missing.json", "cannot read missing.json"),
    ] {
        let out = env.run(&["plan", "--emit", "-", &comp, "--props", props]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(needle),
            "{props}: expected {needle:?} in:\n{err}"
        );
    }
}

#[test]
fn a_plain_page_reads_its_props_from_a_global() {
    let env = Env::new();
    let dir = env.path("plain");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("index.html"),
        r#"<!doctype html><html><body style="margin:0">
<script>
  // Set before the page's own scripts run.
  const props = window.__HELIOS_PROPS__ || { color: '#000000' };
  document.body.style.background = props.color;
</script></body></html>"#,
    )
    .unwrap();
    let out = env.run(&[
        "render",
        "plain",
        "-o",
        "p.mp4",
        "--props",
        r##"{"color":"#00ff00"}"##,
    ]);
    assert!(!out.status.success(), "a plain page still needs --frames");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--frames"));

    env.ok(&[
        "render",
        "plain",
        "-o",
        "p.mp4",
        "--frames",
        "0..3",
        "--size",
        "64x64",
        "--props",
        r##"{"color":"#00ff00"}"##,
    ]);
    let rgb = frame_rgb(&env.path("p.mp4"), 2);
    assert!(
        near(pixel(&rgb, 64, 32, 32), [0, 0xff, 0]),
        "{:?}",
        pixel(&rgb, 64, 32, 32)
    );

    let out = env.run(&[
        "render", "--frames", "0..3", "-o", "c.mp4", "--props", "{}", "--", "true",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--props is for HTML compositions"));
}
