//! Every output a video team asks for, through the CLI with real Chromium and FFmpeg:
//! transparent ProRes 4444 and VP9, PNG sequences named by the composition's frame index,
//! stills in PNG, JPEG and WebP, AV1 joined without re-encoding, and BT.709 colour tags
//! that decode back to the page's colours.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;

use common::*;

/// examples/compositions/overlay: transparent page, an opaque strip with the frame index,
/// a half-transparent bar, a grey and a red swatch (see its index.html).
const W: usize = 640;
const H: usize = 240;

fn overlay() -> String {
    example("overlay")
}

/// Decodes every frame of `path` to RGBA (`pre` goes before `-i`, e.g. the libvpx decoder
/// that keeps VP9's alpha).
fn rgba_frames(path: &Path, pre: &[&str]) -> Vec<Vec<u8>> {
    decode_rgba(path, pre)
        .chunks_exact(W * H * 4)
        .map(|f| f.to_vec())
        .collect()
}

fn px(frame: &[u8], x: usize, y: usize) -> [u8; 4] {
    let i = (y * W + x) * 4;
    [frame[i], frame[i + 1], frame[i + 2], frame[i + 3]]
}

/// The frame number the overlay's strip shows (12 bits, least significant first).
fn strip_index(frame: &[u8]) -> u32 {
    (0..12).fold(0, |n, bit| {
        let [r, ..] = px(frame, 40 + 52 * bit, 32);
        n | (u32::from(r >= 128) << bit)
    })
}

/// Checks one decoded overlay frame: its index, and alpha 0 / about 128 / 255 where the
/// page paints nothing, the bar and the strip.
fn check_overlay_frame(frame: &[u8], want: u32, what: &str) {
    assert_eq!(strip_index(frame), want, "{what}: strip index");
    let a = |x, y| px(frame, x, y)[3];
    assert_eq!(a(600, 200), 0, "{what}: nothing painted");
    assert_eq!(a(300, 30), 255, "{what}: strip");
    let bar = a(300, 116);
    assert!((124..=132).contains(&bar), "{what}: bar alpha {bar}");
}

fn render_overlay(env: &Env, out: &str, chunks: &str, frames: &str) {
    env.ok(&[
        "render",
        &overlay(),
        "-o",
        out,
        "--transparent",
        "--frames",
        frames,
        "--size",
        "640x240",
        "--chunks",
        chunks,
    ]);
}

#[test]
fn transparent_prores_in_three_chunks_is_the_one_chunk_video_alpha_included() {
    let env = Env::new();
    render_overlay(&env, "three.mov", "3", "0..30");
    render_overlay(&env, "one.mov", "1", "0..30");
    let three = rgba_frames(&env.path("three.mov"), &[]);
    let one = rgba_frames(&env.path("one.mov"), &[]);
    assert_eq!(three.len(), 30);
    assert!(three == one, "3 chunks decode differently from 1 chunk");
    for (i, f) in three.iter().enumerate() {
        check_overlay_frame(f, i as u32, &format!("ProRes frame {i}"));
    }
    let probe = ffmpeg_probe(&env.path("three.mov"));
    assert!(probe.contains("profile=4444"), "{probe}");
    assert!(probe.contains("pix_fmt=yuva444p"), "{probe}");
}

#[test]
fn transparent_vp9_webm_keeps_alpha_across_the_join() {
    let env = Env::new();
    render_overlay(&env, "three.webm", "3", "0..30");
    let probe = ffmpeg_probe(&env.path("three.webm"));
    assert!(probe.contains("ALPHA_MODE=1"), "{probe}");
    let frames = rgba_frames(&env.path("three.webm"), &["-c:v", "libvpx-vp9"]);
    assert_eq!(frames.len(), 30);
    for (i, f) in frames.iter().enumerate() {
        check_overlay_frame(f, i as u32, &format!("VP9 frame {i}"));
    }
}

