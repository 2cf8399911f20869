//! Chunks on AWS Lambda, through cargo-lambda's Invoke/Runtime API emulator serving the
//! real `helios-infra worker lambda`, with storage in S3 (moto).

mod common;

use common::peers::*;
use common::*;

fn render(
    env: &Env,
    vars: &[(&'static str, String)],
    out: &str,
    extra: &[&str],
) -> std::process::Output {
    let r = ffmpeg_renderer();
    let mut args = vec![
        "render",
        "-o",
        out,
        "--frames",
        "0..48",
        "--size",
        "64x64",
        "--chunks",
        "4",
        "--lossless",
        "--storage",
        "s3://lambda-renders/jobs-here",
        "--adapter",
        "lambda",
        "--function",
        "helios-infra",
        "--invoke-timeout",
        "60",
    ];
    args.extend_from_slice(extra);
    env.cmd(&with_renderer(&args, &r))
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap()
}

#[test]
fn a_lambda_render_with_s3_storage_equals_a_local_render() {
    let s3 = moto("lambda-renders");
    let emulator = lambda_emulator();
    let vars = lambda_env(&s3, &emulator.endpoint);
    let _workers: Vec<_> = (0..2)
        .map(|_| lambda_worker(&emulator, "helios-infra", &vars))
        .collect();
    let env = Env::new();
    let out = render(&env, &vars, "lambda.mp4", &["--concurrency", "2"]);
    assert_ok(&out);
    let r = ffmpeg_renderer();
    env.ok(&with_renderer(
        &[
            "render",
            "-o",
            "local.mp4",
            "--frames",
            "0..48",
            "--size",
            "64x64",
            "--chunks",
            "1",
            "--lossless",
        ],
        &r,
    ));
    assert_eq!(
        framemd5(&env.path("lambda.mp4")),
        framemd5(&env.path("local.mp4"))
    );
    let st = env.status(&env.status_ids()[0]);
    assert_eq!(st["adapter"], "lambda");
    assert!(st["storage"].as_str().unwrap().starts_with("s3://"));
    // Pay-per-use compute: GB-seconds at the function's memory and an estimated price.
    let cost = &st["cost"];
    assert_eq!(cost["requests"], 4, "{st}");
    let gb_s = cost["gb_seconds"].as_f64().unwrap();
    let worker_s = cost["worker_seconds"].as_f64().unwrap();
    assert!(
        worker_s > 0.0 && (gb_s - worker_s * 4.0).abs() < 0.01,
        "{cost}"
    );
    assert!(cost["estimated_usd"].as_f64().unwrap() > 0.0, "{cost}");
}

#[test]
fn lambda_throttling_is_retried_with_backoff_until_the_job_succeeds() {
    let s3 = moto("lambda-renders");
    let emulator = lambda_emulator();
    let proxy = throttling_proxy(&emulator.endpoint, 6);
    let vars = lambda_env(&s3, &proxy.endpoint);
    let _worker = lambda_worker(&emulator, "helios-infra", &vars);
    let env = Env::new();
    let out = render(&env, &vars, "t.mp4", &["-v", "--concurrency", "1"]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("throttled; backing off") && log.contains("TooManyRequestsException"),
        "{log}"
    );
    assert!(proxy.refused.load(std::sync::atomic::Ordering::SeqCst) >= 6);
    assert_eq!(probe_stream(&env.path("t.mp4")).0, 48);
}

#[test]
fn a_missing_function_is_a_clear_error() {
    let s3 = moto("lambda-renders");
    let emulator = lambda_emulator();
    let vars = lambda_env(&s3, &emulator.endpoint);
    let env = Env::new();
    let r = ffmpeg_renderer();
    let args = [
        "render",
        "-o",
        "x.mp4",
        "--frames",
        "0..8",
        "--size",
        "64x64",
        "--chunks",
        "1",
        "--storage",
        "s3://lambda-renders/p",
        "--adapter",
        "lambda",
        "--function",
        "no-such-function",
    ];
    let out = env
        .cmd(&with_renderer(&args, &r))
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-function"), "{err}");
}

#[test]
fn a_lossy_mp4_is_assembled_in_the_bucket_with_assembly_tasks_on_the_function() {
    let s3 = moto("lambda-renders");
    let emulator = lambda_emulator();
    let vars = lambda_env(&s3, &emulator.endpoint);
    let _workers: Vec<_> = (0..2)
        .map(|_| lambda_worker(&emulator, "helios-infra", &vars))
        .collect();
    let env = Env::new();
    let r = ffmpeg_renderer();
    let common = [
        "--frames",
        "0..48",
        "--size",
        "64x64",
        "--chunks",
        "4",
        "--preset",
        "ultrafast",
    ];
    let mut args = vec!["render", "-o", "lambda.mp4"];
    args.extend_from_slice(&common);
    args.extend_from_slice(&[
        "--storage",
        "s3://lambda-renders/joined",
        "--adapter",
        "lambda",
        "--function",
        "helios-infra",
        "--invoke-timeout",
        "60",
        "--concurrency",
        "2",
    ]);
    let out = env
        .cmd(&with_renderer(&args, &r))
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert_ok(&out);
    let mut local = vec!["render", "-o", "local.mp4"];
    local.extend_from_slice(&common);
    env.ok(&with_renderer(&local, &r));
    assert_eq!(
        framemd5(&env.path("lambda.mp4")),
        framemd5(&env.path("local.mp4"))
    );
    let id = env.status_ids()[0].clone();
    let st = env.status(&id);
    assert_eq!(st["stitch"], "bytes", "{st}");
    // Segments this small are joined by one assembly task on the function; the output is
    // the multipart upload's result, and nothing of the assembly is left behind.
    let listed = boto3(
        &s3,
        "lambda-renders",
        &format!(
            "r = s3.list_objects_v2(Bucket=B, Prefix='joined/jobs/{id}/')\nprint(json.dumps([o['Key'] for o in r.get('Contents', [])]))"
        ),
    );
    let keys: Vec<String> = serde_json::from_str(listed.trim()).unwrap();
    assert!(
        keys.contains(&format!("joined/jobs/{id}/output.mp4")),
        "{keys:?}"
    );
    assert!(!keys.iter().any(|k| k.contains("/assembly/")), "{keys:?}");
    // The assembly task answered through the function like a chunk: its report is there.
    assert!(
        keys.contains(&format!("joined/jobs/{id}/attempts/4/1.json")),
        "{keys:?}"
    );
}
