//! Vendoring at plan time: every remote resource the composition loaded while it was
//! planned is fetched once, kept content-addressed in the job's storage (`assets/<sha256>`)
//! and recorded in the spec, so that every worker answers the page from the same bytes and
//! none contacts the origin.

use std::collections::BTreeMap;

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};

use sha2::{Digest, Sha256};

use crate::spec::Asset;
use crate::storage::Storage;

/// Resources fetched at once.
const PARALLEL: usize = 4;

/// Fetches `urls` (each once), stores their bytes and returns the spec's asset map. An
/// asset that cannot be fetched, answers other than 2xx or exceeds `max_bytes` fails the
/// plan, naming its URL.
pub async fn vendor(
    urls: &[String],
    storage: &Storage,
    max_bytes: u64,
) -> anyhow::Result<BTreeMap<String, Asset>> {
    if urls.is_empty() {
        return Ok(BTreeMap::new());
    }
    let client = crate::net::http_client()
        .timeout(std::time::Duration::from_secs(120))
        .build()
        .context("cannot make an HTTP client to vendor the page's remote resources")?;
    let fetched: Vec<(String, Asset)> = futures::stream::iter(urls.iter().map(|url| {
        let (client, storage) = (client.clone(), storage.clone());
        let url = url.clone();
        async move {
            let asset = fetch(&client, &storage, &url, max_bytes).await?;
            Ok::<_, anyhow::Error>((url, asset))
        }
    }))
    .buffer_unordered(PARALLEL)
    .try_collect()
    .await?;
    let total: u64 = fetched.iter().map(|(_, a)| a.bytes).sum();
    eprintln!(
        "assets: {} remote resource(s) vendored ({}), workers answer the page from these copies",
        fetched.len(),
        human_bytes(total)
    );
    Ok(fetched.into_iter().collect())
}

async fn fetch(
    client: &reqwest::Client,
    storage: &Storage,
    url: &str,
    max_bytes: u64,
) -> anyhow::Result<Asset> {
    let fail = |why: String| {
        anyhow::anyhow!(
            "the composition loads {url}, which cannot be vendored: {why}; nothing was rendered (fix the URL, or plan with --no-vendor to let every worker fetch it)"
        )
    };
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| fail(super::error_chain(&anyhow::Error::new(e))))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(fail(format!("HTTP {status}")));
    }
    let too_big = || {
        anyhow::anyhow!(
            "the composition loads {url}, which is larger than --max-asset-mb {} MB; nothing was rendered (raise --max-asset-mb, or put the file in the composition's folder)",
            max_bytes / 1_000_000
        )
    };
    if resp.content_length().is_some_and(|n| n > max_bytes) {
        return Err(too_big());
    }
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut body = Vec::new();
    let mut resp = resp;
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| fail(super::error_chain(&anyhow::Error::new(e))))?
    {
        if (body.len() + chunk.len()) as u64 > max_bytes {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    let sha256 = hex::encode(Sha256::digest(&body));
    let key = format!("assets/{sha256}");
    let bytes = body.len() as u64;
    if storage.size(&key).await?.is_none() {
        storage
            .put(&key, body.into())
            .await
            .with_context(|| format!("storing the vendored copy of {url}"))?;
    }
    Ok(Asset {
        key,
        sha256,
        bytes,
        content_type,
    })
}

fn human_bytes(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / f64::from(1 << 20))
    } else {
        format!("{:.1} KiB", n as f64 / 1024.0)
    }
}
