//! `deploy` and `destroy`: a cloud's resources for workers as desired state — data — that
//! is compared with what exists and applied idempotently, one resource at a time, with the
//! same SDK clients the adapters and storage use. A run that finds everything as wanted
//! writes nothing and says "unchanged"; a changed setting is updated in place; `--dry-run`
//! reads and says what it would do.

pub mod aws;
pub mod gcp;
pub mod kubernetes;
pub mod policy;

use serde::Serialize;

/// What happened to one resource (or, in a dry run, would).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "change", content = "settings", rename_all = "snake_case")]
pub enum Change {
    /// It did not exist and was created.
    Created,
    /// It existed; these settings were changed.
    Updated(Vec<String>),
    /// It was as wanted.
    Unchanged,
    /// It was removed.
    Deleted,
    /// It was not there to remove.
    Absent,
    /// It was kept (e.g. a bucket without `--delete-bucket`).
    Kept,
}

/// One resource's step of a deploy or destroy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// The resource: `bucket my-renders`, `role helios-worker`, …
    pub resource: String,
    /// What happened.
    #[serde(flatten)]
    pub change: Change,
    /// The desired document or settings, for `--dry-run` and the record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired: Option<serde_json::Value>,
}

impl Step {
    /// One line for people.
    pub fn line(&self, dry_run: bool) -> String {
        let what = match (&self.change, dry_run) {
            (Change::Created, false) => "created".to_string(),
            (Change::Created, true) => "would create".to_string(),
            (Change::Updated(s), false) => format!("updated ({})", s.join(", ")),
            (Change::Updated(s), true) => format!("would update ({})", s.join(", ")),
            (Change::Unchanged, _) => "unchanged".to_string(),
            (Change::Deleted, false) => "deleted".to_string(),
            (Change::Deleted, true) => "would delete".to_string(),
            (Change::Absent, _) => "not there".to_string(),
            (Change::Kept, _) => "kept".to_string(),
        };
        format!("{:<40} {what}", self.resource)
    }
}

/// Why a deploy or destroy stopped.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// A cloud API refused or failed.
    #[error("{resource}: {action} failed: {message}\n{fix}")]
    Api {
        /// The resource.
        resource: String,
        /// The call.
        action: &'static str,
        /// The error and its sources.
        message: String,
        /// What to do.
        fix: String,
    },
    /// The request cannot be applied as given.
    #[error("{0}")]
    Invalid(String),
}

pub(crate) use crate::error_chain as chain;
