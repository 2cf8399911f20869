//! Choosing where chunks run: `--adapter local|http|cloudrun|cloudrun-job|lambda|kubernetes`
//! and its settings.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::bail;
use clap::Args;

use crate::adapters::cloudrun_job::{check_job_name, CloudRunJobAdapter, CloudRunJobOptions};
use crate::adapters::google_auth::GoogleIdTokens;
use crate::adapters::http::{ClientAuth, HttpAdapter};
use crate::adapters::kubernetes::{load_template, KubernetesAdapter, KubernetesOptions};
use crate::adapters::lambda::{LambdaAdapter, LambdaOptions};
use crate::adapters::local::LocalAdapter;
use crate::adapters::WorkerAdapter;

pub use crate::adapters::config::{AdapterConfig, AdapterKind, DEFAULT_POD_HOUR_USD};

/// Adapter flags of `render`, `run` and `resume`.
#[derive(Debug, Args, Default)]
pub struct AdapterArgs {
    /// Where chunks run (default local; `resume` defaults to the job's own adapter).
    #[arg(long, value_enum)]
    pub adapter: Option<AdapterKind>,
    /// Worker URLs for --adapter http, comma-separated (http://host:port).
    #[arg(long, value_delimiter = ',')]
    pub workers: Vec<String>,
    /// Cloud Run service URL for --adapter cloudrun.
    #[arg(long)]
    pub service: Option<String>,
    /// Bearer token the workers expect (for cloudrun: instead of a Google ID token from
    /// GOOGLE_APPLICATION_CREDENTIALS or the metadata server).
    #[arg(long, env = "HELIOS_WORKER_TOKEN", hide_env_values = true)]
    pub worker_token: Option<String>,
    /// Lambda function name or ARN for --adapter lambda.
    #[arg(long)]
    pub function: Option<String>,
    /// AWS region of the function (default: AWS_REGION / the AWS config).
    #[arg(long)]
    pub region: Option<String>,
    /// Lambda version or alias to invoke.
    #[arg(long)]
    pub qualifier: Option<String>,
    /// Cloud Run job for --adapter cloudrun-job: projects/PROJECT/locations/REGION/jobs/JOB,
    /// or just JOB with --project and --region.
    #[arg(long)]
    pub cloud_run_job: Option<String>,
    /// Google Cloud project of --cloud-run-job JOB.
    #[arg(long, env = "GOOGLE_CLOUD_PROJECT")]
    pub project: Option<String>,
    /// Cloud Run Admin API endpoint (default https://run.googleapis.com; a plain http://
    /// endpoint, such as an emulator, is called without credentials).
    #[arg(long, env = "CLOUD_RUN_ENDPOINT")]
    pub cloud_run_endpoint: Option<String>,
    /// Namespace of the Indexed Jobs for --adapter kubernetes (default: the kubeconfig
    /// context's namespace, or "default").
    #[arg(long)]
    pub k8s_namespace: Option<String>,
    /// Worker image for --adapter kubernetes (the project's Docker image, whose entrypoint
    /// is helios-infra); overrides the template's.
    #[arg(long)]
    pub k8s_image: Option<String>,
    /// A batch/v1 Job (YAML or JSON) that --adapter kubernetes builds its Jobs from: service
    /// account, node selectors, tolerations, resources, volumes, env from Secrets. The
    /// completions, parallelism, retries and the worker's arguments are filled in.
    #[arg(long, value_name = "FILE")]
    pub k8s_job_template: Option<PathBuf>,
    /// kubeconfig context for --adapter kubernetes (default: the current context, or the
    /// in-cluster service account).
    #[arg(long)]
    pub k8s_context: Option<String>,
    /// Price of one pod-hour in USD, for the cost estimate in `status` (kubernetes; your
    /// nodes' price divided by the pods one node runs).
    #[arg(long, value_name = "USD")]
    pub k8s_pod_hour_usd: Option<f64>,
    /// Price of one worker-hour in USD, for estimates, the spend ledger and --max-cost with
    /// local and HTTP workers (which otherwise cost nothing): e.g. your machines' hourly
    /// price divided by the workers one runs.
    #[arg(long, value_name = "USD")]
    pub worker_hour_usd: Option<f64>,
    /// Memory of one worker in MB, for the cost estimate in `status` (lambda: the function's
    /// memory size, default 4096; cloudrun: default 4096).
    #[arg(long)]
    pub memory_mb: Option<u32>,
    /// vCPUs of one Cloud Run instance, for the cost estimate in `status` (default 2).
    #[arg(long)]
    pub vcpu: Option<f64>,
    /// http/cloudrun: a worker lost or unreachable this many times gets no more chunks of
    /// the job; the job fails when no healthy worker is left.
    #[arg(long, default_value_t = crate::adapters::http::DEFAULT_MAX_WORKER_FAILURES)]
    pub max_worker_failures: u32,
    /// http/cloudrun: seconds a worker is skipped after a failure.
    #[arg(long, default_value_t = crate::adapters::http::DEFAULT_REST.as_secs_f64())]
    pub worker_rest: f64,
    /// Start a duplicate of an attempt that runs far beyond its siblings' median once most
    /// chunks are done (default: on for remote adapters, off for local).
    #[arg(long, conflicts_with = "no_speculate")]
    pub speculate: bool,
    /// Never start speculative duplicates.
    #[arg(long)]
    pub no_speculate: bool,
    /// Seconds before an invocation that has not answered is abandoned (lambda); the task
    /// timeout of each execution (cloudrun-job); each Job's activeDeadlineSeconds
    /// (kubernetes).
    #[arg(long, default_value_t = 900.0)]
    pub invoke_timeout: f64,
}

