//! Named crash points for tests. `HELIOS_FAILPOINTS=name[,name…]` makes the process SIGKILL
//! itself the moment it reaches one of the named points, so a test can kill the
//! orchestrator at an exact phase (after planning, halfway through the final upload…)
//! instead of hoping that a timer lands there. Without the variable a check is one load of a
//! cached, empty list.
//!
//! Points: `after-submit`, `before-stitch`, `after-concat`, `mid-placement` (one image of
//! an image job placed, the others not), `mid-upload:<file name>` (a
//! `put_file` of that object has written its data but not completed), `after-upload`.

use std::sync::OnceLock;

/// The variable that names the points.
pub const VAR: &str = "HELIOS_FAILPOINTS";

fn armed() -> &'static [String] {
    static POINTS: OnceLock<Vec<String>> = OnceLock::new();
    POINTS.get_or_init(|| {
        std::env::var(VAR)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect()
    })
}

/// Whether any point is armed (so callers can skip building a point's name).
pub fn enabled() -> bool {
    !armed().is_empty()
}

/// Dies by SIGKILL, like a crash, if `name` is armed.
pub fn hit(name: &str) {
    if armed().iter().any(|p| p == name) {
        eprintln!("helios-infra: failpoint {name} reached; killing this process ({VAR})");
        let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGKILL);
        // SIGKILL cannot be caught; this is never reached.
        std::process::abort();
    }
}
