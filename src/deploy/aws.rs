//! The AWS deployment: a bucket, the workers' role (trusted by Lambda) with its inline
//! policy scoped to the bucket's prefix, and the function running `worker lambda` from the
//! image, with reserved concurrency when asked. Each resource is read, compared with what is
//! wanted, and created or updated only where it differs.

use std::time::Duration;

use aws_sdk_lambda::types::{
    Architecture, EphemeralStorage, FunctionCode, ImageConfig, LastUpdateStatus, PackageType, State,
};

use super::{chain, policy, Change, DeployError, Step};
use crate::adapters::lambda::{LambdaAdapter, LambdaOptions};
use crate::storage::s3::S3Bucket;

/// The inline policy's name on the role.
pub const POLICY_NAME: &str = "helios-worker";
/// The command the image runs as a Lambda function.
pub const COMMAND: [&str; 2] = ["worker", "lambda"];

/// What `deploy aws` is asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct AwsDeployment {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix of the storage under the bucket (may be empty).
    pub prefix: String,
    /// Container image URI (ECR).
    pub image: String,
    /// Function name.
    pub function: String,
    /// Role name.
    pub role: String,
    /// Memory in MB.
    pub memory_mb: i32,
    /// Timeout in seconds.
    pub timeout_s: i32,
    /// Ephemeral storage (`/tmp`) in MB.
    pub ephemeral_mb: i32,
    /// Region (else the environment's).
    pub region: Option<String>,
    /// Reserved concurrency, when asked.
    pub concurrency: Option<i32>,
}

impl AwsDeployment {
    /// Checks the settings against Lambda's limits.
    pub fn validate(&self) -> Result<(), DeployError> {
        let bad = |m: String| Err(DeployError::Invalid(m));
        if !(128..=10240).contains(&self.memory_mb) {
            return bad(format!(
                "--memory {} is outside Lambda's 128-10240 MB",
                self.memory_mb
            ));
        }
        if !(1..=900).contains(&self.timeout_s) {
            return bad(format!(
                "--timeout {} is outside Lambda's 1-900 seconds",
                self.timeout_s
            ));
        }
        if !(512..=10240).contains(&self.ephemeral_mb) {
            return bad(format!(
                "--ephemeral-storage {} is outside Lambda's 512-10240 MB",
                self.ephemeral_mb
            ));
        }
        if self.concurrency.is_some_and(|c| c < 1) {
            return bad("--concurrency must be at least 1".into());
        }
        if self.bucket.is_empty() || self.bucket.contains('/') {
            return bad(format!(
                "--bucket {:?} is not a bucket name (give the prefix with --prefix)",
                self.bucket
            ));
        }
        if self.image.is_empty() {
            return bad("--image needs the container image URI (ECR)".into());
        }
        Ok(())
    }

    /// The storage URL renders use: `s3://BUCKET/PREFIX`.
    pub fn storage_url(&self) -> String {
        let p = self.prefix.trim_matches('/');
        if p.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{p}", self.bucket)
        }
    }

    /// The `render` flags that use this deployment.
    pub fn render_flags(&self) -> String {
        let mut f = format!(
            "--storage {} --adapter lambda --function {} --memory-mb {} --invoke-timeout {}",
            self.storage_url(),
            self.function,
            self.memory_mb,
            self.timeout_s
        );
        if let Some(r) = &self.region {
            f.push_str(&format!(" --region {r}"));
        }
        if let Some(c) = self.concurrency {
            f.push_str(&format!(" --concurrency {c}"));
        }
        f
    }
}

/// The clients of a deployment: the storage's S3 client, IAM, the Lambda adapter's client.
pub struct Clients {
    s3: S3Bucket,
    iam: aws_sdk_iam::Client,
    lambda: LambdaAdapter,
    sts: aws_sdk_sts::Client,
}

