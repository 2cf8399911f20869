//! The kubernetes adapter: chunks run as the pods of Kubernetes Indexed Jobs, created
//! through the API server with the `kube` client (kubeconfig or in-cluster service
//! account) and watched by polling.
//!
//! Like Cloud Run Jobs, an Indexed Job is a batch: chunk requests that arrive together (the
//! orchestrator starts up to `--concurrency` at once) become one Job whose completions are
//! the chunks, all running in parallel. Each pod runs `helios-infra worker run`, which takes
//! the job URL from `HELIOS_JOB_URL`, its index from `JOB_COMPLETION_INDEX` (set by
//! Kubernetes) and its chunk and attempt from the `HELIOS_TASKS` list. Kubernetes never
//! retries: `backoffLimitPerIndex: 0` fails an index at its first pod failure without
//! touching the other indexes, and the orchestrator retries the chunk in a later Job. A
//! pod's report (or error) is read from storage; a pod that ends without one is a retryable
//! failure, and a pod that cannot start (image pull, missing secret) is fatal and named.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Container, EnvVar, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};

use super::tasks::{self, fail_all, Gatherer, Waiter};
use super::{ChunkReport, ChunkRequest, FailureKind, WorkerAdapter, WorkerFailure};

/// Label on every Job and pod this adapter creates.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "helios-infra");
/// Label naming the helios-infra job a Kubernetes Job belongs to.
pub const JOB_LABEL: &str = "helios-infra/job";
/// Name of the container that runs the worker, in a template with several.
pub const WORKER_CONTAINER: &str = "worker";
/// How long a finished Job stays for its logs, unless the template says otherwise.
pub const DEFAULT_TTL_SECONDS: i32 = 3600;
/// Pod waiting reasons that no retry can cure: the pod will never run.
const CANNOT_START: [&str; 6] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// Where and how the Jobs run.
#[derive(Debug, Clone)]
pub struct KubernetesOptions {
    /// Namespace of the Jobs (empty: the kubeconfig context's, or "default").
    pub namespace: String,
    /// Worker image; overrides the template's.
    pub image: Option<String>,
    /// The user's Job template (service account, node selectors, resources, volumes…).
    pub template: Option<Job>,
    /// kubeconfig context (default: the current one, or the in-cluster service account).
    pub context: Option<String>,
    /// How long to gather chunk requests into one Job.
    pub gather: Duration,
    /// Interval between status polls.
    pub poll: Duration,
    /// `activeDeadlineSeconds` of each Job.
    pub task_timeout: Duration,
}

