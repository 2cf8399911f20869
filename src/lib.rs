//! helios-infra: distributed rendering for programmatic video.
//!
//! The data flows one way: [`spec`] (pure) → [`orchestrator`] → [`adapters`] → [`worker`] →
//! [`render`] / [`storage`] → [`stitch`]. The `helios-infra` binary is a thin front end over
//! [`cli`].

pub mod adapters;
pub mod backoff;
pub mod cli;
pub mod cost;
pub mod deploy;
pub mod failpoint;
pub mod media;
pub mod model;
pub mod net;
pub mod orchestrator;
pub mod process;
pub mod render;
pub mod spec;
pub mod stitch;
pub mod storage;
pub mod ui;
pub mod view;
pub mod worker;

/// An error and its sources on one line, `: `-separated (an SDK's service error names its
/// code in a source).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}
