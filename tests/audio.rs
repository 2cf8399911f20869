//! Audio is mixed once for the whole timeline: no seams at chunk boundaries, exact length,
//! exact sync, levels as specified.

mod common;

use common::*;

/// Chunks of 30 frames: boundaries at 30, 60, …
fn render_with_audio(
    env: &Env,
    out: &str,
    fps: &str,
    frames: &str,
    chunks: &str,
    vf: &str,
    extra: &[&str],
) {
    let vf = format!("{vf},trim=start_frame={{start}}:end_frame={{end}}");
    let mut args = vec![
        "render",
        "-o",
        out,
        "--frames",
        frames,
        "--fps",
        fps,
        "--size",
        "64x64",
        "--chunks",
        chunks,
        "--preset",
        "ultrafast",
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[
        "--",
        "ffmpeg",
        "-v",
        "error",
        "-nostdin",
        "-f",
        "lavfi",
        "-i",
        "color=c=black:size={width}x{height}:rate={fps}",
        "-vf",
        &vf,
        "-c:v",
        "ffv1",
        "{output}",
    ]);
    env.ok(&args);
}

#[test]
fn continuous_sine_has_no_seam_at_any_chunk_boundary_and_matches_the_video_length() {
    let env = Env::new();
    write_test_tone(&env.path("sine.wav"));
    render_with_audio(
        &env,
        "out.mp4",
        "30",
        "0..300",
        "10",
        "null",
        &["--audio", "sine.wav"],
    );

    let out = env.path("out.mp4");
    let samples = decode_audio(&out);
    let video_samples = 300.0 / 30.0 * 48000.0;
    assert!(
        (samples.len() as f64 - video_samples).abs() <= 1024.0,
        "audio has {} samples, video lasts {video_samples}",
        samples.len()
    );
    // No seam at a boundary, and the sine is really there throughout.
    assert_continuous_sine(&samples);
}

#[test]
fn clicks_line_up_with_flashes_at_and_around_chunk_boundaries() {
    let env = Env::new();
    let fps = 30000.0 / 1001.0;
    let flashes = [60u64, 149, 241, 298];
    // One-sample clicks exactly at the flash frames' times.
    let clicks: Vec<String> = flashes
        .iter()
        .map(|k| format!("eq(n,{})", (*k as f64 / fps * 48000.0).round() as u64))
        .collect();
    let expr = format!("0.9*({})", clicks.join("+"));
    let click = env.path("click.wav");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &format!("aevalsrc=exprs='{expr}':s=48000:d=11"),
        click.to_str().unwrap(),
    ]);
    let enable: Vec<String> = flashes.iter().map(|k| format!("eq(n,{k})")).collect();
    let vf = format!(
        "drawbox=x=0:y=0:w=iw:h=ih:color=white:t=fill:enable='{}'",
        enable.join("+")
    );
    render_with_audio(
        &env,
        "sync.mp4",
        "30000/1001",
        "0..300",
        "10",
        &vf,
        &["--audio", "click.wav"],
    );

    let out = env.path("sync.mp4");
    let bright = frame_brightness(&out);
    let seen: Vec<u64> = bright
        .iter()
        .enumerate()
        .filter(|(_, b)| **b > 128.0)
        .map(|(i, _)| i as u64)
        .collect();
    assert_eq!(seen, flashes, "flashes at the wrong frames");
    let samples = decode_audio(&out);
    for k in flashes {
        let video_t = k as f64 / fps;
        // The loudest sample within 20 ms of the flash is the click.
        let centre = (video_t * 48000.0) as usize;
        let (peak, _) = samples[centre - 960..centre + 960].iter().enumerate().fold(
            (0, 0.0f32),
            |acc, (i, s)| if s.abs() > acc.1 { (i, s.abs()) } else { acc },
        );
        let audio_t = (centre - 960 + peak) as f64 / 48000.0;
        let offset_ms = (audio_t - video_t).abs() * 1000.0;
        assert!(
            offset_ms < 1.0,
            "frame {k}: audio is {offset_ms:.3} ms off the picture"
        );
    }
}

#[test]
fn overlapping_tracks_keep_their_gains_and_fades_without_normalisation() {
    let env = Env::new();
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=f=440:r=48000:d=12",
        "-af",
        "volume=2",
        env.path("a.wav").to_str().unwrap(),
    ]);
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=f=1000:r=44100:d=12",
        "-af",
        "volume=2",
        env.path("b.wav").to_str().unwrap(),
    ]);
    let r = ffmpeg_renderer();
    env.ok(&with_renderer(
        &[
            "plan", "--emit", "job.json", "--frames", "0..300", "--size", "64x64", "--chunks", "4",
            "--codec", "ffv1", "--audio", "a.wav", "--audio", "b.wav@60",
        ],
        &r,
    ));
    let mut spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(env.path("job.json")).unwrap()).unwrap();
    // A: full level, fading out over its last second (ends at 8 s). B: half level from 2 s, 1 s fade-in.
    spec["audio"][0]["duration_s"] = 8.0.into();
    spec["audio"][0]["fade_out_s"] = 1.0.into();
    spec["audio"][1]["volume"] = 0.5.into();
    spec["audio"][1]["fade_in_s"] = 1.0.into();
    std::fs::write(env.path("job.json"), spec.to_string()).unwrap();
    env.ok(&["run", "job.json", "-o", "mix.mov"]);

    let s = decode_audio(&env.path("mix.mov"));
    assert_eq!(s.len(), 480_000, "PCM output is exactly the video's length");
    let a = 0.25 / 2f64.sqrt();
    let b = 0.125 / 2f64.sqrt();
    let close = |got: f64, want: f64, what: &str| {
        assert!(
            (got - want).abs() < want * 0.03,
            "{what}: rms {got:.4}, expected {want:.4}"
        )
    };
    close(rms(&s, 0.5, 1.5), a, "A alone");
    close(
        rms(&s, 3.5, 6.5),
        (a * a + b * b).sqrt(),
        "A and B together",
    );
    close(rms(&s, 8.5, 9.5), b, "B alone after A ended");
    // Mid fade-in (2.5 s) B is at half its level; mid fade-out (7.5 s) A is at half its level.
    let mid_in = rms(&s, 2.45, 2.55);
    close(
        mid_in,
        (a * a + (b / 2.0) * (b / 2.0)).sqrt(),
        "during B's fade-in",
    );
    let mid_out = rms(&s, 7.45, 7.55);
    close(
        mid_out,
        ((a / 2.0) * (a / 2.0) + b * b).sqrt(),
        "during A's fade-out",
    );
    assert!(rms(&s, 0.0, 0.01) > 0.0);
}