impl KubernetesOptions {
    /// Options with the default gather window (250 ms) and poll interval (2 s; the
    /// `HELIOS_K8S_POLL_MS` variable changes it, for tests and impatient users).
    pub fn new(namespace: String, task_timeout: Duration) -> Self {
        let poll = std::env::var("HELIOS_K8S_POLL_MS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(Duration::from_secs(2), Duration::from_millis);
        Self {
            namespace,
            image: None,
            template: None,
            context: None,
            gather: Duration::from_millis(250),
            poll,
            task_timeout,
        }
    }
}

/// Why the adapter cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// No usable credentials or configuration.
    #[error("cannot reach Kubernetes: {0} (set KUBECONFIG, pass --k8s-context, or run inside a cluster with a service account)")]
    Config(String),
    /// The Job template is unusable.
    #[error("--k8s-job-template {path}: {reason}")]
    Template {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Neither the flag nor the template names an image.
    #[error("--adapter kubernetes needs an image: pass --k8s-image IMAGE (the project's Docker image) or set one on the template's worker container")]
    NoImage,
}

/// Reads a `batch/v1` Job template from YAML or JSON and checks what this adapter needs.
pub fn load_template(path: &Path) -> Result<Job, SetupError> {
    let bad = |reason: String| SetupError::Template {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
    let value: serde_json::Value = if text.trim_start().starts_with('{') {
        serde_json::from_str(&text).map_err(|e| bad(format!("not valid JSON: {e}")))?
    } else {
        serde_saphyr::from_str(&text).map_err(|e| bad(format!("not valid YAML: {e}")))?
    };
    match (value["apiVersion"].as_str(), value["kind"].as_str()) {
        (Some("batch/v1"), Some("Job")) => {}
        (v, k) => {
            return Err(bad(format!(
                "must be a batch/v1 Job, found apiVersion {:?} kind {:?}",
                v.unwrap_or(""),
                k.unwrap_or("")
            )))
        }
    }
    let job: Job = serde_json::from_value(value).map_err(|e| bad(format!("not a Job: {e}")))?;
    let containers = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map_or(0, |p| p.containers.len());
    if containers > 1
        && !job
            .spec
            .iter()
            .filter_map(|s| s.template.spec.as_ref())
            .any(|p| p.containers.iter().any(|c| c.name == WORKER_CONTAINER))
    {
        return Err(bad(format!(
            "it has {containers} containers; name the one that runs the worker {WORKER_CONTAINER:?}"
        )));
    }
    Ok(job)
}

struct Inner {
    jobs: Api<Job>,
    pods: Api<Pod>,
    opts: KubernetesOptions,
    /// Jobs created and still watched: deleted on shutdown.
    running: tasks::Running,
}

/// Runs chunks as the pods of Indexed Jobs.
#[derive(Clone)]
pub struct KubernetesAdapter {
    inner: Arc<Inner>,
    gatherer: Arc<Gatherer>,
}

/// A client from the kubeconfig (`context`, else the current one) or the in-cluster
/// service account, and the namespace it defaults to. `deploy kubernetes` uses it too.
pub async fn client(context: Option<&str>) -> Result<(kube::Client, String), SetupError> {
    crate::net::use_ring();
    let config = match context {
        Some(ctx) => kube::Config::from_kubeconfig(&kube::config::KubeConfigOptions {
            context: Some(ctx.to_string()),
            ..Default::default()
        })
        .await
        .map_err(|e| SetupError::Config(e.to_string()))?,
        None => kube::Config::infer()
            .await
            .map_err(|e| SetupError::Config(e.to_string()))?,
    };
    let namespace = config.default_namespace.clone();
    let client = kube::Client::try_from(config).map_err(|e| SetupError::Config(e.to_string()))?;
    Ok((client, namespace))
}

impl KubernetesAdapter {
    /// Finds the credentials (kubeconfig, or the in-cluster service account) and checks
    /// that the Jobs can be built. Nothing is sent to the API server yet.
    pub async fn new(mut opts: KubernetesOptions) -> Result<Self, SetupError> {
        let (client, namespace) = client(opts.context.as_deref()).await?;
        if opts.namespace.is_empty() {
            opts.namespace = namespace;
        }
        // Fail now, not at the first chunk, when there is no image to run.
        job_manifest(&opts, "probe", "0:1", "x")?;
        Ok(Self {
            gatherer: Arc::new(Gatherer::new(opts.gather)),
            inner: Arc::new(Inner {
                jobs: Api::namespaced(client.clone(), &opts.namespace),
                pods: Api::namespaced(client, &opts.namespace),
                opts,
                running: Default::default(),
            }),
        })
    }
}

#[async_trait]
impl WorkerAdapter for KubernetesAdapter {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    async fn run_chunk(&self, req: &ChunkRequest) -> Result<ChunkReport, WorkerFailure> {
        let inner = self.inner.clone();
        self.gatherer
            .submit(req, "Kubernetes", move |url, waiters| {
                let inner = inner.clone();
                async move { inner.execute(url, waiters).await }
            })
            .await
    }

    /// Deletes every Job still running for this orchestrator (cancel, Ctrl-C, a failed
    /// job): their pods stop instead of rendering for nobody.
    async fn shutdown(&self) {
        for name in self.inner.running.take_all() {
            if !is_finished_or_gone(&self.inner.jobs, &name).await {
                self.inner.delete(&name).await;
            }
        }
    }
}

fn lost(why: String) -> WorkerFailure {
    WorkerFailure::retryable(FailureKind::LostWorker, format!("Kubernetes: {why}"))
}

/// A failed API call: configuration mistakes are fatal (and say what to fix), the rest
/// retryable.
fn api_failure(what: &str, namespace: &str, e: &kube::Error) -> WorkerFailure {
    let kube::Error::Api(status) = e else {
        return lost(format!("{what} failed: {e}"));
    };
    let message = &status.message;
    let fatal = |why: String| {
        WorkerFailure::fatal(
            FailureKind::InvalidRequest,
            format!("Kubernetes: {what} failed: {why}"),
        )
    };
    match status.code {
        404 => fatal(format!(
            "namespace {namespace:?} not found ({message}); create it or pass --k8s-namespace"
        )),
        403 => fatal(format!(
            "forbidden ({message}); the orchestrator's identity needs create/get/list/watch/delete on jobs and get/list/watch on pods in namespace {namespace:?} (see docs/deploy-kubernetes.md)"
        )),
        401 => fatal(format!(
            "unauthorized ({message}); check the credentials of the kubeconfig context"
        )),
        400 | 422 => fatal(format!(
            "the API server rejected the Job ({message}); check --k8s-job-template"
        )),
        code => lost(format!("{what} failed: HTTP {code}: {message}")),
    }
}

/// The Job for one batch: the template (or an empty Job) with what this adapter owns
/// filled in. Only `HELIOS_JOB_URL` and `HELIOS_TASKS` are added to the worker's
/// environment; everything else the pods see is what the template itself says.
fn job_manifest(
    opts: &KubernetesOptions,
    job_id: &str,
    task_list: &str,
    job_url: &str,
) -> Result<Job, SetupError> {
    let count = task_list.split(',').count() as i32;
    let mut job = opts.template.clone().unwrap_or_default();
    let meta = &mut job.metadata;
    meta.name = None;
    meta.namespace = None;
    meta.resource_version = None;
    meta.uid = None;
    meta.generate_name = Some(format!("helios-{}-", job_id.to_ascii_lowercase()));
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(MANAGED_BY.0.into(), MANAGED_BY.1.into());
    labels.insert(JOB_LABEL.into(), job_id.into());
    let spec = job.spec.get_or_insert_with(Default::default);
    spec.completion_mode = Some("Indexed".into());
    spec.completions = Some(count);
    spec.parallelism = Some(count);
    // The orchestrator owns retries: an index fails at its first pod failure, and the
    // other indexes go on (a plain backoffLimit of 0 would fail the whole Job).
    spec.backoff_limit_per_index = Some(0);
    spec.backoff_limit = None;
    spec.max_failed_indexes = None;
    spec.pod_failure_policy = None;
    spec.success_policy = None;
    spec.suspend = None;
    spec.active_deadline_seconds =
        Some(opts.task_timeout.as_secs().clamp(1, i64::MAX as u64) as i64);
    spec.ttl_seconds_after_finished
        .get_or_insert(DEFAULT_TTL_SECONDS);
    let template = &mut spec.template;
    let pod_labels = template
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(BTreeMap::new);
    pod_labels.insert(MANAGED_BY.0.into(), MANAGED_BY.1.into());
    pod_labels.insert(JOB_LABEL.into(), job_id.into());
    let pod = template.spec.get_or_insert_with(Default::default);
    pod.restart_policy = Some("Never".into());
    if pod.containers.is_empty() {
        pod.containers.push(Container {
            name: WORKER_CONTAINER.into(),
            ..Default::default()
        });
    }
    let at = pod
        .containers
        .iter()
        .position(|c| c.name == WORKER_CONTAINER)
        .unwrap_or(0);
    let c = &mut pod.containers[at];
    if let Some(image) = &opts.image {
        c.image = Some(image.clone());
    }
    if c.image.as_deref().is_none_or(str::is_empty) {
        return Err(SetupError::NoImage);
    }
    // The image's entrypoint is helios-infra; a template that sets its own command keeps it.
    c.args = Some(vec!["worker".into(), "run".into()]);
    let env = c.env.get_or_insert_with(Vec::new);
    env.retain(|v| v.name != "HELIOS_JOB_URL" && v.name != "HELIOS_TASKS");
    for (name, value) in [("HELIOS_JOB_URL", job_url), ("HELIOS_TASKS", task_list)] {
        env.push(EnvVar {
            name: name.into(),
            value: Some(value.into()),
            value_from: None,
        });
    }
    Ok(job)
}

/// A pod's completion index (the annotation Kubernetes puts on every Indexed Job pod).
fn pod_index(p: &Pod) -> Option<usize> {
    p.metadata
        .annotations
        .as_ref()?
        .get("batch.kubernetes.io/job-completion-index")?
        .parse()
        .ok()
}

/// Why a pod will never run its worker, if it cannot start.
fn cannot_start(p: &Pod) -> Option<String> {
    let status = p.status.as_ref()?;
    status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten())
        .find_map(|c| {
            let w = c.state.as_ref()?.waiting.as_ref()?;
            let reason = w.reason.as_deref()?;
            CANNOT_START.contains(&reason).then(|| match &w.message {
                Some(m) => format!("{reason}: {m}"),
                None => reason.to_string(),
            })
        })
}

/// How a pod that has failed ended (its worker container's exit), for the message.
fn how_it_ended(p: &Pod) -> String {
    let status = p.status.as_ref();
    let term = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find_map(|c| c.state.as_ref()?.terminated.clone()));
    match (term, status.and_then(|s| s.reason.clone())) {
        (Some(t), _) => format!(
            "{} (exit code {}){}",
            t.reason.unwrap_or_else(|| "terminated".into()),
            t.exit_code,
            t.message.map(|m| format!(": {m}")).unwrap_or_default()
        ),
        (None, Some(r)) => r,
        (None, None) => "failed".into(),
    }
}

