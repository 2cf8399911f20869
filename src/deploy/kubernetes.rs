//! The Kubernetes deployment: the namespace, and the orchestrator's ServiceAccount, Role
//! and RoleBinding — exactly the objects docs/deploy-kubernetes.md shows (a test holds the
//! two equal) — applied server-side (`fieldManager: helios-infra`). Each object is read
//! first; one already as wanted is not written.

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams};

use super::{chain, Change, DeployError, Step};

/// Name of the ServiceAccount, Role and RoleBinding.
pub const NAME: &str = "helios-orchestrator";
/// The field manager of the server-side applies.
pub const MANAGER: &str = "helios-infra";

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(str::to_string),
        ..ObjectMeta::default()
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The namespace.
pub fn namespace(ns: &str) -> Namespace {
    Namespace {
        metadata: meta(ns, None),
        ..Namespace::default()
    }
}

/// The orchestrator's identity (for a pod that renders; a kubeconfig user needs only the
/// Role bound to it).
pub fn service_account(ns: &str) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(NAME, Some(ns)),
        ..ServiceAccount::default()
    }
}

/// What the orchestrator may do in the namespace: Jobs (create, watch, delete), Pods and
/// their logs (read). Workers need no Kubernetes permissions.
pub fn role(ns: &str) -> Role {
    let rule = |groups: &[&str], resources: &[&str], verbs: &[&str]| PolicyRule {
        api_groups: Some(strings(groups)),
        resources: Some(strings(resources)),
        verbs: strings(verbs),
        ..PolicyRule::default()
    };
    Role {
        metadata: meta(NAME, Some(ns)),
        rules: Some(vec![
            rule(
                &["batch"],
                &["jobs"],
                &["create", "get", "list", "watch", "delete"],
            ),
            rule(&[""], &["pods"], &["get", "list", "watch"]),
            rule(&[""], &["pods/log"], &["get"]),
        ]),
    }
}

/// The Role bound to the ServiceAccount.
pub fn role_binding(ns: &str) -> RoleBinding {
    RoleBinding {
        metadata: meta(NAME, Some(ns)),
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: NAME.into(),
            namespace: Some(ns.to_string()),
            ..Subject::default()
        }]),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: NAME.into(),
        },
    }
}

fn api_error(resource: &str, action: &'static str, e: &kube::Error) -> DeployError {
    let fix = match e {
        kube::Error::Api(s) if s.code == 403 => {
            "these credentials may not manage RBAC objects in the namespace: deploy with a cluster admin's kubeconfig (--k8s-context)"
        }
        kube::Error::Api(s) if s.code == 409 => {
            "another field manager owns these fields: change them with that tool, or delete the object and deploy again"
        }
        _ => "check KUBECONFIG / --k8s-context and that the API server is reachable",
    };
    DeployError::Api {
        resource: resource.to_string(),
        action,
        message: chain(e),
        fix: fix.to_string(),
    }
}

/// Applies one object unless the cluster already has it as wanted.
async fn apply_one<K>(
    api: Api<K>,
    resource: String,
    wanted: K,
    same: impl Fn(&K, &K) -> bool,
    dry_run: bool,
) -> Result<Step, DeployError>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let name = wanted.meta().name.clone().unwrap_or_default();
    let current = api
        .get_opt(&name)
        .await
        .map_err(|e| api_error(&resource, "get", &e))?;
    let change = match &current {
        Some(c) if same(c, &wanted) => Change::Unchanged,
        Some(_) => Change::Updated(vec!["spec".into()]),
        None => Change::Created,
    };
    if change != Change::Unchanged && !dry_run {
        api.patch(&name, &PatchParams::apply(MANAGER), &Patch::Apply(&wanted))
            .await
            .map_err(|e| api_error(&resource, "server-side apply", &e))?;
    }
    Ok(Step {
        resource,
        change,
        desired: serde_json::to_value(&wanted).ok(),
    })
}

/// Applies (or with `dry_run`, compares) the namespace and the orchestrator's RBAC objects.
pub async fn apply(
    client: kube::Client,
    ns: &str,
    dry_run: bool,
) -> Result<Vec<Step>, DeployError> {
    if ns.is_empty() {
        return Err(DeployError::Invalid("--namespace needs a name".into()));
    }
    let mut steps = Vec::new();
    steps.push(
        apply_one(
            Api::<Namespace>::all(client.clone()),
            format!("namespace {ns}"),
            namespace(ns),
            |_, _| true,
            dry_run,
        )
        .await?,
    );
    steps.push(
        apply_one(
            Api::<ServiceAccount>::namespaced(client.clone(), ns),
            format!("serviceaccount {ns}/{NAME}"),
            service_account(ns),
            |_, _| true,
            dry_run,
        )
        .await?,
    );
    steps.push(
        apply_one(
            Api::<Role>::namespaced(client.clone(), ns),
            format!("role {ns}/{NAME}"),
            role(ns),
            |a, b| a.rules == b.rules,
            dry_run,
        )
        .await?,
    );
    steps.push(
        apply_one(
            Api::<RoleBinding>::namespaced(client, ns),
            format!("rolebinding {ns}/{NAME}"),
            role_binding(ns),
            |a, b| a.subjects == b.subjects && a.role_ref == b.role_ref,
            dry_run,
        )
        .await?,
    );
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/deploy-kubernetes.md shows exactly the objects deploy applies.
    #[test]
    fn the_docs_show_the_objects_deploy_applies() {
        let doc = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/deploy-kubernetes.md"),
        )
        .unwrap();
        let start = doc
            .find("```yaml\napiVersion: v1\nkind: Namespace")
            .unwrap()
            + 8;
        let end = start + doc[start..].find("```").unwrap();
        let docs: Vec<&str> = doc[start..end].split("\n---\n").collect();
        assert_eq!(docs.len(), 4);
        let parse = |i: usize| -> serde_json::Value { serde_saphyr::from_str(docs[i]).unwrap() };
        let json = |v: serde_json::Value| v;
        assert_eq!(
            parse(0),
            json(serde_json::to_value(namespace("helios")).unwrap())
        );
        assert_eq!(
            parse(1),
            json(serde_json::to_value(service_account("helios")).unwrap())
        );
        assert_eq!(
            parse(2),
            json(serde_json::to_value(role("helios")).unwrap())
        );
        assert_eq!(
            parse(3),
            json(serde_json::to_value(role_binding("helios")).unwrap())
        );
    }
}
