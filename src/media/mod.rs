//! FFmpeg and ffprobe: locating the binaries, running them, probing segments.
//!
//! Used by `render` (encoding) and `stitch` (validation, concat); nothing else runs FFmpeg.

pub mod fmp4;
pub mod gif;
pub mod hls;
mod probe;

use std::path::PathBuf;

use tokio::process::Command;

use crate::process;

pub use probe::{probe, probe_audio, AudioInfo, SegmentInfo};

/// FFmpeg failures.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The binary is not installed.
    #[error("{tool} not found (looked for {path:?}): install FFmpeg (apt-get install ffmpeg) or set {env} to its path")]
    Missing {
        /// `ffmpeg` or `ffprobe`.
        tool: &'static str,
        /// What was looked for.
        path: String,
        /// The environment variable that overrides it.
        env: &'static str,
    },
    /// The tool ran and failed.
    #[error("{tool} failed ({status}) on {what}:\n{stderr}")]
    Failed {
        /// `ffmpeg` or `ffprobe`.
        tool: &'static str,
        /// What it was doing.
        what: String,
        /// Exit status description.
        status: String,
        /// Tail of its stderr.
        stderr: String,
    },
    /// Its output could not be understood.
    #[error("could not read {tool} output for {what}: {reason}")]
    BadOutput {
        /// `ffmpeg` or `ffprobe`.
        tool: &'static str,
        /// What it was doing.
        what: String,
        /// Why.
        reason: String,
    },
    /// Spawning failed for another reason.
    #[error("cannot run {tool}: {source}")]
    Spawn {
        /// `ffmpeg` or `ffprobe`.
        tool: &'static str,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// One of the FFmpeg tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// `ffmpeg`, overridable with `HELIOS_FFMPEG`.
    Ffmpeg,
    /// `ffprobe`, overridable with `HELIOS_FFPROBE`.
    Ffprobe,
}

impl Tool {
    /// Binary name.
    pub fn name(self) -> &'static str {
        match self {
            Tool::Ffmpeg => "ffmpeg",
            Tool::Ffprobe => "ffprobe",
        }
    }

    fn env(self) -> &'static str {
        match self {
            Tool::Ffmpeg => "HELIOS_FFMPEG",
            Tool::Ffprobe => "HELIOS_FFPROBE",
        }
    }

    /// Resolves the binary: the override variable, else a search of `PATH`.
    pub fn locate(self) -> Result<PathBuf, MediaError> {
        let missing = |path: String| MediaError::Missing {
            tool: self.name(),
            path,
            env: self.env(),
        };
        if let Some(p) = std::env::var_os(self.env()).filter(|p| !p.is_empty()) {
            let p = PathBuf::from(p);
            return if p.is_file() {
                Ok(p)
            } else {
                Err(missing(p.display().to_string()))
            };
        }
        find_in_path(self.name()).ok_or_else(|| missing(format!("{} on PATH", self.name())))
    }

    /// A command for this tool with FFmpeg's banner and prompts off.
    pub fn command(self) -> Result<Command, MediaError> {
        let mut cmd = Command::new(self.locate()?);
        cmd.arg("-hide_banner");
        if self == Tool::Ffmpeg {
            cmd.arg("-nostdin");
        }
        Ok(cmd)
    }
}

/// Finds an executable on `PATH`.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &std::path::Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    }
    #[cfg(not(unix))]
    {
        p.is_file()
    }
}

/// Runs a prepared tool command; a non-zero exit becomes [`MediaError::Failed`].
pub async fn run(tool: Tool, mut cmd: Command, what: &str) -> Result<Vec<u8>, MediaError> {
    let done = process::run(&mut cmd)
        .await
        .map_err(|e| MediaError::Spawn {
            tool: tool.name(),
            source: e,
        })?;
    if !done.status.success() {
        return Err(MediaError::Failed {
            tool: tool.name(),
            what: what.to_string(),
            status: process::describe_status(&done.status),
            stderr: done.stderr.text(),
        });
    }
    Ok(done.stdout)
}

/// Whether this machine's FFmpeg has the encoder `name` (asked once per process).
pub fn has_encoder(name: &str) -> bool {
    static ENCODERS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let list = ENCODERS.get_or_init(|| {
        Tool::Ffmpeg
            .locate()
            .ok()
            .and_then(|ffmpeg| {
                std::process::Command::new(ffmpeg)
                    .args(["-hide_banner", "-nostdin", "-encoders"])
                    .stdin(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .output()
                    .ok()
            })
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    });
    list.lines()
        .any(|l| l.split_whitespace().nth(1) == Some(name))
}
