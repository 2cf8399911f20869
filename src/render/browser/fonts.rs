//! Fonts at the worker: before a chunk's first frame, the fonts the planner recorded are
//! checked on this machine — each machine font's file (found through fontconfig, as
//! Chromium finds it) must have the planned SHA-256, and the page's text must render with
//! the planned platform fonts. A difference fails the chunk; a chunk in other fonts is
//! never rendered.

use std::collections::BTreeMap;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::page::FontUse;
use crate::spec::FontRecord;

/// The file fontconfig picks for a family (`fc-match`), if fontconfig answers.
pub fn family_file(family: &str) -> Option<PathBuf> {
    let out = std::process::Command::new("fc-match")
        .args(["--format=%{file}", family])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let path = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !path.is_empty()).then(|| PathBuf::from(path))
}

/// SHA-256 (hex) of the file fontconfig picks for a machine font family.
pub fn family_file_sha256(family: &str) -> Option<String> {
    let file = family_file(family)?;
    let bytes = std::fs::read(file).ok()?;
    Some(hex::encode(Sha256::digest(bytes)))
}

/// This worker's name, for errors.
pub fn worker_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| format!("worker {}", h.trim()))
        .filter(|h| h.len() > "worker ".len())
        .unwrap_or_else(|| "this worker".into())
}

/// Checks the machine fonts the plan recorded with a file hash against this machine's.
pub fn check_files(planned: &[FontRecord]) -> Result<(), String> {
    let mut seen = BTreeMap::new();
    for f in planned.iter().filter(|f| !f.web) {
        let Some(want) = &f.file_sha256 else { continue };
        let have = seen
            .entry(f.platform.clone())
            .or_insert_with(|| family_file_sha256(&f.platform));
        if have.as_deref() != Some(want.as_str()) {
            let instead = family_file(&f.platform)
                .map(|p| format!("{} (another file)", p.display()))
                .unwrap_or_else(|| "no such font".into());
            return Err(format!(
                "font family '{}' is not the one the job was planned with on {}: fontconfig gives {instead}; install the same fonts on every worker (or load the font with @font-face from the composition's folder)",
                f.platform,
                worker_name()
            ));
        }
    }
    Ok(())
}

/// Checks the fonts this worker's page renders its text with against the plan: text whose
/// `font-family` was planned must use a planned platform font for it.
pub fn check_page(planned: &[FontRecord], seen: &[FontUse]) -> Result<(), String> {
    for s in seen {
        let same_request: Vec<&FontRecord> = planned
            .iter()
            .filter(|p| p.requested == s.requested)
            .collect();
        if same_request.is_empty() {
            continue;
        }
        if !same_request.iter().any(|p| p.platform == s.platform) {
            let planned: Vec<&str> = same_request.iter().map(|p| p.platform.as_str()).collect();
            return Err(format!(
                "text in font-family {} renders in '{}' on {}, but in {} when the job was planned: this worker lacks the planned font; install the same fonts on every worker (or load the font with @font-face from the composition's folder)",
                s.requested,
                s.platform,
                worker_name(),
                planned
                    .iter()
                    .map(|p| format!("'{p}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(requested: &str, platform: &str) -> FontRecord {
        FontRecord {
            requested: requested.into(),
            platform: platform.into(),
            web: false,
            file_sha256: None,
        }
    }

    #[test]
    fn a_planned_family_in_another_font_is_named() {
        let planned = [rec("'Brand', serif", "DejaVu Serif")];
        let same = FontUse {
            requested: "'Brand', serif".into(),
            platform: "DejaVu Serif".into(),
            web: false,
        };
        assert!(check_page(&planned, std::slice::from_ref(&same)).is_ok());
        let other = FontUse {
            platform: "Liberation Mono".into(),
            ..same
        };
        let e = check_page(&planned, &[other]).unwrap_err();
        assert!(
            e.contains("'Liberation Mono'") && e.contains("'DejaVu Serif'"),
            "{e}"
        );
        // Text the planner never saw cannot be judged.
        let unseen = FontUse {
            requested: "cursive".into(),
            platform: "X".into(),
            web: false,
        };
        assert!(check_page(&planned, &[unseen]).is_ok());
    }
}
