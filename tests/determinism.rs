//! Frames are byte-identical whatever the machine's load: compositions with GSAP timelines
//! and many scaled layers, rendered as 3 lossless chunks two at a time, three times, beside
//! busy loops, give the same frames every time (what a retried chunk relies on).
//!
//! Not asserted: that they equal the 1-chunk render. For layers whose scale changes from
//! frame to frame, Chromium keeps raster decisions from one drawing to the next, so a frame
//! drawn right after a jump in time (a chunk's first frame) can differ in a few pixels from
//! the same frame drawn after its predecessor. tests/browser.rs checks chunked == single
//! for the example compositions, which avoid such layers.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;

/// Spins `n` threads until dropped: a machine under load.
struct BusyLoops(Arc<AtomicBool>, Vec<std::thread::JoinHandle<()>>);

impl BusyLoops {
    fn start(n: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                })
            })
            .collect();
        Self(stop, threads)
    }
}

impl Drop for BusyLoops {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
        for t in self.1.drain(..) {
            let _ = t.join();
        }
    }
}

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

/// A quiet render as 3 chunks one at a time, then three renders as 3 chunks two at a time
/// beside two busy loops, with two browsers per worker: the same frames every time.
fn equal_under_load(name: &str, frames: &str) {
    let env = Env::new();
    let plan = ["--chunks", "3", "--browsers", "2"];
    let quiet = render(
        &env,
        name,
        "quiet.mp4",
        frames,
        &[&plan[..], &["--concurrency", "1"]].concat(),
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
            &[&plan[..], &["--concurrency", "2"]].concat(),
        );
        let d = differing(&quiet, &got);
        assert!(
            d.is_empty(),
            "{name} run {run} under load: frames {d:?} differ from the quiet render"
        );
    }
}

#[test]
fn gsap_timeline_is_byte_identical_run_after_run_under_load() {
    let vendored = Path::new(&example("gsap")).join("vendor/gsap.min.js");
    assert!(
        vendored.exists(),
        "build the examples first: bash scripts/build-examples.sh (the README's test command does)"
    );
    equal_under_load("gsap", "0..60");
}

#[test]
fn scaled_layers_are_byte_identical_run_after_run_under_load() {
    equal_under_load("layers", "0..60");
}
