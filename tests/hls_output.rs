//! `-o out.m3u8`: the finished job as a VOD HLS rendition over the byte-joined MP4 (byte
//! ranges, one segment per chunk), read back by FFmpeg's HLS demuxer — the same frames as
//! the job written as `.mp4`, exact durations, the audio in sync, and in the bucket next to
//! the output with `--no-download`.

mod common;

use std::collections::BTreeMap;

use common::peers::*;
use common::*;

/// The `#EXTINF` durations of a playlist, in microseconds, and its target duration.
fn durations(playlist: &str) -> (Vec<u64>, u64) {
    let d = playlist
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .map(|d| {
            let (s, us) = d.trim_end_matches(',').split_once('.').unwrap();
            s.parse::<u64>().unwrap() * 1_000_000 + us.parse::<u64>().unwrap()
        })
        .collect();
    let target = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-TARGETDURATION:"))
        .unwrap()
        .parse()
        .unwrap();
    (d, target)
}

#[test]
fn an_hls_output_decodes_to_the_frames_of_the_same_job_written_as_mp4() {
    let env = Env::new();
    let r = env.renderer("ok");
    // 100 frames at 30000/1001 fps in 7 uneven chunks.
    let extra = ["--fps", "30000/1001"];
    env.ok(&with_renderer(
        &render_args("a.m3u8", "0..100", "7", &extra),
        &r,
    ));
    env.ok(&with_renderer(
        &render_args("b.mp4", "0..100", "7", &extra),
        &r,
    ));

    let playlist = std::fs::read_to_string(env.path("a.m3u8")).unwrap();
    for tag in [
        "#EXT-X-VERSION:7",
        "#EXT-X-PLAYLIST-TYPE:VOD",
        "#EXT-X-MAP:URI=\"a.mp4\",BYTERANGE=\"",
    ] {
        assert!(playlist.contains(tag), "{tag} in {playlist}");
    }
    assert!(playlist.ends_with("#EXT-X-ENDLIST\n"), "{playlist}");
    let (d, target) = durations(&playlist);
    assert_eq!(d.len(), 7, "one segment per chunk: {playlist}");
    // 100 frames × 1001 / 30000 s = 3.336667 s, to the microsecond.
    assert_eq!(d.iter().sum::<u64>(), 3_336_667, "{playlist}");
    let longest = *d.iter().max().unwrap();
    assert!(
        target * 1_000_000 >= longest && (target - 1) * 1_000_000 < longest,
        "{playlist}"
    );
    // The byte ranges tile the media from the end of its init, in order.
    let ranges: Vec<(u64, u64)> = playlist
        .lines()
        .filter_map(|l| l.strip_prefix("#EXT-X-BYTERANGE:"))
        .map(|r| {
            let (len, off) = r.split_once('@').unwrap();
            (len.parse().unwrap(), off.parse().unwrap())
        })
        .collect();
    for w in ranges.windows(2) {
        assert_eq!(w[0].1 + w[0].0, w[1].1);
    }
    // FFmpeg plays exactly the frames of the same job as an MP4.
    let hls = framemd5(&env.path("a.m3u8"));
    assert_eq!(hls.len(), 100);
    assert_eq!(hls, framemd5(&env.path("b.mp4")));
    let st = env.status(&env.status_ids()[0]);
    assert!(st["output"].as_str().unwrap().ends_with("a.mp4"), "{st}");
    assert!(
        st["hls_playlist"].as_str().unwrap().ends_with("a.m3u8"),
        "{st}"
    );
}

