//! `deploy kubernetes` against a strict fake of the Kubernetes API server's core/v1 and
//! rbac/v1 endpoints: every server-side apply must carry the `application/apply-patch+yaml`
//! content type and a field manager, and its body must deserialise into `k8s-openapi`'s
//! type of the URL's resource and serialise back to the same JSON (no field the real server
//! would not know), with the URL's name and namespace. Idempotent: a second run writes
//! nothing; drift is corrected in place; `--dry-run` writes nothing.
//!
//! What it does not prove: the real server's merge of managed fields (the fake stores the
//! applied object whole), admission plug-ins and RBAC escalation checks.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::{body::Bytes, Json, Router};
use common::*;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use serde_json::{json, Value};

const TOKEN: &str = "admin-token";

#[derive(Default)]
struct Fake {
    /// Stored objects by path.
    objects: Mutex<BTreeMap<String, Value>>,
    /// Every apply: (path, field manager).
    applies: Mutex<Vec<(String, String)>>,
}

/// Checks a body against the typed resource: it deserialises and round-trips unchanged.
fn strict<T: serde::de::DeserializeOwned + serde::Serialize>(raw: &Value) -> Result<(), String> {
    let typed: T = serde_json::from_value(raw.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    if &back != raw {
        return Err(format!("strict decoding error: unknown fields in {raw}"));
    }
    Ok(())
}

async fn handle(
    State(fake): State<Arc<Fake>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Json<Value>) {
    if bearer(&headers) != TOKEN {
        return k8s_status(401, "Unauthorized", "Unauthorized".into());
    }
    let path = uri.path().trim_end_matches('/').to_string();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (kind, ns, name) = match parts.as_slice() {
        ["api", "v1", "namespaces", name] => ("Namespace", None, *name),
        ["api", "v1", "namespaces", ns, "serviceaccounts", name] => {
            ("ServiceAccount", Some(*ns), *name)
        }
        ["apis", "rbac.authorization.k8s.io", "v1", "namespaces", ns, "roles", name] => {
            ("Role", Some(*ns), *name)
        }
        ["apis", "rbac.authorization.k8s.io", "v1", "namespaces", ns, "rolebindings", name] => {
            ("RoleBinding", Some(*ns), *name)
        }
        _ => return k8s_status(404, "NotFound", format!("the server could not find {path}")),
    };
    match method {
        Method::GET => match fake.objects.lock().unwrap().get(&path) {
            Some(v) => (StatusCode::OK, Json(v.clone())),
            None => k8s_status(404, "NotFound", format!("{kind} \"{name}\" not found")),
        },
        Method::PATCH => {
            let ct = headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if ct != "application/apply-patch+yaml" {
                return k8s_status(
                    415,
                    "UnsupportedMediaType",
                    format!("not a server-side apply: {ct}"),
                );
            }
            let manager = uri
                .query()
                .unwrap_or_default()
                .split('&')
                .find_map(|p| p.strip_prefix("fieldManager="))
                .unwrap_or_default()
                .to_string();
            if manager.is_empty() {
                return k8s_status(
                    400,
                    "BadRequest",
                    "PATCH with apply requires a fieldManager".into(),
                );
            }
            let raw: Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => return k8s_status(400, "BadRequest", format!("invalid body: {e}")),
            };
            let checked = match kind {
                "Namespace" => strict::<Namespace>(&raw),
                "ServiceAccount" => strict::<ServiceAccount>(&raw),
                "Role" => strict::<Role>(&raw),
                _ => strict::<RoleBinding>(&raw),
            };
            if let Err(e) = checked {
                return k8s_status(400, "BadRequest", e);
            }
            if raw["kind"] != kind || raw["metadata"]["name"] != name {
                return k8s_status(
                    400,
                    "BadRequest",
                    format!("the body is not {kind} {name}: {raw}"),
                );
            }
            if let Some(ns) = ns {
                if raw["metadata"]["namespace"] != ns {
                    return k8s_status(
                        400,
                        "BadRequest",
                        "the namespace of the body does not match the URL".into(),
                    );
                }
                if !fake
                    .objects
                    .lock()
                    .unwrap()
                    .contains_key(&format!("/api/v1/namespaces/{ns}"))
                {
                    return k8s_status(404, "NotFound", format!("namespaces \"{ns}\" not found"));
                }
            }
            fake.applies.lock().unwrap().push((path.clone(), manager));
            fake.objects.lock().unwrap().insert(path, raw.clone());
            (StatusCode::OK, Json(raw))
        }
        _ => k8s_status(
            405,
            "MethodNotAllowed",
            format!("{method} is not served here"),
        ),
    }
}