impl Clients {
    /// Clients for `region` (else the environment's).
    pub async fn new(bucket: &str, region: Option<&str>) -> Result<Self, DeployError> {
        let s3 = S3Bucket::open_in(&format!("s3://{bucket}"), region)
            .await
            .map_err(|e| DeployError::Invalid(e.to_string()))?
            .ok_or_else(|| DeployError::Invalid(format!("{bucket} is not a bucket name")))?;
        let shared = crate::net::aws_config(region).await;
        let lambda = LambdaAdapter::new(LambdaOptions {
            function: String::new(),
            region: region.map(str::to_string),
            qualifier: None,
            invoke_timeout: Duration::from_secs(900),
        })
        .await;
        Ok(Self {
            s3,
            iam: aws_sdk_iam::Client::new(&shared),
            lambda,
            sts: aws_sdk_sts::Client::new(&shared),
        })
    }
}

fn api(
    resource: &str,
    action: &'static str,
    e: &(dyn std::error::Error + 'static),
    fix: &str,
) -> DeployError {
    DeployError::Api {
        resource: resource.to_string(),
        action,
        message: chain(e),
        fix: fix.to_string(),
    }
}

const CREDENTIALS_FIX: &str = "check the credentials (`helios-infra doctor --storage s3://BUCKET`) and that they may manage S3 buckets, IAM roles and Lambda functions";

/// A policy document as IAM returns it (URL-encoded JSON), parsed.
fn decode_policy(text: &str) -> Option<serde_json::Value> {
    serde_json::from_str(text).ok().or_else(|| {
        let decoded = percent_encoding::percent_decode_str(text)
            .decode_utf8()
            .ok()?;
        serde_json::from_str(&decoded).ok()
    })
}

/// Applies (or with `dry_run`, compares) the deployment; returns each resource's step.
pub async fn apply(d: &AwsDeployment, dry_run: bool) -> Result<Vec<Step>, DeployError> {
    d.validate()?;
    let c = Clients::new(&d.bucket, d.region.as_deref()).await?;
    let who = c
        .sts
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| api("credentials", "GetCallerIdentity", &e, CREDENTIALS_FIX))?;
    let account = who.account().unwrap_or("ACCOUNT").to_string();
    let region = c
        .lambda
        .client()
        .config()
        .region()
        .map(|r| r.to_string())
        .unwrap_or_else(|| "us-east-1".into());
    let mut steps = Vec::new();
    steps.push(bucket(&c, d, &region, dry_run).await?);
    let (role_step, role_arn) = role(&c, d, &account, dry_run).await?;
    steps.push(role_step);
    steps.push(role_policy(&c, d, &region, &account, dry_run).await?);
    steps.push(function(&c, d, &role_arn, dry_run).await?);
    if let Some(n) = d.concurrency {
        steps.push(concurrency(&c, d, n, dry_run).await?);
    }
    Ok(steps)
}

async fn bucket(
    c: &Clients,
    d: &AwsDeployment,
    region: &str,
    dry_run: bool,
) -> Result<Step, DeployError> {
    let resource = format!("bucket {}", d.bucket);
    let head = c.s3.client().head_bucket().bucket(&d.bucket).send().await;
    let change = match head {
        Ok(_) => Change::Unchanged,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => {
            if !dry_run {
                let mut create = c.s3.client().create_bucket().bucket(&d.bucket);
                // us-east-1 is the default location and may not be named.
                if region != "us-east-1" {
                    create = create.create_bucket_configuration(
                        aws_sdk_s3::types::CreateBucketConfiguration::builder()
                            .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(region))
                            .build(),
                    );
                }
                create.send().await.map_err(|e| {
                    api(&resource, "CreateBucket", &e, "choose another bucket name (they are global) or check the credentials")
                })?;
            }
            Change::Created
        }
        Err(e) => {
            return Err(api(&resource, "HeadBucket", &e, "the bucket may belong to another account: choose another name, or check the credentials"))
        }
    };
    Ok(Step {
        resource,
        change,
        desired: Some(serde_json::json!({"bucket": d.bucket, "region": region})),
    })
}

