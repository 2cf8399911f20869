//! `helios-infra doctor`: named checks of everything a render needs, each passing or saying
//! what to fix — credentials and whose they are, the storage (a test object written, read
//! back and removed), and the workers of the chosen adapter, down to a ping answered by a
//! worker (its versions and capabilities). Exit 0 only when every check passes.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::adapter::{AdapterArgs, AdapterConfig, AdapterKind};
use crate::adapters::http::{ClientAuth, HttpAdapter};
use crate::adapters::lambda::{LambdaAdapter, LambdaOptions};
use crate::adapters::{ChunkRequest, WorkerAdapter};
use crate::error_chain as chain;
use crate::storage::{keys, Storage};
use crate::worker::ping::PingInfo;

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Short name (`storage`, `lambda function`, `ping`…).
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was found.
    pub detail: String,
    /// What to do about a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn pass(name: &str, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ok: true,
            detail: detail.into(),
            fix: None,
        }
    }

    fn fail(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ok: false,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    /// The check as one line for people.
    pub fn line(&self) -> String {
        match (&self.fix, self.ok) {
            (_, true) => format!("ok    {}: {}", self.name, self.detail),
            (Some(fix), false) => format!("FAIL  {}: {}\n      fix: {fix}", self.name, self.detail),
            (None, false) => format!("FAIL  {}: {}", self.name, self.detail),
        }
    }
}

/// Runs every check for `storage` and the adapter `args` choose.
pub async fn run(storage_url: &str, args: &AdapterArgs) -> Vec<Check> {
    let mut checks = Vec::new();
    let config = match args.config(None) {
        Ok(c) => c,
        Err(e) => {
            checks.push(Check::fail(
                "adapter",
                format!("{e:#}"),
                "give the adapter's flags as for `render` (see `helios-infra doctor --help`)",
            ));
            return checks;
        }
    };
    let aws = storage_url.starts_with("s3://") || config.kind == AdapterKind::Lambda;
    if aws {
        checks.push(aws_identity(config.region.as_deref()).await);
    }
    if storage_url.starts_with("gs://") {
        checks.push(google_identity());
    }
    checks.push(storage(storage_url).await);
    match config.kind {
        AdapterKind::Local => {
            let exe = std::env::current_exe().unwrap_or_else(|_| "helios-infra".into());
            let worker = crate::adapters::local::LocalAdapter::new(exe);
            checks.push(ping("ping (local worker)", &worker, None).await);
        }
        AdapterKind::Http | AdapterKind::Cloudrun => {
            if config.workers.is_empty() {
                checks.push(Check::fail(
                    "workers",
                    "no worker URL",
                    "give --workers URL,… (http) or --service URL (cloudrun)",
                ));
            }
            for url in &config.workers {
                checks.push(http_ping(args, &config, url).await);
            }
        }
        AdapterKind::Lambda => {
            let adapter = LambdaAdapter::new(LambdaOptions {
                function: config.function.clone().unwrap_or_default(),
                region: config.region.clone(),
                qualifier: config.qualifier.clone(),
                invoke_timeout: Duration::from_secs_f64(args.invoke_timeout.max(1.0)),
            })
            .await;
            let function = lambda_function(&adapter, &config, args).await;
            let found = function.ok;
            checks.push(function);
            if found {
                checks.push(ping("ping (lambda)", &adapter, None).await);
            }
        }
        AdapterKind::CloudrunJob | AdapterKind::Kubernetes => {
            // Their tasks answer through storage: the ping's report is read from there.
            let name = match config.kind {
                AdapterKind::Kubernetes => "ping (kubernetes job)",
                _ => "ping (cloud run job)",
            };
            match args.build(&config).await {
                Ok(adapter) => {
                    let id = format!("ping-{}", ulid::Ulid::new());
                    let url = Storage::open(storage_url)
                        .map(|s| s.url_for(&keys::job_spec(&id)))
                        .unwrap_or_default();
                    checks.push(ping(name, adapter.as_ref(), Some(url)).await);
                    if let Ok(s) = Storage::open(storage_url) {
                        let prefix = format!("jobs/{id}");
                        for k in s.list(&prefix).await.unwrap_or_default() {
                            let _ = s.delete(&k).await;
                        }
                        if let Some(dir) = s.local_path(&prefix) {
                            let _ = std::fs::remove_dir_all(dir);
                        }
                    }
                }
                Err(e) => checks.push(Check::fail(
                    name,
                    format!("{e:#}"),
                    "check the adapter's flags and credentials (see docs/deploy-*.md)",
                )),
            }
        }
    }
    checks
}

/// Whose AWS credentials these are (STS GetCallerIdentity).
async fn aws_identity(region: Option<&str>) -> Check {
    let shared = crate::net::aws_config(region).await;
    let sts = aws_sdk_sts::Client::new(&shared);
    match sts.get_caller_identity().send().await {
        Ok(who) => Check::pass(
            "aws credentials",
            format!(
                "{} (account {})",
                who.arn().unwrap_or("?"),
                who.account().unwrap_or("?")
            ),
        ),
        Err(e) => Check::fail(
            "aws credentials",
            format!(
                "no AWS credentials work: {}",
                chain(&e)
            ),
            "set AWS_PROFILE (after `aws sso login`) or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, and AWS_REGION",
        ),
    }
}