/// Whether a Job has ended (successfully or not).
fn is_finished(job: &Job) -> bool {
    let Some(s) = &job.status else {
        return false;
    };
    s.completion_time.is_some()
        || s.conditions.iter().flatten().any(|c| {
            matches!(c.type_.as_str(), "Complete" | "Failed" | "FailureTarget")
                && c.status == "True"
        })
}

impl Inner {
    /// Creates one Indexed Job for `waiters` and answers each as its pod finishes.
    async fn execute(&self, job_url: String, waiters: Vec<Waiter>) {
        let ns = &self.opts.namespace;
        let (storage, job_id) = match tasks::job_storage(&job_url) {
            Ok(v) => v,
            Err(f) => return fail_all(waiters, f),
        };
        let task_list = tasks::task_list(&waiters);
        let manifest = match job_manifest(&self.opts, &job_id, &task_list, &job_url) {
            Ok(j) => j,
            Err(e) => {
                return fail_all(
                    waiters,
                    WorkerFailure::fatal(FailureKind::InvalidRequest, e.to_string()),
                )
            }
        };
        let created = match self.jobs.create(&PostParams::default(), &manifest).await {
            Ok(j) => j,
            Err(e) => {
                return fail_all(
                    waiters,
                    api_failure(&format!("creating a Job in namespace {ns:?}"), ns, &e),
                )
            }
        };
        let Some(name) = created.metadata.name.clone() else {
            return fail_all(
                waiters,
                lost("the API server created a Job without a name".into()),
            );
        };
        // A server older than 1.29 drops the field it does not know and would let one
        // failed pod fail every index; say so rather than run with the wrong semantics.
        if created
            .spec
            .as_ref()
            .and_then(|s| s.backoff_limit_per_index)
            .is_none()
        {
            self.delete(&name).await;
            return fail_all(
                waiters,
                WorkerFailure::fatal(
                    FailureKind::InvalidRequest,
                    format!("Kubernetes: the API server dropped backoffLimitPerIndex from Job {name}; helios-infra needs Kubernetes 1.29 or newer (per-index backoff limits)"),
                ),
            );
        }
        tracing::info!(job = %name, namespace = %ns, pods = waiters.len(), "Kubernetes Indexed Job created");
        let _tracked = self.running.track(&name);
        self.watch(&name, &storage, &job_id, waiters).await;
    }

