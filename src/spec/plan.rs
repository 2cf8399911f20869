use super::{Chunk, FrameRange};

/// How to split a frame range into chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkPlan {
    /// Exactly this many chunks (fewer if the range has fewer frames).
    Count(u32),
    /// At most this many frames per chunk.
    FramesPerChunk(u64),
}

/// Tiles `range` into balanced, contiguous chunks covering it exactly.
///
/// Chunk lengths differ by at most one frame; longer chunks come first. Returns an empty
/// plan for an empty range or a zero parameter, which validation then reports.
pub fn plan_chunks(range: FrameRange, plan: ChunkPlan) -> Vec<Chunk> {
    let total = range.len();
    let n = match plan {
        ChunkPlan::Count(n) => u64::from(n).min(total),
        ChunkPlan::FramesPerChunk(0) => 0,
        ChunkPlan::FramesPerChunk(f) => total.div_ceil(f),
    };
    if n == 0 || n > u64::from(u32::MAX) {
        return Vec::new();
    }
    let (base, extra) = (total / n, total % n);
    let mut start = range.start;
    (0..n)
        .map(|i| {
            let len = base + u64::from(i < extra);
            let chunk = Chunk {
                index: i as u32,
                start,
                end: start + len,
            };
            start += len;
            chunk
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn balanced_split() {
        let c = plan_chunks(FrameRange::new(0, 240), ChunkPlan::Count(7));
        let lens: Vec<_> = c.iter().map(|c| c.len()).collect();
        assert_eq!(lens, vec![35, 35, 34, 34, 34, 34, 34]);
        assert_eq!(c.last().unwrap().end, 240);
    }

    #[test]
    fn frames_per_chunk_caps_length() {
        let c = plan_chunks(FrameRange::new(10, 110), ChunkPlan::FramesPerChunk(30));
        assert_eq!(c.len(), 4);
        assert!(c.iter().all(|c| c.len() <= 30));
        assert_eq!(c[0].start, 10);
    }

    #[test]
    fn more_chunks_than_frames_clamps() {
        let c = plan_chunks(FrameRange::new(0, 3), ChunkPlan::Count(10));
        assert_eq!(c.len(), 3);
    }

    proptest! {
        #[test]
        fn chunks_tile_the_range_exactly(start in 0u64..1_000_000, len in 1u64..100_000, n in 1u32..5000, per in 1u64..10_000, by_count: bool) {
            let range = FrameRange::new(start, start + len);
            let plan = if by_count { ChunkPlan::Count(n) } else { ChunkPlan::FramesPerChunk(per) };
            let chunks = plan_chunks(range, plan);
            prop_assert!(!chunks.is_empty());
            prop_assert_eq!(chunks[0].start, range.start);
            prop_assert_eq!(chunks.last().unwrap().end, range.end);
            let min = chunks.iter().map(|c| c.len()).min().unwrap();
            let max = chunks.iter().map(|c| c.len()).max().unwrap();
            prop_assert!(min >= 1 && max - min <= 1);
            for (i, w) in chunks.windows(2).enumerate() {
                prop_assert_eq!(w[0].end, w[1].start);
                prop_assert_eq!(w[0].index as usize, i);
            }
            if let ChunkPlan::FramesPerChunk(f) = plan { prop_assert!(max <= f); }
        }
    }
}
