//! The orchestrator SIGKILLed at 20 seeded random moments (real processes, real SQLite):
//! `resume` always ends with the correct output.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;

#[test]
fn sigkill_at_twenty_random_moments_then_resume_always_gives_the_right_video() {
    let env = Env::new();
    let r = env.renderer("slow:0.05");
    let args = |out: &str| -> Vec<String> {
        [
            "render",
            "-o",
            out,
            "--frames",
            "0..40",
            "--size",
            "64x64",
            "--chunks",
            "5",
            "--concurrency",
            "2",
            "--lossless",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let reference = {
        let a = args("reference.mp4");
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        env.ok(&with_renderer(&a, &r));
        framemd5(&env.path("reference.mp4"))
    };
    // A small LCG: the moments are random but the same on every run.
    let mut state: u64 = 0x5eed_2026;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % 1500
    };
    let mut phases = std::collections::BTreeMap::new();
    for round in 0..20 {
        let out = format!("out{round}.mp4");
        let a = args(&out);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let before = env.status_ids();
        let mut child = env
            .cmd(&with_renderer(&a, &r))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let delay = next();
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let after = env.status_ids();
        let Some(id) = after.iter().find(|id| !before.contains(id)) else {
            // Killed before the job was submitted: nothing to resume, nothing corrupted.
            *phases.entry("before submit").or_insert(0) += 1;
            continue;
        };
        let st = env.status(id);
        let phase = match (
            st["stored_state"].as_str().unwrap(),
            st["chunks_done"].as_u64().unwrap(),
        ) {
            ("succeeded", _) => "after success",
            ("stitching", _) => "while stitching",
            (_, 0) => "before any chunk",
            (_, 5) => "all chunks done",
            _ => "with partial chunks",
        };
        *phases.entry(phase).or_insert(0) += 1;
        env.ok(&["resume", id]);
        assert_eq!(
            framemd5(&env.path(&out)),
            reference,
            "round {round} (killed after {delay} ms, {phase})"
        );
        assert_eq!(env.status(id)["state"], "succeeded");
    }
    eprintln!("kill moments by phase: {phases:?}");
    assert!(
        phases.get("with partial chunks").copied().unwrap_or(0) >= 3,
        "{phases:?}"
    );
}
