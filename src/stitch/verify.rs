use std::collections::HashMap;
use std::fmt;

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

/// Checks segments against each other and their expected frame counts, from what is known
/// of each — `(codec parameters, frames, starts with a keyframe, frames expected)`, probed or
/// reported by its worker: parameters identical (the majority sets the reference), exact
/// frame count, keyframe first. Returns every problem found.
pub fn check_segments(infos: &[(&str, u64, bool, u64)]) -> Vec<SegmentProblem> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for (params, ..) in infos {
        *counts.entry(params).or_default() += 1;
    }
    // Most common parameters win; ties go to the earliest segment's.
    let mut reference = "";
    let mut best = 0;
    for (params, ..) in infos {
        if counts[params] > best {
            best = counts[params];
            reference = params;
        }
    }
    let mut problems = Vec::new();
    for (index, (params, frames, keyframe_first, expected)) in infos.iter().enumerate() {
        let mut why = Vec::new();
        if *params != reference {
            why.push(format!(
                "codec parameters differ from the other segments ({params} vs {reference})"
            ));
        }
        if frames != expected {
            why.push(format!("holds {frames} frames, expected {expected}"));
        }
        if !keyframe_first {
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

    #[test]
    fn odd_one_out_is_named() {
        let p = check_segments(&[
            ("h264", 10, true, 10),
            ("hevc", 10, true, 10),
            ("h264", 9, true, 10),
        ]);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].index, 1);
        assert!(p[1].reason.contains("9 frames"));
    }
}