#[test]
fn transparent_output_that_cannot_carry_alpha_is_refused_before_rendering() {
    let env = Env::new();
    for (out, extra) in [
        ("x.mp4", &[][..]),
        ("x.mov", &["--codec", "h264"][..]),
        ("x.mkv", &["--codec", "av1"][..]),
        ("x.gif", &[][..]),
        ("f/%04d.jpg", &[][..]),
    ] {
        let mut args = vec![
            "render",
            "--transparent",
            "-o",
            out,
            "--frames",
            "0..4",
            "--size",
            "640x240",
        ];
        args.extend_from_slice(extra);
        let comp = overlay();
        args.push(&comp);
        let r = env.run(&args);
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success(), "{out}: {err}");
        assert!(
            err.contains(".mov (ProRes 4444)")
                && err.contains(".webm (VP9)")
                && err.contains(".png"),
            "{out}: the error names the outputs that carry alpha: {err}"
        );
        assert!(!env.path(out).exists(), "{out} was written");
    }
    let r = env.run(&["still", &overlay(), "-o", "x.jpg", "--transparent"]);
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("cannot carry alpha"));
    assert!(!env.path("x.jpg").exists());
    // Nothing was submitted.
    let jobs = env.ok(&["status", "--json"]);
    assert_eq!(String::from_utf8_lossy(&jobs.stdout).trim(), "[]");
}

/// `ffprobe` of the first video stream: `key=value|…` with its tags.
fn ffmpeg_probe(path: &Path) -> String {
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,profile,pix_fmt,color_range,color_space,color_transfer,color_primaries:stream_tags",
            "-of",
            "compact",
        ])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Sorted names of the files in `dir`.
fn names(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    n.sort();
    n
}

fn expected_names(range: std::ops::Range<u64>) -> Vec<String> {
    range.map(|f| format!("{f:05}.png")).collect()
}

#[test]
fn a_png_sequence_is_named_by_frame_index_keeps_alpha_and_matches_stills() {
    let env = Env::new();
    render_overlay(&env, "seq/%05d.png", "3", "30..90");
    assert_eq!(names(&env.path("seq")), expected_names(30..90));
    for f in [30u64, 31, 59, 60, 89] {
        let png = env.path(&format!("seq/{f:05}.png"));
        let rgba = decode_rgba(&png, &[]);
        check_overlay_frame(&rgba, f as u32, &format!("{}", png.display()));
    }
    // Each chunk's report lists its files with sizes and hashes.
    let id = env.only_job();
    let status = env.status(&id);
    let chunks = status["chunks"].as_array().unwrap();
    assert_eq!(chunks.len(), 3);
    // The images are placed in storage too, under jobs/<id>/frames/.
    let placed = env.home().join(format!("storage/jobs/{id}/frames"));
    assert_eq!(names(&placed), expected_names(30..90));

    // A still of frame 45 (and of its time) is the sequence's frame 45, pixel for pixel.
    for (out, sel) in [
        ("still.png", ["--frame", "45"]),
        ("at.png", ["--time", "1.5"]),
    ] {
        env.ok(&[
            "still",
            &overlay(),
            "-o",
            out,
            sel[0],
            sel[1],
            "--size",
            "640x240",
            "--transparent",
        ]);
        let a = decode_rgba(&env.path(out), &[]);
        let b = decode_rgba(&env.path("seq/00045.png"), &[]);
        assert!(a == b, "{out} differs from frame 45 of the sequence");
    }
}

