//! A job's video while it renders: `GET /jobs/{id}/live.m3u8`, an HLS (fMP4) playlist of
//! the committed segments that form a contiguous prefix from the job's first frame, and
//! the media it lists (`live/init.mp4`, `live/{chunk}.m4s`) read from the job's storage.
//!
//! Nothing here is new media: the segments are the workers' own fragments, already placed
//! on the job's timeline (decode times from the job's first frame), and the init is the one
//! every segment of the job shares. Which bytes are served is decided by the store (the
//! committed attempt's key), never by the request's path.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

use super::Ctx;
use crate::media::hls;
use crate::orchestrator::{
    playable_prefix, ChunkRecord, JobRecord, JobState, JobStore, StoreError,
};

/// The shared init of the job's segments (from the first committed report that has one).
fn init_of<'a>(prefix: &[&'a ChunkRecord]) -> Option<&'a str> {
    prefix.iter().find_map(|c| {
        c.segment
            .as_ref()?
            .media
            .as_ref()?
            .fragmented
            .as_ref()
            .map(|f| f.init.as_str())
    })
}

/// The live playlist of `job` with `chunks` as stored.
pub fn playlist_text(job: &JobRecord, chunks: &[ChunkRecord]) -> String {
    let prefix = playable_prefix(chunks);
    let first = job.spec.video.frames.start;
    let segments: Vec<hls::Segment> = prefix
        .iter()
        .map(|c| hls::Segment {
            uri: format!("live/{}.m4s", c.chunk.index),
            start: c.chunk.start - first,
            end: c.chunk.end - first,
            byterange: None,
        })
        .collect();
    let longest = job.spec.chunks.iter().map(|c| c.len()).max().unwrap_or(1);
    let ended = job.state == JobState::Succeeded && prefix.len() == chunks.len();
    hls::media_playlist(
        &hls::Map {
            uri: "live/init.mp4".into(),
            byterange: None,
        },
        &segments,
        hls::frame_rate(job.spec.video.fps),
        longest,
        hls::Kind::Event,
        ended,
    )
}

/// The `codecs` string of the live video (for a Media Source player), once a segment is
/// committed.
pub fn codecs(chunks: &[ChunkRecord]) -> Option<String> {
    let init = init_of(&playable_prefix(chunks))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(init)
        .ok()?;
    crate::media::fmp4::codecs(&bytes)
}

fn plain(status: StatusCode, text: String) -> Response {
    (status, format!("{text}\n")).into_response()
}

/// The job and its chunks, or why not (a status and a message).
fn read(ctx: &Ctx, id: &str) -> Result<(JobRecord, Vec<ChunkRecord>), (StatusCode, String)> {
    let job = ctx.store.job(id).map_err(|e| match e {
        StoreError::NoSuchJob(_) => (StatusCode::NOT_FOUND, "no such job".into()),
        other => (StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
    })?;
    if let Some(why) = crate::view::live_unavailable(&job) {
        return Err((StatusCode::CONFLICT, why));
    }
    let chunks = ctx
        .store
        .chunks(id)
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok((job, chunks))
}

/// `GET /jobs/{id}/live.m3u8`.
pub(crate) async fn playlist(State(ctx): State<Arc<Ctx>>, Path(id): Path<String>) -> Response {
    let (job, chunks) = match read(&ctx, &id) {
        Ok(r) => r,
        Err((status, why)) => return plain(status, why),
    };
    (
        [
            (header::CONTENT_TYPE, "application/vnd.apple.mpegurl"),
            // A live playlist changes with every commit.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        playlist_text(&job, &chunks),
    )
        .into_response()
}

/// `GET /jobs/{id}/live/init.mp4` and `GET /jobs/{id}/live/{chunk}.m4s`.
pub(crate) async fn media(
    State(ctx): State<Arc<Ctx>>,
    Path((id, file)): Path<(String, String)>,
) -> Response {
    let (job, chunks) = match read(&ctx, &id) {
        Ok(r) => r,
        Err((status, why)) => return plain(status, why),
    };
    let prefix = playable_prefix(&chunks);
    if file == "init.mp4" {
        let Some(init) = init_of(&prefix) else {
            return plain(StatusCode::NOT_FOUND, "no segment is committed yet".into());
        };
        return match base64::engine::general_purpose::STANDARD.decode(init) {
            Ok(bytes) => ([(header::CONTENT_TYPE, "video/mp4")], bytes).into_response(),
            Err(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, format!("init: {e}")),
        };
    }
    // Only `<chunk>.m4s` of a playable chunk; anything else is not here.
    let Some(index) = file
        .strip_suffix(".m4s")
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse::<u32>().ok())
    else {
        return super::api::not_found().await;
    };
    let Some(seg) = prefix
        .iter()
        .find(|c| c.chunk.index == index)
        .and_then(|c| c.segment.as_ref())
    else {
        return plain(
            StatusCode::NOT_FOUND,
            format!("chunk {index} is not playable yet"),
        );
    };
    let storage = match ctx.storage(&job.storage_url) {
        Ok(s) => s,
        Err(e) => return plain(StatusCode::BAD_GATEWAY, e.to_string()),
    };
    let bytes = match storage.local_path(&seg.key) {
        Some(path) => tokio::fs::read(&path)
            .await
            .map(bytes::Bytes::from)
            .map_err(|e| e.to_string()),
        None => storage.get(&seg.key).await.map_err(|e| e.to_string()),
    };
    match bytes {
        Ok(b) => (
            [
                (header::CONTENT_TYPE, "video/iso.segment"),
                // A committed segment never changes.
                (header::CACHE_CONTROL, "max-age=31536000, immutable"),
            ],
            b,
        )
            .into_response(),
        Err(e) => plain(
            StatusCode::BAD_GATEWAY,
            format!("cannot read {}: {e}", storage.url_for(&seg.key)),
        ),
    }
}
