//! Stitching: verify every segment, then concatenate them without re-encoding.
//!
//! The concat demuxer reads a list file written to disk with an exact `duration` for each
//! segment, so that timestamps stay on the frame grid however many segments there are
//! (MP4's millisecond movie durations would otherwise drift a few ticks per boundary).

pub mod audio;
pub mod bucket;
pub mod bytejoin;
mod concat;
mod verify;

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::media::MediaError;
use crate::spec::Fps;

pub use audio::{AudioInput, AudioMix};
pub use concat::{concat_list, ConcatStitcher};
pub use verify::{check_segments, SegmentProblem};

/// A segment to stitch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Local file.
    pub path: PathBuf,
    /// Frames it must hold.
    pub frames: u64,
}

/// Stitching failures.
#[derive(Debug, thiserror::Error)]
pub enum StitchError {
    /// FFmpeg failed.
    #[error(transparent)]
    Media(#[from] MediaError),
    /// Segments that must not be concatenated.
    #[error("{} segment(s) failed verification:\n{}", .0.len(), .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    BadSegments(Vec<SegmentProblem>),
    /// The output does not hold the frames it should.
    #[error("stitched output {path} has {got} frames, expected {expected}")]
    WrongOutput {
        /// Output.
        path: PathBuf,
        /// Frames found.
        got: u64,
        /// Frames expected.
        expected: u64,
    },
    /// A path that cannot go into a concat list.
    #[error("cannot stitch {0}: paths with line breaks are not supported")]
    BadPath(PathBuf),
    /// Local I/O.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Joins verified segments into one output.
#[async_trait]
pub trait Stitcher: Send + Sync {
    /// Concatenates `segments` (already verified) into `output`, whose extension picks the
    /// container, muxes the audio mix if there is one, and checks the result holds every
    /// frame.
    async fn stitch(
        &self,
        segments: &[Segment],
        fps: Fps,
        audio: Option<&AudioMix>,
        output: &Path,
    ) -> Result<(), StitchError>;
}
