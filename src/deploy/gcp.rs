//! The Google Cloud deployment: the workers' service account, the bucket (created if
//! missing) with `roles/storage.objectUser` for the workers and the orchestrator on that
//! bucket only, the Cloud Run service running `worker serve --no-auth` (private: IAM checks
//! the caller's ID token), the Cloud Run Job running `worker run` for `--adapter
//! cloudrun-job`, and the orchestrator's bindings on both. The same documents as
//! docs/deploy-gcp.md, read and compared field by field: only what differs is written.
//!
//! Clients: Cloud Run's and IAM's generated SDK clients (the Cloud Run Jobs adapter uses
//! the same crate), and Cloud Storage's JSON API through the same endpoint rules as the
//! `gs://` storage (`STORAGE_EMULATOR_HOST`, `GOOGLE_BASE_URL`).

use std::future::Future;
use std::time::Duration;

use google_cloud_gax::error::rpc::Code;
use google_cloud_iam_admin_v1::client::Iam;
use google_cloud_iam_v1::model::{Binding, Policy};
use google_cloud_lro::Poller;
use google_cloud_run_v2::client::{Jobs, Services};
use google_cloud_run_v2::model::task_template::Retries;
use google_cloud_run_v2::model::{
    Container, ContainerPort, ExecutionTemplate, Job, ResourceRequirements, RevisionScaling,
    RevisionTemplate, Service, TaskTemplate,
};
use serde_json::{json, Value};

use super::{chain, Change, DeployError, Step};

/// The service's container arguments (after the image's `helios-infra` entrypoint). The
/// worker's own token check is off because Cloud Run's IAM checks every caller first.
pub const SERVICE_ARGS: [&str; 3] = ["worker", "serve", "--no-auth"];
/// The job's container arguments: one chunk a task, retried by the orchestrator.
pub const JOB_ARGS: [&str; 2] = ["worker", "run"];
/// The workers' service account id.
pub const WORKER_ACCOUNT: &str = "helios-worker";
/// The role of the workers (and the orchestrator) on the bucket.
pub const BUCKET_ROLE: &str = "roles/storage.objectUser";
/// The orchestrator's role on the service.
pub const SERVICE_ROLE: &str = "roles/run.invoker";
/// The orchestrator's role on the job: run with overrides, read and cancel executions.
pub const JOB_ROLE: &str = "roles/run.developer";
/// The port `worker serve` listens on (Cloud Run sets `PORT` to it).
pub const PORT: i32 = 8080;
const DISPLAY_NAME: &str = "helios-infra workers";

/// Endpoints of Google's APIs (a plain `http://` one is an emulator, called without
/// credentials).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GcpEndpoints {
    /// Cloud Run Admin API (default `https://run.googleapis.com`).
    pub cloud_run: Option<String>,
    /// IAM API (default `https://iam.googleapis.com`).
    pub iam: Option<String>,
}

/// What `deploy gcp` is asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct GcpDeployment {
    /// Project id.
    pub project: String,
    /// Region of the service and the job (and of the bucket, when it is created).
    pub region: String,
    /// Container image (Artifact Registry) built from this repository's Dockerfile.
    pub image: String,
    /// Bucket name.
    pub bucket: String,
    /// Object prefix of the storage under the bucket (may be empty).
    pub prefix: String,
    /// Cloud Run service name.
    pub service: String,
    /// Cloud Run Job name.
    pub job: String,
    /// CPU limit of an instance or task (`"2"`, `"4"`, `"1000m"`).
    pub cpu: String,
    /// Memory limit (`"4Gi"`).
    pub memory: String,
    /// Request timeout of the service and task timeout of the job, in seconds.
    pub timeout_s: i32,
    /// Most instances of the service, and most parallel tasks of the job.
    pub max_instances: Option<i32>,
    /// The orchestrator's IAM member (`serviceAccount:…`, `user:…`); else whose credentials
    /// these are.
    pub invoker: Option<String>,
    /// API endpoints.
    pub endpoints: GcpEndpoints,
}

fn is_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && !s.ends_with('-')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

impl GcpDeployment {
    /// The workers' service account email.
    pub fn worker_email(&self) -> String {
        format!("{WORKER_ACCOUNT}@{}.iam.gserviceaccount.com", self.project)
    }

    fn parent(&self) -> String {
        format!("projects/{}/locations/{}", self.project, self.region)
    }

    /// The service's full name.
    pub fn service_name(&self) -> String {
        format!("{}/services/{}", self.parent(), self.service)
    }

    /// The job's full name.
    pub fn job_name(&self) -> String {
        format!("{}/jobs/{}", self.parent(), self.job)
    }

