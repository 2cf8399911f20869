//! `helios-infra doctor`: every check passes against real peers — moto (S3, STS, the
//! Lambda control plane), cargo-lambda's Invoke emulator serving the real `worker lambda`,
//! `worker serve` over HTTP, a local worker — and each failing check is named with what to
//! fix: a missing bucket, writes denied, a missing function, a worker that does not answer.

mod common;

use common::peers::*;
use common::*;

/// `doctor` with `--json`: exit code and the checks by name.
fn doctor(
    env: &Env,
    args: &[&str],
    vars: &[(&'static str, String)],
) -> (i32, Vec<serde_json::Value>, String) {
    let mut all = vec!["--json", "doctor"];
    all.extend_from_slice(args);
    let out = env
        .cmd(&all)
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let checks = json_lines(&out.stdout);
    (
        out.status.code().unwrap_or(-1),
        checks,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

use common::named as check;

#[test]
fn a_local_setup_passes_and_a_worker_that_does_not_answer_is_named() {
    let env = Env::new();
    let (code, checks, stderr) = doctor(&env, &[], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("all 2 checks passed"), "{stderr}");
    let ping = check(&checks, "ping (local worker)");
    assert_eq!(ping["ok"], true);
    let detail = ping["detail"].as_str().unwrap();
    assert!(
        detail.contains("helios-infra ")
            && detail.contains("Chromium")
            && detail.contains("ffmpeg"),
        "{detail}"
    );
    // The storage's test object is gone.
    let left: Vec<_> = std::fs::read_dir(env.home().join("storage"))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");

    // An HTTP worker answers its ping (with its token); a wrong token and a port where
    // nothing listens fail, each saying what to fix.
    let worker = WorkerServer::start(Some("sesame"));
    let (code, checks, stderr) = doctor(
        &env,
        &[
            "--adapter",
            "http",
            "--workers",
            &worker.url,
            "--worker-token",
            "sesame",
        ],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(check(&checks, "ping (http")["ok"], true, "{checks:?}");

    let dead = format!("http://127.0.0.1:{}", free_port());
    let (code, checks, stderr) = doctor(
        &env,
        &[
            "--adapter",
            "http",
            "--workers",
            &format!("{},{dead}", worker.url),
            "--worker-token",
            "wrong",
        ],
        &[],
    );
    assert_eq!(code, 1, "{stderr}");
    let pings: Vec<_> = checks
        .iter()
        .filter(|c| c["name"].as_str().unwrap().starts_with("ping"))
        .collect();
    assert_eq!(pings.len(), 2, "{checks:?}");
    for p in pings {
        assert_eq!(p["ok"], false, "{p}");
        assert!(p["fix"].as_str().unwrap().contains("reachable"), "{p}");
    }
    assert!(stderr.contains("2 of 3 checks failed"), "{stderr}");
    // For people: a line per check, failures with what to fix.
    let out = env.run(&["doctor", "--adapter", "http", "--workers", &dead]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("ok    storage: ")
            && text.contains("FAIL  ping (")
            && text.contains("      fix: "),
        "{text}"
    );
}

#[test]
fn a_lambda_setup_passes_against_moto_and_the_emulator_and_failures_say_what_to_fix() {
    let s3 = moto("doctor-renders");
    let emulator = lambda_emulator();
    // The function as deploy makes it, in moto's Lambda control plane.
    boto3_aws(
        &s3,
        r#"
role = iam.create_role(RoleName='helios-worker', AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}))
lam.create_function(FunctionName='helios-infra', PackageType='Image', Code={'ImageUri': '123456789012.dkr.ecr.us-east-1.amazonaws.com/helios:1'}, Role=role['Role']['Arn'], MemorySize=2048, Timeout=600, ImageConfig={'Command': ['worker', 'lambda']})
"#,
    );
    // Lambda's control plane is moto's, its Invoke API the emulator's.
    let (control, invoke) = (s3.endpoint.clone(), emulator.endpoint.clone());
    let lambda = rule_proxy(move |head, _| {
        if head.starts_with("POST ") && head.contains("/invocations") {
            Route::To(invoke.clone())
        } else {
            Route::To(control.clone())
        }
    });
    let mut vars = lambda_env(&s3, &lambda);
    vars.push(("AWS_ENDPOINT_URL_STS", s3.endpoint.clone()));
    let _worker = lambda_worker(&emulator, "helios-infra", &vars);
    let env = Env::new();
    let flags = [
        "--storage",
        "s3://doctor-renders/team",
        "--adapter",
        "lambda",
        "--function",
        "helios-infra",
        "--memory-mb",
        "2048",
        "--invoke-timeout",
        "900",
    ];
    let (code, checks, stderr) = doctor(&env, &flags, &vars);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        check(&checks, "aws credentials")["detail"]
            .as_str()
            .unwrap()
            .contains("123456789012"),
        "{checks:?}"
    );
    let f = check(&checks, "lambda function");
    assert!(f["detail"].as_str().unwrap().contains("Active"), "{f}");
    let ping = check(&checks, "ping (lambda)");
    assert!(
        ping["detail"].as_str().unwrap().contains("2048 MB"),
        "the function's memory, as the worker sees it: {ping}"
    );
    let objects = boto3(
        &s3,
        "doctor-renders",
        "print(s3.list_objects_v2(Bucket=B).get('KeyCount', 0))",
    );
    assert_eq!(objects.trim(), "0", "the test object was removed");

    // A memory other than the function's is named.
    let mut other = flags.to_vec();
    other[7] = "4096";
    let (code, checks, _) = doctor(&env, &other, &vars);
    assert_eq!(code, 1);
    let f = check(&checks, "lambda function");
    assert!(
        f["detail"]
            .as_str()
            .unwrap()
            .contains("not the 4096 MB given"),
        "{f}"
    );

    // A function that does not exist.
    let mut missing = flags.to_vec();
    missing[5] = "no-such-function";
    let (code, checks, _) = doctor(&env, &missing, &vars);
    assert_eq!(code, 1);
    let f = check(&checks, "lambda function");
    assert_eq!(f["ok"], false);
    assert!(f["fix"].as_str().unwrap().contains("deploy aws"), "{f}");

    // A bucket that does not exist.
    let mut nobucket = flags.to_vec();
    nobucket[1] = "s3://no-such-bucket/team";
    let (code, checks, _) = doctor(&env, &nobucket, &vars);
    assert_eq!(code, 1);
    let st = check(&checks, "storage");
    assert_eq!(st["ok"], false);
    assert!(
        st["fix"].as_str().unwrap().contains("create the bucket"),
        "{st}"
    );

    // Writes denied by the bucket's policy (S3's AccessDenied for every PUT).
    let upstream = s3.endpoint.clone();
    let denying = rule_proxy(move |head, _| {
        if head.starts_with("PUT ") {
            Route::Answer(s3_access_denied())
        } else {
            Route::To(upstream.clone())
        }
    });
    let mut denied_vars = vars.clone();
    for (k, v) in denied_vars.iter_mut() {
        if *k == "AWS_ENDPOINT_URL_S3" {
            *v = denying.clone();
        }
    }
    let (code, checks, _) = doctor(&env, &flags, &denied_vars);
    assert_eq!(code, 1);
    let st = check(&checks, "storage");
    assert_eq!(st["ok"], false, "{st}");
    assert!(st["fix"].as_str().unwrap().contains("PutObject"), "{st}");
}

#[test]
fn a_cloud_run_setup_with_gcs_storage_passes_against_fake_gcs_and_a_worker_service() {
    let gcs = fake_gcs("doctor-gcs");
    let vars = vec![("STORAGE_EMULATOR_HOST", gcs.endpoint.clone())];
    // A `worker serve` standing in for the Cloud Run service (a token instead of Google ID
    // tokens), reaching the same bucket.
    let worker = WorkerServer::start_with_env(Some("sesame"), &vars);
    let env = Env::new();
    let (code, checks, stderr) = doctor(
        &env,
        &[
            "--storage",
            "gs://doctor-gcs/team",
            "--adapter",
            "cloudrun",
            "--service",
            &worker.url,
            "--worker-token",
            "sesame",
        ],
        &vars,
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        check(&checks, "google credentials")["detail"]
            .as_str()
            .unwrap()
            .contains("emulator"),
        "{checks:?}"
    );
    assert_eq!(check(&checks, "storage")["ok"], true);
    assert_eq!(check(&checks, "ping (")["ok"], true, "{checks:?}");
    assert!(
        gcs_objects(&gcs, "doctor-gcs", "team/").is_empty(),
        "the test object was removed"
    );
}