async fn role(
    c: &Clients,
    d: &AwsDeployment,
    account: &str,
    dry_run: bool,
) -> Result<(Step, String), DeployError> {
    let resource = format!("role {}", d.role);
    let trust = policy::lambda_trust();
    let text = serde_json::to_string(&trust).unwrap_or_default();
    let got = c.iam.get_role().role_name(&d.role).send().await;
    let (change, arn) = match got {
        Ok(out) => {
            let r = out.role();
            let arn = r.map(|r| r.arn().to_string()).unwrap_or_default();
            let current = r
                .and_then(|r| r.assume_role_policy_document())
                .and_then(decode_policy);
            if current.as_ref() == Some(&trust) {
                (Change::Unchanged, arn)
            } else {
                if !dry_run {
                    c.iam
                        .update_assume_role_policy()
                        .role_name(&d.role)
                        .policy_document(&text)
                        .send()
                        .await
                        .map_err(|e| {
                            api(&resource, "UpdateAssumeRolePolicy", &e, CREDENTIALS_FIX)
                        })?;
                }
                (Change::Updated(vec!["trust policy".into()]), arn)
            }
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_no_such_entity_exception()) =>
        {
            let arn = if dry_run {
                format!("arn:aws:iam::{account}:role/{}", d.role)
            } else {
                let out = c
                    .iam
                    .create_role()
                    .role_name(&d.role)
                    .assume_role_policy_document(&text)
                    .description("helios-infra workers (Lambda)")
                    .send()
                    .await
                    .map_err(|e| api(&resource, "CreateRole", &e, CREDENTIALS_FIX))?;
                out.role().map(|r| r.arn().to_string()).unwrap_or_default()
            };
            (Change::Created, arn)
        }
        Err(e) => return Err(api(&resource, "GetRole", &e, CREDENTIALS_FIX)),
    };
    Ok((
        Step {
            resource,
            change,
            desired: Some(serde_json::json!({"trust_policy": trust})),
        },
        arn,
    ))
}

async fn role_policy(
    c: &Clients,
    d: &AwsDeployment,
    region: &str,
    account: &str,
    dry_run: bool,
) -> Result<Step, DeployError> {
    let resource = format!("policy {}/{POLICY_NAME}", d.role);
    let wanted = policy::worker(&d.bucket, &d.prefix, region, account);
    let text = serde_json::to_string(&wanted).unwrap_or_default();
    let got = c
        .iam
        .get_role_policy()
        .role_name(&d.role)
        .policy_name(POLICY_NAME)
        .send()
        .await;
    let change = match got {
        Ok(out) if decode_policy(out.policy_document()).as_ref() == Some(&wanted) => {
            Change::Unchanged
        }
        Ok(_) => Change::Updated(vec!["policy document".into()]),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_no_such_entity_exception()) =>
        {
            Change::Created
        }
        Err(e) => return Err(api(&resource, "GetRolePolicy", &e, CREDENTIALS_FIX)),
    };
    if change != Change::Unchanged && !dry_run {
        c.iam
            .put_role_policy()
            .role_name(&d.role)
            .policy_name(POLICY_NAME)
            .policy_document(&text)
            .send()
            .await
            .map_err(|e| api(&resource, "PutRolePolicy", &e, CREDENTIALS_FIX))?;
    }
    Ok(Step {
        resource,
        change,
        desired: Some(wanted),
    })
}

/// The function's wanted settings, for the record.
fn function_settings(d: &AwsDeployment, role_arn: &str) -> serde_json::Value {
    serde_json::json!({
        "package_type": "Image",
        "image": d.image,
        "command": COMMAND,
        "role": role_arn,
        "memory_mb": d.memory_mb,
        "timeout_s": d.timeout_s,
        "ephemeral_storage_mb": d.ephemeral_mb,
        "architecture": "x86_64",
    })
}