    /// Checks the settings against Cloud Run's rules.
    pub fn validate(&self) -> Result<(), DeployError> {
        let bad = |m: String| Err(DeployError::Invalid(m));
        if !is_name(&self.project, 30) && !self.project.contains(':') {
            return bad(format!(
                "--project {:?} is not a project id (lowercase letters, digits and hyphens; GOOGLE_CLOUD_PROJECT may give it)",
                self.project
            ));
        }
        if self.region.is_empty() || self.region.contains('/') {
            return bad(format!(
                "--region {:?} is not a region (e.g. us-central1)",
                self.region
            ));
        }
        if !is_name(&self.service, 49) {
            return bad(format!("--service {:?} is not a Cloud Run service name (lowercase letters, digits and hyphens, at most 49, starting with a letter)", self.service));
        }
        if !is_name(&self.job, 63) {
            return bad(format!("--job {:?} is not a Cloud Run job name (lowercase letters, digits and hyphens, at most 63, starting with a letter)", self.job));
        }
        if self.bucket.is_empty() || self.bucket.contains('/') {
            return bad(format!(
                "--bucket {:?} is not a bucket name (give the prefix with --prefix)",
                self.bucket
            ));
        }
        if self.image.is_empty() {
            return bad("--image needs the container image (Artifact Registry)".into());
        }
        if !(1..=3600).contains(&self.timeout_s) {
            return bad(format!(
                "--timeout {} is outside Cloud Run's 1-3600 seconds for a request",
                self.timeout_s
            ));
        }
        if self.cpu.is_empty() || self.memory.is_empty() {
            return bad("--cpu and --memory need a value (e.g. 2 and 4Gi)".into());
        }
        if self.max_instances.is_some_and(|n| n < 1) {
            return bad("--max-instances must be at least 1".into());
        }
        if let Some(m) = &self.invoker {
            if !m.contains(':') && !m.contains('@') {
                return bad(format!("--invoker {m:?} is not an IAM member (serviceAccount:EMAIL, user:EMAIL or an email)"));
            }
        }
        Ok(())
    }

    /// The storage URL renders use: `gs://BUCKET/PREFIX`.
    pub fn storage_url(&self) -> String {
        let p = self.prefix.trim_matches('/');
        if p.is_empty() {
            format!("gs://{}", self.bucket)
        } else {
            format!("gs://{}/{p}", self.bucket)
        }
    }

    /// The `render` flags for the service, given its URL.
    pub fn service_flags(&self, uri: Option<&str>) -> String {
        format!(
            "--storage {} --adapter cloudrun --service {}",
            self.storage_url(),
            uri.filter(|u| !u.is_empty())
                .unwrap_or("URL_OF_THE_SERVICE")
        )
    }

    /// The `render` flags for the job.
    pub fn job_flags(&self) -> String {
        format!(
            "--storage {} --adapter cloudrun-job --cloud-run-job {} --project {} --region {}",
            self.storage_url(),
            self.job,
            self.project,
            self.region
        )
    }

    fn limits(&self) -> [(&str, &str); 2] {
        [("cpu", self.cpu.as_str()), ("memory", self.memory.as_str())]
    }

    fn timeout(&self) -> google_cloud_wkt::Duration {
        google_cloud_wkt::Duration::clamp(self.timeout_s as i64, 0)
    }
}

/// What a deploy made, beside its steps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GcpOutcome {
    /// Each resource's step.
    pub steps: Vec<Step>,
    /// The service's URL (unknown in a dry run before it exists).
    pub service_uri: Option<String>,
}

/// The clients of a deployment.
struct Clients {
    services: Services,
    jobs: Jobs,
    iam: Iam,
    storage: StorageApi,
}

/// Cloud Storage's JSON API for buckets and their IAM policy.
struct StorageApi {
    http: reqwest::Client,
    base: String,
    creds: Option<google_cloud_auth::credentials::AccessTokenCredentials>,
}

/// `cloud-platform`: bucket IAM needs more than the objects' read/write scope.
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

impl StorageApi {
    fn new() -> Result<Self, DeployError> {
        let (base, creds) = crate::storage::gcs::endpoint(SCOPE).map_err(|e| {
            DeployError::Invalid(format!("{e}: set GOOGLE_APPLICATION_CREDENTIALS to a key file, or run `gcloud auth application-default login`"))
        })?;
        let http = crate::net::http_client()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| DeployError::Invalid(format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            creds,
        })
    }

    /// Sends a request (with a token unless an emulator); the status and the JSON body.
    async fn call(
        &self,
        req: reqwest::RequestBuilder,
        resource: &str,
        action: &'static str,
    ) -> Result<(reqwest::StatusCode, Value), DeployError> {
        let req = match &self.creds {
            None => req,
            Some(c) => {
                let t = c.access_token().await.map_err(|e| DeployError::Api {
                    resource: resource.to_string(),
                    action,
                    message: chain(&e),
                    fix: CREDENTIALS_FIX.into(),
                })?;
                req.bearer_auth(t.token)
            }
        };
        let resp = req.send().await.map_err(|e| DeployError::Api {
            resource: resource.to_string(),
            action,
            message: chain(&e),
            fix: "check the network and GOOGLE_BASE_URL / STORAGE_EMULATOR_HOST".into(),
        })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, body))
    }

    fn bucket_url(&self, bucket: &str) -> String {
        format!(
            "{}/storage/v1/b/{}",
            self.base,
            crate::storage::gcs::encode(bucket)
        )
    }
}

const CREDENTIALS_FIX: &str = "check the credentials (GOOGLE_APPLICATION_CREDENTIALS or `gcloud auth application-default login`) and that they may manage service accounts (roles/iam.serviceAccountAdmin), Cloud Run (roles/run.admin), act as the workers' account (roles/iam.serviceAccountUser) and set the bucket's IAM policy (roles/storage.admin)";

/// The message of a JSON API error body.
fn json_error(status: reqwest::StatusCode, body: &Value) -> String {
    match body["error"]["message"].as_str() {
        Some(m) => format!("{status}: {m}"),
        None => format!(
            "{status}: {}",
            body.to_string().chars().take(300).collect::<String>()
        ),
    }
}

