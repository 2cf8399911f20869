//! Webhooks: a JSON POST when a job succeeds, fails or is cancelled, signed with
//! HMAC-SHA256 (`X-Helios-Signature: sha256=<hex>` over the exact body) and retried with
//! backoff until the receiver answers 2xx.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use crate::backoff;
use crate::spec::RetryPolicy;

/// Header carrying the signature.
pub const SIGNATURE_HEADER: &str = "X-Helios-Signature";

/// Where and how to notify.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// Receiver URL.
    pub url: String,
    /// HMAC key; without one the body is sent unsigned.
    pub secret: Option<String>,
    /// Tries before giving up.
    pub max_tries: u32,
    /// Backoff between tries.
    pub backoff: RetryPolicy,
}

impl Webhook {
    /// A webhook with the default retry policy (6 tries, 1 s doubling to 30 s).
    pub fn new(url: String, secret: Option<String>) -> Self {
        Self {
            url,
            secret,
            max_tries: 6,
            backoff: RetryPolicy {
                base_backoff_ms: 1000,
                max_backoff_ms: 30_000,
                ..RetryPolicy::default()
            },
        }
    }
}

/// The JSON body.
#[derive(Debug, Clone, Serialize)]
pub struct Notification {
    /// `job.succeeded`, `job.failed` or `job.cancelled`.
    pub event: &'static str,
    /// Job id.
    pub job: String,
    /// Final state.
    pub state: String,
    /// Output file (success).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Frames in the job.
    pub frames: u64,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `sha256=<hex>` of the HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Delivers a notification; returns whether the receiver accepted it.
pub async fn deliver(hook: &Webhook, note: &Notification) -> bool {
    let Ok(body) = serde_json::to_vec(note) else {
        return false;
    };
    let Ok(client) = crate::net::http_client()
        .timeout(Duration::from_secs(30))
        .build()
    else {
        return false;
    };
    for n in 1..=hook.max_tries {
        let mut req = client
            .post(&hook.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Helios-Event", note.event)
            .body(body.clone());
        if let Some(secret) = &hook.secret {
            req = req.header(SIGNATURE_HEADER, signature(secret, &body));
        }
        let why = match req.send().await {
            Ok(r) if r.status().is_success() => return true,
            Ok(r) => format!("answered {}", r.status()),
            Err(e) => e.to_string(),
        };
        if n == hook.max_tries {
            tracing::error!(url = %hook.url, tries = n, error = %why, "webhook not delivered");
            break;
        }
        let delay = backoff::delay(&hook.backoff, n);
        tracing::warn!(url = %hook.url, tries = n, backoff_ms = delay.as_millis() as u64, error = %why, "webhook failed; retrying");
        tokio::time::sleep(delay).await;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
