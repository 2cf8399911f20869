//! The byte join: fragmented segments joined by bytes give the same video as FFmpeg's
//! concat demuxer, frame for frame, with exact frame counts and timestamps; a segment whose
//! worker lied about it (its hash, its frames) is rendered again, never joined.

mod common;

use std::os::unix::process::ExitStatusExt;

use common::*;

fn render(env: &Env, out: &str, fps: &str, frames: &str, chunks: &str, extra: &[&str]) {
    let r = ffmpeg_renderer();
    let mut args = vec![
        "render",
        "-o",
        out,
        "--frames",
        frames,
        "--fps",
        fps,
        "--size",
        "96x64",
        "--chunks",
        chunks,
        "--preset",
        "ultrafast",
    ];
    args.extend_from_slice(extra);
    env.ok(&with_renderer(&args, &r));
}

/// Stream and format timing as ffprobe reports them.
fn timing(path: &std::path::Path) -> serde_json::Value {
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=start_time,duration,time_base,r_frame_rate,avg_frame_rate:format=duration",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

fn assert_same_video(a: &std::path::Path, b: &std::path::Path, frames: u64) {
    let (fa, fb) = (framemd5(a), framemd5(b));
    assert_eq!(fa.len() as u64, frames);
    assert_eq!(fa, fb, "decoded frames differ");
    assert_eq!(probe_stream(a).0, frames);
    assert_eq!(packet_pts(a), packet_pts(b), "presentation times differ");
    let (ta, tb) = (timing(a), timing(b));
    assert_eq!(ta["streams"], tb["streams"], "{ta} vs {tb}");
}

fn top_level_boxes(path: &std::path::Path) -> Vec<String> {
    let d = std::fs::read(path).unwrap();
    let mut at = 0usize;
    let mut kinds = Vec::new();
    while at + 8 <= d.len() {
        let size = u32::from_be_bytes(d[at..at + 4].try_into().unwrap()) as usize;
        kinds.push(String::from_utf8_lossy(&d[at + 4..at + 8]).into_owned());
        assert!(size >= 8, "box of size {size} at {at}");
        at += size;
    }
    assert_eq!(at, d.len(), "boxes do not cover the file");
    kinds
}

#[test]
fn byte_joined_output_equals_concat_frame_for_frame_at_integer_and_ntsc_rates() {
    for (fps, frames, chunks) in [("30", 97u64, "4"), ("30000/1001", 121, "5")] {
        let env = Env::new();
        let range = format!("0..{frames}");
        render(&env, "joined.mp4", fps, &range, chunks, &[]);
        render(
            &env,
            "concat.mp4",
            fps,
            &range,
            chunks,
            &["--stitch", "concat"],
        );
        let (a, b) = (env.path("joined.mp4"), env.path("concat.mp4"));
        assert_same_video(&a, &b, frames);
        // Fragmented: one moov up front, one moof+mdat per chunk here, the index last.
        let kinds = top_level_boxes(&a);
        assert_eq!(&kinds[..2], ["ftyp", "moov"], "{kinds:?}");
        assert_eq!(kinds.last().unwrap(), "mfra", "{kinds:?}");
        assert_eq!(
            kinds.iter().filter(|k| *k == "moof").count(),
            chunks.parse::<usize>().unwrap()
        );
        // The duration is exact: frames × frame duration.
        let t = timing(&a);
        let duration: f64 = t["streams"][0]["duration"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let (num, den) = match fps {
            "30" => (30.0, 1.0),
            _ => (30000.0, 1001.0),
        };
        assert!(
            (duration - frames as f64 * den / num).abs() < 1e-6,
            "duration {duration}"
        );
        // status says how the job was stitched.
        let ids = env.status_ids();
        let joined = env.status(&ids[ids.len() - 2]);
        assert_eq!(joined["stitch"], "bytes", "{joined}");
        let concat = env.status(&ids[ids.len() - 1]);
        assert_eq!(concat["stitch"], "concat", "{concat}");
    }
}

#[test]
fn a_job_that_starts_past_frame_zero_and_a_single_chunk_join_too() {
    let env = Env::new();
    render(&env, "late.mp4", "25", "40..90", "3", &[]);
    render(
        &env,
        "late-concat.mp4",
        "25",
        "40..90",
        "3",
        &["--stitch", "concat"],
    );
    assert_same_video(&env.path("late.mp4"), &env.path("late-concat.mp4"), 50);
    render(&env, "one.mp4", "25", "0..10", "1", &[]);
    assert_eq!(framemd5(&env.path("one.mp4")).len(), 10);
}

/// The job store of an Env.
fn store(env: &Env) -> rusqlite::Connection {
    rusqlite::Connection::open(env.home().join("jobs.db")).unwrap()
}

fn committed_key(env: &Env, id: &str, chunk: u32) -> std::path::PathBuf {
    let key: String = store(env)
        .query_row(
            "SELECT segment_key FROM chunks WHERE job_id = ?1 AND idx = ?2",
            rusqlite::params![id, chunk],
            |r| r.get(0),
        )
        .unwrap();
    env.home().join("storage").join(key)
}

#[test]
fn segments_whose_reports_lie_are_rendered_again_never_joined() {
    let env = Env::new();
    let r = env.renderer("ok");
    let args = [
        "render",
        "-o",
        "out.mp4",
        "--frames",
        "0..41",
        "--size",
        "64x64",
        "--chunks",
        "4",
        "--preset",
        "ultrafast",
    ];
    let crashed = env
        .cmd(&with_renderer(&args, &r))
        .env("HELIOS_FAILPOINTS", "before-stitch")
        .output()
        .unwrap();
    assert_eq!(crashed.status.signal(), Some(9), "{crashed:?}");
    let id = env.only_job();

    // Chunk 1: its bytes are not what its worker hashed (a flipped byte at the end).
    let one = committed_key(&env, &id, 1);
    let mut bytes = std::fs::read(&one).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&one, &bytes).unwrap();
    // Chunk 2: a worker that reported the hash of what it wrote, but wrote chunk 0's 11
    // frames where 10 belong.
    let zero = std::fs::read(committed_key(&env, &id, 0)).unwrap();
    let two = committed_key(&env, &id, 2);
    std::fs::write(&two, &zero).unwrap();
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&zero))
    };
    store(&env)
        .execute(
            "UPDATE chunks SET sha256 = ?1, bytes = ?2 WHERE job_id = ?3 AND idx = 2",
            rusqlite::params![sha, zero.len() as i64, id],
        )
        .unwrap();

    let starts: Vec<u64> = env.status(&id)["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["start"].as_u64().unwrap())
        .collect();
    assert_eq!(starts, [0, 11, 21, 31], "chunk 0 must be the longest");

    let out = env.ok(&["resume", &id]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("segment of chunk 1 rejected (content hash"),
        "{log}"
    );
    assert!(
        log.contains("segment of chunk 2 rejected (holds 11 frames, expected 10"),
        "{log}"
    );
    // Chunks 1 and 2 were rendered again; 0 and 3 were not.
    assert_eq!(env.invocations(0), 1);
    assert_eq!(env.invocations(11), 2);
    assert_eq!(env.invocations(21), 2);
    assert_eq!(env.invocations(31), 1);
    let st = env.status(&id);
    assert_eq!(st["state"], "succeeded", "{st}");

    // And the output is what an untouched render gives.
    let clean = Env::new();
    let r2 = clean.renderer("ok");
    let mut a2 = args.to_vec();
    a2[2] = "clean.mp4";
    clean.ok(&with_renderer(&a2, &r2));
    assert_same_video(&env.path("out.mp4"), &clean.path("clean.mp4"), 41);
}