fn gax_code(e: &google_cloud_gax::error::Error) -> Option<Code> {
    e.status().map(|s| s.code).or_else(|| {
        e.http_status_code().map(|c| match c {
            404 => Code::NotFound,
            403 => Code::PermissionDenied,
            409 => Code::Aborted,
            400 => Code::InvalidArgument,
            _ => Code::Unknown,
        })
    })
}

fn is_not_found(e: &google_cloud_gax::error::Error) -> bool {
    gax_code(e) == Some(Code::NotFound)
}

fn gax_failure(
    resource: &str,
    action: &'static str,
    e: &google_cloud_gax::error::Error,
    fix: &str,
) -> DeployError {
    let text = chain(e);
    let fix = if text.contains("SERVICE_DISABLED") || text.contains("has not been used in project")
    {
        "enable the APIs first: gcloud services enable run.googleapis.com iam.googleapis.com storage.googleapis.com".to_string()
    } else if gax_code(e) == Some(Code::PermissionDenied) {
        CREDENTIALS_FIX.to_string()
    } else {
        fix.to_string()
    };
    DeployError::Api {
        resource: resource.to_string(),
        action,
        message: text,
        fix,
    }
}

/// Runs `call` again while a service account made moments ago is not yet known to the
/// service being called (Google says so with INVALID_ARGUMENT / NOT_FOUND for up to about
/// a minute). Only when `fresh`: an account that existed before is no excuse.
async fn while_propagating<T, F, Fut>(fresh: bool, mut call: F) -> google_cloud_gax::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = google_cloud_gax::Result<T>>,
{
    let mut wait = Duration::from_secs(2);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        match call().await {
            Err(e)
                if fresh
                    && matches!(gax_code(&e), Some(Code::InvalidArgument | Code::NotFound))
                    && std::time::Instant::now() + wait < deadline =>
            {
                tracing::info!("the new service account is not visible yet: {}", chain(&e));
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(20));
            }
            r => return r,
        }
    }
}

impl Clients {
    async fn new(endpoints: &GcpEndpoints) -> Result<Self, DeployError> {
        macro_rules! client {
            ($t:ty, $endpoint:expr) => {{
                let endpoint: Option<&String> = $endpoint;
                crate::net::use_ring();
                let mut b = <$t>::builder();
                if let Some(ep) = endpoint {
                    b = b.with_endpoint(ep.trim_end_matches('/'));
                }
                if endpoint.is_some_and(|e| e.starts_with("http://")) {
                    b = b.with_credentials(
                        google_cloud_auth::credentials::anonymous::Builder::new().build(),
                    );
                }
                {
                    use google_cloud_gax::polling_error_policy::{
                        Aip194Strict, PollingErrorPolicyExt,
                    };
                    // A revision that never becomes ready is reported by the operation;
                    // one that hangs is not waited on forever.
                    b = b.with_polling_error_policy(
                        Aip194Strict.with_time_limit(Duration::from_secs(900)),
                    );
                }
                b.build().await.map_err(|e| {
                    DeployError::Invalid(format!(
                        "no Google credentials for {} ({}): set GOOGLE_APPLICATION_CREDENTIALS to a key file, or run `gcloud auth application-default login`",
                        stringify!($t),
                        chain(&e)
                    ))
                })?
            }};
        }
        Ok(Self {
            services: client!(Services, endpoints.cloud_run.as_ref()),
            jobs: client!(Jobs, endpoints.cloud_run.as_ref()),
            iam: client!(Iam, endpoints.iam.as_ref()),
            storage: StorageApi::new()?,
        })
    }
}

/// The orchestrator's IAM member: `--invoker`, else the service account of
/// GOOGLE_APPLICATION_CREDENTIALS, else the metadata server's account.
async fn invoker_member(flag: Option<&str>) -> Result<String, DeployError> {
    if let Some(m) = flag.filter(|m| !m.is_empty()) {
        return Ok(if m.contains(':') {
            m.to_string()
        } else {
            format!("serviceAccount:{}", m.to_lowercase())
        });
    }
    let ask = |why: String| {
        DeployError::Invalid(format!(
            "cannot tell who will render ({why}): pass --invoker serviceAccount:EMAIL (or user:EMAIL), the identity the orchestrator runs as"
        ))
    };
    if let Some(path) = std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").filter(|p| !p.is_empty())
    {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| ask(format!("{}: {e}", std::path::Path::new(&path).display())))?;
        let key: Value = serde_json::from_str(&text)
            .map_err(|e| ask(format!("GOOGLE_APPLICATION_CREDENTIALS is not JSON: {e}")))?;
        return match key["type"].as_str() {
            Some("service_account") => key["client_email"]
                .as_str()
                .map(|e| format!("serviceAccount:{}", e.to_lowercase()))
                .ok_or_else(|| ask("the key has no client_email".into())),
            Some("impersonated_service_account") => key["service_account_impersonation_url"]
                .as_str()
                .and_then(|u| u.rsplit('/').next())
                .and_then(|s| s.split(':').next())
                .map(|e| format!("serviceAccount:{}", e.to_lowercase()))
                .ok_or_else(|| ask("the impersonation URL names no account".into())),
            other => Err(ask(format!(
                "GOOGLE_APPLICATION_CREDENTIALS holds {} credentials",
                other.unwrap_or("unknown")
            ))),
        };
    }
    crate::net::use_ring();
    let signer = google_cloud_auth::credentials::Builder::default()
        .build_signer()
        .map_err(|e| ask(e.to_string()))?;
    let email = tokio::time::timeout(Duration::from_secs(10), signer.client_email())
        .await
        .map_err(|_| ask("no metadata server answered".into()))?
        .map_err(|e| ask(e.to_string()))?;
    Ok(format!("serviceAccount:{}", email.to_lowercase()))
}

