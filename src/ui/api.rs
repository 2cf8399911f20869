//! The dashboard's JSON API and live events, over the job store.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, RawQuery, Request, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Json, Response};
use futures::Stream;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::{assets, Ctx};
use crate::orchestrator::{ChunkRecord, JobRecord, JobStore, StoreError};
use crate::view as status;

/// How often a live page's job is re-read from the store.
const POLL: Duration = Duration::from_millis(250);

pub async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

/// A job as the API shows it: `state` is the store's own name (`display_state` is what
/// `status` prints, e.g. `interrupted`), with elapsed time and an ETA while it runs; with
/// `detail`, its chunks, each with every attempt.
fn job_value(
    ctx: &Ctx,
    job: &JobRecord,
    chunks: &[ChunkRecord],
    detail: bool,
) -> Result<Value, StoreError> {
    let locks = ctx.home.join("locks");
    let mut v = status::job_json(job, chunks, &locks, detail);
    status::add_spend(&mut v, &*ctx.store, job);
    v["display_state"] = v["state"].clone();
    v["state"] = json!(job.state.as_str());
    if let Some(b) = &job.batch {
        v["batch"] = json!(b.batch);
        v["batch_row"] = json!(b.row);
    }
    let attempts = ctx.store.attempts(&job.id)?;
    let first = attempts.iter().map(|a| a.started_ms).min();
    let last = attempts
        .iter()
        .map(|a| a.ended_ms.unwrap_or(a.started_ms))
        .max();
    let running = !job.state.is_terminal();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    if let Some(first) = first {
        let until = if running { now } else { last.unwrap_or(first) };
        let elapsed = (until - first).max(0);
        v["elapsed_ms"] = json!(elapsed);
        let (total, done) = (
            v["frames"].as_u64().unwrap_or(0),
            v["frames_done"].as_u64().unwrap_or(0),
        );
        if running && done > 0 && done < total && elapsed > 0 {
            v["eta_ms"] = json!((elapsed as f64 * (total - done) as f64 / done as f64) as i64);
        }
    }
    if detail {
        status::add_attempts(&mut v, &attempts);
    }
    v["live"] = match status::live_unavailable(job) {
        None => json!({
            "playlist": format!("/jobs/{}/live.m3u8", job.id),
            "codecs": if detail { super::live::codecs(chunks) } else { None },
        }),
        Some(why) => json!({"unavailable": why}),
    };
    Ok(v)
}

fn store_error(e: StoreError) -> Response {
    match e {
        StoreError::NoSuchJob(_) => (StatusCode::NOT_FOUND, "no such job\n").into_response(),
        other => (StatusCode::INTERNAL_SERVER_ERROR, format!("{other}\n")).into_response(),
    }
}

/// `GET /api/jobs`: every job, newest first.
pub async fn jobs(State(ctx): State<Arc<Ctx>>) -> Response {
    let all = match ctx.store.jobs() {
        Ok(j) => j,
        Err(e) => return store_error(e),
    };
    let mut out = Vec::new();
    for job in all.iter().rev() {
        let value = ctx
            .store
            .chunks(&job.id)
            .and_then(|chunks| job_value(&ctx, job, &chunks, false));
        match value {
            Ok(v) => out.push(v),
            Err(e) => return store_error(e),
        }
    }
    Json(out).into_response()
}

/// `GET /api/jobs/{id}`: the job with its chunks and their attempts.
pub async fn job(State(ctx): State<Arc<Ctx>>, Path(id): Path<String>) -> Response {
    let read = ctx.store.job(&id).and_then(|job| {
        let chunks = ctx.store.chunks(&id)?;
        let v = job_value(&ctx, &job, &chunks, true)?;
        Ok((job, chunks, v))
    });
    let (job, chunks, mut v) = match read {
        Ok(r) => r,
        Err(e) => return store_error(e),
    };
    // Timings and stages from the committed attempts' reports in storage (not in the live
    // events, which would read every report on every change).
    status::add_reports(&mut v, &job, &chunks).await;
    Json(v).into_response()
}

/// `GET /jobs/{id}`: the job page (404 for no such job).
pub async fn job_page(State(ctx): State<Arc<Ctx>>, Path(id): Path<String>) -> Response {
    match ctx.store.job(&id) {
        Ok(_) => assets::job_page(),
        Err(e) => store_error(e),
    }
}

/// `GET /jobs/{id}/output`: the job's output file, once it is on this machine (ranges
/// honoured, for `<video>`).
pub async fn output(State(ctx): State<Arc<Ctx>>, Path(id): Path<String>, req: Request) -> Response {
    let job = match ctx.store.job(&id) {
        Ok(j) => j,
        Err(e) => return store_error(e),
    };
    let path = std::path::PathBuf::from(&job.output);
    if !(job.download && path.is_file()) {
        return not_found().await;
    }
    match tower_http::services::ServeFile::new(path)
        .oneshot(req)
        .await
    {
        Ok(r) => r.into_response(),
        Err(never) => match never {},
    }
}

