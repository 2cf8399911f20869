//! `deploy aws` and `destroy aws` against moto (S3, IAM, STS and Lambda's control plane):
//! everything is created with the asked settings and a policy scoped to the bucket's
//! prefix; a second run writes nothing ("unchanged"); a changed setting is updated in place;
//! `--dry-run` creates nothing; then a real render runs on the deployed function (the
//! Invoke API of cargo-lambda's emulator serving `worker lambda`), and `destroy` removes
//! what deploy made.

mod common;

use std::sync::{Arc, Mutex};

use common::peers::*;
use common::*;

/// A call that changes state: anything but GET/HEAD and the Query APIs' Get*/List* actions.
fn is_write(head: &str, body: &[u8]) -> bool {
    let method = head.split_whitespace().next().unwrap_or("");
    if matches!(method, "GET" | "HEAD") || head.contains("/invocations") {
        return false;
    }
    let body = String::from_utf8_lossy(body);
    !(body.contains("Action=Get") || body.contains("Action=List"))
}

fn lines(out: &std::process::Output) -> Vec<serde_json::Value> {
    json_lines(&out.stdout)
}

#[test]
fn deploy_aws_is_idempotent_scoped_and_renders_then_destroy_removes_it() {
    let moto = moto("unrelated");
    let emulator = lambda_emulator();
    let writes: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = writes.clone();
    let (control, invoke) = (moto.endpoint.clone(), emulator.endpoint.clone());
    let proxy = rule_proxy(move |head, body| {
        if is_write(head, body) {
            let action = String::from_utf8_lossy(body)
                .split('&')
                .find(|p| p.starts_with("Action="))
                .map(str::to_string)
                .unwrap_or_else(|| head.lines().next().unwrap_or("").to_string());
            log.lock().unwrap().push(action);
        }
        if head.starts_with("POST ") && head.contains("/invocations") {
            Route::To(invoke.clone())
        } else {
            Route::To(control.clone())
        }
    });
    let vars = [
        ("AWS_ACCESS_KEY_ID", "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_ENDPOINT_URL", proxy.clone()),
    ];
    let env = Env::new();
    let run = |args: &[&str]| {
        let mut all = vec!["--json", "deploy", "aws"];
        all.extend_from_slice(args);
        env.cmd(&all)
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap()
    };
    let image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/helios-infra:1";
    let base = [
        "--bucket",
        "renders-x",
        "--image",
        image,
        "--function",
        "helios-infra",
        "--timeout",
        "600",
        "--concurrency",
        "5",
    ];

    // Dry run: every resource would be created, nothing is.
    let mut dry = base.to_vec();
    dry.extend(["--memory", "2048", "--dry-run"]);
    let out = run(&dry);
    assert_ok(&out);
    let steps = lines(&out);
    let created: Vec<_> = steps
        .iter()
        .filter(|s| s["event"] == "resource")
        .map(|s| {
            (
                s["step"]["resource"].as_str().unwrap().to_string(),
                s["step"]["change"].clone(),
            )
        })
        .collect();
    assert_eq!(created.len(), 5, "{steps:?}");
    assert!(created.iter().all(|(_, c)| c == "created"), "{created:?}");
    let policy = steps
        .iter()
        .find(|s| s["step"]["resource"] == "policy helios-worker/helios-worker")
        .unwrap()["step"]["desired"]
        .clone();
    assert!(policy
        .to_string()
        .contains("arn:aws:s3:::renders-x/helios/jobs/*/attempts/*"));
    assert_eq!(
        writes.lock().unwrap().len(),
        0,
        "{:?}",
        writes.lock().unwrap()
    );
    let buckets = boto3_aws(
        &moto,
        "print(sorted(b['Name'] for b in s3.list_buckets()['Buckets']))",
    );
    assert_eq!(buckets.trim(), "['unrelated']");

    // The deployment.
    let mut first = base.to_vec();
    first.extend(["--memory", "2048"]);
    let out = run(&first);
    assert_ok(&out);
    let done = lines(&out);
    let flags = done.iter().find(|l| l["event"] == "deployed").unwrap()["render_flags"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        flags.contains("--storage s3://renders-x/helios --adapter lambda --function helios-infra"),
        "{flags}"
    );
    let state = boto3_aws(
        &moto,
        r#"
f = lam.get_function(FunctionName='helios-infra')
c = f['Configuration']
p = iam.get_role_policy(RoleName='helios-worker', PolicyName='helios-worker')['PolicyDocument']
r = iam.get_role(RoleName='helios-worker')['Role']
print(json.dumps({
  'package': c['PackageType'], 'command': c['ImageConfigResponse']['ImageConfig']['Command'],
  'memory': c['MemorySize'], 'timeout': c['Timeout'], 'tmp': c['EphemeralStorage']['Size'],
  'role': c['Role'], 'image': f['Code'].get('ImageUri'),
  'concurrency': lam.get_function_concurrency(FunctionName='helios-infra').get('ReservedConcurrentExecutions'),
  'policy': p, 'trust': r['AssumeRolePolicyDocument'],
  'buckets': sorted(b['Name'] for b in s3.list_buckets()['Buckets'])}))
"#,
    );
    let state: serde_json::Value = serde_json::from_str(state.trim()).unwrap();
    assert_eq!(state["package"], "Image");
    assert_eq!(state["command"], serde_json::json!(["worker", "lambda"]));
    assert_eq!(
        (
            state["memory"].as_i64(),
            state["timeout"].as_i64(),
            state["tmp"].as_i64()
        ),
        (Some(2048), Some(600), Some(4096))
    );
    assert!(
        state["role"]
            .as_str()
            .unwrap()
            .ends_with(":role/helios-worker"),
        "{state}"
    );
    assert_eq!(state["image"], image);
    assert_eq!(state["concurrency"], 5);
    assert_eq!(
        state["buckets"],
        serde_json::json!(["renders-x", "unrelated"])
    );
    assert_eq!(
        state["trust"]["Statement"][0]["Principal"]["Service"],
        "lambda.amazonaws.com"
    );
    for s in state["policy"]["Statement"].as_array().unwrap() {
        for a in s["Action"].as_array().unwrap() {
            assert!(!a.as_str().unwrap().contains('*'), "a wildcard action: {a}");
        }
        for r in s["Resource"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| vec![s["Resource"].clone()])
        {
            let r = r.as_str().unwrap();
            assert!(
                r.starts_with("arn:aws:s3:::renders-x/helios/")
                    || r.starts_with("arn:aws:logs:us-east-1:123456789012:"),
                "a resource outside the prefix: {r}"
            );
        }
    }

    // Again: nothing is written.
    writes.lock().unwrap().clear();
    let out = run(&first);
    assert_ok(&out);
    assert_eq!(*writes.lock().unwrap(), Vec::<String>::new());
    let again = lines(&out);
    assert_eq!(
        again.iter().find(|l| l["event"] == "deployed").unwrap()["unchanged"],
        true
    );
    assert!(again
        .iter()
        .filter(|l| l["event"] == "resource")
        .all(|l| l["step"]["change"] == "unchanged"));

    // A changed memory is updated in place, and only the function is written.
    let mut bigger = base.to_vec();
    bigger.extend(["--memory", "3008"]);
    let out = run(&bigger);
    assert_ok(&out);
    let f = lines(&out)
        .into_iter()
        .find(|l| l["step"]["resource"] == "function helios-infra")
        .unwrap();
    assert_eq!(f["step"]["change"], "updated");
    assert_eq!(f["step"]["settings"], serde_json::json!(["memory"]));
    let memory = boto3_aws(
        &moto,
        "print(lam.get_function(FunctionName='helios-infra')['Configuration']['MemorySize'])",
    );
    assert_eq!(memory.trim(), "3008");
    assert!(
        writes
            .lock()
            .unwrap()
            .iter()
            .all(|w| w.contains("/functions/helios-infra")),
        "{:?}",
        writes.lock().unwrap()
    );

    // A real render with the printed flags: the function's invocations reach the emulator's
    // `worker lambda`; storage is the deployed bucket.
    let mut worker_env = s3_env(&moto);
    worker_env.push(("AWS_ENDPOINT_URL_LAMBDA", proxy.clone()));
    let _worker = lambda_worker(&emulator, "helios-infra", &worker_env);
    let r = ffmpeg_renderer();
    let mut args = vec![
        "render",
        "-o",
        "cloud.mp4",
        "--frames",
        "0..24",
        "--size",
        "64x64",
        "--chunks",
        "2",
        "--lossless",
    ];
    let flag_words: Vec<&str> = flags.split_whitespace().collect();
    args.extend(flag_words.iter().copied());
    let out = env
        .cmd(&with_renderer(&args, &r))
        .envs(worker_env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert_ok(&out);
    assert_eq!(probe_stream(&env.path("cloud.mp4")).0, 24);

    // destroy: the function, the policy and the role; the bucket is kept, and with
    // --delete-bucket refused while it holds the render, unless --force.
    let destroy = |extra: &[&str]| {
        let mut all = vec![
            "--json",
            "destroy",
            "aws",
            "--function",
            "helios-infra",
            "--bucket",
            "renders-x",
        ];
        all.extend_from_slice(extra);
        env.cmd(&all)
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap()
    };
    let out = destroy(&[]);
    assert_ok(&out);
    let changes: Vec<(String, String)> = lines(&out)
        .iter()
        .map(|l| {
            (
                l["step"]["resource"].as_str().unwrap().to_string(),
                l["step"]["change"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            ("function helios-infra".to_string(), "deleted".to_string()),
            (
                "policy helios-worker/helios-worker".into(),
                "deleted".into()
            ),
            ("role helios-worker".into(), "deleted".into()),
            ("bucket renders-x".into(), "kept".into()),
        ]
    );
    let out = destroy(&["--delete-bucket"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    let out = destroy(&["--delete-bucket", "--force"]);
    assert_ok(&out);
    let left = boto3_aws(
        &moto,
        "print(sorted(b['Name'] for b in s3.list_buckets()['Buckets']), [f['FunctionName'] for f in lam.list_functions()['Functions']], [r['RoleName'] for r in iam.list_roles()['Roles']])",
    );
    assert_eq!(left.trim(), "['unrelated'] [] []");
}