/// Applies (or with `dry_run`, compares) the deployment.
pub async fn apply(d: &GcpDeployment, dry_run: bool) -> Result<GcpOutcome, DeployError> {
    d.validate()?;
    let invoker = invoker_member(d.invoker.as_deref()).await?;
    let c = Clients::new(&d.endpoints).await?;
    let mut steps = Vec::new();
    let (step, fresh) = service_account(&c, d, dry_run).await?;
    steps.push(step);
    let bucket_step = bucket(&c, d, dry_run).await?;
    let bucket_new = bucket_step.change == Change::Created;
    steps.push(bucket_step);
    let members = [
        format!("serviceAccount:{}", d.worker_email()),
        invoker.clone(),
    ];
    steps.push(bucket_policy(&c, d, &members, bucket_new && dry_run, fresh, dry_run).await?);
    let (step, service) = service(&c, d, fresh, dry_run).await?;
    let service_new = step.change == Change::Created;
    steps.push(step);
    let job_step = job(&c, d, fresh, dry_run).await?;
    let job_new = job_step.change == Change::Created;
    steps.push(job_step);
    steps.push(
        run_policy(
            &c,
            &Target::Service(d.service_name()),
            &format!("service {} {SERVICE_ROLE}", d.service),
            SERVICE_ROLE,
            &invoker,
            service_new && dry_run,
            dry_run,
        )
        .await?,
    );
    steps.push(
        run_policy(
            &c,
            &Target::Job(d.job_name()),
            &format!("job {} {JOB_ROLE}", d.job),
            JOB_ROLE,
            &invoker,
            job_new && dry_run,
            dry_run,
        )
        .await?,
    );
    Ok(GcpOutcome {
        steps,
        service_uri: service.map(|s| s.uri).filter(|u| !u.is_empty()),
    })
}

/// The workers' service account; `true` when this run created it.
async fn service_account(
    c: &Clients,
    d: &GcpDeployment,
    dry_run: bool,
) -> Result<(Step, bool), DeployError> {
    let email = d.worker_email();
    let resource = format!("service account {email}");
    let name = format!("projects/{}/serviceAccounts/{email}", d.project);
    let desired = json!({"accountId": WORKER_ACCOUNT, "email": email, "displayName": DISPLAY_NAME});
    let got = c.iam.get_service_account().set_name(&name).send().await;
    let (change, fresh) = match got {
        Ok(sa) if sa.disabled => {
            if !dry_run {
                c.iam
                    .enable_service_account()
                    .set_name(&name)
                    .send()
                    .await
                    .map_err(|e| {
                        gax_failure(&resource, "serviceAccounts.enable", &e, CREDENTIALS_FIX)
                    })?;
            }
            (Change::Updated(vec!["enabled".into()]), false)
        }
        Ok(_) => (Change::Unchanged, false),
        Err(e) if is_not_found(&e) => {
            if !dry_run {
                let made = c
                    .iam
                    .create_service_account()
                    .set_name(format!("projects/{}", d.project))
                    .set_account_id(WORKER_ACCOUNT)
                    .set_service_account(
                        google_cloud_iam_admin_v1::model::ServiceAccount::new()
                            .set_display_name(DISPLAY_NAME)
                            .set_description("Runs helios-infra workers (worker serve / worker run) on Cloud Run"),
                    )
                    .send()
                    .await;
                match made {
                    Ok(_) => {}
                    // Another run made it in between: as good as ours.
                    Err(e) if gax_code(&e) == Some(Code::AlreadyExists) => {}
                    Err(e) => {
                        return Err(gax_failure(
                            &resource,
                            "serviceAccounts.create",
                            &e,
                            CREDENTIALS_FIX,
                        ))
                    }
                }
            }
            (Change::Created, true)
        }
        Err(e) => {
            return Err(gax_failure(
                &resource,
                "serviceAccounts.get",
                &e,
                "check --project and the credentials",
            ))
        }
    };
    Ok((
        Step {
            resource,
            change,
            desired: Some(desired),
        },
        fresh,
    ))
}

/// The bucket, created in the region when missing.
async fn bucket(c: &Clients, d: &GcpDeployment, dry_run: bool) -> Result<Step, DeployError> {
    let resource = format!("bucket {}", d.bucket);
    let url = c.storage.bucket_url(&d.bucket);
    let (status, body) = c
        .storage
        .call(c.storage.http.get(&url), &resource, "buckets.get")
        .await?;
    let change = if status.is_success() {
        Change::Unchanged
    } else if status == reqwest::StatusCode::NOT_FOUND {
        if !dry_run {
            let create = c
                .storage
                .http
                .post(format!("{}/storage/v1/b", c.storage.base))
                .query(&[("project", d.project.as_str())])
                .json(&json!({"name": d.bucket, "location": d.region}));
            let (status, body) = c.storage.call(create, &resource, "buckets.insert").await?;
            if !status.is_success() && status != reqwest::StatusCode::CONFLICT {
                return Err(DeployError::Api {
                    resource,
                    action: "buckets.insert",
                    message: json_error(status, &body),
                    fix: "choose another bucket name (they are global) or check the credentials"
                        .into(),
                });
            }
        }
        Change::Created
    } else {
        return Err(DeployError::Api {
            resource,
            action: "buckets.get",
            message: json_error(status, &body),
            fix: "the bucket may belong to another project: choose another name, or check the credentials".into(),
        });
    };
    Ok(Step {
        resource,
        change,
        desired: Some(json!({"name": d.bucket, "location": d.region, "project": d.project})),
    })
}