#[test]
fn missing_or_unreadable_audio_fails_at_plan_time_naming_the_file() {
    let env = Env::new();
    let r = ffmpeg_renderer();
    let out = env.run(&with_renderer(
        &[
            "render",
            "-o",
            "o.mp4",
            "--frames",
            "0..30",
            "--audio",
            "nope.wav@5",
        ],
        &r,
    ));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nope.wav") && err.contains("does not exist"),
        "{err}"
    );

    std::fs::write(env.path("notes.txt"), "not audio").unwrap();
    let out = env.run(&with_renderer(
        &[
            "render",
            "-o",
            "o.mp4",
            "--frames",
            "0..30",
            "--audio",
            "notes.txt",
        ],
        &r,
    ));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("notes.txt") && err.contains("cannot be used as audio"),
        "{err}"
    );
    // Nothing was submitted.
    assert!(!env.home().join("storage/jobs").exists());
}

#[test]
fn audio_in_the_bundle_and_webm_opus() {
    let env = Env::new();
    std::fs::create_dir_all(env.path("site/sfx")).unwrap();
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=f=330:r=48000:d=2",
        env.path("site/sfx/tone.wav").to_str().unwrap(),
    ]);
    let r = ffmpeg_renderer();
    env.ok(&with_renderer(
        &[
            "render",
            "-o",
            "o.webm",
            "--codec",
            "vp9",
            "--frames",
            "0..60",
            "--size",
            "64x64",
            "--chunks",
            "3",
            "--bundle",
            "site",
            "--audio",
            "site/sfx/tone.wav@15",
        ],
        &r,
    ));
    let spec_path = std::fs::read_dir(env.home().join("storage/jobs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("job.json");
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(spec_path).unwrap()).unwrap();
    assert_eq!(
        spec["audio"][0]["source"], "sfx/tone.wav",
        "bundle files are referenced inside the bundle"
    );
    let s = decode_audio(&env.path("o.webm"));
    assert!(
        (s.len() as i64 - 96_000).abs() <= 960,
        "{} samples",
        s.len()
    );
    assert!(rms(&s, 0.0, 0.45) < 0.01, "silent before frame 15");
    assert!(rms(&s, 0.6, 1.4) > 0.05, "tone after frame 15");
}

#[test]
fn media_elements_of_an_html_composition_are_found_at_plan_time_and_mixed() {
    let env = Env::new();
    let comp = env.path("comp");
    std::fs::create_dir_all(comp.join("sfx")).unwrap();
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=f=500:r=48000:d=5",
        comp.join("sfx/tone.wav").to_str().unwrap(),
    ]);
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=f=900:r=48000:d=5",
        comp.join("muted.wav").to_str().unwrap(),
    ]);
    std::fs::write(
        comp.join("index.html"),
        r#"<!doctype html><link rel=icon href="data:,"><body style="margin:0;background:#123">
<audio src="sfx/tone.wav" data-helios-offset="1" data-helios-seek="0.25"></audio>
<audio src="muted.wav" muted></audio>
<div style="width:50px;height:50px;background:#fff;animation:m 1s linear infinite"></div>
<style>@keyframes m{to{transform:translateX(200px)}}</style></body>"#,
    )
    .unwrap();
    env.ok(&[
        "plan", "--emit", "job.json", "comp", "--frames", "0..90", "--size", "320x180", "--chunks",
        "3",
    ]);
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(env.path("job.json")).unwrap()).unwrap();
    let audio = spec["audio"].as_array().unwrap();
    assert_eq!(audio.len(), 1, "the muted element is left out: {spec}");
    assert_eq!(audio[0]["source"], "sfx/tone.wav");
    assert_eq!(audio[0]["at_frame"], 30);
    assert_eq!(audio[0]["trim_start_s"], 0.25);

    env.ok(&[
        "render", "comp", "-o", "page.mp4", "--frames", "0..90", "--size", "320x180", "--chunks",
        "3",
    ]);
    let s = decode_audio(&env.path("page.mp4"));
    assert!(
        (s.len() as i64 - 144_000).abs() <= 1024,
        "{} samples",
        s.len()
    );
    assert!(
        rms(&s, 0.05, 0.9) < 0.005,
        "silent before the element's offset"
    );
    assert!(
        rms(&s, 1.2, 2.8) > 0.05,
        "the element's sound after its offset"
    );
}
