//! `deploy gcp` against a strict fake of Google's control planes — Cloud Run Admin v2
//! (services, jobs, their IAM policies, operations), IAM v1 (service accounts), Cloud
//! Storage's bucket IAM — with every other Cloud Storage call forwarded to fake-gcs-server,
//! so the bucket deploy creates is the one the render then uses.
//!
//! Strict: every body must deserialise into the Google SDK's own type of that call
//! (`google_cloud_run_v2::model::Service`/`Job`, `google_cloud_iam_v1::model::
//! SetIamPolicyRequest`, `google_cloud_iam_admin_v1::model::CreateServiceAccountRequest`)
//! and serialise back to the same JSON (those types keep unknown fields aside, so a round
//! trip that differs means a field the API does not have); a service or job must name a
//! service account that exists (as Cloud Run checks); a policy write must carry the etag of
//! the policy read (else ABORTED / 412).
//!
//! Like Cloud Run, the fake runs each revision of a service as a real process with the
//! revision's container arguments (the image is this build's binary, `PORT` set), behind a
//! front that admits only requests whose Google ID token names an identity bound to
//! `roles/run.invoker` on the service — so the render with the printed flags proves the
//! invoker binding, not just that it was written.
//!
//! What it does not prove: Google's real validation of every field, IAM propagation delays,
//! image pulls, and executions of the deployed job (the Cloud Run Jobs adapter is driven
//! through its own fake in tests/cloud_run_job.rs, with the same container contract).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{body::Bytes, Json, Router};
use base64::Engine as _;
use common::peers::*;
use common::*;
use serde_json::{json, Value};

const PROJECT: &str = "helios-test";
const REGION: &str = "us-central1";
const BUCKET: &str = "helios-gcp-renders";
const ORCHESTRATOR: &str = "orchestrator@helios-test.iam.gserviceaccount.com";
const WORKER: &str = "helios-worker@helios-test.iam.gserviceaccount.com";

/// One running revision of a service: the process, and the port it listens on.
struct Revision {
    child: std::process::Child,
    port: u16,
}

impl Drop for Revision {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Default)]
struct State0 {
    accounts: BTreeSet<String>,
    services: BTreeMap<String, Value>,
    jobs: BTreeMap<String, Value>,
    /// IAM policies of services and jobs (by full name) and buckets (`b/NAME`).
    policies: BTreeMap<String, Value>,
    /// Every call that changes state: `METHOD path`.
    writes: Vec<String>,
    /// The running revision of each service.
    revisions: BTreeMap<String, Revision>,
    /// Each service's URL (its front), stable across revisions as on Cloud Run.
    fronts: BTreeMap<String, String>,
    /// Projects whose callers may not create service accounts.
    locked: BTreeSet<String>,
}

