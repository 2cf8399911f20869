//! `helios-infra ui`: the dashboard's API over a real job store, its access rules and
//! what it refuses to serve — through the real binary.

mod common;

use std::process::Child;

use common::*;

/// A finished 6-chunk job whose chunk 1 (frames 10..20) failed its first attempt.
fn job_with_a_retry(env: &Env) -> String {
    let r = env.renderer("fail-once:10");
    env.ok(&with_renderer(&small_render_args("out.mp4", &[]), &r));
    env.only_job()
}

/// Starts a job of `chunks` chunks of 10 frames that take `secs` each, one at a time, and
/// waits until the store has it: the render process and the job id.
fn start_slow_job(env: &Env, secs: &str, chunks: u32, out: &str) -> (Child, String) {
    let r = env.renderer(&format!("slow:{secs}"));
    let frames = format!("0..{}", chunks * 10);
    let chunks = chunks.to_string();
    let args = [
        "render",
        "-o",
        out,
        "--frames",
        &frames,
        "--size",
        "64x64",
        "--chunks",
        &chunks,
        "--concurrency",
        "1",
        "--preset",
        "ultrafast",
    ];
    env.spawn_render(&with_renderer(&args, &r), &[])
}

#[test]
fn the_api_shows_jobs_chunks_and_every_attempt_from_the_store() {
    let env = Env::new();
    let id = job_with_a_retry(&env);
    let ui = Ui::start(&env, &[]);

    let jobs = ui.json("/api/jobs");
    let jobs = jobs.as_array().unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["id"], id.as_str());
    assert_eq!(jobs[0]["state"], "succeeded");
    assert_eq!(jobs[0]["frames"], 60);
    // What a person knows the job by: the command it ran, its output, when it was made.
    let composition = jobs[0]["composition"].as_str().unwrap();
    assert!(
        composition.starts_with("bash ")
            && composition.contains("renderer.sh")
            && composition.contains(" fail-once:10 {start}"),
        "{composition}"
    );
    assert!(jobs[0]["output"].as_str().unwrap().ends_with("/out.mp4"));
    assert!(jobs[0]["created_ms"].as_i64().unwrap() > 1_700_000_000_000);
    assert_eq!(jobs[0]["chunk_count"], 6);
    assert!(jobs[0]["elapsed_ms"].as_i64().unwrap() > 0);

    let job = ui.json(&format!("/api/jobs/{id}"));
    let chunks = job["chunks"].as_array().unwrap();
    assert_eq!(chunks.len(), 6);
    let outcomes = |c: &serde_json::Value| -> Vec<String> {
        c["attempt_list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["outcome"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(outcomes(&chunks[1]), ["failed", "succeeded"]);
    assert_eq!(outcomes(&chunks[0]), ["succeeded"]);
    assert!(chunks[1]["attempt_list"][0]["error"]
        .as_str()
        .unwrap()
        .contains("exit"));

    // The event stream of a finished job sends its final state and ends.
    let (status, events) = ui.get(&format!("/api/jobs/{id}/events"), &[]);
    assert_eq!(status, 200);
    assert!(events.contains("data: {"), "{events}");
    assert!(events.contains("\"final\":true"), "{events}");

    // Pages, the embedded assets and the job's own output; nothing else.
    assert_eq!(ui.get("/", &[]).0, 200);
    assert_eq!(ui.get(&format!("/jobs/{id}"), &[]).0, 200);
    assert_eq!(ui.get("/assets/app.js", &[]).0, 200);
    let (status, video) = ui.get(&format!("/jobs/{id}/output"), &[]);
    assert_eq!(status, 200);
    assert!(video.len() > 100);
    for path in [
        "/jobs/NOSUCHJOB",
        "/api/jobs/NOSUCHJOB",
        "/assets/..%2fmod.rs",
        "/assets/%2e%2e/%2e%2e/Cargo.toml",
        "/assets/..%2f..%2fCargo.toml",
        "/jobs/%2e%2e/output",
        "/jobs/..%2f..%2fjobs.db/output",
        "/.helios/jobs.db",
        "/jobs.db",
        "/storage/",
    ] {
        assert_eq!(ui.get(path, &[]).0, 404, "{path}");
    }
}

#[test]
fn the_event_stream_follows_a_running_job_until_it_ends() {
    use std::io::{Read, Write};
    let env = Env::new();
    let (mut live, id) = start_slow_job(&env, "0.3", 8, "live.mp4");
    let ui = Ui::start(&env, &[]);
    let mut s = std::net::TcpStream::connect(&ui.addr).unwrap();
    write!(
        s,
        "GET /api/jobs/{id}/events HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n",
        ui.addr
    )
    .unwrap();
    // The stream ends by itself once the job has (bounded, so that a stream that never
    // ends fails the test instead of hanging it).
    s.set_read_timeout(Some(std::time::Duration::from_secs(120)))
        .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("the stream ended");
    assert!(live.wait().unwrap().success());
    let events: Vec<serde_json::Value> = raw
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(events.len() >= 3, "{raw}");
    let done: Vec<u64> = events
        .iter()
        .map(|e| e["frames_done"].as_u64().unwrap())
        .collect();
    assert!(done.windows(2).all(|w| w[0] <= w[1]), "{done:?}");
    assert!(
        done.iter().any(|&d| d > 0 && d < 80),
        "progress seen mid-run: {done:?}"
    );
    let last = events.last().unwrap();
    assert_eq!(last["state"], "succeeded");
    assert_eq!(last["final"], true);
    assert!(events[..events.len() - 1]
        .iter()
        .all(|e| e["final"] == false));
    // Attempts appear as they start and end.
    let attempts = |e: &serde_json::Value| {
        e["chunks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["attempt_list"].as_array().unwrap().len())
            .sum::<usize>()
    };
    assert_eq!(attempts(last), 8);
    assert!(events.iter().any(|e| attempts(e) < 8), "{raw}");
}

#[test]
fn without_a_token_only_loopback_names_and_same_origin_changes_are_answered() {
    let env = Env::new();
    let id = job_with_a_retry(&env);
    let ui = Ui::start(&env, &[]);
    // DNS rebinding: a page on another name reaching our port.
    let (status, _) = ui.get("/api/jobs", &[("Host", "evil.example:7878")]);
    assert_eq!(status, 403);
    assert_eq!(ui.get("/api/jobs", &[("Host", "localhost:7878")]).0, 200);
    // Cancel from another origin (or `null`) is refused; from the dashboard's own, or from
    // a script that sends no Origin (browsers always send one), it runs the CLI's cancel,
    // which says the job has ended.
    let cancel = format!("/api/jobs/{id}/cancel");
    let evil = http(
        &ui.addr,
        "POST",
        &cancel,
        &[("Origin", "http://evil.example")],
        b"",
    );
    assert_eq!(evil.0, 403);
    assert_eq!(
        http(&ui.addr, "POST", &cancel, &[("Origin", "null")], b"").0,
        403
    );
    let (status, body) = http(&ui.addr, "POST", &cancel, &[], b"");
    assert_eq!(status, 409, "a POST with no Origin is taken: {body}");
    let origin = format!("http://{}", ui.addr);
    let (status, body) = http(&ui.addr, "POST", &cancel, &[("Origin", &origin)], b"");
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("already ended"), "{body}");
}

#[test]
fn with_a_token_every_request_needs_it_and_a_link_trades_it_for_a_cookie() {
    let env = Env::new();
    let id = job_with_a_retry(&env);
    let ui = Ui::start(&env, &["--token", "s3cret"]);
    assert_eq!(ui.get("/api/jobs", &[]).0, 401);
    assert_eq!(ui.get("/", &[]).0, 401);
    assert_eq!(
        ui.get("/api/jobs", &[("Authorization", "Bearer wrong")]).0,
        401
    );
    assert_eq!(
        ui.get("/api/jobs", &[("Authorization", "Bearer s3cret")]).0,
        200
    );
    let (status, head, _) = http_full(&ui.addr, "GET", "/?token=s3cret", &[], b"");
    assert_eq!(status, 303, "{head}");
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .unwrap_or_else(|| panic!("no cookie: {head}"));
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap();
    assert_eq!(
        ui.get(&format!("/api/jobs/{id}"), &[("Cookie", pair)]).0,
        200
    );
    assert_eq!(ui.get("/?token=nope", &[]).0, 401);
    // With a token, any Host is fine (the token is the guard).
    assert_eq!(
        ui.get(
            "/api/jobs",
            &[
                ("Host", "render-box:7878"),
                ("Authorization", "Bearer s3cret")
            ]
        )
        .0,
        200
    );
}

#[test]
fn a_non_loopback_address_without_a_token_is_refused() {
    let env = Env::new();
    let out = env.run(&["ui", "--listen", "0.0.0.0:0"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to listen on 0.0.0.0:0 without --token"),
        "{err}"
    );
}

/// Runs `js` in the page until it returns true, or fails after `secs`.
async fn wait_until(page: &chromiumoxide::Page, js: &str, secs: u64, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let ok = page
            .evaluate(js)
            .await
            .ok()
            .and_then(|v| v.into_value::<bool>().ok())
            .unwrap_or(false);
        if ok {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn eval<T: serde::de::DeserializeOwned>(page: &chromiumoxide::Page, js: &str) -> T {
    page.evaluate(js)
        .await
        .unwrap_or_else(|e| panic!("{js}: {e}"))
        .into_value::<T>()
        .unwrap_or_else(|e| panic!("{js}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_page_follows_a_live_job_and_its_buttons_cancel_and_resume_it() {
    use chromiumoxide::browser::{Browser, BrowserConfig};
    use futures::StreamExt;

    let env = Env::new();
    let finished = job_with_a_retry(&env);
    // A live job: 12 chunks of 0.4 s or more each, one at a time.
    let (mut live, live_id) = start_slow_job(&env, "0.4", 12, "live.mp4");
    let ui = Ui::start(&env, &[]);

    let chromium = helios_infra::render::browser::locate_chromium().unwrap();
    let config = BrowserConfig::builder()
        .chrome_executable(chromium)
        .no_sandbox()
        .arg("--disable-gpu")
        .arg("--autoplay-policy=no-user-gesture-required")
        .user_data_dir(env.path("chromium-profile"))
        .viewport(chromiumoxide::handler::viewport::Viewport {
            width: 1280,
            height: 900,
            ..Default::default()
        })
        .build()
        .unwrap();
    let (mut browser, mut handler) = Browser::launch(config).await.unwrap();
    let events = tokio::spawn(async move { while handler.next().await.is_some() {} });

    // The finished job: one timeline row per chunk; chunk 1 shows its failed attempt, then
    // the one that succeeded, in the outcome colours.
    let page = browser
        .new_page(format!("http://{}/jobs/{finished}", ui.addr))
        .await
        .unwrap();
    wait_until(
        &page,
        "document.querySelectorAll('#timeline .row[data-chunk]').length === 6",
        20,
        "six timeline rows",
    )
    .await;
    let colours: Vec<String> = eval(
        &page,
        "Array.from(document.querySelectorAll('#timeline .row[data-chunk=\"1\"] .bar'))
           .map(b => b.dataset.outcome + ' ' + getComputedStyle(b).backgroundColor)",
    )
    .await;
    assert_eq!(
        colours,
        ["failed rgb(255, 167, 38)", "succeeded rgb(76, 175, 80)"]
    );
    let winner: String = eval(
        &page,
        "document.querySelector('#timeline .row[data-chunk=\"1\"] .bar[data-committed=\"true\"]').dataset.attempt",
    )
    .await;
    assert_eq!(winner, "2");
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-job-page.png");
    page.save_screenshot(
        chromiumoxide::page::ScreenshotParams::builder()
            .full_page(true)
            .build(),
        &shot,
    )
    .await
    .unwrap();
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);

    // The live job: its progress advances with no reload.
    // It appears in the list, which links to its page.
    page.goto(format!("http://{}/", ui.addr)).await.unwrap();
    wait_until(
        &page,
        &format!("!!document.querySelector('tr[data-job=\"{live_id}\"] a')"),
        20,
        "the live job listed",
    )
    .await;
    page.goto(format!("http://{}/jobs/{live_id}", ui.addr))
        .await
        .unwrap();
    wait_until(
        &page,
        "!!document.querySelector('#state').dataset.state",
        20,
        "the job shown",
    )
    .await;
    page.evaluate("window.__sameDocument = true").await.unwrap();
    let start: f64 = eval(&page, "document.querySelector('#progress').value").await;
    wait_until(
        &page,
        &format!(
            "document.querySelector('#progress').value > {start} && window.__sameDocument === true"
        ),
        60,
        "progress advancing live",
    )
    .await;
    let rows: usize = eval(
        &page,
        "document.querySelectorAll('#timeline .row[data-chunk]').length",
    )
    .await;
    assert_eq!(rows, 12);

    // The player plays the committed prefix while the job runs (Media Source Extensions):
    // its position advances and what it has buffered grows, before the job has ended.
    let buffered = "(() => { const v = document.querySelector('#preview'); return v.buffered.length ? v.buffered.end(v.buffered.length - 1) : 0; })()";
    wait_until(
        &page,
        &format!("document.querySelector('#preview').dataset.live === 'true' && {buffered} > 0"),
        60,
        "live video buffered",
    )
    .await;
    let (t0, b0): (f64, f64) = (
        eval(&page, "document.querySelector('#preview').currentTime").await,
        eval(&page, buffered).await,
    );
    wait_until(
        &page,
        &format!("document.querySelector('#preview').currentTime > {t0} && {buffered} > {b0}"),
        60,
        "the live video playing and growing",
    )
    .await;
    let state: String = eval(&page, "document.querySelector('#state').dataset.state").await;
    assert_eq!(
        state, "running",
        "the video grew while the job was still running"
    );

    // Cancel stops it, and `status` agrees.
    page.find_element("#cancel")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_until(
        &page,
        "document.querySelector('#state').dataset.state === 'cancelled'",
        60,
        "cancelled on the page",
    )
    .await;
    assert!(!live.wait().unwrap().success());
    assert_eq!(env.status(&live_id)["state"], "cancelled");

    // Resume finishes it, live on the same page.
    page.find_element("#resume")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_until(
        &page,
        "document.querySelector('#state').dataset.state === 'succeeded' && window.__sameDocument === true",
        120,
        "succeeded on the page after resume",
    )
    .await;
    assert_eq!(env.status(&live_id)["state"], "succeeded");
    assert_eq!(probe_stream(&env.path("live.mp4")).0, 120);
    let shown: bool = eval(&page, "!document.querySelector('#preview').hidden").await;
    assert!(shown, "the output's preview is shown");

    browser.close().await.ok();
    events.abort();
}

#[test]
fn a_job_stopped_by_its_cost_cap_shows_why_and_resumes_under_a_higher_cap() {
    let env = Env::new();
    let r = env.renderer("slow:0.3");
    let args = small_render_args(
        "capped.mp4",
        &[
            "--concurrency",
            "1",
            "--worker-hour-usd",
            "36",
            "--frame-ms",
            "20",
            "--max-cost",
            "0.02",
            "--start-anyway",
        ],
    );
    let out = env.run(&with_renderer(&args, &r));
    assert_eq!(out.status.code(), Some(3));
    let id = env.only_job();
    let ui = Ui::start(&env, &[]);
    let job = ui.json(&format!("/api/jobs/{id}"));
    assert_eq!(job["state"], "stopped");
    assert_eq!(job["stop_reason"], "budget");
    assert_eq!(job["spend"]["cap_usd"].as_f64(), Some(0.02));
    assert!(
        job["error"].as_str().unwrap().contains("--max-cost"),
        "{job}"
    );
    let resume = format!("/api/jobs/{id}/resume");
    let (status, body) = http(&ui.addr, "POST", &format!("{resume}?max_cost=-1"), &[], b"");
    assert_eq!(status, 400, "{body}");
    let (status, body) = http(&ui.addr, "POST", &format!("{resume}?max_cost=1"), &[], b"");
    assert_eq!(status, 202, "{body}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let job = ui.json(&format!("/api/jobs/{id}"));
        if job["state"] == "succeeded" {
            assert_eq!(job["spend"]["cap_usd"].as_f64(), Some(1.0));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{job}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(env.path("capped.mp4").exists());
}
