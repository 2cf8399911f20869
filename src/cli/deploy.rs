//! `deploy` and `destroy`: the command-line side of [`crate::deploy`].

use super::args::{DeployAwsArgs, DeployGcpArgs, DeployKubernetesArgs, DestroyAwsArgs};
use crate::deploy::aws::{self, AwsDeployment, AwsDestroy};
use crate::deploy::gcp::{self, GcpDeployment, GcpEndpoints};
use crate::deploy::{policy, Change, Step};

fn show(steps: &[Step], dry_run: bool, json: bool) {
    for s in steps {
        if json {
            println!(
                "{}",
                serde_json::json!({"event": "resource", "dry_run": dry_run, "step": s})
            );
        } else {
            eprintln!("{}", s.line(dry_run));
        }
    }
}

/// `deploy aws`.
pub async fn aws(a: &DeployAwsArgs, json: bool) -> anyhow::Result<i32> {
    let d = AwsDeployment {
        bucket: a.bucket.clone(),
        prefix: a.prefix.trim_matches('/').to_string(),
        image: a.image.clone(),
        function: a.function.clone(),
        role: a.role.clone(),
        memory_mb: a.memory,
        timeout_s: a.timeout,
        ephemeral_mb: a.ephemeral_storage,
        region: a.region.clone(),
        concurrency: a.concurrency,
    };
    let steps = aws::apply(&d, a.dry_run).await?;
    show(&steps, a.dry_run, json);
    documents(&steps, a.dry_run, json);
    finish(&steps, a.dry_run, json, &[("", d.render_flags())]);
    Ok(0)
}

/// In a dry run, every document it would apply, in full.
fn documents(steps: &[Step], dry_run: bool, json: bool) {
    if dry_run && !json {
        for s in steps {
            if let Some(doc) = &s.desired {
                eprintln!("\n{}:\n{}", s.resource, policy::pretty(doc));
            }
        }
    }
}

/// `deploy gcp`.
pub async fn gcp(a: &DeployGcpArgs, json: bool) -> anyhow::Result<i32> {
    let d = GcpDeployment {
        project: a.project.clone(),
        region: a.region.clone(),
        image: a.image.clone(),
        bucket: a.bucket.clone(),
        prefix: a.prefix.trim_matches('/').to_string(),
        service: a.service.clone(),
        job: a.job.clone(),
        cpu: a.cpu.clone(),
        memory: a.memory.clone(),
        timeout_s: a.timeout,
        max_instances: a.max_instances,
        invoker: a.invoker.clone(),
        endpoints: GcpEndpoints {
            cloud_run: a.cloud_run_endpoint.clone(),
            iam: a.iam_endpoint.clone(),
        },
    };
    let out = gcp::apply(&d, a.dry_run).await?;
    show(&out.steps, a.dry_run, json);
    documents(&out.steps, a.dry_run, json);
    finish(
        &out.steps,
        a.dry_run,
        json,
        &[
            ("", d.service_flags(out.service_uri.as_deref())),
            ("job", d.job_flags()),
        ],
    );
    Ok(0)
}

/// `destroy aws`.
pub async fn destroy_aws(a: &DestroyAwsArgs, json: bool) -> anyhow::Result<i32> {
    let steps = aws::destroy(&AwsDestroy {
        function: a.function.clone(),
        role: a.role.clone(),
        bucket: a.bucket.clone(),
        delete_bucket: a.delete_bucket,
        force: a.force,
        region: a.region.clone(),
    })
    .await?;
    show(&steps, false, json);
    Ok(0)
}

/// `deploy kubernetes`.
pub async fn kubernetes(a: &DeployKubernetesArgs, json: bool) -> anyhow::Result<i32> {
    let (client, _) = crate::adapters::kubernetes::client(a.k8s_context.as_deref()).await?;
    let steps = crate::deploy::kubernetes::apply(client, &a.namespace, a.dry_run).await?;
    show(&steps, a.dry_run, json);
    let mut flags = format!("--adapter kubernetes --k8s-namespace {}", a.namespace);
    if let Some(i) = &a.image {
        flags.push_str(&format!(" --k8s-image {i}"));
    }
    if let Some(c) = &a.k8s_context {
        flags.push_str(&format!(" --k8s-context {c}"));
    }
    flags.push_str(" --storage s3://BUCKET/PREFIX");
    finish(&steps, a.dry_run, json, &[("", flags)]);
    Ok(0)
}

/// The last lines of a deploy: whether anything changed, and the `render` flags — one set
/// per way to render (the first is `render_flags` in JSON, the others `LABEL_render_flags`).
fn finish(steps: &[Step], dry_run: bool, json: bool, flags: &[(&str, String)]) {
    let unchanged = steps.iter().all(|s| s.change == Change::Unchanged);
    if json {
        let mut v =
            serde_json::json!({"event": "deployed", "dry_run": dry_run, "unchanged": unchanged});
        for (label, f) in flags {
            let key = if label.is_empty() {
                "render_flags".to_string()
            } else {
                format!("{label}_render_flags")
            };
            v[key] = serde_json::Value::String(f.clone());
        }
        println!("{v}");
    } else {
        if dry_run {
            eprintln!("dry run: nothing was changed");
        }
        if unchanged {
            eprintln!("everything was already as asked: unchanged");
        }
        for (label, f) in flags {
            let with = if label.is_empty() {
                "render with".to_string()
            } else {
                format!("or, with the {label}")
            };
            eprintln!("{with}:\n  helios-infra render COMPOSITION -o OUTPUT {f}");
        }
    }
}
