//! Locating, launching and connecting to Chromium.
//!
//! Chromium is started by us (not by chromiumoxide's launcher) so that its flags are exactly
//! ours, its stderr is kept for error messages, and it dies with the worker.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chromiumoxide::handler::HandlerConfig;
use chromiumoxide::Browser;
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use crate::process;

/// Environment variable naming the Chromium binary to use.
pub const CHROMIUM_ENV: &str = "HELIOS_CHROMIUM";

/// Candidates, best first: the old-headless shell is lighter and starts faster; both give
/// identical pixels. `/usr/bin/chromium` is a wrapper script, so the real binary comes first.
const CANDIDATES: &[&str] = &[
    "/usr/lib/chromium/chromium-headless-shell",
    "/usr/lib/chromium/chromium",
    "/usr/bin/chromium-headless-shell",
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
    "/usr/bin/google-chrome",
];

/// Browser start-up failures.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// No browser binary.
    #[error("Chromium not found (looked for {looked}): install it (apt-get install chromium-headless-shell) or set {CHROMIUM_ENV} to its path")]
    NotFound {
        /// Where we looked.
        looked: String,
    },
    /// It started but did not come up.
    #[error("Chromium {path} did not start: {reason}; last lines of its stderr:\n{stderr}")]
    Failed {
        /// Binary.
        path: PathBuf,
        /// Why.
        reason: String,
        /// Its stderr tail.
        stderr: String,
    },
}

/// Finds the browser: `HELIOS_CHROMIUM`, else the first known install.
pub fn locate() -> Result<PathBuf, LaunchError> {
    if let Some(p) = std::env::var_os(CHROMIUM_ENV).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(LaunchError::NotFound {
                looked: p.display().to_string(),
            })
        };
    }
    CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .or_else(|| {
            ["chromium-headless-shell", "chromium", "google-chrome"]
                .iter()
                .find_map(|n| crate::media::find_in_path(n))
        })
        .ok_or_else(|| LaunchError::NotFound {
            looked: CANDIDATES.join(", "),
        })
}

/// Environment variable that forces screenshot capture (`HELIOS_CAPTURE=screenshot`)
/// instead of BeginFrame-driven frames on the headless shell.
pub const CAPTURE_ENV: &str = "HELIOS_CAPTURE";

/// Whether `path` can draw frames on demand: the old-headless shell supports
/// `HeadlessExperimental.beginFrame`; the full browser's new headless mode does not.
pub fn supports_begin_frames(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().contains("headless-shell"))
        && std::env::var(CAPTURE_ENV).map_or(true, |v| v != "screenshot")
}

