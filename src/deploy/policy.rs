//! The IAM documents of an AWS deployment, made in one place: `deploy aws` applies them and
//! docs/deploy-aws.md shows them (a test holds the two equal). Every statement names its
//! actions and the bucket's ARN; only object paths under the prefix carry wildcards.

use serde_json::{json, Value};

/// Who may assume the workers' role: the Lambda service.
pub fn lambda_trust() -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole"
        }]
    })
}

/// `arn:aws:s3:::BUCKET/PREFIX/` (or `…:::BUCKET/` without a prefix).
fn objects(bucket: &str, prefix: &str) -> String {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        format!("arn:aws:s3:::{bucket}/")
    } else {
        format!("arn:aws:s3:::{bucket}/{prefix}/")
    }
}

/// What workers may do: read a job's spec, bundles, vendored assets, palette and the
/// segments an assembly task joins; write their attempts' keys, palette attempts and
/// assembly parts (multipart uploads included); write their logs.
pub fn worker(bucket: &str, prefix: &str, region: &str, account: &str) -> Value {
    let o = objects(bucket, prefix);
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["s3:GetObject"],
                "Resource": [
                    format!("{o}jobs/*/job.json"),
                    format!("{o}bundles/*"),
                    format!("{o}assets/*"),
                    format!("{o}jobs/*/palette.png"),
                    format!("{o}jobs/*/attempts/*"),
                    format!("{o}jobs/*/assembly/*")
                ]
            },
            {
                "Effect": "Allow",
                "Action": ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
                "Resource": [
                    format!("{o}jobs/*/attempts/*"),
                    format!("{o}jobs/*/palette/*"),
                    format!("{o}jobs/*/assembly/*")
                ]
            },
            {
                "Effect": "Allow",
                "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": format!("arn:aws:logs:{region}:{account}:*")
            }
        ]
    })
}

/// What the machine that runs `helios-infra render` needs: invoke the function, read and
/// write under the prefix, list it.
pub fn orchestrator(
    bucket: &str,
    prefix: &str,
    region: &str,
    account: &str,
    function: &str,
) -> Value {
    let o = objects(bucket, prefix);
    let list_prefix = format!(
        "{}*",
        o.trim_start_matches(&format!("arn:aws:s3:::{bucket}/"))
    );
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["lambda:InvokeFunction", "lambda:GetFunction"],
                "Resource": format!("arn:aws:lambda:{region}:{account}:function:{function}")
            },
            {
                "Effect": "Allow",
                "Action": [
                    "s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                    "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"
                ],
                "Resource": format!("{o}*")
            },
            {
                "Effect": "Allow",
                "Action": ["s3:ListBucket", "s3:ListBucketMultipartUploads"],
                "Resource": format!("arn:aws:s3:::{bucket}"),
                "Condition": {"StringLike": {"s3:prefix": list_prefix}}
            }
        ]
    })
}

/// A document as the docs print it (two-space indents, keys in the order above).
pub fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every action is named, and every resource is under the bucket and prefix (or the
    /// account's logs).
    #[test]
    fn the_worker_policy_is_scoped_to_the_prefix_and_names_its_actions() {
        let p = worker("my-renders", "helios", "us-east-1", "123456789012");
        for s in p["Statement"].as_array().unwrap() {
            for a in s["Action"].as_array().unwrap() {
                assert!(!a.as_str().unwrap().contains('*'), "{a}");
            }
            let resources: Vec<&str> = match &s["Resource"] {
                Value::Array(v) => v.iter().map(|r| r.as_str().unwrap()).collect(),
                r => vec![r.as_str().unwrap()],
            };
            for r in resources {
                assert!(
                    r.starts_with("arn:aws:s3:::my-renders/helios/")
                        || r == "arn:aws:logs:us-east-1:123456789012:*",
                    "{r}"
                );
            }
        }
        assert_eq!(objects("b", ""), "arn:aws:s3:::b/");
        assert_eq!(objects("b", "/a/b/"), "arn:aws:s3:::b/a/b/");
    }

    /// docs/deploy-aws.md shows exactly the documents deploy applies.
    #[test]
    fn the_docs_show_the_documents_deploy_applies() {
        let doc = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/deploy-aws.md"),
        )
        .unwrap();
        for v in [
            lambda_trust(),
            worker("my-renders", "helios", "REGION", "ACCOUNT"),
            orchestrator("my-renders", "helios", "REGION", "ACCOUNT", "helios-worker"),
        ] {
            let text = pretty(&v);
            assert!(doc.contains(&text), "docs/deploy-aws.md lacks:\n{text}");
        }
    }
}
