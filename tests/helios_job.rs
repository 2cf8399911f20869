//! `run FILE` with a job file in the format Helios' `helios render --emit-job` writes:
//! its chunk commands mapped onto the browser renderer (real Chromium), frame-exact with
//! `render`; commands that cannot be mapped refused by chunk, or run as they are on request.

mod common;

use common::*;

/// A job file as Helios' CLI writes it for `helios render comp/index.html -o out/video.mp4
/// --width 640 --height 360 --fps 24 --duration 2 --concurrency 3 --emit-job job.json`
/// (with `extra` added to every chunk command).
fn helios_job(mode: &str, extra: &str) -> String {
    let chunks: Vec<String> = (0..3)
        .map(|i| {
            let start = i * 16;
            format!(
                r#"{{"id": {i}, "startFrame": {start}, "frameCount": 16, "outputFile": "out/temp_1796043564536_qrnnxg_part_{i}.mov",
  "command": "helios render comp/index.html -o out/temp_1796043564536_qrnnxg_part_{i}.mov --start-frame {start} --frame-count 16 --width 640 --height 360 --fps 24 --quality 18 --mode {mode} --audio-codec pcm_s16le{extra}"}}"#
            )
        })
        .collect();
    format!(
        r#"{{
  "metadata": {{"totalFrames": 48, "fps": 24, "width": 640, "height": 360, "duration": 2}},
  "chunks": [{}],
  "mergeCommand": "helios merge out/video.mp4 out/temp_1796043564536_qrnnxg_part_0.mov out/temp_1796043564536_qrnnxg_part_1.mov out/temp_1796043564536_qrnnxg_part_2.mov"
}}"#,
        chunks.join(",\n")
    )
}

fn setup(env: &Env) {
    // Paths in a job file are relative to its folder.
    std::os::unix::fs::symlink(title_card(), env.path("comp")).unwrap();
}

#[test]
fn a_helios_job_file_renders_frame_exact() {
    let env = Env::new();
    setup(&env);
    let comp = title_card();
    for (mode, capture) in [("dom", None), ("canvas", Some("canvas"))] {
        std::fs::write(env.path("job.json"), helios_job(mode, "")).unwrap();
        let out_name = format!("helios-{mode}.mp4");
        let out = env.ok(&["run", "job.json", "-o", &out_name]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("mergeCommand is replaced"), "{err}");
        assert!(err.contains("--audio-codec is not used"), "{err}");
        let ref_name = format!("render-{mode}.mp4");
        let mut args = vec![
            "render", &comp, "-o", &ref_name, "--chunks", "3", "--crf", "18", "--frames", "0..48",
        ];
        if let Some(sel) = capture {
            args.extend(["--capture-canvas", sel]);
        }
        env.ok(&args);
        let helios = framemd5(&env.path(&out_name));
        assert_eq!(helios.len(), 48);
        assert_eq!(helios, framemd5(&env.path(&ref_name)), "mode {mode}");
    }
    let id = env.status_ids()[0].clone();
    let st = env.status(&id);
    assert_eq!(st["chunk_count"], 3);
}

#[test]
fn commands_that_cannot_be_mapped_are_refused_by_chunk() {
    let env = Env::new();
    setup(&env);
    let mut job: serde_json::Value = serde_json::from_str(&helios_job("dom", "")).unwrap();
    job["chunks"][1]["command"] = serde_json::Value::String(
        job["chunks"][1]["command"].as_str().unwrap().to_string() + " --turbo",
    );
    std::fs::write(env.path("turbo.json"), job.to_string()).unwrap();
    let out = env.run(&["run", "turbo.json", "-o", "o.mp4"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("chunks[1] (id 1)") && err.contains("--turbo"),
        "{err}"
    );
    assert!(err.contains("--chunk-commands"), "{err}");

    let mut job: serde_json::Value = serde_json::from_str(&helios_job("dom", "")).unwrap();
    job["chunks"][2]["command"] = serde_json::Value::String(
        job["chunks"][2]["command"]
            .as_str()
            .unwrap()
            .replace("--width 640", "--width 320"),
    );
    std::fs::write(env.path("sizes.json"), job.to_string()).unwrap();
    let out = env.run(&["run", "sizes.json", "-o", "o.mp4"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("chunks[2] (id 2)") && err.contains("size"),
        "{err}"
    );

    let mut job: serde_json::Value = serde_json::from_str(&helios_job("dom", "")).unwrap();
    job["chunks"][0]["frameCount"] = 20.into();
    std::fs::write(env.path("range.json"), job.to_string()).unwrap();
    let out = env.run(&["run", "range.json", "-o", "o.mp4"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("chunks[0] (id 0)") && err.contains("frameCount 20"),
        "{err}"
    );
    let jobs: serde_json::Value =
        serde_json::from_slice(&env.ok(&["--json", "status"]).stdout).unwrap();
    assert_eq!(jobs, serde_json::json!([]));
}

#[test]
fn chunk_commands_run_as_they_are_when_asked() {
    let env = Env::new();
    // A stand-in for Helios' CLI: renders the test pattern for the range it is given.
    let bin = env.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = bin.join("helios");
    std::fs::write(
        &script,
        r#"#!/usr/bin/env bash
set -euo pipefail
[[ $1 == render ]] || exit 2
shift 2
while [[ $# -gt 0 ]]; do
  case $1 in
    -o) out=$2; shift 2 ;;
    --start-frame) start=$2; shift 2 ;;
    --frame-count) count=$2; shift 2 ;;
    --width) w=$2; shift 2 ;;
    --height) h=$2; shift 2 ;;
    --fps) fps=$2; shift 2 ;;
    *) shift ;;
  esac
done
exec ffmpeg -v error -nostdin -y -f lavfi -i "testsrc2=size=${w}x${h}:rate=${fps}" \
  -vf "trim=start_frame=${start}:end_frame=$((start + count))" -c:v ffv1 "$out"
"#,
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(env.path("job.json"), helios_job("canvas", " --turbo")).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let out = env
        .cmd(&["run", "job.json", "-o", "cmd.mp4", "--chunk-commands"])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert_ok(&out);
    let (frames, _, _) = probe_stream(&env.path("cmd.mp4"));
    assert_eq!(frames, 48);
    // The same frames as rendering the pattern with the same chunks.
    let reference = ffmpeg_renderer();
    env.ok(&with_renderer(
        &[
            "render", "-o", "ref.mp4", "--frames", "0..48", "--size", "640x360", "--fps", "24",
            "--chunks", "3",
        ],
        &reference,
    ));
    assert_eq!(
        framemd5(&env.path("cmd.mp4")),
        framemd5(&env.path("ref.mp4"))
    );
}
