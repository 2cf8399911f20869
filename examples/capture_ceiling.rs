//! The capture ceiling of a composition: frames/s that N browser processes reach seeking and
//! capturing frames, with nothing decoded or encoded (what `scripts/bench-throughput.sh`
//! compares the whole pipeline with).
//!
//! ```sh
//! cargo run --release --example capture_ceiling -- examples/compositions/dom-css 1280x720 300 2
//! ```
//! Prints one line: `frames/s`.

use helios_infra::render::browser::capture_ceiling;
use helios_infra::spec::{BrowserComposition, Codec, Fps, FrameRange, VideoSpec};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, size, frames, browsers] = args.as_slice() else {
        anyhow::bail!("usage: capture_ceiling DIR WIDTHxHEIGHT FRAMES BROWSERS [CANVAS_SELECTOR]");
    };
    let (w, h) = size
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
        .ok_or_else(|| anyhow::anyhow!("size {size} is not WIDTHxHEIGHT"))?;
    let frames: u64 = frames.parse()?;
    let composition = BrowserComposition {
        entry: "index.html".into(),
        bundle: String::new(),
        seed: None,
        capture_canvas: std::env::var("CAPTURE_CANVAS").ok(),
        browsers: None,
        props: None,
        assets: Default::default(),
        allow_network: false,
        fonts: Vec::new(),
    };
    let video = VideoSpec {
        width: w,
        height: h,
        fps: Fps::new(30, 1),
        frames: FrameRange::new(0, frames),
        codec: Codec::H264,
        crf: None,
        preset: None,
        pixel_format: None,
        lossless: false,
        segments: Default::default(),
    };
    let fps = capture_ceiling(
        std::path::Path::new(dir),
        &composition,
        &video,
        (0, frames),
        browsers.parse()?,
    )
    .await?;
    println!("{fps:.2}");
    Ok(())
}