/// Adds `members` to `role`'s unconditional binding of a JSON policy (GCS's shape); the
/// members added.
fn add_members_json(policy: &mut Value, role: &str, members: &[String]) -> Vec<String> {
    if !policy["bindings"].is_array() {
        policy["bindings"] = json!([]);
    }
    let Some(bindings) = policy["bindings"].as_array_mut() else {
        return Vec::new();
    };
    let pos = bindings
        .iter()
        .position(|b| b["role"] == role && b.get("condition").is_none());
    let binding = match pos {
        Some(i) => &mut bindings[i],
        None => {
            bindings.push(json!({"role": role, "members": []}));
            let last = bindings.len() - 1;
            &mut bindings[last]
        }
    };
    if !binding["members"].is_array() {
        binding["members"] = json!([]);
    }
    let mut added = Vec::new();
    if let Some(list) = binding["members"].as_array_mut() {
        for m in members {
            if !list.iter().any(|x| x.as_str() == Some(m.as_str())) {
                list.push(Value::String(m.clone()));
                added.push(m.clone());
            }
        }
    }
    if added.is_empty() && pos.is_none() {
        // Nothing to add: the empty binding just pushed would be noise.
        bindings.pop();
    }
    added
}

/// `roles/storage.objectUser` on the bucket for the workers and the orchestrator.
async fn bucket_policy(
    c: &Clients,
    d: &GcpDeployment,
    members: &[String],
    bucket_missing: bool,
    fresh: bool,
    dry_run: bool,
) -> Result<Step, DeployError> {
    let resource = format!("bucket {} {BUCKET_ROLE}", d.bucket);
    let desired = Some(json!({"role": BUCKET_ROLE, "members": members}));
    if bucket_missing {
        return Ok(Step {
            resource,
            change: Change::Created,
            desired,
        });
    }
    let url = format!("{}/iam", c.storage.bucket_url(&d.bucket));
    let mut wait = Duration::from_secs(2);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut conflicts = 0;
    loop {
        let (status, mut policy) = c
            .storage
            .call(
                c.storage
                    .http
                    .get(&url)
                    .query(&[("optionsRequestedPolicyVersion", "3")]),
                &resource,
                "buckets.getIamPolicy",
            )
            .await?;
        if !status.is_success() {
            return Err(DeployError::Api {
                resource,
                action: "buckets.getIamPolicy",
                message: json_error(status, &policy),
                fix: CREDENTIALS_FIX.into(),
            });
        }
        let added = add_members_json(&mut policy, BUCKET_ROLE, members);
        if added.is_empty() {
            return Ok(Step {
                resource,
                change: Change::Unchanged,
                desired,
            });
        }
        let change = Change::Updated(added.iter().map(|m| format!("+{m}")).collect());
        if dry_run {
            return Ok(Step {
                resource,
                change,
                desired,
            });
        }
        let (status, body) = c
            .storage
            .call(
                c.storage.http.put(&url).json(&policy),
                &resource,
                "buckets.setIamPolicy",
            )
            .await?;
        if status.is_success() {
            return Ok(Step {
                resource,
                change,
                desired,
            });
        }
        // Someone else wrote the policy since we read it (etag): read it again.
        if status == reqwest::StatusCode::PRECONDITION_FAILED && conflicts < 3 {
            conflicts += 1;
            continue;
        }
        // A service account made moments ago is not yet known to Cloud Storage.
        if fresh
            && status == reqwest::StatusCode::BAD_REQUEST
            && std::time::Instant::now() + wait < deadline
        {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(20));
            continue;
        }
        return Err(DeployError::Api {
            resource,
            action: "buckets.setIamPolicy",
            message: json_error(status, &body),
            fix: CREDENTIALS_FIX.into(),
        });
    }
}

/// The service's revision template as wanted.
fn service_template(d: &GcpDeployment) -> RevisionTemplate {
    let mut t = RevisionTemplate::new()
        .set_service_account(d.worker_email())
        .set_max_instance_request_concurrency(1)
        .set_timeout(d.timeout())
        .set_containers([Container::new()
            .set_image(&d.image)
            .set_args(SERVICE_ARGS)
            .set_ports([ContainerPort::new()
                .set_name("http1")
                .set_container_port(PORT)])
            .set_resources(
                ResourceRequirements::new()
                    .set_limits(d.limits())
                    // Setting resources drops the default, which keeps CPU idle between
                    // requests (billed per request): keep it.
                    .set_cpu_idle(true),
            )]);
    if let Some(n) = d.max_instances {
        t = t.set_scaling(RevisionScaling::new().set_max_instance_count(n));
    }
    t
}

