//! `deploy` and `destroy`: the command-line side of [`crate::deploy`].

use super::args::{DeployAwsArgs, DeployKubernetesArgs, DestroyAwsArgs};
use crate::deploy::aws::{self, AwsDeployment, AwsDestroy};
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
    if a.dry_run && !json {
        // Every document it would apply, in full.
        for s in &steps {
            if let Some(doc) = &s.desired {
                eprintln!("\n{}:\n{}", s.resource, policy::pretty(doc));
            }
        }
    }
    finish(&steps, a.dry_run, json, &d.render_flags());
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
    finish(&steps, a.dry_run, json, &flags);
    Ok(0)
}

/// The last lines of a deploy: whether anything changed, and the `render` flags.
fn finish(steps: &[Step], dry_run: bool, json: bool, flags: &str) {
    let unchanged = steps.iter().all(|s| s.change == Change::Unchanged);
    if json {
        println!(
            "{}",
            serde_json::json!({"event": "deployed", "dry_run": dry_run, "unchanged": unchanged, "render_flags": flags})
        );
    } else {
        if dry_run {
            eprintln!("dry run: nothing was changed");
        }
        if unchanged {
            eprintln!("everything was already as asked: unchanged");
        }
        eprintln!("render with:\n  helios-infra render COMPOSITION -o OUTPUT {flags}");
    }
}