impl AdapterArgs {
    /// The adapter configuration: flags first, then what the job recorded, then local.
    pub fn config(&self, recorded: Option<&str>) -> anyhow::Result<AdapterConfig> {
        let recorded: AdapterConfig = recorded
            .and_then(|r| serde_json::from_str(r).ok())
            .unwrap_or_default();
        let kind = self.adapter.unwrap_or(recorded.kind);
        let same = recorded.kind == kind;
        let pick = |flag: &Option<String>, old: &Option<String>| {
            flag.clone()
                .or_else(|| if same { old.clone() } else { None })
        };
        let function = pick(&self.function, &recorded.function);
        let region = pick(&self.region, &recorded.region);
        let qualifier = pick(&self.qualifier, &recorded.qualifier);
        let workers = match kind {
            AdapterKind::Local
            | AdapterKind::Lambda
            | AdapterKind::CloudrunJob
            | AdapterKind::Kubernetes => Vec::new(),
            AdapterKind::Http if !self.workers.is_empty() => self.workers.clone(),
            AdapterKind::Cloudrun if self.service.is_some() => {
                self.service.iter().cloned().collect()
            }
            _ if recorded.kind == kind => recorded.workers,
            _ => Vec::new(),
        };
        for w in &workers {
            if !(w.starts_with("http://") || w.starts_with("https://")) {
                bail!("worker URL {w:?} must start with http:// or https://");
            }
        }
        match kind {
            AdapterKind::Http if workers.is_empty() => {
                bail!("--adapter http needs --workers URL[,URL…]")
            }
            AdapterKind::Cloudrun if workers.is_empty() => {
                bail!("--adapter cloudrun needs --service URL")
            }
            AdapterKind::Lambda if function.is_none() => {
                bail!("--adapter lambda needs --function NAME|ARN")
            }
            _ => {}
        }
        let cloud_run_job = match (&self.cloud_run_job, kind) {
            (Some(name), AdapterKind::CloudrunJob) if !name.contains('/') => {
                let (Some(project), Some(region)) = (&self.project, &self.region) else {
                    bail!("--cloud-run-job {name} needs --project and --region (or give projects/PROJECT/locations/REGION/jobs/{name})");
                };
                Some(format!("projects/{project}/locations/{region}/jobs/{name}"))
            }
            (Some(name), AdapterKind::CloudrunJob) => Some(name.clone()),
            _ if same => recorded.cloud_run_job.clone(),
            _ => None,
        };
        if kind == AdapterKind::CloudrunJob {
            match &cloud_run_job {
                None => bail!("--adapter cloudrun-job needs --cloud-run-job projects/PROJECT/locations/REGION/jobs/JOB"),
                Some(name) => check_job_name(name).map_err(|e| anyhow::anyhow!("--cloud-run-job: {e}"))?,
            }
        }
        let cloud_run_endpoint = self
            .cloud_run_endpoint
            .clone()
            .filter(|e| !e.is_empty())
            .or(if same {
                recorded.cloud_run_endpoint.clone()
            } else {
                None
            });
        let k8s_namespace = pick(&self.k8s_namespace, &recorded.k8s_namespace);
        let k8s_image = pick(&self.k8s_image, &recorded.k8s_image);
        let k8s_context = pick(&self.k8s_context, &recorded.k8s_context);
        let k8s_job_template = match &self.k8s_job_template {
            // Recorded absolute, so that `resume` from another directory finds it.
            Some(p) => Some(std::path::absolute(p).unwrap_or_else(|_| p.clone())),
            None if same => recorded.k8s_job_template.clone(),
            None => None,
        };
        let pod_hour_usd = match self.k8s_pod_hour_usd {
            Some(p) if !(p.is_finite() && p >= 0.0) => {
                bail!("--k8s-pod-hour-usd must be a non-negative price")
            }
            Some(p) => Some(p),
            None if same => recorded.pod_hour_usd,
            None => None,
        };
        let worker_hour_usd = match self.worker_hour_usd {
            Some(p) if !(p.is_finite() && p >= 0.0) => {
                bail!("--worker-hour-usd must be a non-negative price")
            }
            Some(p) => Some(p),
            None if same => recorded.worker_hour_usd,
            None => None,
        };
        let memory_mb = self
            .memory_mb
            .or(if same { recorded.memory_mb } else { None });
        let vcpu = self.vcpu.or(if same { recorded.vcpu } else { None });
        Ok(match kind {
            AdapterKind::Lambda => AdapterConfig {
                kind,
                workers,
                function,
                region,
                qualifier,
                memory_mb: memory_mb.or(Some(4096)),
                ..AdapterConfig::default()
            },
            AdapterKind::Cloudrun => AdapterConfig {
                kind,
                workers,
                memory_mb: memory_mb.or(Some(4096)),
                vcpu: vcpu.or(Some(2.0)),
                ..AdapterConfig::default()
            },
            AdapterKind::CloudrunJob => AdapterConfig {
                kind,
                memory_mb: memory_mb.or(Some(4096)),
                vcpu: vcpu.or(Some(2.0)),
                cloud_run_job,
                cloud_run_endpoint,
                ..AdapterConfig::default()
            },
            AdapterKind::Kubernetes => AdapterConfig {
                kind,
                k8s_namespace,
                k8s_image,
                k8s_job_template,
                k8s_context,
                pod_hour_usd: pod_hour_usd.or(Some(DEFAULT_POD_HOUR_USD)),
                ..AdapterConfig::default()
            },
            _ => AdapterConfig {
                kind,
                workers,
                worker_hour_usd,
                ..AdapterConfig::default()
            },
        })
    }

