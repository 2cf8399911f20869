//! Choosing where chunks run: `--adapter local|http|cloudrun` and its settings.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::bail;
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::adapters::http::{ClientAuth, HttpAdapter};
use crate::adapters::local::LocalAdapter;
use crate::adapters::WorkerAdapter;

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
}

/// What is recorded with a job so that `resume` reaches the same workers. Never secrets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdapterConfig {
    /// Engine.
    pub kind: AdapterKind,
    /// Worker base URLs (http) or the service URL (cloudrun).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workers: Vec<String>,
}

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
    /// Bearer token the workers expect (for cloudrun, instead of a Google ID token).
    #[arg(long, env = "HELIOS_WORKER_TOKEN", hide_env_values = true)]
    pub worker_token: Option<String>,
}

impl AdapterArgs {
    /// The adapter configuration: flags first, then what the job recorded, then local.
    pub fn config(&self, recorded: Option<&str>) -> anyhow::Result<AdapterConfig> {
        let recorded: AdapterConfig = recorded
            .and_then(|r| serde_json::from_str(r).ok())
            .unwrap_or_default();
        let kind = self.adapter.unwrap_or(recorded.kind);
        let workers = match kind {
            AdapterKind::Local => Vec::new(),
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
            _ => {}
        }
        Ok(AdapterConfig { kind, workers })
    }

    /// Builds the adapter.
    pub fn build(&self, config: &AdapterConfig) -> anyhow::Result<Arc<dyn WorkerAdapter>> {
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
                Arc::new(HttpAdapter::new("http", config.workers.clone(), auth)?)
            }
            AdapterKind::Cloudrun => {
                let auth = match &self.worker_token {
                    Some(t) => ClientAuth::Bearer(t.clone()),
                    None => bail!("--adapter cloudrun needs --worker-token (or HELIOS_WORKER_TOKEN) in this build"),
                };
                Arc::new(HttpAdapter::new("cloudrun", config.workers.clone(), auth)?)
            }
        })
    }
}