/// Which Google credentials would be used.
fn google_identity() -> Check {
    if let Ok(host) = std::env::var("STORAGE_EMULATOR_HOST") {
        return Check::pass(
            "google credentials",
            format!("none needed: STORAGE_EMULATOR_HOST={host} (an emulator)"),
        );
    }
    match std::env::var("GOOGLE_APPLICATION_CREDENTIALS") {
        Ok(path) => match std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        {
            Some(key) => Check::pass(
                "google credentials",
                format!(
                    "{} ({path})",
                    key["client_email"].as_str().unwrap_or("user credentials")
                ),
            ),
            None => Check::fail(
                "google credentials",
                format!("GOOGLE_APPLICATION_CREDENTIALS={path} is not a readable JSON key"),
                "point GOOGLE_APPLICATION_CREDENTIALS at a service-account key file",
            ),
        },
        Err(_) => Check::pass(
            "google credentials",
            "the metadata server's service account (on GCP), or gcloud's application default credentials",
        ),
    }
}

/// The storage: a test object written, read back, removed.
async fn storage(url: &str) -> Check {
    let name = "storage";
    let s = match Storage::open(url) {
        Ok(s) => s,
        Err(e) => {
            return Check::fail(
                name,
                e.to_string(),
                "give --storage s3://BUCKET/PREFIX, gs://BUCKET/PREFIX or a folder",
            )
        }
    };
    let key = format!("doctor/{}.txt", ulid::Ulid::new());
    let body = format!("helios-infra doctor {}", ulid::Ulid::new());
    let fix_for = |what: &str| {
        format!(
            "let these credentials {what} objects under {url} (for S3: s3:{} on arn:aws:s3:::BUCKET/PREFIX/*; see docs/deploy-aws.md)",
            match what {
                "write" => "PutObject",
                "read" => "GetObject",
                _ => "DeleteObject",
            }
        )
    };
    if let Err(e) = s.put(&key, body.clone().into_bytes().into()).await {
        let fix = match &e {
            crate::storage::StorageError::NotFound { .. } => {
                "create the bucket (`helios-infra deploy aws --bucket B …` does) or fix its name"
                    .to_string()
            }
            _ => fix_for("write"),
        };
        return Check::fail(
            name,
            format!("cannot write a test object to {url}: {e}"),
            fix,
        );
    }
    match s.get(&key).await {
        Ok(b) if b.as_ref() == body.as_bytes() => {}
        Ok(_) => {
            let _ = s.delete(&key).await;
            return Check::fail(
                name,
                format!("the test object read back from {url} has other bytes"),
                "check for a proxy or a storage emulator that changes objects",
            );
        }
        Err(e) => {
            let _ = s.delete(&key).await;
            return Check::fail(
                name,
                format!("cannot read the test object back from {url}: {e}"),
                fix_for("read"),
            );
        }
    }
    if let Err(e) = s.delete(&key).await {
        return Check::fail(
            name,
            format!("cannot delete the test object {key} from {url}: {e}"),
            fix_for("delete"),
        );
    }
    if let Some(dir) = s.local_path("doctor") {
        let _ = std::fs::remove_dir(dir);
    }
    Check::pass(
        name,
        format!("{url} is writable, readable and deletable (a test object, removed)"),
    )
}

/// A ping through `adapter`; `job` is the URL the answer goes under for adapters whose
/// workers answer through storage.
async fn ping(name: &str, adapter: &dyn WorkerAdapter, job: Option<String>) -> Check {
    let req = ChunkRequest {
        job: job.unwrap_or_default(),
        ..ChunkRequest::ping()
    };
    let answer = tokio::time::timeout(Duration::from_secs(600), adapter.run_chunk(&req)).await;
    match answer {
        Ok(Ok(report)) => match report.ping {
            Some(info) => describe(name, &info),
            None => Check::fail(
                name,
                "the worker answered without a ping report: it runs an older helios-infra",
                "deploy the current image (`helios-infra deploy …`)",
            ),
        },
        Ok(Err(f)) => Check::fail(
            name,
            format!("no answer: {}", f.message),
            "check that the worker is deployed and reachable with these credentials (see docs/deploy-*.md)",
        ),
        Err(_) => Check::fail(
            name,
            "no answer within 10 minutes",
            "check that the worker runs and can reach the storage",
        ),
    }
}

