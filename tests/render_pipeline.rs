//! The pipeline end to end: real processes, real FFmpeg, real SQLite.

mod common;

use common::*;

#[test]
fn chunked_render_equals_single_render() {
    let env = Env::new();
    let r = ffmpeg_renderer();
    let base = [
        "--frames",
        "0..240",
        "--size",
        "160x120",
        "--lossless",
        "--fps",
        "30",
    ];
    let mut a: Vec<&str> = vec!["render", "-o", "seven.mp4", "--chunks", "7"];
    a.extend(base);
    env.ok(&with_renderer(&a, &r));
    let mut b: Vec<&str> = vec!["render", "-o", "one.mp4", "--chunks", "1"];
    b.extend(base);
    env.ok(&with_renderer(&b, &r));

    let seven = framemd5(&env.path("seven.mp4"));
    let one = framemd5(&env.path("one.mp4"));
    assert_eq!(seven.len(), 240);
    assert_eq!(one.len(), 240);
    assert_eq!(seven, one, "7-chunk render differs from the 1-chunk render");
    // Distinct content, so the comparison means something.
    assert!(seven.iter().collect::<std::collections::HashSet<_>>().len() > 200);
}

#[test]
fn h264_output_has_exact_frames_and_duration() {
    let env = Env::new();
    let r = ffmpeg_renderer();
    env.ok(&with_renderer(
        &[
            "render", "-o", "out.mp4", "--frames", "0..100", "--size", "160x120", "--chunks", "6",
            "--preset", "veryfast",
        ],
        &r,
    ));
    let (frames, duration_ts, tb) = probe_stream(&env.path("out.mp4"));
    assert_eq!(frames, 100);
    // 100 frames at 30 fps = 10/3 s exactly, in a 1/90000 time base.
    assert_eq!(tb, "1/90000");
    assert_eq!(duration_ts, 300_000);
}

#[test]
fn ntsc_rate_keeps_exact_frame_counts_and_timestamps_across_chunks() {
    let env = Env::new();
    let r = ffmpeg_renderer();
    env.ok(&with_renderer(
        &[
            "render",
            "-o",
            "ntsc.mp4",
            "--frames",
            "0..101",
            "--fps",
            "30000/1001",
            "--size",
            "160x120",
            "--chunks",
            "5",
            "--preset",
            "veryfast",
        ],
        &r,
    ));
    let (frames, duration_ts, tb) = probe_stream(&env.path("ntsc.mp4"));
    assert_eq!(frames, 101);
    assert_eq!(tb, "1/90000");
    assert_eq!(duration_ts, 101 * 3003, "duration drifted");
    let pts = packet_pts(&env.path("ntsc.mp4"));
    let expected: Vec<i64> = (0..101).map(|i| i * 3003).collect();
    assert_eq!(pts, expected, "timestamps are off the 30000/1001 grid");
}

#[test]
fn plan_emit_then_run() {
    let env = Env::new();
    let r = ffmpeg_renderer();
    env.ok(&with_renderer(
        &[
            "plan",
            "--emit",
            "job.json",
            "--frames",
            "10..70",
            "--size",
            "160x120",
            "--frames-per-chunk",
            "25",
        ],
        &r,
    ));
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(env.path("job.json")).unwrap()).unwrap();
    assert_eq!(spec["version"], 1);
    let chunks = spec["chunks"].as_array().unwrap();
    assert_eq!(chunks.len(), 3);
    assert_eq!(chunks[0]["start"], 10);
    assert_eq!(chunks[2]["end"], 70);
    env.ok(&["run", "job.json", "-o", "out.mkv"]);
    assert_eq!(probe_stream(&env.path("out.mkv")).0, 60);
    let id = env.only_job();
    let st = env.status(&id);
    assert_eq!(st["state"], "succeeded");
    assert_eq!(st["frames_done"], 60);
    assert_eq!(st["chunks"].as_array().unwrap().len(), 3);
}

#[test]
fn json_progress_lines_are_emitted() {
    let env = Env::new();
    let r = ffmpeg_renderer();
    let out = env.ok(&with_renderer(
        &[
            "render",
            "--json",
            "-o",
            "o.mp4",
            "--frames",
            "0..20",
            "--size",
            "64x64",
            "--chunks",
            "2",
            "--preset",
            "ultrafast",
        ],
        &r,
    ));
    let events: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each stdout line is JSON"))
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"job_started"));
    assert_eq!(kinds.iter().filter(|k| **k == "chunk_done").count(), 2);
    assert_eq!(kinds.last(), Some(&"job_succeeded"));
}

#[test]
fn bundle_is_unpacked_for_the_command() {
    let env = Env::new();
    let bundle = env.path("assets");
    std::fs::create_dir_all(&bundle).unwrap();
    // The renderer script lives in the bundle and is reached through {bundle}.
    std::fs::write(
        bundle.join("draw.sh"),
        "set -e\nexec ffmpeg -v error -nostdin -f lavfi -i \"color=c=red:size=$1:rate=$2\" -vf trim=start_frame=$3:end_frame=$4 -c:v ffv1 \"$5\"\n",
    )
    .unwrap();
    env.ok(&[
        "render",
        "-o",
        "b.mp4",
        "--frames",
        "0..12",
        "--size",
        "64x64",
        "--chunks",
        "3",
        "--bundle",
        "assets",
        "--",
        "bash",
        "{bundle}/draw.sh",
        "{width}x{height}",
        "{fps}",
        "{start}",
        "{end}",
        "{output}",
    ]);
    assert_eq!(probe_stream(&env.path("b.mp4")).0, 12);
    // Content addressed: one bundle in storage.
    let bundles: Vec<_> = std::fs::read_dir(env.home().join("storage/bundles"))
        .unwrap()
        .collect();
    assert_eq!(bundles.len(), 1);
}

#[test]
fn stitch_command_concatenates_segments() {
    let env = Env::new();
    let r = ffmpeg_renderer();
    env.ok(&with_renderer(
        &[
            "render",
            "-o",
            "o.mp4",
            "--frames",
            "0..45",
            "--size",
            "64x64",
            "--chunks",
            "3",
            "--lossless",
        ],
        &r,
    ));
    let id = env.only_job();
    let st = env.status(&id);
    let segs: Vec<String> = st["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            env.home()
                .join("storage")
                .join(c["segment"].as_str().unwrap())
                .display()
                .to_string()
        })
        .collect();
    let mut args = vec!["stitch", "-o", "again.mp4"];
    args.extend(segs.iter().map(String::as_str));
    env.ok(&args);
    assert_eq!(
        framemd5(&env.path("again.mp4")),
        framemd5(&env.path("o.mp4"))
    );
}