#[test]
fn stills_are_what_their_extension_says_and_frames_outside_are_refused() {
    let env = Env::new();
    for (out, magic) in [
        ("s.png", &b"\x89PNG"[..]),
        ("s.jpg", &b"\xff\xd8\xff"[..]),
        ("s.jpeg", &b"\xff\xd8\xff"[..]),
        ("s.webp", &b"RIFF"[..]),
    ] {
        env.ok(&[
            "still",
            &overlay(),
            "-o",
            out,
            "--size",
            "640x240",
            "--quality",
            "80",
        ][..if out.ends_with("png") { 6 } else { 8 }]);
        let bytes = std::fs::read(env.path(out)).unwrap();
        assert!(bytes.starts_with(magic), "{out}");
        if out.ends_with("webp") {
            assert_eq!(&bytes[8..12], b"WEBP");
        }
        // Opaque (not transparent): the page's default background is white.
        let rgba = decode_rgba(&env.path(out), &[]);
        assert_eq!(rgba.len(), W * H * 4, "{out}");
        let [r, g, b, a] = px(&rgba, 600, 200);
        assert!(
            a == 255 && r > 240 && g > 240 && b > 240,
            "{out}: {:?}",
            [r, g, b, a]
        );
        assert_eq!(strip_index(&rgba), 0, "{out}: frame 0 by default");
    }
    // A Helios composition has a duration: a frame past it is refused, naming the range.
    let card = title_card();
    let r = env.run(&["still", &card, "-o", "late.png", "--frame", "100000"]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        !r.status.success() && err.contains("outside the composition"),
        "{err}"
    );
    assert!(!env.path("late.png").exists());
    // An image without a pattern is not a sequence.
    let r = env.run(&["render", &overlay(), "-o", "one.png", "--frames", "0..3"]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        !r.status.success() && err.contains("%05d.png") && err.contains("still"),
        "{err}"
    );
    // A pattern with a video codec flag says why not.
    let r = env.run(&[
        "render",
        &overlay(),
        "-o",
        "f/%03d.png",
        "--frames",
        "0..3",
        "--codec",
        "h264",
    ]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        !r.status.success() && err.contains("--codec") && err.contains("not encoded as video"),
        "{err}"
    );
}

#[test]
fn a_lying_image_is_rendered_again_and_a_killed_placement_resumes_with_every_file_once() {
    let env = Env::new();
    let args = [
        "render",
        &overlay(),
        "-o",
        "seq/%05d.png",
        "--frames",
        "10..40",
        "--size",
        "640x240",
        "--chunks",
        "3",
    ];
    let crashed = env
        .cmd(&args)
        .env("HELIOS_FAILPOINTS", "before-stitch")
        .output()
        .unwrap();
    assert_eq!(crashed.status.signal(), Some(9), "{crashed:?}");
    let id = env.only_job();
    // Chunk 1's frame 25 now holds other bytes of the same size than its worker reported.
    let attempt = env.attempts(&id)[1];
    let lie = env
        .home()
        .join(format!("storage/jobs/{id}/attempts/1/{attempt}/00025.png"));
    let mut bytes = std::fs::read(&lie).unwrap();
    let n = bytes.len();
    bytes[n - 20] ^= 0xff;
    std::fs::write(&lie, bytes).unwrap();

    // Resume, killed again after one image is placed.
    let crashed = env
        .cmd(&["resume", &id])
        .env("HELIOS_FAILPOINTS", "mid-placement")
        .output()
        .unwrap();
    assert_eq!(crashed.status.signal(), Some(9), "{crashed:?}");
    let out = env.ok(&["resume", &id]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        env.attempts(&id),
        vec![1, 2, 1],
        "chunk 1 rendered again: {err}"
    );
    assert_eq!(names(&env.path("seq")), expected_names(10..40));
    for f in 10..40u64 {
        let p = env.path(&format!("seq/{f:05}.png"));
        let rgba = decode_rgba(&p, &[]);
        assert_eq!(strip_index(&rgba), f as u32, "{}", p.display());
    }
    assert_eq!(env.status(&id)["state"], "succeeded");
}

#[test]
fn av1_chunks_are_joined_without_reencoding_and_show_their_own_index() {
    let env = Env::new();
    for out in ["av1.mkv", "av1.mp4"] {
        env.ok(&[
            "render",
            &overlay(),
            "-o",
            out,
            "--codec",
            "av1",
            "--frames",
            "0..45",
            "--size",
            "640x240",
            "--chunks",
            "3",
        ]);
        let probe = ffmpeg_probe(&env.path(out));
        assert!(probe.contains("codec_name=av1"), "{probe}");
        for tag in [
            "color_space=bt709",
            "color_transfer=bt709",
            "color_primaries=bt709",
            "color_range=tv",
        ] {
            assert!(probe.contains(tag), "{out}: {tag} in {probe}");
        }
        let frames = rgba_frames(&env.path(out), &[]);
        assert_eq!(frames.len(), 45);
        for (i, f) in frames.iter().enumerate() {
            assert_eq!(strip_index(f), i as u32, "{out} frame {i}");
        }
    }
    // The concat join copies packets: the output's packets are the segments' packets.
    let id = env.status_ids()[0].clone();
    let mut segments = Vec::new();
    for c in env.status(&id)["chunks"].as_array().unwrap() {
        let key = c["segment"].as_str().unwrap();
        segments.push(env.home().join("storage").join(key));
    }
    let joined: Vec<String> = segments.iter().flat_map(|s| packet_md5s(s)).collect();
    assert_eq!(joined.len(), 45);
    assert_eq!(packet_md5s(&env.path("av1.mkv")), joined);
}

