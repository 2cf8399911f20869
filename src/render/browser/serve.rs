//! The composition's files, served to the page from loopback only, so that ES modules,
//! `fetch` and relative URLs behave as on a web server; and the inbox through which a page
//! hands over raw canvas pixels: binary WebSocket messages rather than a PNG inside a CDP
//! message (measured: a `fetch` POST of the same bytes costs Chromium about 20 ms of CPU a
//! 720p frame in copies and page faults, a WebSocket message a fraction of it).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Pages that may send frames, by their secret token.
type Inboxes = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<(u64, Bytes)>>>>;

/// A static file server on `127.0.0.1`, stopped when dropped.
pub struct BundleServer {
    /// Bound address.
    pub addr: SocketAddr,
    inboxes: Inboxes,
    task: JoinHandle<()>,
}

/// Where one page sends its raw frames, and where they arrive. Deregistered when dropped.
pub struct FrameInbox {
    /// Path (on the bundle's origin) of the WebSocket the page sends its frames over: for
    /// each frame, its index (8 bytes, little-endian), then its pixels.
    pub path: String,
    /// Frames as they arrive: (frame index, pixels).
    pub rx: mpsc::UnboundedReceiver<(u64, Bytes)>,
    token: String,
    inboxes: Inboxes,
}

impl Drop for FrameInbox {
    fn drop(&mut self) {
        if let Ok(mut m) = self.inboxes.lock() {
            m.remove(&self.token);
        }
    }
}

/// Accepts the WebSocket of the page whose token is in the URL; anyone else gets 404.
async fn connect(
    State(inboxes): State<Inboxes>,
    UrlPath(token): UrlPath<String>,
    ws: WebSocketUpgrade,
) -> Response {
    let tx = inboxes.lock().ok().and_then(|m| m.get(&token).cloned());
    let Some(tx) = tx else {
        return StatusCode::NOT_FOUND.into_response();
    };
    // The page is ours and the token secret: frames of any size (8K is 133 MB).
    ws.max_message_size(usize::MAX)
        .max_frame_size(usize::MAX)
        .on_upgrade(move |socket| forward(socket, tx))
}

/// Pairs each frame index with the pixels that follow it and hands them on, until the page
/// goes away or sends something else.
async fn forward(mut socket: WebSocket, tx: mpsc::UnboundedSender<(u64, Bytes)>) {
    let mut frame = None;
    while let Some(Ok(msg)) = socket.recv().await {
        let Message::Binary(data) = msg else { continue };
        match frame.take() {
            None => match <[u8; 8]>::try_from(data.as_ref()) {
                Ok(index) => frame = Some(u64::from_le_bytes(index)),
                Err(_) => return,
            },
            Some(f) => {
                if tx.send((f, data)).is_err() {
                    return;
                }
            }
        }
    }
}

impl BundleServer {
    /// Serves `dir` on a free loopback port.
    pub async fn start(dir: &Path) -> std::io::Result<Self> {
        let inboxes = Inboxes::default();
        let app = axum::Router::new()
            .route("/__helios/frames/{token}", axum::routing::get(connect))
            .with_state(inboxes.clone())
            .fallback_service(tower_http::services::ServeDir::new(dir));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            addr,
            inboxes,
            task,
        })
    }

    /// URL of a file of the bundle.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    /// A new inbox for one page's frames, under an unguessable token (other local
    /// processes cannot slip frames in).
    pub fn frame_inbox(&self) -> FrameInbox {
        let token = format!("{:032x}", rand::random::<u128>());
        let (tx, rx) = mpsc::unbounded_channel();
        if let Ok(mut m) = self.inboxes.lock() {
            m.insert(token.clone(), tx);
        }
        FrameInbox {
            path: format!("/__helios/frames/{token}"),
            rx,
            token,
            inboxes: self.inboxes.clone(),
        }
    }
}

impl Drop for BundleServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The status line the server answers a WebSocket handshake on `path` with.
    async fn handshake(server: &BundleServer, path: &str) -> String {
        let mut conn = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            server.addr
        );
        conn.write_all(req.as_bytes()).await.unwrap();
        let mut buf = [0u8; 64];
        let n = conn.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n])
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    }

    #[tokio::test]
    async fn only_a_page_with_a_live_token_may_open_a_frame_socket() {
        let dir = tempfile::tempdir().unwrap();
        let server = BundleServer::start(dir.path()).await.unwrap();
        let inbox = server.frame_inbox();
        assert!(handshake(&server, &inbox.path).await.contains(" 101 "));
        assert!(handshake(&server, "/__helios/frames/guess")
            .await
            .contains(" 404 "));
        let path = inbox.path.clone();
        drop(inbox);
        assert!(handshake(&server, &path).await.contains(" 404 "));
    }
}