    /// Polls a Job until every waiter is answered or given up.
    async fn watch(
        &self,
        name: &str,
        storage: &crate::storage::Storage,
        job_id: &str,
        mut waiters: Vec<Waiter>,
    ) {
        let ns = &self.opts.namespace;
        let name = name.to_string();
        // Waiters by completion index, so pods can be matched to chunks.
        let order: Vec<(u32, u32)> = waiters
            .iter()
            .map(|w| (w.req.chunk, w.req.attempt))
            .collect();
        let selector = format!("batch.kubernetes.io/job-name={name}");
        let mut seen: HashSet<String> = HashSet::new();
        let mut api_errors = 0u32;
        loop {
            tokio::time::sleep(self.opts.poll).await;
            waiters.retain(|w| !w.answer.is_closed());
            if waiters.is_empty() {
                // The chunks still running were abandoned (cancelled, timed out, or a
                // speculative duplicate won): stop their pods.
                if self.running.claim(&name) && !is_finished_or_gone(&self.jobs, &name).await {
                    self.delete(&name).await;
                }
                return;
            }
            // Job and pods first, then storage: a pod's report is in storage before the
            // pod counts as finished.
            let job = match self.jobs.get_opt(&name).await {
                Ok(j) => {
                    api_errors = 0;
                    j
                }
                Err(e) => {
                    api_errors += 1;
                    tracing::warn!(job = %name, error = %e, "cannot read the Job");
                    if api_errors >= 10 {
                        self.delete(&name).await;
                        return fail_all(waiters, api_failure("reading the Job", ns, &e));
                    }
                    continue;
                }
            };
            let pods = match self
                .pods
                .list(&ListParams::default().labels(&selector))
                .await
            {
                Ok(l) => l.items,
                Err(e) => {
                    tracing::warn!(job = %name, error = %e, "cannot list the Job's pods");
                    Vec::new()
                }
            };
            tasks::collect(storage, job_id, &mut waiters, &mut seen).await;
            for p in &pods {
                let Some(&(chunk, attempt)) = pod_index(p).and_then(|i| order.get(i)) else {
                    continue;
                };
                let Some(at) = waiters
                    .iter()
                    .position(|w| (w.req.chunk, w.req.attempt) == (chunk, attempt))
                else {
                    continue;
                };
                let pod_name = p.metadata.name.clone().unwrap_or_default();
                let phase = p.status.as_ref().and_then(|s| s.phase.clone());
                if let Some(why) = cannot_start(p) {
                    waiters.swap_remove(at).send(Err(WorkerFailure::fatal(
                        FailureKind::InvalidRequest,
                        format!("Kubernetes: pod {pod_name} for chunk {chunk} cannot start: {why}"),
                    )));
                } else if phase.as_deref() == Some("Failed") {
                    waiters.swap_remove(at).send(Err(lost(format!(
                        "pod {pod_name} for chunk {chunk} (attempt {attempt}) ended without a report: {}",
                        how_it_ended(p)
                    ))));
                }
            }
            let gone = job.is_none();
            if gone || job.as_ref().is_some_and(is_finished) {
                let detail = match &job {
                    None => format!("Job {name} was deleted"),
                    Some(j) => {
                        let s = j.status.clone().unwrap_or_default();
                        format!(
                            "Job {name}: {} succeeded, {} failed",
                            s.succeeded.unwrap_or(0),
                            s.failed.unwrap_or(0)
                        )
                    }
                };
                for w in waiters.drain(..) {
                    let (chunk, attempt) = (w.req.chunk, w.req.attempt);
                    w.send(Err(lost(format!(
                        "the pod for chunk {chunk} (attempt {attempt}) ended without a report ({detail})"
                    ))));
                }
                // A finished Job stays for its logs until ttlSecondsAfterFinished.
                return;
            }
            if waiters.is_empty() {
                // Every pod answered; the Job finishes by itself.
                return;
            }
        }
    }

