//! `helios-infra batch`: one composition (real Chromium, `@helios-project/core`), one job
//! per row of props, every output showing its own row; bad rows fail alone; a killed batch
//! resumes without re-rendering finished rows; remote adapters work too.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;

use common::*;

/// The score the title card spells in binary along its top edge, from the last frame.
fn score_shown(video: &Path) -> u32 {
    let rgb = ffmpeg(&[
        "-sseof",
        "-0.05",
        "-i",
        video.to_str().unwrap(),
        "-frames:v",
        "1",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-",
    ]);
    title_card_score(&rgb)
}

fn batch_status(env: &Env, id: &str) -> serde_json::Value {
    let out = env.ok(&["--json", "status", id]);
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn every_row_of_a_jsonl_and_a_csv_batch_shows_its_own_props_and_a_bad_row_fails_alone() {
    let env = Env::new();
    let comp = title_card();
    // 20 rows each; row 7 is refused by the composition's schema (score < 0).
    let score = |row: u32| if row == 7 { -1 } else { (row * 37) as i64 };
    let jsonl: String = (1..=20)
        .map(|r| format!("{{\"title\":\"Row {r}\",\"score\":{}}}\n", score(r)))
        .collect();
    std::fs::write(env.path("rows.jsonl"), jsonl).unwrap();
    let csv: String = std::iter::once("title,score,color\n".to_string())
        .chain((1..=20).map(|r| format!("Row {r},{},#{:02x}2040\n", score(r), r * 10)))
        .collect();
    std::fs::write(env.path("rows.csv"), csv).unwrap();

    for (file, dir) in [("rows.jsonl", "j"), ("rows.csv", "c")] {
        let pattern = format!("{dir}/{{row}}-{{score}}.mp4");
        let out = env.run(&[
            "--json",
            "batch",
            &comp,
            "--props-file",
            file,
            "-o",
            &pattern,
            "--frames",
            "0..2",
            "--concurrency",
            "2",
        ]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "one row failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines = json_lines(&out.stdout);
        let batch = lines[0]["batch"].as_str().unwrap().to_string();
        let rows: Vec<_> = lines.iter().filter(|l| l["event"] == "row").collect();
        assert_eq!(rows.len(), 20, "a line per row as it finishes");
        for r in 1..=20u32 {
            let line = rows.iter().find(|l| l["row"] == r).unwrap();
            if r == 7 {
                assert_eq!(line["state"], "failed");
                let e = line["error"].as_str().unwrap();
                assert!(e.contains("score") && e.contains(">= 0"), "{e}");
                continue;
            }
            assert_eq!(line["state"], "succeeded", "{line}");
            let video = env.path(&format!("{dir}/{r}-{}.mp4", score(r)));
            assert_eq!(line["output"], video.display().to_string());
            assert_eq!(score_shown(&video), score(r) as u32, "{file} row {r}");
        }
        let st = batch_status(&env, &batch);
        assert_eq!(
            (
                st["rows"].as_u64(),
                st["succeeded"].as_u64(),
                st["failed"].as_u64()
            ),
            (Some(20), Some(19), Some(1))
        );
        // All the rows' jobs share one bundle.
        let bundles: std::collections::HashSet<_> = st["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_str().unwrap().to_string())
            .map(|id| {
                let spec: serde_json::Value = serde_json::from_slice(
                    &std::fs::read(env.home().join(format!("storage/jobs/{id}/job.json"))).unwrap(),
                )
                .unwrap();
                spec["composition"]["bundle"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(bundles.len(), 1);
    }
}

#[test]
fn rows_that_would_write_one_file_are_refused_before_anything_renders() {
    let env = Env::new();
    let comp = title_card();
    std::fs::write(env.path("rows.csv"), "title,score\nA,1\nB,2\nC,1\n").unwrap();
    let out = env.run(&[
        "batch",
        &comp,
        "--props-file",
        "rows.csv",
        "-o",
        "out/{score}.mp4",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rows 1 and 3 would both write out/1.mp4"),
        "{err}"
    );
    let out = env.run(&["batch", &comp, "--props-file", "rows.csv", "-o", "out.mp4"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("every row would write the same file"));
    let st = env.ok(&["--json", "status"]);
    assert_eq!(json_lines(&st.stdout), vec![serde_json::json!([])]);
}

#[test]
fn a_batch_killed_midway_resumes_without_rerendering_finished_rows() {
    let env = Env::new();
    let comp = title_card();
    let rows: String = (1..=8)
        .map(|r| format!("{{\"title\":\"R{r}\",\"score\":{r}}}\n"))
        .collect();
    std::fs::write(env.path("rows.jsonl"), rows).unwrap();
    let mut child = env
        .cmd(&[
            "--json",
            "batch",
            &comp,
            "--props-file",
            "rows.jsonl",
            "-o",
            "out/{row}.mp4",
            "--frames",
            "0..12",
            "--concurrency",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut batch = String::new();
    let mut finished = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        if v["event"] == "batch" {
            batch = v["batch"].as_str().unwrap().to_string();
        }
        if v["event"] == "row" && v["state"] == "succeeded" {
            finished.push(v["job"].as_str().unwrap().to_string());
            if finished.len() == 2 {
                break;
            }
        }
    }
    // kill -9: no chance to tidy up.
    child.kill().unwrap();
    child.wait().unwrap();
    let before = batch_status(&env, &batch);
    let pending = before["pending"].as_u64().unwrap();
    assert!(pending >= 1, "{before}");
    let modified = |id: &str| {
        let st = env.status(id);
        std::fs::metadata(st["output"].as_str().unwrap())
            .unwrap()
            .modified()
            .unwrap()
    };
    let stamps: Vec<_> = finished.iter().map(|id| modified(id)).collect();

    let out = env.ok(&["--json", "resume", &batch]);
    let lines = json_lines(&out.stdout);
    let rerun: Vec<_> = lines
        .iter()
        .filter(|l| l["event"] == "row")
        .map(|l| l["job"].as_str().unwrap().to_string())
        .collect();
    for id in &finished {
        assert!(!rerun.contains(id), "finished row {id} ran again");
    }
    let after = batch_status(&env, &batch);
    assert_eq!(after["succeeded"], 8, "{after}");
    for (id, stamp) in finished.iter().zip(stamps) {
        assert_eq!(modified(id), stamp, "{id}'s output was rewritten");
        let st = env.status(id);
        let attempts: u64 = st["chunks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["attempts"].as_u64().unwrap())
            .sum();
        assert_eq!(
            attempts,
            st["chunk_count"].as_u64().unwrap(),
            "{id} rendered again"
        );
    }
    for r in 1..=8 {
        assert_eq!(score_shown(&env.path(&format!("out/{r}.mp4"))), r);
    }
}

#[test]
fn a_batch_runs_on_http_workers() {
    let env = Env::new();
    let comp = title_card();
    let servers: Vec<_> = (0..2).map(|_| WorkerServer::start(Some("tok"))).collect();
    let urls = servers
        .iter()
        .map(|s| s.url.clone())
        .collect::<Vec<_>>()
        .join(",");
    std::fs::write(env.path("rows.csv"), "score\n11\n22\n33\n").unwrap();
    env.ok(&[
        "batch",
        &comp,
        "--props-file",
        "rows.csv",
        "-o",
        "http/{score}.mp4",
        "--frames",
        "0..3",
        "--adapter",
        "http",
        "--workers",
        &urls,
        "--worker-token",
        "tok",
        "--concurrency",
        "2",
    ]);
    for s in [11, 22, 33] {
        assert_eq!(score_shown(&env.path(&format!("http/{s}.mp4"))), s);
    }
    let jobs: serde_json::Value =
        serde_json::from_slice(&env.ok(&["--json", "status"]).stdout).unwrap();
    assert!(jobs
        .as_array()
        .unwrap()
        .iter()
        .all(|j| j["adapter"] == "http"));
}

#[test]
fn cancel_batch_stops_the_rows_left_and_resume_finishes_them() {
    let env = Env::new();
    let comp = title_card();
    let rows: String = (1..=5).map(|r| format!("{{\"score\":{r}}}\n")).collect();
    std::fs::write(env.path("rows.jsonl"), rows).unwrap();
    let mut child = env
        .cmd(&[
            "--json",
            "batch",
            &comp,
            "--props-file",
            "rows.jsonl",
            "-o",
            "out/{row}.mp4",
            "--frames",
            "0..24",
            "--concurrency",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut batch = String::new();
    for line in lines.by_ref() {
        let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        if v["event"] == "batch" {
            batch = v["batch"].as_str().unwrap().to_string();
        }
        if v["event"] == "row" {
            break;
        }
    }
    env.ok(&["cancel", &batch]);
    let rest: Vec<serde_json::Value> = lines
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{rest:?}");
    let st = batch_status(&env, &batch);
    assert!(st["cancelled"].as_u64().unwrap() >= 1, "{st}");
    assert_eq!(st["failed"], 0, "{st}");

    env.ok(&["resume", &batch]);
    let st = batch_status(&env, &batch);
    assert_eq!(st["succeeded"], 5, "{st}");
    for r in 1..=5 {
        assert_eq!(score_shown(&env.path(&format!("out/{r}.mp4"))), r);
    }
}