    /// Straggler speculation for this adapter.
    pub fn speculation(&self, config: &AdapterConfig) -> Option<crate::orchestrator::Speculation> {
        let on = !self.no_speculate && (self.speculate || config.kind != AdapterKind::Local);
        on.then(crate::orchestrator::Speculation::default)
    }

    fn rest(&self) -> anyhow::Result<std::time::Duration> {
        if !(self.worker_rest.is_finite() && self.worker_rest >= 0.0) {
            bail!("--worker-rest must be a non-negative number of seconds");
        }
        Ok(std::time::Duration::from_secs_f64(self.worker_rest))
    }

    /// Builds the adapter.
    pub async fn build(&self, config: &AdapterConfig) -> anyhow::Result<Arc<dyn WorkerAdapter>> {
        Ok(match config.kind {
            AdapterKind::Local => {
                let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("helios-infra"));
                Arc::new(LocalAdapter::new(exe))
            }
            AdapterKind::Http => {
                let auth = match &self.worker_token {
                    Some(t) => ClientAuth::Bearer(t.clone()),
                    None => ClientAuth::None,
                };
                Arc::new(
                    HttpAdapter::new("http", config.workers.clone(), auth)?
                        .with_health(self.max_worker_failures, self.rest()?),
                )
            }
            AdapterKind::Cloudrun => {
                let auth = match &self.worker_token {
                    Some(t) => ClientAuth::Bearer(t.clone()),
                    // A private service: Google ID tokens with the service URL as audience.
                    None => {
                        ClientAuth::Source(Arc::new(GoogleIdTokens::from_env(&config.workers[0])?))
                    }
                };
                Arc::new(
                    HttpAdapter::new("cloudrun", config.workers.clone(), auth)?
                        .with_health(self.max_worker_failures, self.rest()?),
                )
            }
            AdapterKind::CloudrunJob => {
                if !(self.invoke_timeout.is_finite() && self.invoke_timeout > 0.0) {
                    bail!("--invoke-timeout must be a positive number of seconds");
                }
                let opts = CloudRunJobOptions::new(
                    config.cloud_run_job.clone().unwrap_or_default(),
                    config.cloud_run_endpoint.clone(),
                    std::time::Duration::from_secs_f64(self.invoke_timeout),
                );
                Arc::new(CloudRunJobAdapter::new(opts).await?)
            }
            AdapterKind::Kubernetes => {
                if !(self.invoke_timeout.is_finite() && self.invoke_timeout > 0.0) {
                    bail!("--invoke-timeout must be a positive number of seconds");
                }
                let mut opts = KubernetesOptions::new(
                    config.k8s_namespace.clone().unwrap_or_default(),
                    std::time::Duration::from_secs_f64(self.invoke_timeout),
                );
                opts.image = config.k8s_image.clone();
                opts.context = config.k8s_context.clone();
                opts.template = match &config.k8s_job_template {
                    Some(p) => Some(load_template(p)?),
                    None => None,
                };
                Arc::new(KubernetesAdapter::new(opts).await?)
            }
            AdapterKind::Lambda => {
                if !(self.invoke_timeout.is_finite() && self.invoke_timeout > 0.0) {
                    bail!("--invoke-timeout must be a positive number of seconds");
                }
                Arc::new(
                    LambdaAdapter::new(LambdaOptions {
                        function: config.function.clone().unwrap_or_default(),
                        region: config.region.clone(),
                        qualifier: config.qualifier.clone(),
                        invoke_timeout: std::time::Duration::from_secs_f64(self.invoke_timeout),
                    })
                    .await,
                )
            }
        })
    }
}
