use std::collections::HashMap;
use std::fmt;

use crate::media::SegmentInfo;

/// Why one segment may not be stitched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentProblem {
    /// Position of the segment in the list (the chunk index for jobs).
    pub index: usize,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for SegmentProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "segment {}: {}", self.index, self.reason)
    }
}

/// Checks probed segments against each other and their expected frame counts: codec
/// parameters identical (the majority sets the reference), exact frame count, keyframe
/// first. Returns every problem found.
pub fn check_segments(infos: &[(SegmentInfo, u64)]) -> Vec<SegmentProblem> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for (info, _) in infos {
        *counts.entry(info.codec_parameters()).or_default() += 1;
    }
    // Most common parameters win; ties go to the earliest segment's.
    let reference = infos
        .iter()
        .map(|(i, _)| i.codec_parameters())
        .max_by_key(|p| counts[p])
        .unwrap_or_default();
    let mut problems = Vec::new();
    for (index, (info, expected)) in infos.iter().enumerate() {
        let mut why = Vec::new();
        if info.codec_parameters() != reference {
            why.push(format!(
                "codec parameters differ from the other segments ({} vs {reference})",
                info.codec_parameters()
            ));
        }
        if info.frames != *expected {
            why.push(format!("holds {} frames, expected {expected}", info.frames));
        }
        if !info.starts_with_keyframe {
            why.push("does not start with a keyframe".into());
        }
        if !why.is_empty() {
            problems.push(SegmentProblem {
                index,
                reason: why.join("; "),
            });
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(frames: u64, codec: &str) -> SegmentInfo {
        SegmentInfo {
            codec: codec.into(),
            profile: "High".into(),
            width: 64,
            height: 64,
            pix_fmt: "yuv420p".into(),
            frame_rate: "30/1".into(),
            time_base: "1/90000".into(),
            extradata_hash: "x".into(),
            frames,
            starts_with_keyframe: true,
        }
    }

    #[test]
    fn odd_one_out_is_named() {
        let p = check_segments(&[
            (info(10, "h264"), 10),
            (info(10, "hevc"), 10),
            (info(9, "h264"), 10),
        ]);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].index, 1);
        assert!(p[1].reason.contains("9 frames"));
    }
}