async fn function(
    c: &Clients,
    d: &AwsDeployment,
    role_arn: &str,
    dry_run: bool,
) -> Result<Step, DeployError> {
    let resource = format!("function {}", d.function);
    let client = c.lambda.client();
    let got = client
        .get_function()
        .function_name(&d.function)
        .send()
        .await;
    let image_config = ImageConfig::builder()
        .set_command(Some(COMMAND.iter().map(|s| s.to_string()).collect()))
        .build();
    let storage = EphemeralStorage::builder()
        .size(d.ephemeral_mb)
        .build()
        .map_err(|e| DeployError::Invalid(e.to_string()))?;
    let change = match got {
        Ok(out) => {
            let cfg = out.configuration();
            let mut changed = Vec::new();
            if cfg.and_then(|c| c.memory_size()) != Some(d.memory_mb) {
                changed.push("memory");
            }
            if cfg.and_then(|c| c.timeout()) != Some(d.timeout_s) {
                changed.push("timeout");
            }
            if cfg.and_then(|c| c.ephemeral_storage()).map(|e| e.size()) != Some(d.ephemeral_mb) {
                changed.push("ephemeral storage");
            }
            if cfg.and_then(|c| c.role()) != Some(role_arn) {
                changed.push("role");
            }
            let command: Vec<String> = cfg
                .and_then(|c| c.image_config_response())
                .and_then(|i| i.image_config())
                .map(|i| i.command().to_vec())
                .unwrap_or_default();
            if command != COMMAND {
                changed.push("command");
            }
            let image_changed = out.code().and_then(|c| c.image_uri()) != Some(d.image.as_str());
            if !dry_run && !changed.is_empty() {
                client
                    .update_function_configuration()
                    .function_name(&d.function)
                    .memory_size(d.memory_mb)
                    .timeout(d.timeout_s)
                    .ephemeral_storage(storage.clone())
                    .role(role_arn)
                    .image_config(image_config.clone())
                    .send()
                    .await
                    .map_err(|e| {
                        api(
                            &resource,
                            "UpdateFunctionConfiguration",
                            &e,
                            CREDENTIALS_FIX,
                        )
                    })?;
                wait_ready(c, &d.function).await?;
            }
            if image_changed {
                if !dry_run {
                    client
                        .update_function_code()
                        .function_name(&d.function)
                        .image_uri(&d.image)
                        .send()
                        .await
                        .map_err(|e| api(&resource, "UpdateFunctionCode", &e, "check that the image exists in ECR, in the function's region and account"))?;
                    wait_ready(c, &d.function).await?;
                }
                changed.push("image");
            }
            if changed.is_empty() {
                Change::Unchanged
            } else {
                Change::Updated(changed.into_iter().map(str::to_string).collect())
            }
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            if !dry_run {
                create_function(c, d, role_arn, image_config, storage).await?;
                wait_ready(c, &d.function).await?;
            }
            Change::Created
        }
        Err(e) => return Err(api(&resource, "GetFunction", &e, CREDENTIALS_FIX)),
    };
    Ok(Step {
        resource,
        change,
        desired: Some(function_settings(d, role_arn)),
    })
}

async fn create_function(
    c: &Clients,
    d: &AwsDeployment,
    role_arn: &str,
    image_config: ImageConfig,
    storage: EphemeralStorage,
) -> Result<(), DeployError> {
    let resource = format!("function {}", d.function);
    // A role just created takes a few seconds to be usable by Lambda: retry while Lambda
    // says it cannot assume it.
    let mut tries = 0;
    loop {
        let r = c
            .lambda
            .client()
            .create_function()
            .function_name(&d.function)
            .package_type(PackageType::Image)
            .code(FunctionCode::builder().image_uri(&d.image).build())
            .role(role_arn)
            .image_config(image_config.clone())
            .memory_size(d.memory_mb)
            .timeout(d.timeout_s)
            .ephemeral_storage(storage.clone())
            .architectures(Architecture::X8664)
            .description("helios-infra worker (worker lambda)")
            .send()
            .await;
        match r {
            Ok(_) => return Ok(()),
            Err(e) => {
                let text = chain(&e);
                tries += 1;
                if text.contains("cannot be assumed") && tries < 10 {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    continue;
                }
                return Err(DeployError::Api {
                    resource,
                    action: "CreateFunction",
                    message: text,
                    fix: "check that the image exists in ECR in this region and account, and that the credentials may pass the role (iam:PassRole)".into(),
                });
            }
        }
    }
}