/// MD5 of every video packet as stored (no decoding).
fn packet_md5s(path: &Path) -> Vec<String> {
    let out = ffmpeg(&[
        "-i",
        path.to_str().unwrap(),
        "-map",
        "0:v",
        "-c",
        "copy",
        "-f",
        "framemd5",
        "-",
    ]);
    String::from_utf8_lossy(&out)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit(',').next().map(|s| s.trim().to_string()))
        .collect()
}

#[test]
fn video_outputs_carry_bt709_tags_and_decode_back_to_the_page_colours() {
    let env = Env::new();
    for (out, extra) in [
        ("c.mp4", &[][..]),
        ("c.mkv", &["--codec", "h265"][..]),
        ("c.webm", &[][..]),
        ("c.mov", &["--codec", "prores"][..]),
        ("c4.mov", &["--transparent"][..]),
        ("c.av1.mp4", &["--codec", "av1"][..]),
    ] {
        let mut args = vec![
            "render", "-o", out, "--frames", "0..2", "--size", "640x240", "--chunks", "2",
        ];
        args.extend_from_slice(extra);
        let comp = overlay();
        args.push(&comp);
        env.ok(&args);
        let probe = ffmpeg_probe(&env.path(out));
        for tag in [
            "color_space=bt709",
            "color_transfer=bt709",
            "color_primaries=bt709",
            "color_range=tv",
        ] {
            assert!(probe.contains(tag), "{out}: {tag} in {probe}");
        }
        let f = &rgba_frames(&env.path(out), &[])[0];
        let near = |got: [u8; 4], want: [u8; 3]| {
            (0..3).all(|i| (i32::from(got[i]) - i32::from(want[i])).abs() <= 2)
        };
        let grey = px(f, 64, 192);
        let red = px(f, 176, 192);
        assert!(
            near(grey, [128, 128, 128]),
            "{out}: grey decodes to {grey:?}"
        );
        assert!(near(red, [255, 0, 0]), "{out}: red decodes to {red:?}");
    }
}

/// The delays (centiseconds) of a GIF's frames and its NETSCAPE loop count, if any.
fn gif_timing(path: &Path) -> (Vec<u16>, Option<u16>) {
    let b = std::fs::read(path).unwrap();
    let delays = b
        .windows(4)
        .enumerate()
        .filter(|(_, w)| w[..3] == [0x21, 0xF9, 0x04])
        .map(|(i, _)| u16::from_le_bytes([b[i + 4], b[i + 5]]))
        .collect();
    let looped = b
        .windows(11)
        .position(|w| w == b"NETSCAPE2.0")
        .map(|i| u16::from_le_bytes([b[i + 13], b[i + 14]]));
    (delays, looped)
}

