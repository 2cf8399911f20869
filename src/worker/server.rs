//! `worker serve`: the worker protocol over HTTP, for Cloud Run services and for workers on
//! a user's own machines.
//!
//! `POST /v1/chunks` takes a [`ChunkRequest`] and answers with the chunk report (200) or a
//! classified failure (`{"error": …}`: 503 retryable, 422 fatal). One chunk at a time per
//! instance: a second request while busy gets 429 so the caller tries another worker.
//! Bearer-token auth is on unless explicitly disabled. `GET /healthz` needs no token.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::protocol::WorkerResponse;
use super::{run, ChunkRequest, FailureKind, WorkerFailure};

/// Largest request body accepted: a chunk request is a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// How the server authenticates callers.
#[derive(Debug, Clone)]
pub enum ServerAuth {
    /// `Authorization: Bearer <token>` must match.
    Token(String),
    /// No authentication (explicitly requested).
    Disabled,
}

#[derive(Clone)]
struct AppState {
    auth: Arc<ServerAuth>,
    slot: Arc<Semaphore>,
}

/// The router: `POST /v1/chunks`, `GET /healthz`.
pub fn router(auth: ServerAuth) -> Router {
    let state = AppState {
        auth: Arc::new(auth),
        slot: Arc::new(Semaphore::new(1)),
    };
    Router::new()
        .route("/v1/chunks", post(chunks))
        .route("/healthz", get(healthz))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Serves until `shutdown` is cancelled, then finishes the chunk in flight and returns.
pub async fn serve(
    addr: SocketAddr,
    auth: ServerAuth,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tracing::info!(%local, "worker listening");
    // Tests and scripts read the bound port (useful with port 0) from this line.
    println!("listening on http://{local}");
    axum::serve(listener, router(auth))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

fn authorized(auth: &ServerAuth, headers: &HeaderMap) -> bool {
    match auth {
        ServerAuth::Disabled => true,
        ServerAuth::Token(expected) => headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|got| constant_time_eq(got.as_bytes(), expected.as_bytes())),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn failure(status: StatusCode, f: WorkerFailure) -> Response {
    (status, Json(WorkerResponse::Failure { error: f })).into_response()
}

async fn healthz(State(state): State<AppState>) -> Response {
    let busy = state.slot.available_permits() == 0;
    Json(serde_json::json!({ "status": "ok", "busy": busy })).into_response()
}

async fn chunks(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !authorized(&state.auth, &headers) {
        return failure(
            StatusCode::UNAUTHORIZED,
            WorkerFailure::fatal(FailureKind::InvalidRequest, "missing or wrong bearer token"),
        );
    }
    let req: ChunkRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return failure(
                StatusCode::BAD_REQUEST,
                WorkerFailure::fatal(
                    FailureKind::InvalidRequest,
                    format!("bad chunk request: {e}"),
                ),
            )
        }
    };
    // A ping is answered even while a chunk renders: it only says what this worker is.
    if req.ping {
        return match run(&req).await {
            Ok(report) => (StatusCode::OK, Json(WorkerResponse::Report(report))).into_response(),
            Err(f) => failure(StatusCode::SERVICE_UNAVAILABLE, f),
        };
    }
    let Ok(_permit) = state.slot.clone().try_acquire_owned() else {
        let mut r = failure(
            StatusCode::TOO_MANY_REQUESTS,
            WorkerFailure::retryable(FailureKind::Throttled, "worker is busy with another chunk"),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return r;
    };
    tracing::info!(job = %req.job, chunk = req.chunk, attempt = req.attempt, "chunk request");
    // If the caller goes away, this future is dropped and the renderer is killed with it.
    match run(&req).await {
        Ok(report) => (StatusCode::OK, Json(WorkerResponse::Report(report))).into_response(),
        Err(f) if f.retryable => failure(StatusCode::SERVICE_UNAVAILABLE, f),
        Err(f) => failure(StatusCode::UNPROCESSABLE_ENTITY, f),
    }
}