/// Waits until the function is Active and its last update has finished (up to 5 min).
async fn wait_ready(c: &Clients, function: &str) -> Result<(), DeployError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        let out = c
            .lambda
            .client()
            .get_function()
            .function_name(function)
            .send()
            .await
            .map_err(|e| {
                api(
                    &format!("function {function}"),
                    "GetFunction",
                    &e,
                    CREDENTIALS_FIX,
                )
            })?;
        let cfg = out.configuration();
        let state = cfg
            .and_then(|c| c.state())
            .cloned()
            .unwrap_or(State::Active);
        let update = cfg
            .and_then(|c| c.last_update_status())
            .cloned()
            .unwrap_or(LastUpdateStatus::Successful);
        match (&state, &update) {
            (State::Active, LastUpdateStatus::Successful) => return Ok(()),
            (State::Failed, _) | (_, LastUpdateStatus::Failed) => {
                return Err(DeployError::Api {
                    resource: format!("function {function}"),
                    action: "GetFunction",
                    message: format!(
                        "the function is {} (last update {}): {}",
                        state.as_str(),
                        update.as_str(),
                        cfg.and_then(|c| c.state_reason().or(c.last_update_status_reason()))
                            .unwrap_or("no reason given")
                    ),
                    fix: "check the image (it must be built from this repository's Dockerfile) and the function in the console".into(),
                })
            }
            _ if std::time::Instant::now() > deadline => {
                return Err(DeployError::Api {
                    resource: format!("function {function}"),
                    action: "GetFunction",
                    message: format!("still {} after 5 minutes", state.as_str()),
                    fix: "run deploy again later; it continues where it stopped".into(),
                })
            }
            _ => tokio::time::sleep(Duration::from_secs(2)).await,
        }
    }
}

async fn concurrency(
    c: &Clients,
    d: &AwsDeployment,
    n: i32,
    dry_run: bool,
) -> Result<Step, DeployError> {
    let resource = format!("concurrency {}", d.function);
    let client = c.lambda.client();
    let current = if dry_run
        && client
            .get_function()
            .function_name(&d.function)
            .send()
            .await
            .is_err()
    {
        None
    } else {
        client
            .get_function_concurrency()
            .function_name(&d.function)
            .send()
            .await
            .map_err(|e| api(&resource, "GetFunctionConcurrency", &e, CREDENTIALS_FIX))?
            .reserved_concurrent_executions()
    };
    let change = match current {
        Some(v) if v == n => Change::Unchanged,
        Some(_) => Change::Updated(vec!["reserved concurrency".into()]),
        None => Change::Created,
    };
    if change != Change::Unchanged && !dry_run {
        client
            .put_function_concurrency()
            .function_name(&d.function)
            .reserved_concurrent_executions(n)
            .send()
            .await
            .map_err(|e| api(&resource, "PutFunctionConcurrency", &e, "the account's unreserved concurrency may be too small: ask for less, or raise the account limit"))?;
    }
    Ok(Step {
        resource,
        change,
        desired: Some(serde_json::json!({"reserved_concurrent_executions": n})),
    })
}

/// What `destroy aws` removes.
#[derive(Debug, Clone, PartialEq)]
pub struct AwsDestroy {
    /// Function name.
    pub function: String,
    /// Role name (with its inline policy).
    pub role: String,
    /// The bucket, removed only with `delete_bucket`.
    pub bucket: Option<String>,
    /// Remove the bucket (refused when it holds objects, unless `force`).
    pub delete_bucket: bool,
    /// Empty the bucket first.
    pub force: bool,
    /// Region.
    pub region: Option<String>,
}

