//! Bad input fails fast, says what is wrong, and leaves nothing behind.

mod common;

use common::*;

fn fails_with(env: &Env, args: &[&str], needles: &[&str]) {
    let out = env.run(args);
    assert!(!out.status.success(), "{args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr);
    for n in needles {
        assert!(err.contains(n), "{args:?}: expected {n:?} in:\n{err}");
    }
}

#[test]
fn zero_frames_is_rejected() {
    let env = Env::new();
    let r = ffmpeg_renderer();
    fails_with(
        &env,
        &with_renderer(&["render", "-o", "o.mp4", "--frames", "5..5"], &r),
        &["video.frames", "zero frames"],
    );
}

#[test]
fn odd_size_with_yuv420p_is_rejected() {
    let env = Env::new();
    let r = ffmpeg_renderer();
    fails_with(
        &env,
        &with_renderer(
            &[
                "render", "-o", "o.mp4", "--frames", "0..10", "--size", "321x240",
            ],
            &r,
        ),
        &["video.width", "321", "yuv420p"],
    );
}

#[test]
fn unknown_placeholder_is_rejected() {
    let env = Env::new();
    fails_with(
        &env,
        &[
            "render", "-o", "o.mp4", "--frames", "0..10", "--", "ffmpeg", "-i", "{frame}",
            "{output}",
        ],
        &["composition.argv[2]", "{frame}", "{start}"],
    );
}

#[test]
fn gaps_and_overlaps_in_a_spec_are_rejected() {
    let env = Env::new();
    let r = ffmpeg_renderer();
    env.ok(&with_renderer(
        &[
            "plan", "--emit", "job.json", "--frames", "0..30", "--size", "64x64", "--chunks", "3",
        ],
        &r,
    ));
    let original: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(env.path("job.json")).unwrap()).unwrap();

    let mut gap = original.clone();
    gap["chunks"][1]["start"] = 12.into();
    std::fs::write(env.path("gap.json"), gap.to_string()).unwrap();
    fails_with(
        &env,
        &["run", "gap.json", "-o", "o.mp4"],
        &["chunks[1]", "gap", "10..12"],
    );

    let mut overlap = original.clone();
    overlap["chunks"][2]["start"] = 15.into();
    std::fs::write(env.path("overlap.json"), overlap.to_string()).unwrap();
    fails_with(
        &env,
        &["run", "overlap.json", "-o", "o.mp4"],
        &["chunks[2]", "overlap"],
    );

    let mut unknown = original;
    unknown["video"]["bitrate"] = 5.into();
    std::fs::write(env.path("unknown.json"), unknown.to_string()).unwrap();
    fails_with(
        &env,
        &["run", "unknown.json", "-o", "o.mp4"],
        &["unknown field", "bitrate"],
    );

    // Nothing was submitted.
    let out = env.ok(&["status", "--json"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
}

#[test]
fn unreadable_spec_is_reported() {
    let env = Env::new();
    fails_with(
        &env,
        &["run", "missing.json", "-o", "o.mp4"],
        &["cannot read job spec", "missing.json"],
    );
    std::fs::write(env.path("bad.json"), "{ not json").unwrap();
    fails_with(
        &env,
        &["run", "bad.json", "-o", "o.mp4"],
        &["bad.json", "not a valid job spec"],
    );
}

#[test]
fn missing_ffmpeg_is_reported_with_the_fix() {
    let env = Env::new();
    let r = ffmpeg_renderer();
    let out = env
        .cmd(&with_renderer(
            &["render", "-o", "o.mp4", "--frames", "0..10"],
            &r,
        ))
        .env("PATH", env.path("empty-bin"))
        .env_remove("HELIOS_FFMPEG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ffmpeg not found") && err.contains("apt-get install ffmpeg"),
        "{err}"
    );
}

#[test]
fn container_must_fit_the_codec() {
    let env = Env::new();
    let r = ffmpeg_renderer();
    fails_with(
        &env,
        &with_renderer(
            &[
                "render", "-o", "o.webm", "--frames", "0..10", "--codec", "h264",
            ],
            &r,
        ),
        &[".webm", "h264", ".mp4"],
    );
}

#[test]
fn missing_renderer_program_fails_fast_without_retries() {
    let env = Env::new();
    let out = env.run(&[
        "render",
        "-o",
        "o.mp4",
        "--frames",
        "0..10",
        "--size",
        "64x64",
        "--chunks",
        "1",
        "--",
        "no-such-renderer-xyz",
        "{output}",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no-such-renderer-xyz")
            && err.contains("1 attempt(s)")
            && err.contains("not retryable"),
        "{err}"
    );
}

#[test]
fn renderer_ignoring_the_frame_range_is_caught() {
    let env = Env::new();
    let out = env.run(&[
        "render",
        "-o",
        "o.mp4",
        "--frames",
        "0..20",
        "--size",
        "64x64",
        "--chunks",
        "2",
        "--",
        "ffmpeg",
        "-v",
        "error",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size={width}x{height}:rate={fps}",
        "-frames:v",
        "3",
        "-c:v",
        "ffv1",
        "{output}",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("wrote 3 frames") && err.contains("{start}"),
        "{err}"
    );
}

#[test]
fn zero_browsers_is_rejected() {
    let env = Env::new();
    let dir = env.path("page");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), "<p>hi</p>").unwrap();
    fails_with(
        &env,
        &[
            "render",
            dir.to_str().unwrap(),
            "-o",
            "o.mp4",
            "--frames",
            "0..10",
            "--browsers",
            "0",
        ],
        &["--browsers must be at least 1"],
    );
    let r = ffmpeg_renderer();
    fails_with(
        &env,
        &with_renderer(
            &[
                "render",
                "-o",
                "o.mp4",
                "--frames",
                "0..10",
                "--browsers",
                "2",
            ],
            &r,
        ),
        &["--browsers is for HTML compositions"],
    );
    assert!(!env.path("o.mp4").exists());
}

#[test]
fn unwritable_output_fails_before_anything_renders() {
    let env = Env::new();
    let r = ffmpeg_renderer();
    std::fs::create_dir_all(env.path("out.mp4")).unwrap();
    std::fs::write(env.path("file"), b"not a folder").unwrap();
    for (output, needles) in [
        ("out.mp4", &["-o out.mp4", "is a directory"][..]),
        (
            "file/o.mp4",
            &["-o file/o.mp4", "cannot create the folder file"][..],
        ),
    ] {
        let out = env.run(&with_renderer(
            &[
                "render", "-o", output, "--frames", "0..10", "--size", "64x64",
            ],
            &r,
        ));
        assert!(!out.status.success(), "-o {output} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        for n in needles {
            assert!(err.contains(n), "-o {output}: expected {n:?} in:\n{err}");
        }
        // Refused before a job was made, so nothing was rendered.
        let status = env.ok(&["status", "--json"]);
        let jobs: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
        assert_eq!(jobs.as_array().map(Vec::len), Some(0), "{jobs}");
    }
}

#[test]
fn worker_lambda_outside_lambda_names_what_is_missing() {
    let env = Env::new();
    let mut cmd = env.cmd(&["worker", "lambda"]);
    for var in [
        "AWS_LAMBDA_RUNTIME_API",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd.output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("AWS_LAMBDA_RUNTIME_API") && err.contains("worker serve"),
        "{err}"
    );
}

#[test]
fn status_into_a_pipe_its_reader_closed_ends_quietly() {
    let env = Env::new();
    let r = ffmpeg_renderer();
    let args = [
        "render", "-o", "o.mp4", "--frames", "0..4", "--size", "64x64",
    ];
    env.ok(&with_renderer(&args, &r));
    let id = env.only_job();
    // `status … | head -c 0`: the reader is gone before the first byte is written.
    for args in [
        vec!["status"],
        vec!["status", "--json"],
        vec!["status", &id],
    ] {
        let mut child = env
            .cmd(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}
