//! The composition's files, served to the page from loopback only, so that ES modules,
//! `fetch` and relative URLs behave as on a web server.

use std::net::SocketAddr;
use std::path::Path;

use tokio::task::JoinHandle;

/// A static file server on `127.0.0.1`, stopped when dropped.
pub struct BundleServer {
    /// Bound address.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl BundleServer {
    /// Serves `dir` on a free loopback port.
    pub async fn start(dir: &Path) -> std::io::Result<Self> {
        let app = axum::Router::new().fallback_service(tower_http::services::ServeDir::new(dir));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, task })
    }

    /// URL of a file of the bundle.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }
}

impl Drop for BundleServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
