//! Which engine a job's chunks run on, and what is recorded with the job so that `resume`
//! reaches the same workers (never secrets) and its spend can be priced.

use std::path::PathBuf;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use crate::cost::Price;

/// The engines chunks can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdapterKind {
    /// Child processes on this machine.
    #[default]
    Local,
    /// `helios-infra worker serve` instances (--workers URL,URL…).
    Http,
    /// A Cloud Run service running `worker serve` (--service URL).
    Cloudrun,
    /// An AWS Lambda function running `worker lambda` (--function NAME|ARN).
    Lambda,
    /// Cloud Run Jobs executions, one task per chunk (--cloud-run-job NAME).
    #[serde(rename = "cloudrun-job")]
    CloudrunJob,
    /// Kubernetes Indexed Jobs, one pod per chunk (--k8s-namespace, --k8s-image).
    Kubernetes,
}

/// Price of a pod-hour used when --k8s-pod-hour-usd is not given: about what one pod of
/// 2 vCPU and 4 GiB costs on on-demand cloud nodes (USD).
pub const DEFAULT_POD_HOUR_USD: f64 = 0.10;

/// What is recorded with a job so that `resume` reaches the same workers. Never secrets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AdapterConfig {
    /// Engine.
    pub kind: AdapterKind,
    /// Worker base URLs (http) or the service URL (cloudrun).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workers: Vec<String>,
    /// Lambda function name or ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// Lambda region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Lambda version or alias.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qualifier: Option<String>,
    /// Memory of one worker in MB (lambda, cloudrun), for cost estimates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u32>,
    /// vCPUs of one worker (cloudrun), for cost estimates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcpu: Option<f64>,
    /// Cloud Run job resource name (cloudrun-job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_run_job: Option<String>,
    /// Cloud Run Admin API endpoint, when not the default (cloudrun-job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_run_endpoint: Option<String>,
    /// Namespace of the Jobs (kubernetes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k8s_namespace: Option<String>,
    /// Worker image (kubernetes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k8s_image: Option<String>,
    /// Path of the Job template, read again on resume (kubernetes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k8s_job_template: Option<PathBuf>,
    /// kubeconfig context (kubernetes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k8s_context: Option<String>,
    /// Price of one pod-hour in USD, for cost estimates (kubernetes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_hour_usd: Option<f64>,
    /// Price of one worker-hour in USD (local and HTTP workers; they are free without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_hour_usd: Option<f64>,
}

impl AdapterConfig {
    /// What one worker's time costs on this engine.
    pub fn price(&self) -> Price {
        let memory_mb = self.memory_mb.unwrap_or(4096);
        let vcpu = self.vcpu.unwrap_or(2.0);
        match self.kind {
            AdapterKind::Local | AdapterKind::Http => Price::worker_hour(self.worker_hour_usd),
            AdapterKind::Lambda => Price::lambda(memory_mb),
            AdapterKind::Cloudrun => Price::cloud_run(vcpu, memory_mb, false),
            AdapterKind::CloudrunJob => Price::cloud_run(vcpu, memory_mb, true),
            AdapterKind::Kubernetes => {
                Price::pod_hour(self.pod_hour_usd.unwrap_or(DEFAULT_POD_HOUR_USD))
            }
        }
    }

    /// Whether the workers share this machine's cores.
    pub fn is_local(&self) -> bool {
        self.kind == AdapterKind::Local
    }
}
