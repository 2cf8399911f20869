//! Watching a render while it runs: `GET /jobs/{id}/live.m3u8` from a running `ui`, read
//! by FFmpeg's HLS demuxer (a real client) — the committed prefix mid-job, the whole video
//! at the end — with the ui's access rules, and over S3 storage (moto).

mod common;

use common::peers::*;
use common::*;

/// Segments (`live/N.m4s`) a playlist lists, in order.
fn listed(playlist: &str) -> Vec<String> {
    playlist
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// The hashes of the first `frames` frames FFmpeg's HLS demuxer decodes from `url`, from
/// the playlist's first segment (all with `None`).
fn hls_frames(url: &str, frames: Option<usize>) -> Vec<String> {
    framemd5_of(url, &["-live_start_index", "0"], frames)
}

fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn ffmpeg_plays_the_committed_prefix_mid_job_and_the_whole_video_at_the_end() {
    let env = Env::new();
    // 15 chunks of 10 frames, one at a time, each taking a second or more.
    let r = env.renderer("slow:1");
    let args = render_args("live.mp4", "0..150", "15", &["--concurrency", "1"]);
    let (mut render, id) = env.spawn_render(&with_renderer(&args, &r), &[]);
    let ui = Ui::start(&env, &[]);
    let url = format!("http://{}/jobs/{id}/live.m3u8", ui.addr);

    // Mid-job: a prefix of at least one chunk, fewer than all.
    let playlist = wait_for("a committed chunk in the playlist", 120, || {
        let (status, body) = ui.get(&format!("/jobs/{id}/live.m3u8"), &[]);
        assert_eq!(status, 200, "{body}");
        (!listed(&body).is_empty()).then_some(body)
    });
    let segments = listed(&playlist);
    assert!(segments.len() < 15, "{playlist}");
    let expected: Vec<String> = (0..segments.len())
        .map(|i| format!("live/{i}.m4s"))
        .collect();
    assert_eq!(segments, expected, "a contiguous prefix, in order");
    for tag in [
        "#EXT-X-VERSION:7",
        "#EXT-X-PLAYLIST-TYPE:EVENT",
        "#EXT-X-MAP:URI=\"live/init.mp4\"",
        "#EXT-X-TARGETDURATION:1",
    ] {
        assert!(playlist.contains(tag), "{tag} in {playlist}");
    }
    assert!(!playlist.contains("#EXT-X-ENDLIST"), "{playlist}");
    // Exact durations: they add up to the prefix's frames ÷ 30 fps (to the microsecond).
    let micros: u64 = playlist
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .map(|d| (d.trim_end_matches(',').parse::<f64>().unwrap() * 1e6).round() as u64)
        .sum();
    let want = (segments.len() as f64 * 10.0 / 30.0 * 1e6).round() as u64;
    assert_eq!(micros, want, "{playlist}");
    let st = env.status(&id);
    assert!(
        st["playable_frames"].as_u64().unwrap() >= segments.len() as u64 * 10,
        "{st}"
    );
    let api = ui.json(&format!("/api/jobs/{id}"));
    assert_eq!(api["live"]["playlist"], format!("/jobs/{id}/live.m3u8"));
    assert!(
        api["live"]["codecs"].as_str().unwrap().starts_with("avc1."),
        "{api}"
    );
    assert!(api["chunks"].is_array());
    let early = hls_frames(&url, Some(segments.len() * 10));
    assert_eq!(early.len(), segments.len() * 10);
    assert!(
        env.status(&id)["state"] != "succeeded",
        "the prefix was read while the job still ran"
    );

    // The end: the playlist is closed and plays exactly the job's frames.
    assert!(render.wait().unwrap().success());
    let (_, body) = ui.get(&format!("/jobs/{id}/live.m3u8"), &[]);
    assert!(body.ends_with("#EXT-X-ENDLIST\n"), "{body}");
    assert_eq!(listed(&body).len(), 15);
    let all = hls_frames(&url, None);
    let output = framemd5(&env.path("live.mp4"));
    assert_eq!(output.len(), 150);
    assert_eq!(
        all, output,
        "the live playlist decodes to the output's frames"
    );
    assert_eq!(
        early[..],
        output[..early.len()],
        "mid-job, each frame was the right one"
    );
    assert_eq!(env.status(&id)["playable_frames"], 150);
}

#[test]
fn a_chunk_committed_after_a_gap_waits_for_the_gap() {
    let env = Env::new();
    // Chunk 0 takes 6 s; chunks 1..3 are quick and commit first.
    let r = env.renderer("slow-at:0:6");
    let args = render_args("gap.mp4", "0..40", "4", &["--concurrency", "4"]);
    let (mut render, id) = env.spawn_render(&with_renderer(&args, &r), &[]);
    let ui = Ui::start(&env, &[]);
    wait_for("chunks after the gap committed", 60, || {
        let st = env.status(&id);
        let done: Vec<u64> = st["chunks"]
            .as_array()?
            .iter()
            .filter(|c| c["state"] == "done")
            .map(|c| c["index"].as_u64().unwrap())
            .collect();
        (!done.is_empty()).then_some(())
    });
    let st = env.status(&id);
    let first = st["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["index"] == 0)
        .unwrap()
        .clone();
    if first["state"] != "done" {
        let (_, body) = ui.get(&format!("/jobs/{id}/live.m3u8"), &[]);
        assert!(
            listed(&body).is_empty(),
            "nothing before chunk 0 is committed: {body}"
        );
        assert_eq!(st["playable_frames"], 0, "{st}");
        let (status, _) = ui.get(&format!("/jobs/{id}/live/1.m4s"), &[]);
        assert_eq!(status, 404, "a segment after the gap is not served");
    } else {
        panic!("chunk 0 (6 s) committed before any other: {st}");
    }
    assert!(render.wait().unwrap().success());
    let (_, body) = ui.get(&format!("/jobs/{id}/live.m3u8"), &[]);
    assert_eq!(listed(&body).len(), 4, "{body}");
    let url = format!("http://{}/jobs/{id}/live.m3u8", ui.addr);
    assert_eq!(hls_frames(&url, None), framemd5(&env.path("gap.mp4")));
}

#[test]
fn live_routes_follow_the_access_rules_and_refuse_what_is_not_a_segment() {
    let env = Env::new();
    let r = env.renderer("ok");
    env.ok(&with_renderer(&render_args("a.mp4", "0..20", "2", &[]), &r));
    let id = env.only_job();
    env.ok(&with_renderer(&render_args("b.mkv", "0..20", "2", &[]), &r));
    let concat = env.status_ids().into_iter().find(|i| *i != id).unwrap();

    let ui = Ui::start(&env, &["--token", "sesame"]);
    let auth = [("Authorization", "Bearer sesame")];
    let path = format!("/jobs/{id}/live.m3u8");
    assert_eq!(ui.get(&path, &[]).0, 401, "no token");
    assert_eq!(ui.get(&path, &auth).0, 200);
    assert_eq!(ui.get(&format!("/jobs/{id}/live/0.m4s"), &[]).0, 401);
    let (status, body) = ui.get(&format!("/jobs/{id}/live/0.m4s"), &auth);
    assert_eq!(status, 200);
    assert!(body.len() > 100);
    for escape in [
        "/live/..%2F..%2Fjob.json",
        "/live/%2e%2e",
        "/live/0.m4s%2F..%2F1.m4s",
        "/live/-1.m4s",
        "/live/job.json",
        "/live/9.m4s",
    ] {
        let (status, _) = ui.get(&format!("/jobs/{id}{escape}"), &auth);
        assert_eq!(status, 404, "{escape}");
    }
    // A job whose segments are whole files says why it has no live video.
    let (status, body) = ui.get(&format!("/jobs/{concat}/live.m3u8"), &auth);
    assert_eq!(status, 409);
    assert!(
        body.contains("concat") && body.contains("fragmented"),
        "{body}"
    );
    drop(ui);

    let ui = Ui::start(&env, &[]);
    assert_eq!(
        ui.get(&path, &[("Host", "evil.example:80")]).0,
        403,
        "loopback names only"
    );
    assert_eq!(ui.get(&path, &[]).0, 200);
}

/// A job rendered to `storage` with `vars` (its endpoint), then its live playlist read
/// through a `ui` with the same variables: the output's frames.
fn plays_from(storage: &str, vars: &[(&'static str, String)]) {
    let env = Env::new();
    let r = env.renderer("ok");
    let args = with_renderer(
        &render_args("out.mp4", "0..30", "3", &["--storage", storage]),
        &r,
    );
    let out = env
        .cmd(&args)
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert_ok(&out);
    let id = env.only_job();
    let scheme = &storage[..5];
    assert!(env.status(&id)["storage"]
        .as_str()
        .unwrap()
        .starts_with(scheme));
    let ui = Ui::start_with_env(&env, &[], vars);
    let url = format!("http://{}/jobs/{id}/live.m3u8", ui.addr);
    assert_eq!(hls_frames(&url, None), framemd5(&env.path("out.mp4")));
}

#[test]
fn the_live_playlist_reads_its_segments_from_s3() {
    let s3 = moto("live-bucket");
    plays_from("s3://live-bucket/jobs-here", &s3_env(&s3));
}

#[test]
fn the_live_playlist_reads_its_segments_from_cloud_storage() {
    let gcs = fake_gcs("live-gcs");
    plays_from(
        "gs://live-gcs/p",
        &[("STORAGE_EMULATOR_HOST", gcs.endpoint.clone())],
    );
}
