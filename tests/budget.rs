//! Estimates and the hard cost cap (`--max-cost`): a priced render stops before its cap
//! with its finished chunks kept and no output, says how to continue, and `resume` with a
//! higher cap finishes it frame-exact; a plan whose estimate is over the cap never starts;
//! a batch's cap covers all its rows. Real worker processes, real FFmpeg and Chromium.

mod common;

use std::sync::{Arc, Mutex};

use common::*;

/// A webhook receiver on loopback: every body it got.
fn receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let log = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let log = log.clone();
            async move {
                log.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    (format!("{}/hook", serve_on_loopback(app)), got)
}

/// Sum of the ledger and its largest entry.
fn ledger(st: &serde_json::Value) -> (f64, f64, usize) {
    let entries = st["spend"]["ledger"].as_array().expect("ledger");
    let usd: Vec<f64> = entries.iter().map(|e| e["usd"].as_f64().unwrap()).collect();
    (
        usd.iter().sum(),
        usd.iter().cloned().fold(0.0, f64::max),
        entries.len(),
    )
}

#[test]
fn a_priced_render_stops_at_its_cap_keeps_its_chunks_and_resumes_frame_exact() {
    let env = Env::new();
    let (hook, got) = receiver();
    // Each attempt sleeps 0.4 s: at 36 USD a worker-hour (a cent a second) it costs at
    // least 0.004 USD; the estimate (--frame-ms) expects 0.017 USD of each.
    let r = env.renderer("slow:0.4");
    let cap = 0.03;
    let cap_s = cap.to_string();
    let args = small_render_args(
        "capped.mp4",
        &[
            "--concurrency",
            "2",
            "--worker-hour-usd",
            "36",
            "--frame-ms",
            "20",
            "--max-cost",
            &cap_s,
            "--start-anyway",
            "--webhook",
            &hook,
        ],
    );
    let mut json_args = vec!["--json"];
    json_args.extend(with_renderer(&args, &r));
    let out = env.run(&json_args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    let id = env.only_job();
    assert!(
        stderr.contains(&format!("resume {id} --max-cost ")) && stderr.contains("cost cap"),
        "{stderr}"
    );
    // The estimate came first, over the cap (hence --start-anyway).
    let events = json_lines(&out.stdout);
    let estimate = events.iter().find(|e| e["event"] == "estimate").unwrap();
    assert!(estimate["usd"].as_f64().unwrap() > cap, "{estimate}");
    let stopped = events.iter().find(|e| e["event"] == "job_stopped").unwrap();
    assert_eq!(stopped["reason"], "budget");
    assert_eq!(stopped["cap_usd"].as_f64(), Some(cap));

    let st = env.status(&id);
    assert_eq!(st["state"], "stopped");
    assert_eq!(st["stop_reason"], "budget");
    let done = st["chunks_done"].as_u64().unwrap();
    assert!((1..6).contains(&done), "{st}");
    assert!(
        !env.path("capped.mp4").exists(),
        "no output for a stopped job"
    );
    // Every attempt is in the ledger, and the spend passes the cap by no more than the
    // attempts that were running (two at most) could.
    let (sum, largest, entries) = ledger(&st);
    let attempts: u64 = env.attempts(&id).iter().sum();
    assert_eq!(entries as u64, attempts, "{st}");
    let spent = st["spend"]["spent_usd"].as_f64().unwrap();
    assert!((spent - sum).abs() < 1e-6, "{st}");
    assert!(spent <= cap + 2.0 * largest, "spent {spent} over cap {cap}");
    assert!(
        largest >= 0.004,
        "an attempt billed under its 0.4 s of sleep: {st}"
    );
    let note: serde_json::Value =
        serde_json::from_str(got.lock().unwrap().last().expect("a webhook")).unwrap();
    assert_eq!(note["event"], "job.stopped");
    assert_eq!(note["state"], "stopped");

    // A cap the rest cannot fit under is refused before anything runs, and the job keeps
    // its cap and chunks.
    let out = env.run(&["resume", &id, "--max-cost", "0.031"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--start-anyway"), "{stderr}");
    let again = env.status(&id);
    assert_eq!(again["chunks_done"].as_u64(), Some(done));
    assert_eq!(again["spend"]["cap_usd"].as_f64(), Some(cap));

    // A higher cap finishes it, frame for frame what an uncapped render makes.
    env.ok(&["resume", &id, "--max-cost", "1"]);
    let st = env.status(&id);
    assert_eq!(st["state"], "succeeded");
    assert_eq!(st["spend"]["cap_usd"].as_f64(), Some(1.0));
    let (sum, _, entries) = ledger(&st);
    assert_eq!(entries as u64, env.attempts(&id).iter().sum::<u64>());
    assert!(sum <= 1.0);
    let free = small_render_args("free.mp4", &[]);
    env.ok(&with_renderer(&free, &r));
    assert_eq!(
        framemd5(&env.path("capped.mp4")),
        framemd5(&env.path("free.mp4"))
    );
    let text = String::from_utf8_lossy(&env.ok(&["status", &id]).stdout).to_string();
    assert!(
        text.contains("spend: ") && text.contains("cap 1.00 USD"),
        "{text}"
    );
}

#[test]
fn a_plan_over_its_cap_is_refused_before_anything_runs_and_plan_shows_the_estimate() {
    let env = Env::new();
    let r = env.renderer("ok");
    let args = small_render_args(
        "x.mp4",
        &[
            "--worker-hour-usd",
            "36",
            "--frame-ms",
            "1000",
            "--max-cost",
            "0.01",
        ],
    );
    let out = env.run(&with_renderer(&args, &r));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("over the cost cap") && stderr.contains("--start-anyway"),
        "{stderr}"
    );
    let jobs: serde_json::Value =
        serde_json::from_slice(&env.ok(&["status", "--json"]).stdout).unwrap();
    assert_eq!(jobs, serde_json::json!([]), "no job was submitted");
    assert_eq!(env.invocations(0), 0, "the renderer never ran");
    assert!(!env.path("x.mp4").exists());

    // `plan` says what a Lambda render would take and cost, in GB-seconds and requests.
    let plan = [
        "plan",
        "--emit",
        "-",
        "--frames",
        "0..600",
        "--chunks",
        "10",
        "--adapter",
        "lambda",
        "--function",
        "helios-render",
        "--memory-mb",
        "2048",
        "--frame-ms",
        "100",
    ];
    let out = env.ok(&with_renderer(&plan, &r));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // 10 chunks of 60 frames: 10 × (1.5 s + 6 s) at 2 GB.
    assert!(stderr.contains("150.0 GB-s, 10 requests"), "{stderr}");
    assert!(stderr.contains("AWS Lambda"), "{stderr}");
}

#[test]
fn an_html_render_is_probed_and_its_estimate_is_kept_with_the_job() {
    let env = Env::new();
    let comp = example("dom-css");
    env.ok(&[
        "render",
        &comp,
        "-o",
        "p.mp4",
        "--frames",
        "0..90",
        "--size",
        "320x180",
        "--worker-hour-usd",
        "3.6",
    ]);
    let id = env.only_job();
    let st = env.status(&id);
    let e = &st["spend"]["estimate"];
    assert!(
        e["pace_from"]
            .as_str()
            .unwrap()
            .contains("a probe of 30 frames"),
        "{e}"
    );
    assert!(e["pace"]["frame_ms"].as_f64().unwrap() > 0.0, "{e}");
    assert!(e["usd"].as_f64().unwrap() > 0.0, "{e}");
    assert!(st["spend"]["spent_usd"].as_f64().unwrap() > 0.0, "{st}");
    // A short job is not probed: its probe would render much of it again.
    env.ok(&[
        "render", &comp, "-o", "s.mp4", "--frames", "0..60", "--size", "320x180",
    ]);
    let short = env.status(&env.status_ids().pop().unwrap());
    assert!(
        short["spend"]["estimate"]["pace_from"]
            .as_str()
            .unwrap()
            .contains("not probed"),
        "{short}"
    );
    // The probe leaves nothing in storage.
    assert_storage_holds_only_jobs(&env);
}

#[test]
fn a_renders_probe_is_its_first_chunk_rendered_once_and_frame_exact() {
    let env = Env::new();
    let clock = example("clock");
    let base = [
        "--frames",
        "0..96",
        "--size",
        "1280x720",
        "--fps",
        "30",
        "--lossless",
    ];
    // No chunking asked for: the estimate's probe renders the job's first 30 frames as its
    // chunk 0, which the job keeps (attempt 1, billed in the ledger) and does not render again.
    let mut a = vec!["--json", "render", clock.as_str(), "-o", "kept.mp4"];
    a.extend(base);
    let out = env.ok(&a);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("kept as the job's first chunk"), "{stderr}");
    let id = env.only_job();
    let st = env.status(&id);
    let chunks = st["chunks"].as_array().unwrap();
    // Its events tell every chunk, the kept one included, as a render's do.
    let events = json_lines(&out.stdout);
    let done: Vec<_> = events
        .iter()
        .filter(|e| e["event"] == "chunk_done")
        .map(|e| (e["chunk"].as_u64().unwrap(), e["attempt"].as_u64().unwrap()))
        .collect();
    assert_eq!(done.len(), chunks.len(), "{events:?}");
    assert!(done.contains(&(0, 1)), "{events:?}");
    assert_eq!(events[0]["event"], "job_started");
    assert_eq!(events[0]["frames_done"], 0);
    assert_eq!(
        (
            &chunks[0]["start"],
            &chunks[0]["end"],
            &chunks[0]["attempts"]
        ),
        (
            &serde_json::json!(0),
            &serde_json::json!(30),
            &serde_json::json!(1)
        ),
        "{st}"
    );
    // The rest is planned after it, tiling the frames.
    let mut next = 30;
    for c in &chunks[1..] {
        assert_eq!(c["start"], next, "{st}");
        next = c["end"].as_u64().unwrap();
        assert_eq!(c["attempts"], 1, "{st}");
    }
    assert_eq!(next, 96, "{st}");
    let ledger = st["spend"]["ledger"].as_array().unwrap();
    let chunk0: Vec<_> = ledger
        .iter()
        .filter(|e| e["task"].as_str().unwrap().starts_with("chunk 0 "))
        .collect();
    assert_eq!(chunk0.len(), 1, "chunk 0 is rendered once: {st}");
    assert_eq!(
        chunk0[0]["task"],
        "chunk 0 attempt 1 (the estimate's probe)"
    );
    assert_eq!(chunk0[0]["frames"], 30);
    assert!(chunk0[0]["billed_ms"].as_u64().unwrap() > 0, "{st}");
    // Its attempt is recorded as it ran: before the job, for the time it was billed.
    let a0 = &chunks[0]["attempt_list"][0];
    let (s0, e0) = (
        a0["started_ms"].as_i64().unwrap(),
        a0["ended_ms"].as_i64().unwrap(),
    );
    assert_eq!(
        (e0 - s0) as u64,
        chunk0[0]["billed_ms"].as_u64().unwrap(),
        "{st}"
    );
    assert!(
        e0 <= chunks[1]["attempt_list"][0]["started_ms"].as_i64().unwrap(),
        "{st}"
    );
    assert_eq!(a0["outcome"], "succeeded", "{st}");
    // Every frame shows its own index, across the probe's chunk and the next.
    let readings = clock_readings(&env.path("kept.mp4"), 1280, 720);
    assert_eq!(readings.len(), 96);
    for (i, rows) in readings.iter().enumerate() {
        assert_eq!(rows[0], i as u32, "frame {i}: rAF time reads {}", rows[0]);
    }

    // With the chunks asked for, the probe is thrown away and the plan is the one asked
    // for; the frames are the same.
    let mut b = vec!["render", clock.as_str(), "-o", "one.mp4", "--chunks", "1"];
    b.extend(base);
    let out = env.ok(&b);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("a probe of 30 frames") && !stderr.contains("kept as"),
        "{stderr}"
    );
    let one = env.status(&env.status_ids().into_iter().find(|j| *j != id).unwrap());
    assert_eq!(one["chunks"].as_array().unwrap().len(), 1, "{one}");
    assert_eq!(
        framemd5(&env.path("kept.mp4")),
        framemd5(&env.path("one.mp4"))
    );
    // Neither probe left files of its own in storage.
    assert_storage_holds_only_jobs(&env);
}