/// The owned settings of the one container (image, args, cpu, memory) that differ.
fn container_diff(containers: &[Container], args: &[&str], d: &GcpDeployment) -> Vec<String> {
    let c = containers.first().cloned().unwrap_or_default();
    let limits = c.resources.map(|r| r.limits).unwrap_or_default();
    [
        (containers.len() != 1, "containers"),
        (c.image != d.image, "image"),
        (!c.command.is_empty() || c.args != args, "args"),
        (limits.get("cpu") != Some(&d.cpu), "cpu"),
        (limits.get("memory") != Some(&d.memory), "memory"),
    ]
    .into_iter()
    .filter(|(differs, _)| *differs)
    .map(|(_, what)| what.to_string())
    .collect()
}

/// The fetched container with the owned settings replaced (the rest kept).
fn owned_container(containers: &[Container], wanted: Container, d: &GcpDeployment) -> Container {
    let mut c = containers.first().cloned().unwrap_or_default();
    c.image = wanted.image;
    c.command.clear();
    c.args = wanted.args;
    let r = c.resources.get_or_insert_with(Default::default);
    r.limits.insert("cpu".into(), d.cpu.clone());
    r.limits.insert("memory".into(), d.memory.clone());
    c
}

/// The owned settings of a service that differ from what is wanted.
pub fn service_diff(cur: &Service, d: &GcpDeployment) -> Vec<String> {
    let t = cur.template.clone().unwrap_or_default();
    let mut out = container_diff(&t.containers, &SERVICE_ARGS, d);
    let port = t
        .containers
        .first()
        .and_then(|c| c.ports.first())
        .map(|p| p.container_port);
    let scaling = t.scaling.as_ref().map(|s| s.max_instance_count);
    let checks = [
        (port != Some(PORT), "port"),
        (t.max_instance_request_concurrency != 1, "concurrency"),
        (t.service_account != d.worker_email(), "service account"),
        (
            t.timeout.as_ref().map(|x| x.seconds()) != Some(d.timeout_s as i64),
            "timeout",
        ),
        (
            d.max_instances.is_some() && scaling != d.max_instances,
            "max instances",
        ),
        (cur.invoker_iam_disabled, "invoker IAM check"),
    ];
    out.extend(
        checks
            .into_iter()
            .filter(|(x, _)| *x)
            .map(|(_, w)| w.to_string()),
    );
    out
}

/// The fetched service with the owned settings replaced (the rest — traffic, labels,
/// etag — kept, so nothing another tool set is lost).
fn with_owned(mut svc: Service, d: &GcpDeployment) -> Service {
    let wanted = service_template(d);
    let mut t = svc.template.take().unwrap_or_default();
    // A fixed revision name would collide with the running one.
    t.revision.clear();
    t.service_account = wanted.service_account;
    t.max_instance_request_concurrency = 1;
    t.timeout = wanted.timeout;
    if d.max_instances.is_some() {
        t.scaling = wanted.scaling;
    }
    let w = wanted.containers.into_iter().next().unwrap_or_default();
    let ports = w.ports.clone();
    let mut c = owned_container(&t.containers, w, d);
    c.ports = ports;
    if let Some(r) = c.resources.as_mut() {
        r.cpu_idle = true;
    }
    t.containers = vec![c];
    svc.template = Some(t);
    svc.invoker_iam_disabled = false;
    svc
}

/// The calls of one kind of Cloud Run resource, for messages.
struct Calls {
    get: &'static str,
    patch: &'static str,
    create: &'static str,
}

/// Reconciles one Cloud Run resource read as `got`: unchanged when `diff` finds nothing,
/// else (unless `dry_run`) `update` with the fetched resource's owned settings replaced by
/// `owned`, or `create` when there is none. Returns what happened and the resource as it is.
#[allow(clippy::too_many_arguments)]
async fn reconcile<T, UF, CF>(
    got: google_cloud_gax::Result<T>,
    diff: impl Fn(&T) -> Vec<String>,
    owned: impl Fn(T) -> T,
    update: impl Fn(T) -> UF,
    create: impl Fn() -> CF,
    (fresh, dry_run): (bool, bool),
    resource: &str,
    calls: Calls,
    fix: &str,
) -> Result<(Change, Option<T>), DeployError>
where
    T: Clone,
    UF: Future<Output = google_cloud_gax::Result<T>>,
    CF: Future<Output = google_cloud_gax::Result<T>>,
{
    match got {
        Ok(cur) => {
            let changed = diff(&cur);
            if changed.is_empty() {
                return Ok((Change::Unchanged, Some(cur)));
            }
            if dry_run {
                return Ok((Change::Updated(changed), Some(cur)));
            }
            let updated = owned(cur);
            let now = while_propagating(fresh, || update(updated.clone()))
                .await
                .map_err(|e| gax_failure(resource, calls.patch, &e, fix))?;
            Ok((Change::Updated(changed), Some(now)))
        }
        Err(e) if is_not_found(&e) => {
            if dry_run {
                return Ok((Change::Created, None));
            }
            let now = while_propagating(fresh, &create)
                .await
                .map_err(|e| gax_failure(resource, calls.create, &e, fix))?;
            Ok((Change::Created, Some(now)))
        }
        Err(e) => Err(gax_failure(
            resource,
            calls.get,
            &e,
            "check --project, --region and the credentials",
        )),
    }
}

