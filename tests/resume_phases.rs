//! Resume covers every phase: the orchestrator is SIGKILLed at an exact point (a named
//! failpoint, `HELIOS_FAILPOINTS`) — after planning, before the stitch, after the concat,
//! halfway through the final upload, after the upload — and `resume` then ends with the
//! same video as an uninterrupted run, in storage as well as at the output path, without
//! rendering again what was already committed.

mod common;

use std::os::unix::process::ExitStatusExt;

use common::*;

const CHUNKS: u64 = 4;
const FRAMES: u64 = 32;

fn render_args(out: &str) -> Vec<String> {
    [
        "render",
        "-o",
        out,
        "--frames",
        &format!("0..{FRAMES}"),
        "--size",
        "64x64",
        "--chunks",
        &CHUNKS.to_string(),
        "--concurrency",
        "2",
        "--lossless",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Renders with `point` armed, checks the process died by SIGKILL at that phase, resumes,
/// and returns (job id, how many chunk renders the resume started).
fn crash_then_resume(env: &Env, r: &[String], point: &str, out: &str, stored: &str) -> String {
    let a = render_args(out);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let before = env.status_ids();
    let crashed = env
        .cmd(&with_renderer(&a, r))
        .env("HELIOS_FAILPOINTS", point)
        .output()
        .unwrap();
    assert_eq!(
        crashed.status.signal(),
        Some(9),
        "{point}: expected death by SIGKILL, got {:?}\n{}",
        crashed.status,
        String::from_utf8_lossy(&crashed.stderr)
    );
    assert!(
        String::from_utf8_lossy(&crashed.stderr).contains(&format!("failpoint {point} reached")),
        "{point}: {}",
        String::from_utf8_lossy(&crashed.stderr)
    );
    let id = env
        .status_ids()
        .into_iter()
        .find(|id| !before.contains(id))
        .expect("the job was recorded before the crash");
    let st = env.status(&id);
    assert_eq!(st["stored_state"], stored, "{point}: {st}");
    env.ok(&["resume", &id]);
    assert_eq!(env.status(&id)["state"], "succeeded");
    id
}

fn renders(env: &Env) -> usize {
    (0..CHUNKS)
        .map(|c| env.invocations(c * FRAMES / CHUNKS))
        .sum()
}

#[test]
fn resume_after_a_crash_in_each_phase_gives_the_reference_video() {
    let env = Env::new();
    let r = env.renderer("ok");
    let reference = {
        let a = render_args("reference.mp4");
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        env.ok(&with_renderer(&a, &r));
        framemd5(&env.path("reference.mp4"))
    };
    assert_eq!(renders(&env), CHUNKS as usize);

    for (point, stored, renders_on_resume) in [
        // Planned and recorded, nothing rendered: the resume renders every chunk.
        ("after-submit", "queued", CHUNKS as usize),
        // Every chunk committed, the stitch not begun: nothing is rendered again.
        ("before-stitch", "stitching", 0),
        // The output exists at its path but is not uploaded, and the job is not done.
        ("after-concat", "stitching", 0),
        // The output's upload wrote its data and was cut before completing.
        ("mid-upload:output.mp4", "stitching", 0),
        // Uploaded, but the job was never marked succeeded.
        ("after-upload", "stitching", 0),
    ] {
        let out = format!("{}.mp4", point.replace(':', "-"));
        let rendered_before = renders(&env);
        let before_crash = env.status_ids().len();
        let id = crash_then_resume(&env, &r, point, &out, stored);
        assert_eq!(env.status_ids().len(), before_crash + 1);
        let rendered = renders(&env) - rendered_before;
        // The crashed run rendered every chunk unless it died right after planning.
        let by_crashed_run = if point == "after-submit" {
            0
        } else {
            CHUNKS as usize
        };
        assert_eq!(
            rendered,
            by_crashed_run + renders_on_resume,
            "{point}: chunks rendered by the crashed run and the resume"
        );
        assert_eq!(framemd5(&env.path(&out)), reference, "{point}: output");
        let stored_output = env.home().join(format!("storage/jobs/{id}/output.mp4"));
        assert_eq!(
            std::fs::read(&stored_output).unwrap(),
            std::fs::read(env.path(&out)).unwrap(),
            "{point}: the uploaded output is the output"
        );
    }
}