/// Storage's `jobs/` holds a folder for each job in the store and nothing else (no probe's).
fn assert_storage_holds_only_jobs(env: &Env) {
    let mut jobs: Vec<_> = std::fs::read_dir(env.home().join("storage/jobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    jobs.sort();
    let mut ids = env.status_ids();
    ids.sort();
    assert_eq!(jobs, ids);
}

#[test]
fn a_batch_cap_covers_all_its_rows_and_resume_with_a_higher_cap_finishes_it() {
    let env = Env::new();
    let comp = title_card();
    let rows: String = (1..=4)
        .map(|r| format!("{{\"title\":\"Row {r}\",\"score\":{r}}}\n"))
        .collect();
    std::fs::write(env.path("rows.jsonl"), rows).unwrap();
    // Each row (one chunk of 15 frames) is expected to cost (1.5 s + 15 × 50 ms) at a cent a
    // second = 0.0225 USD. Under a cap of 0.023 the first row starts; the second waits for it
    // and then cannot start, whatever the machine's speed: the first row's real cost (a
    // browser's start-up alone is far over the 0.05 s it would take to fit) is spent.
    let out = env.run(&[
        "--json",
        "batch",
        &comp,
        "--props-file",
        "rows.jsonl",
        "-o",
        "out/{row}.mp4",
        "--frames",
        "0..15",
        "--concurrency",
        "2",
        "--worker-hour-usd",
        "36",
        "--frame-ms",
        "50",
        "--max-cost",
        "0.023",
        "--start-anyway",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    let lines = json_lines(&out.stdout);
    let batch = lines.iter().find(|l| l["event"] == "batch").unwrap()["batch"]
        .as_str()
        .unwrap()
        .to_string();
    let states: Vec<&str> = lines
        .iter()
        .filter(|l| l["event"] == "row")
        .map(|l| l["state"].as_str().unwrap())
        .collect();
    assert!(
        states.contains(&"succeeded") && states.contains(&"stopped"),
        "{states:?} {stderr}"
    );
    assert!(
        stderr.contains(&format!("resume {batch} --max-cost")),
        "{stderr}"
    );
    let st: serde_json::Value =
        serde_json::from_slice(&env.ok(&["--json", "status", &batch]).stdout).unwrap();
    let jobs = st["jobs"].as_array().unwrap();
    let spent = jobs[0]["spend"]["scope_spent_usd"].as_f64().unwrap();
    let own: f64 = jobs
        .iter()
        .map(|j| j["spend"]["spent_usd"].as_f64().unwrap())
        .sum();
    assert!((spent - own).abs() < 1e-6, "{st}");
    let largest = jobs
        .iter()
        .map(|j| ledger(&env.status(j["id"].as_str().unwrap())).1)
        .fold(0.0, f64::max);
    assert!(spent <= 0.023 + 2.0 * largest, "batch spent {spent}");
    for j in jobs {
        assert_eq!(j["spend"]["cap_usd"].as_f64(), Some(0.023), "{j}");
        let out = std::path::PathBuf::from(j["output"].as_str().unwrap());
        assert_eq!(out.exists(), j["state"] == "succeeded", "{j}");
    }

    env.ok(&["resume", &batch, "--max-cost", "1"]);
    let st: serde_json::Value =
        serde_json::from_slice(&env.ok(&["--json", "status", &batch]).stdout).unwrap();
    assert_eq!(st["succeeded"], 4, "{st}");
}
