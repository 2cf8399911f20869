//! `helios-infra ui`: a dashboard over the job store — jobs and batches, each job's chunk
//! timeline (every attempt, from the store), errors, output — live through Server-Sent
//! Events, with cancel and resume run as the CLI runs them. Pages and scripts are embedded
//! in the binary; nothing is fetched at runtime.
//!
//! Modules: `guard` (who may ask), `api` (JSON and events), `assets` (the pages).

mod api;
mod assets;
pub mod guard;
pub mod live;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::routing::{get, post};

use crate::orchestrator::SqliteStore;

/// Why the dashboard cannot start.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    /// A non-loopback address without a token.
    #[error("refusing to listen on {0} without --token: anyone who can reach it could read job outputs and cancel jobs; pass --token T (or HELIOS_UI_TOKEN), or listen on 127.0.0.1")]
    NeedsToken(SocketAddr),
    /// The address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// What the dashboard serves and how.
pub struct UiConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Token every request must carry (required off loopback).
    pub token: Option<String>,
    /// The state directory (`--home`): its job store, and what cancel/resume run against.
    pub home: PathBuf,
    /// This program, run as `--home H cancel|resume ID` for the buttons.
    pub exe: PathBuf,
}

/// Shared by the handlers.
pub(crate) struct Ctx {
    store: Arc<SqliteStore>,
    home: PathBuf,
    exe: PathBuf,
    /// Storages opened for live media, by URL (an S3 or GCS client is built once).
    storages: std::sync::Mutex<std::collections::HashMap<String, Arc<crate::storage::Storage>>>,
}

impl Ctx {
    /// The storage at `url`, opened once.
    pub(crate) fn storage(
        &self,
        url: &str,
    ) -> Result<Arc<crate::storage::Storage>, crate::storage::StorageError> {
        let mut open = self
            .storages
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(s) = open.get(url) {
            return Ok(s.clone());
        }
        let s = Arc::new(crate::storage::Storage::open(url)?);
        open.insert(url.to_string(), s.clone());
        Ok(s)
    }
}

/// Binds the address (refusing a non-loopback one without a token).
pub async fn bind(cfg: &UiConfig) -> Result<tokio::net::TcpListener, UiError> {
    if cfg.token.is_none() && !cfg.listen.ip().is_loopback() {
        return Err(UiError::NeedsToken(cfg.listen));
    }
    tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| UiError::Bind {
            addr: cfg.listen,
            source,
        })
}

/// Serves the dashboard on `listener` until `stop` is cancelled.
pub async fn serve(
    cfg: UiConfig,
    store: Arc<SqliteStore>,
    listener: tokio::net::TcpListener,
    stop: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    let ctx = Arc::new(Ctx {
        store,
        home: cfg.home,
        exe: cfg.exe,
        storages: Default::default(),
    });
    let app = axum::Router::new()
        .route("/", get(assets::index))
        .route("/jobs/{id}", get(api::job_page))
        .route("/jobs/{id}/output", get(api::output))
        .route("/jobs/{id}/live.m3u8", get(live::playlist))
        .route("/jobs/{id}/live/{file}", get(live::media))
        .route("/assets/{name}", get(assets::asset))
        .route("/api/jobs", get(api::jobs))
        .route("/api/jobs/{id}", get(api::job))
        .route("/api/jobs/{id}/events", get(api::events))
        .route("/api/jobs/{id}/cancel", post(api::cancel))
        .route("/api/jobs/{id}/resume", post(api::resume))
        .fallback(api::not_found)
        .with_state(ctx)
        .layer(axum::middleware::from_fn_with_state(
            cfg.token.clone(),
            guard::guard,
        ));
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
}