struct Fake {
    state: Mutex<State0>,
    gcs: String,
    /// Environment of the revisions (their storage endpoint).
    worker_env: Vec<(&'static str, String)>,
}

type Answer = (StatusCode, Json<Value>);

fn google_error(code: u16, status: &str, message: &str) -> Answer {
    (
        StatusCode::from_u16(code).unwrap(),
        Json(json!({"error": {"code": code, "message": message, "status": status}})),
    )
}

/// `raw` parsed as `T` and written back must be `raw` again.
fn strict<T: serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug>(
    raw: &Value,
) -> Result<T, String> {
    let typed: T = serde_json::from_value(raw.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    if &back != raw || format!("{typed:?}").contains("_unknown_fields") {
        return Err(format!("fields the API does not have in {raw}"));
    }
    Ok(typed)
}

fn canonical<T: serde::de::DeserializeOwned + serde::Serialize>(v: Value) -> Value {
    serde_json::to_value(serde_json::from_value::<T>(v).unwrap()).unwrap()
}

fn done(name: &str, kind: &str, resource: &Value) -> Answer {
    let mut response = resource.clone();
    response["@type"] = json!(format!("type.googleapis.com/google.cloud.run.v2.{kind}"));
    (
        StatusCode::OK,
        Json(
            json!({"name": format!("projects/{PROJECT}/locations/{REGION}/operations/{}", name.replace('/', "-")), "done": true, "response": response}),
        ),
    )
}

fn failed_operation(message: &str) -> Answer {
    (
        StatusCode::OK,
        Json(
            json!({"name": format!("projects/{PROJECT}/locations/{REGION}/operations/failed"), "done": true, "error": {"code": 9, "message": message}}),
        ),
    )
}

fn bump_etag(old: &Value) -> String {
    let n = old
        .as_str()
        .and_then(|e| base64::engine::general_purpose::STANDARD.decode(e).ok())
        .map(|b| b.first().copied().unwrap_or(0))
        .unwrap_or(0);
    base64::engine::general_purpose::STANDARD.encode([n.wrapping_add(1)])
}

/// Starts a revision: the binary with the container's arguments, `PORT` set, like Cloud
/// Run starting the image. `Err` when it does not listen (the operation then fails).
fn start_revision(fake: &Fake, container: &Value) -> Result<Revision, String> {
    let args: Vec<String> = container["args"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let port = free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_helios-infra"))
        .args(&args)
        .env("PORT", port.to_string())
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env_remove("HELIOS_WORKER_TOKEN")
        .envs(fake.worker_env.iter().map(|(k, v)| (k, v)))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    let _ = std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
    if !line.starts_with("listening on ") {
        let mut err = String::new();
        let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err);
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!(
            "The user-provided container failed to start and listen on the port defined by the PORT={port} environment variable: {err}"
        ));
    }
    Ok(Revision { child, port })
}

/// Cloud Run's front of one service: a request passes only with an ID token for this
/// service's URL whose identity holds `roles/run.invoker` on it; then it reaches the
/// running revision.
async fn front(
    State((fake, name)): State<(Arc<Fake>, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = bearer(&headers);
    let (port, url, allowed) = {
        let st = fake.state.lock().unwrap();
        let members: Vec<String> = st
            .policies
            .get(&name)
            .and_then(|p| p["bindings"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter(|b| b["role"] == "roles/run.invoker")
            .flat_map(|b| b["members"].as_array().cloned().unwrap_or_default())
            .filter_map(|m| m.as_str().map(str::to_string))
            .collect();
        (
            st.revisions.get(&name).map(|r| r.port),
            st.fronts.get(&name).cloned().unwrap_or_default(),
            members,
        )
    };
    // Tokens minted by the fake's /token: `id|EMAIL|AUDIENCE`.
    let mut parts = token.split('|');
    let ok = parts.next() == Some("id")
        && parts
            .next()
            .is_some_and(|email| allowed.contains(&format!("serviceAccount:{email}")))
        && parts.next() == Some(url.as_str());
    if !ok {
        return (
            StatusCode::FORBIDDEN,
            "Your client does not have permission to get URL from this server.",
        )
            .into_response();
    }
    let Some(port) = port else {
        return (StatusCode::SERVICE_UNAVAILABLE, "no revision").into_response();
    };
    let mut req = http_client().request(
        reqwest::Method::from_bytes(method.as_str().as_bytes()).unwrap(),
        format!(
            "http://127.0.0.1:{port}{}",
            uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
        ),
    );
    if let Some(ct) = headers.get("content-type") {
        req = req.header("content-type", ct.as_bytes());
    }
    match req.body(body).send().await {
        Ok(r) => {
            let status = StatusCode::from_u16(r.status().as_u16()).unwrap();
            let ct = r
                .headers()
                .get("content-type")
                .map(|v| v.as_bytes().to_vec())
                .unwrap_or_default();
            let bytes = r.bytes().await.unwrap_or_default();
            let mut resp = (status, bytes).into_response();
            if !ct.is_empty() {
                resp.headers_mut().insert(
                    "content-type",
                    axum::http::HeaderValue::from_bytes(&ct).unwrap(),
                );
            }
            resp
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

/// Every Cloud Storage call but bucket IAM goes to fake-gcs-server.
async fn to_gcs(
    fake: &Fake,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let mut req = http_client().request(
        reqwest::Method::from_bytes(method.as_str().as_bytes()).unwrap(),
        format!(
            "{}{}",
            fake.gcs,
            uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
        ),
    );
    for (k, v) in headers {
        if k != "host" && k != "content-length" {
            req = req.header(k.as_str(), v.as_bytes());
        }
    }
    let r = req.body(body).send().await.unwrap();
    let status = StatusCode::from_u16(r.status().as_u16()).unwrap();
    let bytes = r.bytes().await.unwrap_or_default();
    (status, bytes).into_response()
}

async fn handle(
    State(fake): State<Arc<Fake>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query: BTreeMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    if method != Method::GET {
        fake.state
            .lock()
            .unwrap()
            .writes
            .push(format!("{method} {path}"));
    }
    // An anonymous client (plain-http endpoints) sends no credentials; a caller that sends
    // some is not the one under test.
    if path.starts_with("/v") && headers.contains_key("authorization") {
        return google_error(401, "UNAUTHENTICATED", "unexpected credentials").into_response();
    }
    let bucket_iam = format!("/storage/v1/b/{BUCKET}/iam");
    if path == bucket_iam {
        return bucket_policy(&fake, &method, &body).into_response();
    }
    if path.starts_with("/storage/")
        || path.starts_with("/upload/")
        || path.starts_with("/download/")
    {
        return to_gcs(&fake, &method, &uri, &headers, body).await;
    }
    if method == Method::POST && path == "/token" {
        return mint_id_token(&body).into_response();
    }
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return google_error(400, "INVALID_ARGUMENT", &e.to_string()).into_response(),
        }
    };
    if let Some(rest) = path.strip_prefix("/v1/") {
        return iam_admin(&fake, &method, rest, &body).into_response();
    }
    if let Some(rest) = path.strip_prefix("/v2/") {
        return cloud_run(&fake, &method, rest, &query, &body).into_response();
    }
    google_error(404, "NOT_FOUND", &format!("no route {method} {path}")).into_response()
}

/// Google's token endpoint for a service-account key: the JWT's issuer and target
/// audience become an ID token the fronts can read.
fn mint_id_token(body: &[u8]) -> Answer {
    let form: BTreeMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let claims = form
        .get("assertion")
        .and_then(|jwt| jwt.split('.').nth(1))
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    match claims {
        Some(c) if c["iss"].is_string() && c["target_audience"].is_string() => (
            StatusCode::OK,
            Json(
                json!({"id_token": format!("id|{}|{}", c["iss"].as_str().unwrap(), c["target_audience"].as_str().unwrap())}),
            ),
        ),
        _ => google_error(400, "INVALID_ARGUMENT", "invalid_grant"),
    }
}

fn iam_admin(fake: &Fake, method: &Method, rest: &str, body: &Value) -> Answer {
    let parts: Vec<&str> = rest.split('/').collect();
    let mut st = fake.state.lock().unwrap();
    match (method.clone(), parts.as_slice()) {
        (Method::GET, ["projects", p, "serviceAccounts", email]) => {
            if st.accounts.contains(*email)
                && email.ends_with(&format!("@{p}.iam.gserviceaccount.com"))
            {
                (
                    StatusCode::OK,
                    Json(
                        json!({"name": format!("projects/{p}/serviceAccounts/{email}"), "projectId": p, "email": email, "uniqueId": "1234567890", "displayName": "helios-infra workers", "etag": "MDEwMjE5MjA="}),
                    ),
                )
            } else {
                google_error(
                    404,
                    "NOT_FOUND",
                    &format!("Unknown service account {email}"),
                )
            }
        }
        (Method::POST, ["projects", p, "serviceAccounts"]) => {
            if st.locked.contains(*p) {
                return google_error(403, "PERMISSION_DENIED", "Permission 'iam.serviceAccounts.create' denied on resource (or it may not exist).");
            }
            let req =
                match strict::<google_cloud_iam_admin_v1::model::CreateServiceAccountRequest>(body)
                {
                    Ok(r) => r,
                    Err(e) => return google_error(400, "INVALID_ARGUMENT", &e),
                };
            let id = &req.account_id;
            let valid = (6..=30).contains(&id.len())
                && id.starts_with(|c: char| c.is_ascii_lowercase())
                && id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !valid {
                return google_error(
                    400,
                    "INVALID_ARGUMENT",
                    "accountId does not match [a-z]([-a-z0-9]*[a-z0-9])",
                );
            }
            let email = format!("{id}@{p}.iam.gserviceaccount.com");
            if !st.accounts.insert(email.clone()) {
                return google_error(409, "ALREADY_EXISTS", "Service account already exists");
            }
            (
                StatusCode::OK,
                Json(
                    json!({"name": format!("projects/{p}/serviceAccounts/{email}"), "projectId": p, "email": email, "uniqueId": "1234567890"}),
                ),
            )
        }
        _ => google_error(404, "NOT_FOUND", &format!("no IAM route {method} {rest}")),
    }
}

fn bucket_policy(fake: &Fake, method: &Method, body: &[u8]) -> Answer {
    let key = format!("b/{BUCKET}");
    let mut st = fake.state.lock().unwrap();
    let current = st.policies.get(&key).cloned().unwrap_or_else(|| {
        json!({"kind": "storage#policy", "resourceId": format!("projects/_/buckets/{BUCKET}"), "version": 1, "etag": "CAE=",
               "bindings": [{"role": "roles/storage.legacyBucketOwner", "members": [format!("projectEditor:{PROJECT}"), format!("projectOwner:{PROJECT}")]}]})
    });
    match *method {
        Method::GET => (StatusCode::OK, Json(current)),
        Method::PUT => {
            let Ok(mut new) = serde_json::from_slice::<Value>(body) else {
                return google_error(400, "INVALID_ARGUMENT", "not JSON");
            };
            let known = ["kind", "resourceId", "version", "etag", "bindings"];
            let fields_ok = new
                .as_object()
                .is_some_and(|o| o.keys().all(|k| known.contains(&k.as_str())))
                && new["bindings"].as_array().is_some_and(|bs| {
                    bs.iter().all(|b| {
                        b.as_object().is_some_and(|o| {
                            o.keys()
                                .all(|k| ["role", "members", "condition"].contains(&k.as_str()))
                        }) && b["role"].is_string()
                            && b["members"]
                                .as_array()
                                .is_some_and(|m| m.iter().all(Value::is_string))
                    })
                });
            if !fields_ok {
                return google_error(400, "INVALID_ARGUMENT", &format!("invalid policy {new}"));
            }
            if new["etag"] != current["etag"] {
                return google_error(412, "FAILED_PRECONDITION", "etag mismatch");
            }
            // Members must exist, as Cloud Storage checks.
            for m in new["bindings"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|b| b["members"].as_array().unwrap())
            {
                let m = m.as_str().unwrap();
                if let Some(email) = m.strip_prefix("serviceAccount:") {
                    if email.ends_with(".iam.gserviceaccount.com")
                        && email.starts_with("helios-worker@")
                        && !st.accounts.contains(email)
                    {
                        return google_error(
                            400,
                            "INVALID_ARGUMENT",
                            &format!("Service account {email} does not exist."),
                        );
                    }
                }
            }
            new["etag"] = json!(bump_etag(&current["etag"]));
            new["kind"] = json!("storage#policy");
            st.policies.insert(key, new.clone());
            (StatusCode::OK, Json(new))
        }
        _ => google_error(405, "INVALID_ARGUMENT", "method"),
    }
}

fn cloud_run(
    fake: &Arc<Fake>,
    method: &Method,
    rest: &str,
    query: &BTreeMap<String, String>,
    body: &Value,
) -> Answer {
    let prefix = format!("projects/{PROJECT}/locations/{REGION}/");
    // IAM policy calls on a service or job.
    if let Some((res, verb)) = rest.split_once(':') {
        let mut st = fake.state.lock().unwrap();
        let exists = st.services.contains_key(res) || st.jobs.contains_key(res);
        if !exists {
            return google_error(404, "NOT_FOUND", &format!("Resource '{res}' was not found"));
        }
        let current = st
            .policies
            .get(res)
            .cloned()
            .unwrap_or_else(|| json!({"etag": "ACAB"}));
        return match (method.clone(), verb) {
            (Method::GET, "getIamPolicy") => (StatusCode::OK, Json(current)),
            (Method::POST, "setIamPolicy") => {
                let req = match strict::<google_cloud_iam_v1::model::SetIamPolicyRequest>(body) {
                    Ok(r) => r,
                    Err(e) => return google_error(400, "INVALID_ARGUMENT", &e),
                };
                let mut policy = body["policy"].clone();
                if policy["etag"] != current["etag"] {
                    return google_error(409, "ABORTED", "There were concurrent policy changes.");
                }
                for b in &req.policy.as_ref().unwrap().bindings {
                    let valid_role = [
                        "roles/run.invoker",
                        "roles/run.developer",
                        "roles/run.admin",
                        "roles/run.viewer",
                    ]
                    .contains(&b.role.as_str());
                    if !valid_role {
                        return google_error(
                            400,
                            "INVALID_ARGUMENT",
                            &format!("Role {} is not supported for this resource.", b.role),
                        );
                    }
                }
                policy["etag"] = json!(bump_etag(&current["etag"]));
                st.policies.insert(res.to_string(), policy.clone());
                (StatusCode::OK, Json(policy))
            }
            _ => google_error(404, "NOT_FOUND", "no such method"),
        };
    }
    let Some(rel) = rest.strip_prefix(&prefix) else {
        return google_error(
            404,
            "NOT_FOUND",
            &format!("Location or project not found: {rest}"),
        );
    };
    let parts: Vec<&str> = rel.split('/').collect();
    match (method.clone(), parts.as_slice()) {
        (Method::GET, ["services", _]) => match fake.state.lock().unwrap().services.get(rest) {
            Some(s) => (StatusCode::OK, Json(s.clone())),
            None => google_error(
                404,
                "NOT_FOUND",
                &format!("Resource '{rest}' was not found"),
            ),
        },
        (Method::GET, ["jobs", _]) => match fake.state.lock().unwrap().jobs.get(rest) {
            Some(s) => (StatusCode::OK, Json(s.clone())),
            None => google_error(
                404,
                "NOT_FOUND",
                &format!("Resource '{rest}' was not found"),
            ),
        },
        (Method::POST, ["services"]) => {
            let Some(id) = query.get("serviceId") else {
                return google_error(400, "INVALID_ARGUMENT", "serviceId is required");
            };
            let name = format!("{prefix}services/{id}");
            put_service(fake, &name, body, true)
        }
        (Method::PATCH, ["services", _]) => put_service(fake, rest, body, false),
        (Method::POST, ["jobs"]) => {
            let Some(id) = query.get("jobId") else {
                return google_error(400, "INVALID_ARGUMENT", "jobId is required");
            };
            let name = format!("{prefix}jobs/{id}");
            put_job(fake, &name, body, true)
        }
        (Method::PATCH, ["jobs", _]) => put_job(fake, rest, body, false),
        _ => google_error(
            404,
            "NOT_FOUND",
            &format!("no Cloud Run route {method} {rest}"),
        ),
    }
}

/// A create needs the name free, an update needs it taken.
fn create_or_update(name: &str, exists: bool, create: bool) -> Result<(), Answer> {
    match (create, exists) {
        (true, true) => Err(google_error(
            409,
            "ALREADY_EXISTS",
            &format!("Resource '{name}' already exists."),
        )),
        (false, false) => Err(google_error(
            404,
            "NOT_FOUND",
            &format!("Resource '{name}' was not found"),
        )),
        _ => Ok(()),
    }
}

fn check_account(st: &State0, account: &str) -> Result<(), Answer> {
    if st.accounts.contains(account) {
        Ok(())
    } else {
        Err(google_error(
            400,
            "INVALID_ARGUMENT",
            &format!("Service account {account} does not exist."),
        ))
    }
}

fn put_service(fake: &Arc<Fake>, name: &str, body: &Value, create: bool) -> Answer {
    let svc = match strict::<google_cloud_run_v2::model::Service>(body) {
        Ok(s) => s,
        Err(e) => return google_error(400, "INVALID_ARGUMENT", &e),
    };
    let mut st = fake.state.lock().unwrap();
    let exists = st.services.contains_key(name);
    if let Err(e) = create_or_update(name, exists, create) {
        return e;
    }
    if !create && svc.name != name {
        return google_error(400, "INVALID_ARGUMENT", "service.name must match the URL");
    }
    let Some(t) = svc.template.as_ref() else {
        return google_error(400, "INVALID_ARGUMENT", "template is required");
    };
    if t.containers.len() != 1 || t.containers[0].image.is_empty() {
        return google_error(
            400,
            "INVALID_ARGUMENT",
            "exactly one container with an image",
        );
    }
    if let Err(e) = check_account(&st, &t.service_account) {
        return e;
    }
    if !t.revision.is_empty() {
        return google_error(
            409,
            "ALREADY_EXISTS",
            "Revision named in the template already exists",
        );
    }
    // The new revision, started as Cloud Run would; the old one stops once it serves.
    let container = body["template"]["containers"][0].clone();
    let revision = match start_revision(fake, &container) {
        Ok(r) => r,
        Err(e) => {
            return failed_operation(&format!(
                "Revision '{}-00001' is not ready and cannot serve traffic. {e}",
                name.rsplit('/').next().unwrap()
            ))
        }
    };
    let generation = st
        .services
        .get(name)
        .and_then(|s| s["generation"].as_str().and_then(|g| g.parse::<u64>().ok()))
        .unwrap_or(0)
        + 1;
    let uri = match st.fronts.get(name) {
        Some(u) => u.clone(),
        None => {
            let u = serve_on_loopback(
                Router::new()
                    .fallback(front)
                    .with_state((fake.clone(), name.to_string())),
            );
            st.fronts.insert(name.to_string(), u.clone());
            u
        }
    };
    st.revisions.insert(name.to_string(), revision);
    let mut stored = body.clone();
    stored["name"] = json!(name);
    stored["uri"] = json!(uri);
    stored["generation"] = json!(generation.to_string());
    stored["etag"] = json!(format!("\"g{generation}\""));
    // What the server fills in: the default ingress, traffic to the latest revision.
    stored["ingress"] = json!(1);
    stored["traffic"] = json!([{"type": 1, "percent": 100}]);
    stored["latestReadyRevision"] = json!(format!("{name}/revisions/r{generation}"));
    let stored = canonical::<google_cloud_run_v2::model::Service>(stored);
    st.services.insert(name.to_string(), stored.clone());
    done(name, "Service", &stored)
}

fn put_job(fake: &Arc<Fake>, name: &str, body: &Value, create: bool) -> Answer {
    let job = match strict::<google_cloud_run_v2::model::Job>(body) {
        Ok(j) => j,
        Err(e) => return google_error(400, "INVALID_ARGUMENT", &e),
    };
    let mut st = fake.state.lock().unwrap();
    let exists = st.jobs.contains_key(name);
    if let Err(e) = create_or_update(name, exists, create) {
        return e;
    }
    let Some(t) = job.template.as_ref().and_then(|e| e.template.as_ref()) else {
        return google_error(400, "INVALID_ARGUMENT", "template.template is required");
    };
    if t.containers.len() != 1 || t.containers[0].image.is_empty() {
        return google_error(
            400,
            "INVALID_ARGUMENT",
            "exactly one container with an image",
        );
    }
    if !t.containers[0].ports.is_empty() {
        return google_error(400, "INVALID_ARGUMENT", "a job's container has no ports");
    }
    if let Err(e) = check_account(&st, &t.service_account) {
        return e;
    }
    let generation = st
        .jobs
        .get(name)
        .and_then(|s| s["generation"].as_str().and_then(|g| g.parse::<u64>().ok()))
        .unwrap_or(0)
        + 1;
    let mut stored = body.clone();
    stored["name"] = json!(name);
    stored["generation"] = json!(generation.to_string());
    stored["etag"] = json!(format!("\"g{generation}\""));
    // Server defaults: one task and parallelism unset.
    if stored["template"]["taskCount"].is_null() {
        stored["template"]["taskCount"] = json!(1);
    }
    let stored = canonical::<google_cloud_run_v2::model::Job>(stored);
    st.jobs.insert(name.to_string(), stored.clone());
    done(name, "Job", &stored)
}

struct Setup {
    fake: Arc<Fake>,
    url: String,
    _gcs: Peer,
    env: Env,
    key: String,
}

fn setup() -> Setup {
    let gcs = fake_gcs("some-other-bucket");
    let fake = Arc::new(Fake {
        state: Mutex::new(State0::default()),
        gcs: gcs.endpoint.clone(),
        worker_env: vec![("STORAGE_EMULATOR_HOST", gcs.endpoint.clone())],
    });
    let url = serve_on_loopback(Router::new().fallback(handle).with_state(fake.clone()));
    let env = Env::new();
    let key = write_key(&env, "key.json", ORCHESTRATOR, &url);
    Setup {
        fake,
        url,
        _gcs: gcs,
        env,
        key,
    }
}

/// A service-account key whose token endpoint is the fake's.
fn write_key(env: &Env, file: &str, email: &str, url: &str) -> String {
    let pem = std::process::Command::new("openssl")
        .args(["genrsa", "2048"])
        .output()
        .unwrap();
    assert!(pem.status.success());
    let key = json!({
        "type": "service_account",
        "client_email": email,
        "private_key": String::from_utf8(pem.stdout).unwrap(),
        "token_uri": format!("{url}/token"),
    });
    let path = env.path(file).display().to_string();
    std::fs::write(&path, key.to_string()).unwrap();
    path
}

impl Drop for Setup {
    /// The revisions' processes outlive the fake's server threads: stop them with the test.
    fn drop(&mut self) {
        let mut st = self
            .fake
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        st.revisions.clear();
    }
}

impl Setup {
    fn vars(&self, key: &str) -> Vec<(&'static str, String)> {
        vec![
            ("CLOUD_RUN_ENDPOINT", self.url.clone()),
            ("HELIOS_IAM_ENDPOINT", self.url.clone()),
            ("STORAGE_EMULATOR_HOST", self.url.clone()),
            ("GOOGLE_APPLICATION_CREDENTIALS", key.to_string()),
        ]
    }

    fn run(&self, args: &[&str], key: &str) -> std::process::Output {
        self.env
            .cmd(args)
            .env_remove("GOOGLE_CLOUD_PROJECT")
            .env_remove("GCE_METADATA_HOST")
            .envs(self.vars(key))
            .output()
            .unwrap()
    }

    /// `deploy gcp --json` with these extra flags; the steps by resource and the final event.
    fn deploy(&self, extra: &[&str]) -> (BTreeMap<String, Value>, Value) {
        let mut args = vec![
            "--json",
            "deploy",
            "gcp",
            "--project",
            PROJECT,
            "--region",
            REGION,
            "--image",
            "us-central1-docker.pkg.dev/helios-test/helios/helios-infra:1",
            "--bucket",
            BUCKET,
        ];
        args.extend_from_slice(extra);
        let out = self.run(&args, &self.key);
        assert_ok(&out);
        let lines = json_lines(&out.stdout);
        let steps = lines
            .iter()
            .filter(|l| l["event"] == "resource")
            .map(|l| {
                (
                    l["step"]["resource"].as_str().unwrap().to_string(),
                    l["step"].clone(),
                )
            })
            .collect();
        let last = lines.last().cloned().unwrap();
        assert_eq!(last["event"], "deployed");
        (steps, last)
    }

    fn writes(&self) -> Vec<String> {
        self.fake.state.lock().unwrap().writes.clone()
    }
}

fn change(steps: &BTreeMap<String, Value>, resource: &str) -> String {
    let s = &steps[resource];
    match s["settings"].as_array() {
        Some(list) => format!(
            "{} ({})",
            s["change"].as_str().unwrap(),
            list.iter()
                .map(|v| v.as_str().unwrap())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => s["change"].as_str().unwrap().to_string(),
    }
}

#[test]
fn deploy_gcp_makes_the_service_job_account_and_bindings_once_and_the_printed_flags_render() {
    let s = setup();
    let service_name = format!("projects/{PROJECT}/locations/{REGION}/services/helios-worker");
    let job_name = format!("projects/{PROJECT}/locations/{REGION}/jobs/helios-render");

    // A dry run on an empty project: everything would be created, nothing is written.
    let (steps, last) = s.deploy(&["--dry-run"]);
    assert_eq!(steps.len(), 7, "{steps:?}");
    assert!(
        steps.values().all(|v| v["change"] == "created"),
        "{steps:?}"
    );
    assert!(s.writes().is_empty(), "a dry run wrote: {:?}", s.writes());
    assert_eq!(last["dry_run"], true);

    // The deploy.
    let (steps, last) = s.deploy(&[]);
    assert_eq!(
        change(&steps, &format!("service account {WORKER}")),
        "created"
    );
    assert_eq!(change(&steps, &format!("bucket {BUCKET}")), "created");
    assert_eq!(change(&steps, "service helios-worker"), "created");
    assert_eq!(change(&steps, "job helios-render"), "created");
    assert_eq!(
        change(&steps, &format!("bucket {BUCKET} roles/storage.objectUser")),
        format!("updated (+serviceAccount:{WORKER}, +serviceAccount:{ORCHESTRATOR})")
    );
    assert_eq!(
        change(&steps, "service helios-worker roles/run.invoker"),
        format!("updated (+serviceAccount:{ORCHESTRATOR})")
    );
    assert_eq!(
        change(&steps, "job helios-render roles/run.developer"),
        format!("updated (+serviceAccount:{ORCHESTRATOR})")
    );
    {
        let st = s.fake.state.lock().unwrap();
        assert!(st.accounts.contains(WORKER));
        // The workers' account has the object role on this bucket, and nothing else
        // anywhere (the fake has no project IAM: any call would have failed).
        let bucket = &st.policies[&format!("b/{BUCKET}")];
        let bindings = bucket["bindings"].as_array().unwrap();
        let object_user = bindings
            .iter()
            .find(|b| b["role"] == "roles/storage.objectUser")
            .unwrap();
        assert_eq!(
            object_user["members"],
            json!([
                format!("serviceAccount:{WORKER}"),
                format!("serviceAccount:{ORCHESTRATOR}")
            ])
        );
        assert!(
            bindings
                .iter()
                .any(|b| b["role"] == "roles/storage.legacyBucketOwner"),
            "the bucket's other bindings are kept"
        );
        let svc: google_cloud_run_v2::model::Service =
            serde_json::from_value(st.services[&service_name].clone()).unwrap();
        let t = svc.template.unwrap();
        assert_eq!(t.service_account, WORKER);
        assert_eq!(t.max_instance_request_concurrency, 1);
        assert_eq!(t.timeout.unwrap().seconds(), 3600);
        assert_eq!(t.containers[0].args, ["worker", "serve", "--no-auth"]);
        assert_eq!(
            t.containers[0].image,
            "us-central1-docker.pkg.dev/helios-test/helios/helios-infra:1"
        );
        let limits = &t.containers[0].resources.as_ref().unwrap().limits;
        assert_eq!(
            (limits["cpu"].as_str(), limits["memory"].as_str()),
            ("2", "4Gi")
        );
        assert!(!svc.invoker_iam_disabled, "the service stays private");
        let job: google_cloud_run_v2::model::Job =
            serde_json::from_value(st.jobs[&job_name].clone()).unwrap();
        let tt = job.template.unwrap().template.unwrap();
        assert_eq!(tt.containers[0].args, ["worker", "run"]);
        assert_eq!(tt.max_retries(), Some(&0));
        assert_eq!(tt.service_account, WORKER);
        assert_eq!(
            st.policies[&service_name]["bindings"],
            json!([{"role": "roles/run.invoker", "members": [format!("serviceAccount:{ORCHESTRATOR}")]}])
        );
        assert_eq!(
            st.policies[&job_name]["bindings"],
            json!([{"role": "roles/run.developer", "members": [format!("serviceAccount:{ORCHESTRATOR}")]}])
        );
    }
    let uri = s.fake.state.lock().unwrap().fronts[&service_name].clone();
    let flags = last["render_flags"].as_str().unwrap().to_string();
    assert_eq!(
        flags,
        format!("--storage gs://{BUCKET}/helios --adapter cloudrun --service {uri}")
    );
    assert_eq!(
        last["job_render_flags"],
        format!("--storage gs://{BUCKET}/helios --adapter cloudrun-job --cloud-run-job helios-render --project {PROJECT} --region {REGION}")
    );

    // Again: everything unchanged, nothing written.
    let before = s.writes().len();
    let (steps, last) = s.deploy(&[]);
    assert!(
        steps.values().all(|v| v["change"] == "unchanged"),
        "{steps:?}"
    );
    assert_eq!(last["unchanged"], true);
    assert_eq!(
        s.writes().len(),
        before,
        "a second run wrote: {:?}",
        &s.writes()[before..]
    );

    // One changed setting is updated in place, on both; the service keeps its URL.
    let (steps, last) = s.deploy(&["--memory", "8Gi"]);
    assert_eq!(change(&steps, "service helios-worker"), "updated (memory)");
    assert_eq!(change(&steps, "job helios-render"), "updated (memory)");
    assert_eq!(
        change(&steps, &format!("service account {WORKER}")),
        "unchanged"
    );
    assert_eq!(
        change(&steps, "service helios-worker roles/run.invoker"),
        "unchanged"
    );
    assert_eq!(last["render_flags"], flags.as_str());
    let patches: Vec<String> = s.writes()[before..].to_vec();
    assert_eq!(
        patches,
        [
            format!("PATCH /v2/{service_name}"),
            format!("PATCH /v2/{job_name}")
        ],
        "only the two updates were written"
    );

    // The printed flags work: doctor pings a worker through the service (the front admits
    // the orchestrator's ID token because of the binding), and a render completes.
    let mut doctor = vec!["--json", "doctor"];
    let flag_list: Vec<&str> = flags.split(' ').collect();
    doctor.extend_from_slice(&flag_list);
    let out = s.run(&doctor, &s.key);
    let checks = json_lines(&out.stdout);
    assert!(
        out.status.success(),
        "{checks:?}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(named(&checks, "ping (")["ok"], true, "{checks:?}");

    let r = ffmpeg_renderer();
    let mut render = vec![
        "render",
        "-o",
        "deployed.mp4",
        "--frames",
        "0..20",
        "--size",
        "64x64",
        "--chunks",
        "2",
    ];
    render.extend_from_slice(&flag_list);
    let out = s.run(&with_renderer(&render, &r), &s.key);
    assert_ok(&out);
    assert_eq!(probe_stream(&s.env.path("deployed.mp4")).0, 20);

    // An identity without the binding is turned away at the front.
    let stranger = write_key(
        &s.env,
        "stranger.json",
        "stranger@helios-test.iam.gserviceaccount.com",
        &s.url,
    );
    let out = s.run(&doctor, &stranger);
    assert!(!out.status.success());
    let checks = json_lines(&out.stdout);
    assert_eq!(named(&checks, "ping (")["ok"], false, "{checks:?}");
}

#[test]
fn deploy_gcp_names_what_failed_and_what_to_do() {
    let s = setup();
    s.fake
        .state
        .lock()
        .unwrap()
        .locked
        .insert(PROJECT.to_string());
    let base = [
        "deploy",
        "gcp",
        "--project",
        PROJECT,
        "--region",
        REGION,
        "--image",
        "img",
        "--bucket",
        BUCKET,
    ];
    let out = s.run(&base, &s.key);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "service account {WORKER}: serviceAccounts.create failed"
        )),
        "{err}"
    );
    assert!(err.contains("roles/iam.serviceAccountAdmin"), "{err}");
    assert!(
        s.fake.state.lock().unwrap().services.is_empty(),
        "nothing after the failure was attempted"
    );

    // No way to tell who renders: asked for --invoker, before anything is called.
    let user_key = s.env.path("user.json");
    std::fs::write(&user_key, json!({"type": "authorized_user", "client_id": "x", "client_secret": "y", "refresh_token": "z"}).to_string()).unwrap();
    let before = s.writes().len();
    let out = s.run(&base, &user_key.display().to_string());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--invoker"), "{err}");
    assert_eq!(s.writes().len(), before);

    // Invalid settings are refused with the flag to fix.
    let mut bad = base.to_vec();
    bad.extend_from_slice(&["--service", "Helios_Worker"]);
    let out = s.run(&bad, &s.key);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--service"));
}
