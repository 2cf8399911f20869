//! The concat list writer never panics, whatever the paths and frame counts.
#![no_main]
use helios_infra::spec::Fps;
use helios_infra::stitch::{concat_list, Segment};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let num = u32::from_le_bytes([data[0], data[1], data[2], data[3]]).max(1);
    let den = u32::from_le_bytes([data[4], data[5], data[6], data[7]]).max(1);
    let segs: Vec<Segment> = data[8..]
        .split(|b| *b == 0)
        .enumerate()
        .map(|(i, name)| Segment {
            path: format!("/seg/{}", String::from_utf8_lossy(name)).into(),
            frames: (i as u64 % 1000) + 1,
        })
        .collect();
    let _ = concat_list(&segs, Fps::new(num, den));
});