/// `GET /api/jobs/{id}/events`: the job (with chunks and attempts) each time it changes,
/// as `data:` lines of JSON; for a job that has ended, its final state, then the stream
/// ends.
pub async fn events(State(ctx): State<Arc<Ctx>>, Path(id): Path<String>) -> Response {
    if let Err(e) = ctx.store.job(&id) {
        return store_error(e);
    }
    Sse::new(watch(ctx, id))
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn watch(ctx: Arc<Ctx>, id: String) -> impl Stream<Item = Result<Event, Infallible>> {
    // (last JSON sent, finished)
    futures::stream::unfold((String::new(), false), move |(last, finished)| {
        let (ctx, id) = (ctx.clone(), id.clone());
        async move {
            if finished {
                return None;
            }
            let mut first = true;
            loop {
                if !first {
                    tokio::time::sleep(POLL).await;
                }
                first = false;
                let job = ctx.store.job(&id).ok()?;
                let Ok(mut v) = ctx
                    .store
                    .chunks(&id)
                    .and_then(|chunks| job_value(&ctx, &job, &chunks, true))
                else {
                    continue;
                };
                // Elapsed time and ETA change every poll; only real changes are sent.
                let mut key = v.clone();
                key["elapsed_ms"] = Value::Null;
                key["eta_ms"] = Value::Null;
                let key = key.to_string();
                if key == last {
                    continue;
                }
                let ended = job.state.is_terminal();
                v["final"] = json!(ended);
                // A page that reconnects (after a resume) does so quickly.
                let event = Event::default()
                    .retry(Duration::from_millis(500))
                    .data(v.to_string());
                return Some((Ok(event), (key, ended)));
            }
        }
    })
}

#[derive(serde::Serialize)]
struct Done {
    ok: bool,
    message: String,
}

/// What a cancel or resume did, as `{ok, message}`.
fn done(status: StatusCode, message: String) -> Response {
    let ok = status.is_success();
    (status, Json(Done { ok, message })).into_response()
}

fn cannot_run(ctx: &Ctx, e: std::io::Error) -> Response {
    done(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("cannot run {}: {e}", ctx.exe.display()),
    )
}

/// `POST /api/jobs/{id}/cancel`: `helios-infra cancel ID`, as the CLI does it.
pub async fn cancel(State(ctx): State<Arc<Ctx>>, Path(id): Path<String>) -> Response {
    if let Err(e) = ctx.store.job(&id) {
        return store_error(e);
    }
    let out = tokio::process::Command::new(&ctx.exe)
        .arg("--home")
        .arg(&ctx.home)
        .args(["cancel", &id])
        .stdin(std::process::Stdio::null())
        .output()
        .await;
    match out {
        Ok(o) => done(
            if o.status.success() {
                StatusCode::OK
            } else {
                StatusCode::CONFLICT
            },
            String::from_utf8_lossy(&o.stderr).trim().to_string(),
        ),
        Err(e) => cannot_run(&ctx, e),
    }
}

/// `POST /api/jobs/{id}/resume`: starts `helios-infra resume ID` in its own process
/// group, detached from the request (and from this server: it finishes if the dashboard
/// stops).
/// With `?max_cost=USD`, the job's cost cap is replaced (a job stopped by its cap).
pub async fn resume(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let job = match ctx.store.job(&id) {
        Ok(j) => j,
        Err(e) => return store_error(e),
    };
    let max_cost = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "max_cost")
        .map(|(_, v)| v.parse::<f64>().unwrap_or(f64::NAN));
    if let Some(c) = max_cost {
        if !(c.is_finite() && c > 0.0) {
            return done(
                StatusCode::BAD_REQUEST,
                format!("max_cost must be a positive amount in USD, not {c}"),
            );
        }
    }
    if crate::orchestrator::JobLock::is_held(&ctx.home.join("locks"), &id) {
        return done(StatusCode::CONFLICT, format!("job {id} is already running"));
    }
    let mut cmd = std::process::Command::new(&ctx.exe);
    cmd.arg("--home").arg(&ctx.home).args(["resume", &id]);
    if let Some(c) = max_cost {
        cmd.args(["--max-cost", &c.to_string()]);
    }
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    match cmd.spawn() {
        Ok(mut child) => {
            // Reaped when it ends, so that it leaves no zombie behind.
            std::thread::spawn(move || child.wait());
            done(
                StatusCode::ACCEPTED,
                format!("resuming job {id} (was {})", job.state),
            )
        }
        Err(e) => cannot_run(&ctx, e),
    }
}
