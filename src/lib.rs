//! helios-infra: distributed rendering for programmatic video.
//!
//! The data flows one way: [`spec`] (pure) → [`orchestrator`] → [`adapters`] → [`worker`] →
//! [`render`] / [`storage`] → [`stitch`]. The `helios-infra` binary is a thin front end over
//! [`cli`].

pub mod adapters;
pub mod cli;
pub mod cost;
pub mod deploy;
pub mod failpoint;
pub mod media;
pub mod model;
pub mod orchestrator;
pub mod process;
pub mod render;
pub mod spec;
pub mod stitch;
pub mod storage;
pub mod ui;
pub mod worker;
