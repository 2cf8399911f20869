//! The dashboard's pages, script and style, embedded in the binary (no CDN, no build step).

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};

const INDEX: &str = include_str!("assets/index.html");
const JOB: &str = include_str!("assets/job.html");
/// Embedded files under `/assets/`: name, content type, content.
const FILES: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("assets/app.css"),
    ),
];

/// `GET /`.
pub async fn index() -> Html<&'static str> {
    Html(INDEX)
}

/// The job page (its script reads the job id from the address).
pub fn job_page() -> Response {
    Html(JOB).into_response()
}

/// `GET /assets/{name}`: an embedded file by exact name; anything else is 404.
pub async fn asset(Path(name): Path<String>) -> Response {
    match FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, ty, body)) => ([(header::CONTENT_TYPE, *ty)], *body).into_response(),
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}