    /// Deletes a Job and, in the background, its pods.
    async fn delete(&self, name: &str) {
        match self.jobs.delete(name, &DeleteParams::background()).await {
            Ok(_) => tracing::info!(job = %name, "Kubernetes Job deleted"),
            Err(e) => tracing::warn!(job = %name, error = %e, "cannot delete the Kubernetes Job"),
        }
    }
}

/// Whether a Job has ended or no longer exists (an unreadable one counts as running).
async fn is_finished_or_gone(jobs: &Api<Job>, name: &str) -> bool {
    match jobs.get_opt(name).await {
        Ok(None) => true,
        Ok(Some(j)) => is_finished(&j),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> KubernetesOptions {
        let mut o = KubernetesOptions::new("render".into(), Duration::from_secs(900));
        o.image = Some("ghcr.io/example/helios-infra:1".into());
        o
    }

    #[test]
    fn a_batch_is_one_indexed_job_that_never_retries_by_itself() {
        let job = job_manifest(
            &opts(),
            "01ABC",
            "0:1,1:1,2:3",
            "s3://b/jobs/01ABC/job.json",
        )
        .unwrap();
        let spec = job.spec.unwrap();
        assert_eq!(spec.completion_mode.as_deref(), Some("Indexed"));
        assert_eq!((spec.completions, spec.parallelism), (Some(3), Some(3)));
        assert_eq!(spec.backoff_limit_per_index, Some(0));
        assert_eq!(spec.backoff_limit, None);
        assert_eq!(spec.ttl_seconds_after_finished, Some(DEFAULT_TTL_SECONDS));
        assert_eq!(job.metadata.generate_name.as_deref(), Some("helios-01abc-"));
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        let env: Vec<(String, Option<String>)> = pod.containers[0]
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.value.clone()))
            .collect();
        assert_eq!(
            env,
            [
                (
                    "HELIOS_JOB_URL".into(),
                    Some("s3://b/jobs/01ABC/job.json".into())
                ),
                ("HELIOS_TASKS".into(), Some("0:1,1:1,2:3".into())),
            ]
        );
    }

    #[test]
    fn a_template_keeps_what_the_user_owns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.yaml");
        std::fs::write(
            &path,
            "apiVersion: batch/v1\nkind: Job\nmetadata:\n  labels: {team: video}\nspec:\n  ttlSecondsAfterFinished: 60\n  backoffLimit: 6\n  template:\n    spec:\n      serviceAccountName: renderer\n      nodeSelector: {pool: spot}\n      containers:\n      - name: sidecar\n        image: busybox\n      - name: worker\n        image: old\n        env:\n        - name: AWS_ACCESS_KEY_ID\n          valueFrom: {secretKeyRef: {name: s3, key: id}}\n        - name: HELIOS_TASKS\n          value: stale\n",
        )
        .unwrap();
        let mut o = opts();
        o.template = Some(load_template(&path).unwrap());
        let job = job_manifest(&o, "01ABC", "4:2", "gs://b/jobs/01ABC/job.json").unwrap();
        assert_eq!(job.metadata.labels.as_ref().unwrap()["team"], "video");
        let spec = job.spec.unwrap();
        assert_eq!(spec.ttl_seconds_after_finished, Some(60));
        assert_eq!(
            spec.backoff_limit, None,
            "retries stay with the orchestrator"
        );
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.service_account_name.as_deref(), Some("renderer"));
        assert_eq!(pod.containers[0].image.as_deref(), Some("busybox"));
        assert_eq!(pod.containers[0].env, None, "the sidecar is left alone");
        let w = &pod.containers[1];
        assert_eq!(w.image.as_deref(), Some("ghcr.io/example/helios-infra:1"));
        let names: Vec<&str> = w.env.iter().flatten().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            ["AWS_ACCESS_KEY_ID", "HELIOS_JOB_URL", "HELIOS_TASKS"]
        );
    }

    #[test]
    fn templates_that_cannot_work_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.yaml");
        for (text, needle) in [
            ("apiVersion: v1\nkind: Pod\n", "must be a batch/v1 Job"),
            ("{not json", "not valid JSON"),
            (
                "apiVersion: batch/v1\nkind: Job\nspec:\n  template:\n    spec:\n      containers:\n      - {name: a, image: img-a}\n      - {name: b, image: img-b}\n",
                "name the one that runs the worker",
            ),
        ] {
            std::fs::write(&path, text).unwrap();
            let e = load_template(&path).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
        let mut o = opts();
        o.image = None;
        assert!(matches!(
            job_manifest(&o, "j", "0:1", "x"),
            Err(SetupError::NoImage)
        ));
    }
}