#[test]
fn an_hls_output_with_audio_plays_its_tone_in_sync() {
    let env = Env::new();
    write_test_tone(&env.path("sine.wav"));
    let r = env.renderer("ok");
    env.ok(&with_renderer(
        &render_args("tone.m3u8", "0..300", "10", &["--audio", "sine.wav"]),
        &r,
    ));
    let master = std::fs::read_to_string(env.path("tone.m3u8")).unwrap();
    assert!(master.contains("#EXT-X-MEDIA:TYPE=AUDIO"), "{master}");
    assert!(
        master.contains("CODECS=\"avc1.") && master.contains(",mp4a.40.2\""),
        "{master}"
    );
    let video = std::fs::read_to_string(env.path("tone-video.m3u8")).unwrap();
    assert_eq!(durations(&video).0.iter().sum::<u64>(), 10_000_000);

    assert_eq!(
        framemd5(&env.path("tone.m3u8")),
        framemd5(&env.path("tone.mp4"))
    );
    let samples = decode_audio(&env.path("tone.m3u8"));
    // As long as the video (give or take AAC's priming frame).
    assert!(
        (samples.len() as f64 - 480_000.0).abs() <= 1024.0,
        "{} samples",
        samples.len()
    );
    // No seam anywhere, the tone throughout.
    assert_continuous_sine(&samples);
    // In sync: the same samples as the MP4's, shifted by no more than AAC's priming (21 ms,
    // under a frame).
    let mp4 = decode_audio(&env.path("tone.mp4"));
    let diff = |shift: usize, a: &[f32], b: &[f32]| -> f64 {
        let n = 48_000.min(a.len().saturating_sub(shift)).min(b.len());
        (0..n)
            .map(|i| (a[i + shift] - b[i]).abs() as f64)
            .sum::<f64>()
            / n as f64
    };
    let best = (0..=1024)
        .map(|s| diff(s, &samples, &mp4).min(diff(s, &mp4, &samples)))
        .fold(f64::MAX, f64::min);
    assert!(
        best < 0.001,
        "the HLS audio is not the MP4's within 1024 samples: {best}"
    );
}

#[test]
fn with_no_download_the_rendition_is_written_in_the_bucket_next_to_the_output() {
    let s3 = moto("hls-bucket");
    let vars = s3_env(&s3);
    let env = Env::new();
    let r = env.renderer("ok");
    let a = with_renderer(
        &render_args(
            "out.m3u8",
            "0..60",
            "6",
            &["--storage", "s3://hls-bucket/renders", "--no-download"],
        ),
        &r,
    );
    let out = env
        .cmd(&a)
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert_ok(&out);
    let id = env.only_job();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        printed.trim(),
        format!("s3://hls-bucket/renders/jobs/{id}/output.m3u8")
    );
    assert!(!env.path("out.mp4").exists() && !env.path("out.m3u8").exists());
    let keys: BTreeMap<String, u64> = serde_json::from_str(&boto3(
        &s3,
        "hls-bucket",
        "import json\nprint(json.dumps({o['Key']: o['Size'] for o in s3.list_objects_v2(Bucket=B, Prefix='renders/jobs/')['Contents']}))",
    ))
    .unwrap();
    let base = format!("renders/jobs/{id}");
    assert!(keys.contains_key(&format!("{base}/output.mp4")), "{keys:?}");
    assert!(
        keys.contains_key(&format!("{base}/output.m3u8")),
        "{keys:?}"
    );
    // The bucket's folder, as any HTTP front (CloudFront, a website endpoint) serves it:
    // the playlist's relative byte ranges play.
    let copy = env.path("from-bucket");
    std::fs::create_dir_all(&copy).unwrap();
    boto3(
        &s3,
        "hls-bucket",
        &format!(
            "for k in ['output.m3u8', 'output.mp4']:\n    s3.download_file(B, '{base}/' + k, '{}/' + k)\nprint('ok')",
            copy.display()
        ),
    );
    assert_eq!(framemd5(&copy.join("output.m3u8")).len(), 60);
}

#[test]
fn run_and_batch_write_hls_renditions_too() {
    let env = Env::new();
    let r = env.renderer("ok");
    env.ok(&with_renderer(
        &[
            "plan", "--emit", "job.json", "--frames", "0..30", "--size", "64x64", "--chunks", "3",
        ],
        &r,
    ));
    env.ok(&["run", "job.json", "-o", "run.m3u8"]);
    let playlist = std::fs::read_to_string(env.path("run.m3u8")).unwrap();
    assert_eq!(durations(&playlist).0.len(), 3, "{playlist}");
    assert_eq!(
        framemd5(&env.path("run.m3u8")),
        framemd5(&env.path("run.mp4"))
    );

    // A batch: a rendition per row, named by the output pattern.
    let rows = "{\"title\":\"One\",\"score\":1}\n{\"title\":\"Two\",\"score\":2}\n";
    std::fs::write(env.path("rows.jsonl"), rows).unwrap();
    env.ok(&[
        "batch",
        &title_card(),
        "--props-file",
        "rows.jsonl",
        "-o",
        "rows/{row}.m3u8",
        "--frames",
        "0..2",
    ]);
    for row in ["1", "2"] {
        let hls = framemd5(&env.path(&format!("rows/{row}.m3u8")));
        assert_eq!(hls.len(), 2, "row {row}");
        assert_eq!(hls, framemd5(&env.path(&format!("rows/{row}.mp4"))));
    }
}