async fn service(
    c: &Clients,
    d: &GcpDeployment,
    fresh: bool,
    dry_run: bool,
) -> Result<(Step, Option<Service>), DeployError> {
    let resource = format!("service {}", d.service);
    let desired = serde_json::to_value(Service::new().set_template(service_template(d))).ok();
    const FIX: &str = "check that the image exists in Artifact Registry and that the credentials may act as the workers' account (roles/iam.serviceAccountUser on it); a revision that does not start is described in the service's logs (gcloud run services logs read)";
    let got = c
        .services
        .get_service()
        .set_name(d.service_name())
        .send()
        .await;
    let (change, svc) = reconcile(
        got,
        |cur| service_diff(cur, d),
        |cur| with_owned(cur, d),
        |svc| {
            c.services
                .update_service()
                .set_service(svc)
                .poller()
                .until_done()
        },
        || {
            c.services
                .create_service()
                .set_parent(d.parent())
                .set_service_id(&d.service)
                .set_service(
                    Service::new()
                        .set_template(service_template(d))
                        .set_client("helios-infra"),
                )
                .poller()
                .until_done()
        },
        (fresh, dry_run),
        &resource,
        Calls {
            get: "services.get",
            patch: "services.patch",
            create: "services.create",
        },
        FIX,
    )
    .await?;
    Ok((
        Step {
            resource,
            change,
            desired,
        },
        svc,
    ))
}

/// The job's execution template as wanted: retries are the orchestrator's, not Cloud
/// Run's (max retries 0).
fn job_template(d: &GcpDeployment) -> ExecutionTemplate {
    let mut t = ExecutionTemplate::new().set_template(
        TaskTemplate::new()
            .set_service_account(d.worker_email())
            .set_max_retries(0)
            .set_timeout(d.timeout())
            .set_containers([Container::new()
                .set_image(&d.image)
                .set_args(JOB_ARGS)
                .set_resources(ResourceRequirements::new().set_limits(d.limits()))]),
    );
    if let Some(n) = d.max_instances {
        t = t.set_parallelism(n);
    }
    t
}

/// The owned settings of a job that differ from what is wanted.
pub fn job_diff(cur: &Job, d: &GcpDeployment) -> Vec<String> {
    let et = cur.template.clone().unwrap_or_default();
    let t = et.template.clone().unwrap_or_default();
    let mut out = container_diff(&t.containers, &JOB_ARGS, d);
    let checks = [
        (t.max_retries() != Some(&0), "max retries"),
        (t.service_account != d.worker_email(), "service account"),
        (
            t.timeout.as_ref().map(|x| x.seconds()) != Some(d.timeout_s as i64),
            "timeout",
        ),
        (
            d.max_instances.is_some_and(|n| et.parallelism != n),
            "parallelism",
        ),
    ];
    out.extend(
        checks
            .into_iter()
            .filter(|(x, _)| *x)
            .map(|(_, w)| w.to_string()),
    );
    out
}

fn job_with_owned(mut job: Job, d: &GcpDeployment) -> Job {
    let wanted = job_template(d);
    let mut et = job.template.take().unwrap_or_default();
    if d.max_instances.is_some() {
        et.parallelism = wanted.parallelism;
    }
    let w = wanted.template.unwrap_or_default();
    let mut t = et.template.take().unwrap_or_default();
    t.service_account = w.service_account;
    t.retries = Some(Retries::MaxRetries(0));
    t.timeout = w.timeout;
    let wc = w.containers.into_iter().next().unwrap_or_default();
    let c = owned_container(&t.containers, wc, d);
    t.containers = vec![c];
    et.template = Some(t);
    job.template = Some(et);
    job
}

async fn job(
    c: &Clients,
    d: &GcpDeployment,
    fresh: bool,
    dry_run: bool,
) -> Result<Step, DeployError> {
    let resource = format!("job {}", d.job);
    let desired = serde_json::to_value(Job::new().set_template(job_template(d))).ok();
    const FIX: &str = "check that the image exists in Artifact Registry and that the credentials may act as the workers' account (roles/iam.serviceAccountUser on it)";
    let got = c.jobs.get_job().set_name(d.job_name()).send().await;
    let (change, _) = reconcile(
        got,
        |cur| job_diff(cur, d),
        |cur| job_with_owned(cur, d),
        |job| c.jobs.update_job().set_job(job).poller().until_done(),
        || {
            c.jobs
                .create_job()
                .set_parent(d.parent())
                .set_job_id(&d.job)
                .set_job(
                    Job::new()
                        .set_template(job_template(d))
                        .set_client("helios-infra"),
                )
                .poller()
                .until_done()
        },
        (fresh, dry_run),
        &resource,
        Calls {
            get: "jobs.get",
            patch: "jobs.patch",
            create: "jobs.create",
        },
        FIX,
    )
    .await?;
    Ok(Step {
        resource,
        change,
        desired,
    })
}

/// Adds `member` to `role`'s unconditional binding; whether it was missing.
pub fn add_member(policy: &mut Policy, role: &str, member: &str) -> bool {
    let plain = |b: &Binding| b.role == role && b.condition.is_none();
    if policy
        .bindings
        .iter()
        .any(|b| plain(b) && b.members.iter().any(|m| m == member))
    {
        return false;
    }
    match policy.bindings.iter_mut().find(|b| plain(b)) {
        Some(b) => b.members.push(member.to_string()),
        None => policy
            .bindings
            .push(Binding::new().set_role(role).set_members([member])),
    }
    true
}