#[test]
fn a_worker_places_its_fragments_on_the_timeline_and_reports_what_it_holds() {
    let env = Env::new();
    let r = ffmpeg_renderer();
    env.ok(&with_renderer(
        &[
            "plan", "--emit", "job.json", "--frames", "0..20", "--size", "64x64", "--chunks", "2",
        ],
        &r,
    ));
    let mut spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(env.path("job.json")).unwrap()).unwrap();
    spec["id"] = "frag1".into();
    spec["video"]["segments"] = "fragmented".into();
    let key = env.path("store/jobs/frag1/job.json");
    std::fs::create_dir_all(key.parent().unwrap()).unwrap();
    std::fs::write(&key, spec.to_string()).unwrap();
    let url = format!("file://{}", key.display());
    let out = env.ok(&["worker", "run", "--job", &url, "--chunk", "1"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["segment"], "jobs/frag1/attempts/1/1.m4s");
    let media = &report["media"];
    assert_eq!(media["frames"], 10, "{report}");
    assert_eq!(media["keyframe_first"], true);
    assert!(
        media["params"].as_str().unwrap().starts_with("h264 "),
        "{media}"
    );
    // 30 fps on a 90 kHz clock: frame 10 decodes at 30,000 ticks, frame 20 at 60,000.
    let f = &media["fragmented"];
    assert_eq!(f["timescale"], 90000);
    assert_eq!(f["decode_start"], 30000);
    assert_eq!(f["decode_end"], 60000);
    // The stored media is fragments only: it starts with a moof, not an ftyp.
    let stored = std::fs::read(env.path("store/jobs/frag1/attempts/1/1.m4s")).unwrap();
    assert_eq!(&stored[4..8], b"moof");
    assert_eq!(report["bytes"], stored.len());
}

#[test]
fn no_download_leaves_the_output_in_storage_and_prints_where_it_is() {
    let env = Env::new();
    let r = ffmpeg_renderer();
    let out = env.ok(&with_renderer(
        &[
            "render",
            "--no-download",
            "--frames",
            "0..30",
            "--size",
            "64x64",
            "--chunks",
            "2",
        ],
        &r,
    ));
    let printed = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let id = env.only_job();
    let kept = env.home().join(format!("storage/jobs/{id}/output.mp4"));
    assert_eq!(std::path::Path::new(&printed), kept);
    assert_eq!(probe_stream(&kept).0, 30);
    assert!(!env.path("output.mp4").exists(), "nothing was downloaded");
    let st = env.status(&id);
    assert_eq!(st["downloaded"], false, "{st}");
    // Resuming a finished job says where the output is again.
    let again = env.ok(&["resume", &id]);
    assert_eq!(String::from_utf8_lossy(&again.stdout).trim(), printed);
    // Without -o or --no-download there is nowhere to put the output.
    let refused = env.run(&with_renderer(&["render", "--frames", "0..30"], &r));
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--output"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}
