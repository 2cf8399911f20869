//! Frames are byte-identical whatever the machine's load and however the job is cut:
//! compositions with GSAP timelines, framework transitions (React and Vue sequences whose CSS
//! animations Helios seeks) and many scaled, blurred layers (some hinted with
//! will-change: transform), rendered as 3 lossless chunks two at a time, three times, beside
//! busy loops, equal the quiet 1-chunk render frame for frame (what a retried or re-planned
//! chunk relies on). Chromium keeps raster decisions from one drawing to the next; the
//! renderer draws the frames before each jump in time, rasters changed tiles whole and keeps
//! will-change: transform from pinning a layer's raster scale, so a frame's pixels do not
//! depend on where its chunk began.

mod common;

use std::path::Path;

use common::*;

/// Frame hashes of a lossless render of `frames` of example `name`.
fn render(env: &Env, name: &str, out: &str, frames: &str, plan: &[&str]) -> Vec<String> {
    let comp = example(name);
    let mut args = vec![
        "render",
        &comp,
        "-o",
        out,
        "--frames",
        frames,
        "--size",
        "1280x720",
        "--lossless",
    ];
    args.extend(plan);
    env.ok(&args);
    framemd5(&env.path(out))
}

fn differing(a: &[String], b: &[String]) -> Vec<usize> {
    assert_eq!(a.len(), b.len());
    (0..a.len()).filter(|&i| a[i] != b[i]).collect()
}

/// A quiet 1-chunk render, then three renders as 3 chunks two at a time beside two busy
/// loops, with two browsers per worker: the same frames every time.
fn equal_under_load(name: &str, frames: &str) {
    let env = Env::new();
    let quiet = render(
        &env,
        name,
        "quiet.mp4",
        frames,
        &["--chunks", "1", "--browsers", "2", "--concurrency", "1"],
    );
    let distinct = quiet.iter().collect::<std::collections::HashSet<_>>().len();
    assert!(
        distinct * 10 > quiet.len() * 9,
        "{name}: only {distinct} distinct frames; is it animating?"
    );
    for run in 0..3 {
        // Two busy loops: with two chunks rendering at once, every core is contended.
        let _load = BusyLoops::start(2);
        let out = format!("loaded-{run}.mp4");
        let got = render(
            &env,
            name,
            &out,
            frames,
            &["--chunks", "3", "--browsers", "2", "--concurrency", "2"],
        );
        let d = differing(&quiet, &got);
        assert!(
            d.is_empty(),
            "{name} run {run}: 3 chunks under load differ from the quiet 1-chunk render at frames {d:?}"
        );
    }
}

/// A framework scene of examples/compositions/clocks, which must have been built.
fn built(name: &str) -> String {
    let comp = format!("clocks/{name}");
    assert!(
        Path::new(&example(&comp)).join("dist/main.js").exists(),
        "build the examples first: bash scripts/build-examples.sh (the README's test command does)"
    );
    comp
}

#[test]
fn gsap_timeline_is_byte_identical_chunked_and_under_load() {
    let vendored = Path::new(&example("gsap")).join("vendor/gsap.min.js");
    assert!(
        vendored.exists(),
        "build the examples first: bash scripts/build-examples.sh (the README's test command does)"
    );
    equal_under_load("gsap", "0..60");
}

#[test]
fn scaled_layers_are_byte_identical_chunked_and_under_load() {
    equal_under_load("layers", "0..60");
}

#[test]
fn react_transitions_are_byte_identical_chunked_and_under_load() {
    equal_under_load(&built("react-transitions"), "0..60");
}

#[test]
fn vue_transitions_are_byte_identical_chunked_and_under_load() {
    equal_under_load(&built("vue-transitions"), "0..60");
}