/// A Cloud Run resource whose IAM policy is set.
enum Target {
    Service(String),
    Job(String),
}

async fn run_policy(
    c: &Clients,
    target: &Target,
    resource: &str,
    role: &str,
    member: &str,
    missing: bool,
    dry_run: bool,
) -> Result<Step, DeployError> {
    let desired = Some(json!({"role": role, "members": [member]}));
    if missing {
        // A dry run before the resource exists: its policy would be created with it.
        return Ok(Step {
            resource: resource.to_string(),
            change: Change::Created,
            desired,
        });
    }
    let fix =
        "the credentials need run.services.setIamPolicy / run.jobs.setIamPolicy (roles/run.admin)";
    let mut conflicts = 0;
    loop {
        let got = match target {
            Target::Service(n) => c.services.get_iam_policy().set_resource(n).send().await,
            Target::Job(n) => c.jobs.get_iam_policy().set_resource(n).send().await,
        };
        let mut policy = got.map_err(|e| gax_failure(resource, "getIamPolicy", &e, fix))?;
        if !add_member(&mut policy, role, member) {
            return Ok(Step {
                resource: resource.to_string(),
                change: Change::Unchanged,
                desired,
            });
        }
        let change = Change::Updated(vec![format!("+{member}")]);
        if dry_run {
            return Ok(Step {
                resource: resource.to_string(),
                change,
                desired,
            });
        }
        let set = match target {
            Target::Service(n) => {
                c.services
                    .set_iam_policy()
                    .set_resource(n)
                    .set_policy(policy)
                    .send()
                    .await
            }
            Target::Job(n) => {
                c.jobs
                    .set_iam_policy()
                    .set_resource(n)
                    .set_policy(policy)
                    .send()
                    .await
            }
        };
        match set {
            Ok(_) => {
                return Ok(Step {
                    resource: resource.to_string(),
                    change,
                    desired,
                })
            }
            // The etag we read is stale: another writer came first; read again.
            Err(e)
                if matches!(gax_code(&e), Some(Code::Aborted | Code::FailedPrecondition))
                    && conflicts < 3 =>
            {
                conflicts += 1;
            }
            Err(e) => return Err(gax_failure(resource, "setIamPolicy", &e, fix)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d() -> GcpDeployment {
        GcpDeployment {
            project: "p".into(),
            region: "us-central1".into(),
            image: "img".into(),
            bucket: "b".into(),
            prefix: "helios".into(),
            service: "helios-worker".into(),
            job: "helios-render".into(),
            cpu: "2".into(),
            memory: "4Gi".into(),
            timeout_s: 3600,
            max_instances: None,
            invoker: None,
            endpoints: GcpEndpoints::default(),
        }
    }

    #[test]
    fn a_service_as_wanted_differs_in_nothing_and_one_changed_setting_is_named() {
        let d = d();
        let svc = with_owned(Service::new(), &d);
        assert!(
            service_diff(&svc, &d).is_empty(),
            "{:?}",
            service_diff(&svc, &d)
        );
        let mut bigger = d.clone();
        bigger.memory = "8Gi".into();
        assert_eq!(service_diff(&svc, &bigger), ["memory"]);
        let job = job_with_owned(Job::new(), &d);
        assert!(job_diff(&job, &d).is_empty(), "{:?}", job_diff(&job, &d));
        assert_eq!(job_diff(&job, &bigger), ["memory"]);
    }

    #[test]
    fn members_are_added_once_to_the_unconditional_binding() {
        let mut p = Policy::new();
        assert!(add_member(&mut p, "roles/run.invoker", "user:a@x"));
        assert!(!add_member(&mut p, "roles/run.invoker", "user:a@x"));
        assert!(add_member(&mut p, "roles/run.invoker", "user:b@x"));
        assert_eq!(p.bindings.len(), 1);
        let mut j = json!({"bindings": [{"role": BUCKET_ROLE, "members": ["x"], "condition": {"expression": "true"}}]});
        assert_eq!(add_members_json(&mut j, BUCKET_ROLE, &["x".into()]), ["x"]);
        assert!(add_members_json(&mut j, BUCKET_ROLE, &["x".into()]).is_empty());
        assert_eq!(j["bindings"].as_array().unwrap().len(), 2);
    }

    /// docs/deploy-gcp.md's manual steps use the arguments and roles deploy applies.
    #[test]
    fn the_docs_show_what_deploy_applies() {
        let doc = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/deploy-gcp.md"),
        )
        .unwrap();
        for needle in [
            format!("--args {}", SERVICE_ARGS.join(",")),
            format!("--args {} --max-retries 0", JOB_ARGS.join(",")),
            "--concurrency 1".to_string(),
            format!("--role {BUCKET_ROLE}"),
            format!("--role {SERVICE_ROLE}"),
            format!("--role {JOB_ROLE}"),
            format!("{WORKER_ACCOUNT}@PROJECT.iam.gserviceaccount.com"),
        ] {
            assert!(doc.contains(&needle), "docs/deploy-gcp.md lacks {needle:?}");
        }
    }

    #[test]
    fn bad_names_are_refused_with_what_to_give() {
        let mut x = d();
        x.service = "Helios".into();
        assert!(x.validate().unwrap_err().to_string().contains("--service"));
        let mut x = d();
        x.timeout_s = 4000;
        assert!(x.validate().unwrap_err().to_string().contains("--timeout"));
    }
}