fn kubeconfig(env: &Env, server: &str) -> String {
    let path = env.path("kubeconfig.yaml");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {server}\nusers:\n- name: admin\n  user:\n    token: {TOKEN}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: admin\ncurrent-context: fake\n"
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

fn lines(out: &std::process::Output) -> Vec<Value> {
    json_lines(&out.stdout)
}

fn changes(out: &std::process::Output) -> Vec<(String, String)> {
    lines(out)
        .iter()
        .filter(|l| l["event"] == "resource")
        .map(|l| {
            (
                l["step"]["resource"].as_str().unwrap().to_string(),
                l["step"]["change"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn deploy_kubernetes_applies_the_documented_rbac_server_side_and_idempotently() {
    let fake = Arc::new(Fake::default());
    let url = serve_on_loopback(Router::new().fallback(handle).with_state(fake.clone()));
    let env = Env::new();
    let kc = kubeconfig(&env, &url);
    let run = |extra: &[&str]| {
        let mut args = vec![
            "--json",
            "deploy",
            "kubernetes",
            "--namespace",
            "helios",
            "--image",
            "registry.example/helios-infra:1",
        ];
        args.extend_from_slice(extra);
        env.cmd(&args).env("KUBECONFIG", &kc).output().unwrap()
    };

    let out = run(&["--dry-run"]);
    assert_ok(&out);
    assert!(
        changes(&out).iter().all(|(_, c)| c == "created"),
        "{:?}",
        changes(&out)
    );
    assert!(fake.applies.lock().unwrap().is_empty());

    let out = run(&[]);
    assert_ok(&out);
    assert_eq!(
        changes(&out),
        [
            ("namespace helios".to_string(), "created".to_string()),
            (
                "serviceaccount helios/helios-orchestrator".into(),
                "created".into()
            ),
            ("role helios/helios-orchestrator".into(), "created".into()),
            (
                "rolebinding helios/helios-orchestrator".into(),
                "created".into()
            ),
        ]
    );
    assert!(fake
        .applies
        .lock()
        .unwrap()
        .iter()
        .all(|(_, m)| m == "helios-infra"));
    let flags = lines(&out)
        .iter()
        .find(|l| l["event"] == "deployed")
        .unwrap()["render_flags"]
        .clone();
    assert!(
        flags.as_str().unwrap().contains("--adapter kubernetes --k8s-namespace helios --k8s-image registry.example/helios-infra:1"),
        "{flags}"
    );
    let role = fake.objects.lock().unwrap()
        ["/apis/rbac.authorization.k8s.io/v1/namespaces/helios/roles/helios-orchestrator"]
        .clone();
    assert_eq!(
        role["rules"][0],
        json!({"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get", "list", "watch", "delete"]})
    );
    let binding = fake.objects.lock().unwrap()
        ["/apis/rbac.authorization.k8s.io/v1/namespaces/helios/rolebindings/helios-orchestrator"]
        .clone();
    assert_eq!(binding["roleRef"]["name"], "helios-orchestrator");
    assert_eq!(binding["subjects"][0]["kind"], "ServiceAccount");

    // Again: nothing is written.
    fake.applies.lock().unwrap().clear();
    let out = run(&[]);
    assert_ok(&out);
    assert!(changes(&out).iter().all(|(_, c)| c == "unchanged"));
    assert!(fake.applies.lock().unwrap().is_empty());

    // Someone edits the Role: the next deploy puts it back, and writes only it.
    fake.objects
        .lock()
        .unwrap()
        .get_mut("/apis/rbac.authorization.k8s.io/v1/namespaces/helios/roles/helios-orchestrator")
        .unwrap()["rules"] = json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]);
    let out = run(&[]);
    assert_ok(&out);
    assert_eq!(
        changes(&out)[2],
        (
            "role helios/helios-orchestrator".to_string(),
            "updated".to_string()
        )
    );
    let applies = fake.applies.lock().unwrap().clone();
    assert_eq!(applies.len(), 1, "{applies:?}");
    assert_eq!(
        fake.objects.lock().unwrap()
            ["/apis/rbac.authorization.k8s.io/v1/namespaces/helios/roles/helios-orchestrator"],
        role
    );
}