/// A ping's answer, with what would stop a render.
fn describe(name: &str, p: &PingInfo) -> Check {
    let detail = format!(
        "helios-infra {}, {}, {}, {} encoders, {} fonts, {} MB free in /tmp, {} CPUs, {} MB",
        p.version,
        p.chromium,
        p.ffmpeg.split(" Copyright").next().unwrap_or(&p.ffmpeg),
        p.encoders.len(),
        p.fonts,
        p.tmp_free_mb,
        p.cpus,
        p.memory_mb
    );
    if p.chromium.starts_with("missing") || p.ffmpeg.starts_with("missing") {
        return Check::fail(
            name,
            detail,
            "build the worker from the project's Dockerfile (it installs Chromium and FFmpeg)",
        );
    }
    if p.version != env!("CARGO_PKG_VERSION") {
        return Check::fail(
            name,
            format!(
                "{detail}; this orchestrator is {}",
                env!("CARGO_PKG_VERSION")
            ),
            "deploy an image built from the same release as this helios-infra",
        );
    }
    if p.tmp_free_mb < 512 {
        return Check::fail(
            name,
            detail,
            "give workers at least 512 MB of temporary space (Lambda: --ephemeral-storage)",
        );
    }
    Check::pass(name, detail)
}

async fn http_ping(args: &AdapterArgs, config: &AdapterConfig, url: &str) -> Check {
    let name = format!("ping ({url})");
    let auth =
        match (&args.worker_token, config.kind) {
            (Some(t), _) => ClientAuth::Bearer(t.clone()),
            (None, AdapterKind::Cloudrun) => {
                match crate::adapters::google_auth::GoogleIdTokens::from_env(url) {
                    Ok(t) => ClientAuth::Source(Arc::new(t)),
                    Err(e) => return Check::fail(
                        &name,
                        e.message,
                        "set GOOGLE_APPLICATION_CREDENTIALS, run on GCP, or give --worker-token",
                    ),
                }
            }
            (None, _) => ClientAuth::None,
        };
    match HttpAdapter::new("http", vec![url.to_string()], auth) {
        Ok(a) => ping(&name, &a, None).await,
        Err(e) => Check::fail(
            &name,
            e.to_string(),
            "give the worker's base URL, http(s)://host:port",
        ),
    }
}

/// The Lambda function: it exists, is Active, runs `worker lambda`, and has the memory and
/// timeout the render expects.
async fn lambda_function(
    adapter: &LambdaAdapter,
    config: &AdapterConfig,
    args: &AdapterArgs,
) -> Check {
    let name = "lambda function";
    let Some(function) = config.function.as_deref().filter(|f| !f.is_empty()) else {
        return Check::fail(name, "no function named", "give --function NAME|ARN");
    };
    let got = adapter
        .client()
        .get_function()
        .function_name(function)
        .set_qualifier(config.qualifier.clone())
        .send()
        .await;
    let f = match got {
        Ok(f) => f,
        Err(e) => {
            let text = chain(&e);
            let fix = if text.contains("ResourceNotFound") || text.contains("not found") {
                format!("deploy it: `helios-infra deploy aws --function {function} --bucket B --image URI`")
            } else {
                "let these credentials call lambda:GetFunction and lambda:InvokeFunction on it"
                    .into()
            };
            return Check::fail(name, format!("{function}: {text}"), fix);
        }
    };
    let Some(c) = f.configuration() else {
        return Check::fail(
            name,
            format!("{function}: no configuration in the answer"),
            "check the function in the AWS console",
        );
    };
    let mut problems = Vec::new();
    let state = c
        .state()
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|| "Active".into());
    if state != "Active" {
        problems.push(format!(
            "it is {state}{}",
            c.state_reason()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ));
    }
    let command: Vec<String> = c
        .image_config_response()
        .and_then(|i| i.image_config())
        .map(|i| i.command().to_vec())
        .unwrap_or_default();
    let is_image = c
        .package_type()
        .map(|p| p.as_str() == "Image")
        .unwrap_or(false);
    if is_image && !command.is_empty() && command != ["worker", "lambda"] {
        problems.push(format!(
            "its command is {command:?}, not [\"worker\", \"lambda\"]"
        ));
    }
    let memory = c.memory_size().unwrap_or(0);
    if let Some(want) = args.memory_mb {
        if memory != want as i32 {
            problems.push(format!(
                "its memory is {memory} MB, not the {want} MB given"
            ));
        }
    }
    let timeout = c.timeout().unwrap_or(0);
    if f64::from(timeout) > args.invoke_timeout {
        problems.push(format!(
            "its timeout ({timeout} s) is longer than --invoke-timeout ({} s): the orchestrator would give up on invocations Lambda still runs",
            args.invoke_timeout
        ));
    }
    let detail = format!(
        "{function}: {state}, {}, {memory} MB, timeout {timeout} s",
        if is_image {
            format!("image, command {command:?}")
        } else {
            "zip".into()
        }
    );
    if problems.is_empty() {
        Check::pass(name, detail)
    } else {
        Check::fail(
            name,
            format!("{detail}: {}", problems.join("; ")),
            format!(
                "run `helios-infra deploy aws --function {function} …` again, or fix it by hand"
            ),
        )
    }
}