/// A running browser, killed (with its profile directory) when dropped.
pub struct Chrome {
    /// The CDP connection.
    pub browser: Browser,
    /// Whether frames are drawn only on `HeadlessExperimental.beginFrame` (for targets
    /// created with `enableBeginFrameControl`).
    pub begin_frames: bool,
    child: Child,
    handler: JoinHandle<()>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Chrome {
    /// Launches `path` with a fresh profile under `profile_dir`.
    pub async fn launch(path: &Path, profile_dir: &Path) -> Result<Self, LaunchError> {
        let begin_frames = supports_begin_frames(path);
        let failed = |reason: String, stderr: String| LaunchError::Failed {
            path: path.to_path_buf(),
            reason,
            stderr,
        };
        let mut cmd = Command::new(path);
        // The old-headless shell is headless by nature; the full browser needs the flag.
        if !path.to_string_lossy().contains("headless-shell") {
            cmd.arg("--headless=new");
        }
        cmd.args([
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-default-apps",
            "--disable-breakpad",
            "--disable-background-timer-throttling",
            "--disable-backgrounding-occluded-windows",
            "--disable-renderer-backgrounding",
            "--disable-ipc-flooding-protection",
            "--hide-scrollbars",
            "--mute-audio",
            "--force-color-profile=srgb",
            "--font-render-hinting=none",
            // HTML-in-Canvas (`<canvas layoutsubtree>`, `drawElementImage`): a DOM scene
            // drawn into a canvas is captured by canvas read-back, without a screenshot.
            "--enable-blink-features=CanvasDrawElement",
            "--remote-debugging-port=0",
        ])
        .args(if begin_frames {
            // Frames are drawn only when we ask (HeadlessExperimental.beginFrame), and
            // only once every tile of them is rastered at full resolution: no frame is
            // produced for nothing, none is half-rastered because the machine is busy.
            &[
                "--deterministic-mode",
                "--enable-begin-frame-control",
                "--run-all-compositor-stages-before-draw",
                "--disable-new-content-rendering-timeout",
                "--disable-threaded-animation",
                "--disable-threaded-scrolling",
                "--disable-checker-imaging",
                "--disable-image-animation-resync",
                "--disable-low-res-tiling",
                // A changed tile is rastered whole, not only its invalidated rectangle over
                // what it held before: otherwise the edges of blurs and shadows can keep
                // pixels of an earlier frame, and a frame depends on which frames came first.
                "--disable-partial-raster",
            ][..]
        } else {
            // Screenshots are otherwise paced to ~20 fps; pixels are identical either way.
            &["--disable-frame-rate-limit", "--disable-gpu-vsync"][..]
        })
        .arg(format!("--user-data-dir={}", profile_dir.display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        process::clean_env(&mut cmd, profile_dir);
        process::die_with_parent(&mut cmd);
        let mut child = cmd
            .spawn()
            .map_err(|e| failed(e.to_string(), String::new()))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut lines = BufReader::new(stderr).lines();
        let tail = Arc::new(Mutex::new(Vec::<String>::new()));
        let push = |tail: &Arc<Mutex<Vec<String>>>, line: String| {
            if let Ok(mut t) = tail.lock() {
                t.push(line);
                if t.len() > 40 {
                    t.remove(0);
                }
            }
        };
        let ws = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(i) = line.find("ws://") {
                    return Some(line[i..].trim().to_string());
                }
                push(&tail, line);
            }
            None
        })
        .await;
        let text =
            |tail: &Arc<Mutex<Vec<String>>>| tail.lock().map(|t| t.join("\n")).unwrap_or_default();
        let ws = match ws {
            Ok(Some(ws)) => ws,
            Ok(None) => {
                return Err(failed(
                    "it exited before accepting connections".into(),
                    text(&tail),
                ))
            }
            Err(_) => {
                return Err(failed(
                    "no DevTools endpoint within 30s".into(),
                    text(&tail),
                ))
            }
        };
        // Keep draining stderr so Chromium never blocks on a full pipe.
        let keep = tail.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                push(&keep, line);
            }
        });
        let config = HandlerConfig {
            viewport: None,
            request_timeout: Duration::from_secs(60),
            ..Default::default()
        };
        let (browser, mut handler) = Browser::connect_with_config(ws, config)
            .await
            .map_err(|e| failed(format!("cannot connect over CDP: {e}"), text(&tail)))?;
        // On the first connection error stop the handler: pending commands then fail at once
        // instead of hanging forever.
        let handler = tokio::spawn(async move {
            while let Some(ev) = handler.next().await {
                if ev.is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            browser,
            begin_frames,
            child,
            handler,
            stderr: tail,
        })
    }

    /// The last lines Chromium printed.
    pub fn stderr_tail(&self) -> String {
        self.stderr.lock().map(|t| t.join("\n")).unwrap_or_default()
    }

    /// Whether the browser process is still running.
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Closes the browser politely, then for sure.
    pub async fn shutdown(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(3), self.browser.close()).await;
        let _ = tokio::time::timeout(Duration::from_secs(3), self.child.wait()).await;
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        self.handler.abort();
    }
}

impl Drop for Chrome {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        self.handler.abort();
    }
}
