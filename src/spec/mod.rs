//! Job spec: the single source of truth for a job (pure data, no I/O).
//!
//! A [`JobSpec`] is what the orchestrator stores, what workers read from storage and what
//! `plan --emit` writes. [`validate`] checks it and names the offending field;
//! [`plan_chunks`] tiles a frame range into contiguous chunks.

mod fps;
pub mod fuzz;
mod output;
mod plan;
mod types;
mod validate;

pub use fps::Fps;
pub use output::{
    palette_samples, FramePattern, ImageFormat, OutputKind, OutputSpec, DEFAULT_IMAGE_QUALITY,
    PALETTE_SAMPLES,
};
pub use plan::{plan_chunks, ChunkPlan};
pub use types::*;
pub use validate::{has_alpha, validate, FieldError, SpecError, ALPHA_OUTPUTS};

/// Placeholders the command renderer substitutes in its argument vector.
pub const PLACEHOLDERS: &[&str] = &[
    "start", "end", "count", "output", "width", "height", "fps", "bundle",
];

/// Parses a job spec from JSON and validates it.
pub fn parse(json: &str) -> Result<JobSpec, SpecError> {
    let spec: JobSpec = serde_json::from_str(json).map_err(SpecError::Json)?;
    validate(&spec)?;
    Ok(spec)
}