/// Removes what deploy made.
pub async fn destroy(d: &AwsDestroy) -> Result<Vec<Step>, DeployError> {
    if d.delete_bucket && d.bucket.is_none() {
        return Err(DeployError::Invalid(
            "--delete-bucket needs --bucket NAME".into(),
        ));
    }
    let bucket = d.bucket.clone().unwrap_or_else(|| "unused".into());
    let c = Clients::new(&bucket, d.region.as_deref()).await?;
    let mut steps = Vec::new();
    // The function first: nothing may run as the role once it is gone.
    let resource = format!("function {}", d.function);
    let change = match c
        .lambda
        .client()
        .delete_function()
        .function_name(&d.function)
        .send()
        .await
    {
        Ok(_) => Change::Deleted,
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            Change::Absent
        }
        Err(e) => return Err(api(&resource, "DeleteFunction", &e, CREDENTIALS_FIX)),
    };
    steps.push(Step {
        resource,
        change,
        desired: None,
    });

    let resource = format!("policy {}/{POLICY_NAME}", d.role);
    let change = match c
        .iam
        .delete_role_policy()
        .role_name(&d.role)
        .policy_name(POLICY_NAME)
        .send()
        .await
    {
        Ok(_) => Change::Deleted,
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_no_such_entity_exception()) =>
        {
            Change::Absent
        }
        Err(e) => return Err(api(&resource, "DeleteRolePolicy", &e, CREDENTIALS_FIX)),
    };
    steps.push(Step {
        resource,
        change,
        desired: None,
    });

    let resource = format!("role {}", d.role);
    let change = match c.iam.delete_role().role_name(&d.role).send().await {
        Ok(_) => Change::Deleted,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_entity_exception()) => Change::Absent,
        Err(e) => return Err(api(&resource, "DeleteRole", &e, "the role may have other policies attached: detach them, or keep the role (--role of another name)")),
    };
    steps.push(Step {
        resource,
        change,
        desired: None,
    });

    if let Some(b) = &d.bucket {
        let resource = format!("bucket {b}");
        if !d.delete_bucket {
            steps.push(Step {
                resource,
                change: Change::Kept,
                desired: None,
            });
            return Ok(steps);
        }
        let s3 = c.s3.client();
        let listed = s3.list_objects_v2().bucket(b).send().await;
        let listed = match listed {
            Ok(l) => l,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_bucket()) => {
                steps.push(Step {
                    resource,
                    change: Change::Absent,
                    desired: None,
                });
                return Ok(steps);
            }
            Err(e) => return Err(api(&resource, "ListObjectsV2", &e, CREDENTIALS_FIX)),
        };
        if listed.key_count().unwrap_or(0) > 0 {
            if !d.force {
                return Err(DeployError::Invalid(format!(
                    "bucket {b} is not empty (it holds renders): it was kept. Add --force to delete it with everything in it"
                )));
            }
            let mut token = None;
            loop {
                let page = s3
                    .list_objects_v2()
                    .bucket(b)
                    .set_continuation_token(token.take())
                    .send()
                    .await
                    .map_err(|e| api(&resource, "ListObjectsV2", &e, CREDENTIALS_FIX))?;
                for o in page.contents() {
                    if let Some(k) = o.key() {
                        s3.delete_object()
                            .bucket(b)
                            .key(k)
                            .send()
                            .await
                            .map_err(|e| api(&resource, "DeleteObject", &e, CREDENTIALS_FIX))?;
                    }
                }
                match page.next_continuation_token() {
                    Some(t) => token = Some(t.to_string()),
                    None => break,
                }
            }
        }
        s3.delete_bucket()
            .bucket(b)
            .send()
            .await
            .map_err(|e| api(&resource, "DeleteBucket", &e, CREDENTIALS_FIX))?;
        steps.push(Step {
            resource,
            change: Change::Deleted,
            desired: None,
        });
    }
    Ok(steps)
}