#[test]
fn a_gif_in_three_chunks_decodes_like_one_chunk_with_exact_timing_and_loops() {
    let env = Env::new();
    let comp = overlay();
    let gif = |out: &str, chunks: &str, extra: &[&str]| {
        let mut args = vec![
            "render", &comp, "-o", out, "--frames", "0..60", "--size", "640x240", "--chunks",
            chunks,
        ];
        args.extend_from_slice(extra);
        env.ok(&args);
    };
    gif("three.gif", "3", &[]);
    gif("one.gif", "1", &[]);
    let (three, one) = (
        rgba_frames(&env.path("three.gif"), &[]),
        rgba_frames(&env.path("one.gif"), &[]),
    );
    assert_eq!(three.len(), 60);
    assert!(three == one, "3 chunks decode differently from 1 chunk");
    for (i, f) in three.iter().enumerate() {
        assert_eq!(strip_index(f), i as u32, "GIF frame {i}");
    }
    let (delays, looped) = gif_timing(&env.path("three.gif"));
    assert_eq!(delays.len(), 60);
    assert_eq!(delays[..6], [3, 3, 4, 3, 3, 4]);
    assert_eq!(
        delays.iter().map(|&d| u32::from(d)).sum::<u32>(),
        200,
        "2.00 s"
    );
    assert_eq!(looped, Some(0), "loops forever by default");
    assert_eq!(gif_timing(&env.path("one.gif")).0, delays);
    let probe = String::from_utf8(
        std::process::Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                "format=duration",
                "-of",
                "csv=p=0",
            ])
            .arg(env.path("three.gif"))
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(probe.trim().parse::<f64>().unwrap(), 2.0, "{probe}");

    gif("thrice.gif", "2", &["--loop", "3"]);
    assert_eq!(gif_timing(&env.path("thrice.gif")).1, Some(3));
    gif("once.gif", "2", &["--no-loop"]);
    assert_eq!(gif_timing(&env.path("once.gif")).1, None);
    // One palette for the whole job, made once, in storage beside it.
    let id = env.status_ids()[0].clone();
    assert!(env
        .home()
        .join(format!("storage/jobs/{id}/palette.png"))
        .is_file());
}

#[test]
fn canvas_read_back_keeps_alpha_and_batch_writes_a_still_per_row() {
    let env = Env::new();
    // A canvas the size of the picture: transparent, a half-transparent square, an opaque
    // one whose red channel is the frame number.
    let comp = env.path("canvas");
    std::fs::create_dir_all(&comp).unwrap();
    std::fs::write(
        comp.join("index.html"),
        r#"<!doctype html><html><body style="margin:0">
<canvas id="c" width="640" height="240"></canvas>
<script>
const ctx = document.getElementById('c').getContext('2d');
const fps = (window.__HELIOS_CONFIG__ && window.__HELIOS_CONFIG__.fps) || { num: 30, den: 1 };
function draw(t) {
  const n = Math.round(t * fps.num / (1000 * fps.den));
  ctx.clearRect(0, 0, 640, 240);
  ctx.fillStyle = 'rgba(0, 0, 255, 0.5)';
  ctx.fillRect(0, 0, 100, 100);
  ctx.fillStyle = `rgb(${n}, 200, 0)`;
  ctx.fillRect(200, 0, 100, 100);
  requestAnimationFrame(draw);
}
requestAnimationFrame(draw);
</script></body></html>"#,
    )
    .unwrap();
    let comp = comp.to_str().unwrap().to_string();
    env.ok(&[
        "render",
        &comp,
        "-o",
        "c/%03d.png",
        "--transparent",
        "--capture-canvas",
        "canvas",
        "--frames",
        "0..4",
        "--size",
        "640x240",
        "--chunks",
        "2",
    ]);
    for f in 0..4usize {
        let p = env.path(&format!("c/{f:03}.png"));
        let rgba = decode_rgba(&p, &[]);
        assert_eq!(px(&rgba, 500, 200)[3], 0, "frame {f}: transparent");
        let half = px(&rgba, 50, 50);
        assert!(
            (126..=130).contains(&half[3]) && half[2] > 240,
            "frame {f}: {half:?}"
        );
        assert_eq!(px(&rgba, 250, 50), [f as u8, 200, 0, 255], "frame {f}");
    }

    // One still per row, at --frame, named by the row.
    std::fs::write(env.path("rows.jsonl"), "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n").unwrap();
    env.ok(&[
        "batch",
        &overlay(),
        "--props-file",
        "rows.jsonl",
        "-o",
        "thumbs/{row}.png",
        "--frame",
        "6",
        "--size",
        "640x240",
    ]);
    assert_eq!(names(&env.path("thumbs")), ["1.png", "2.png", "3.png"]);
    for n in 1..=3 {
        let p = env.path(&format!("thumbs/{n}.png"));
        let rgba = decode_rgba(&p, &[]);
        assert_eq!(strip_index(&rgba), 6, "{}", p.display());
    }
}
