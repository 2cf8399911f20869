//! Google ID tokens for calling a private Cloud Run service (audience = the service URL).
//!
//! Sources, in order: a service-account key (`GOOGLE_APPLICATION_CREDENTIALS`, signed JWT
//! exchanged at the key's `token_uri` for an ID token), then the metadata server (on GCP;
//! `GCE_METADATA_HOST` overrides its address). Tokens are cached until shortly before they
//! expire.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::Deserialize;
use tokio::sync::Mutex;

use super::http::TokenSource;
use super::{FailureKind, WorkerFailure};

/// Refresh this long before expiry.
const EARLY: u64 = 300;

#[derive(Debug, Clone, Deserialize)]
struct ServiceAccountKey {
    #[serde(rename = "type")]
    kind: String,
    client_email: String,
    private_key: String,
    #[serde(default = "default_token_uri")]
    token_uri: String,
}

fn default_token_uri() -> String {
    "https://oauth2.googleapis.com/token".into()
}

enum Source {
    Key(ServiceAccountKey),
    Metadata(String),
}

/// Mints and caches Google ID tokens for one audience.
pub struct GoogleIdTokens {
    audience: String,
    source: Source,
    client: reqwest::Client,
    cached: Mutex<Option<(String, u64)>>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn auth_failure(message: String) -> WorkerFailure {
    WorkerFailure::fatal(FailureKind::InvalidRequest, message)
}

impl GoogleIdTokens {
    /// Chooses a source from the environment (application default credentials).
    pub fn from_env(audience: &str) -> Result<Self, WorkerFailure> {
        let source = match std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS")
            .filter(|p| !p.is_empty())
        {
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    auth_failure(format!(
                        "cannot read GOOGLE_APPLICATION_CREDENTIALS {}: {e}",
                        path.to_string_lossy()
                    ))
                })?;
                let key: ServiceAccountKey = serde_json::from_str(&text).map_err(|e| {
                    auth_failure(format!(
                        "{} is not a service-account key ({e}); Cloud Run ID tokens need one, the metadata server, or --worker-token",
                        path.to_string_lossy()
                    ))
                })?;
                if key.kind != "service_account" {
                    return Err(auth_failure(format!(
                        "{} holds {:?} credentials; ID tokens need a service-account key",
                        path.to_string_lossy(),
                        key.kind
                    )));
                }
                Source::Key(key)
            }
            None => Source::Metadata(
                std::env::var("GCE_METADATA_HOST")
                    .unwrap_or_else(|_| "metadata.google.internal".into()),
            ),
        };
        let client = crate::net::http_client()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| auth_failure(e.to_string()))?;
        Ok(Self {
            audience: audience.to_string(),
            source,
            client,
            cached: Mutex::new(None),
        })
    }

    async fn mint(&self) -> Result<(String, u64), WorkerFailure> {
        match &self.source {
            Source::Key(key) => self.exchange_key(key).await,
            Source::Metadata(host) => {
                let url = format!(
                    "http://{host}/computeMetadata/v1/instance/service-accounts/default/identity"
                );
                let resp = self
                    .client
                    .get(url)
                    .query(&[("audience", self.audience.as_str()), ("format", "full")])
                    .header("Metadata-Flavor", "Google")
                    .send()
                    .await
                    .map_err(|e| {
                        WorkerFailure::retryable(
                            FailureKind::LostWorker,
                            format!("no Google credentials: the metadata server at {host} is unreachable ({e}); set GOOGLE_APPLICATION_CREDENTIALS or --worker-token"),
                        )
                    })?;
                let status = resp.status();
                let token = resp.text().await.unwrap_or_default();
                if !status.is_success() || token.trim().is_empty() {
                    return Err(auth_failure(format!(
                        "metadata server refused an ID token ({status}): {token}"
                    )));
                }
                let exp = expiry(&token).unwrap_or(now() + 3600);
                Ok((token.trim().to_string(), exp))
            }
        }
    }

    async fn exchange_key(&self, key: &ServiceAccountKey) -> Result<(String, u64), WorkerFailure> {
        #[derive(serde::Serialize)]
        struct Claims<'a> {
            iss: &'a str,
            sub: &'a str,
            aud: &'a str,
            target_audience: &'a str,
            iat: u64,
            exp: u64,
        }
        let iat = now();
        let claims = Claims {
            iss: &key.client_email,
            sub: &key.client_email,
            aud: &key.token_uri,
            target_audience: &self.audience,
            iat,
            exp: iat + 3600,
        };
        let signing =
            jsonwebtoken::EncodingKey::from_rsa_pem(key.private_key.as_bytes()).map_err(|e| {
                auth_failure(format!(
                    "the service-account key's private_key is unusable: {e}"
                ))
            })?;
        let assertion = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &signing,
        )
        .map_err(|e| auth_failure(format!("cannot sign the token request: {e}")))?;
        let resp = self
            .client
            .post(&key.token_uri)
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", assertion.as_str()),
            ])
            .send()
            .await
            .map_err(|e| {
                WorkerFailure::retryable(
                    FailureKind::LostWorker,
                    format!("token endpoint {} unreachable: {e}", key.token_uri),
                )
            })?;
        let status = resp.status();
        #[derive(Deserialize)]
        struct Answer {
            id_token: Option<String>,
        }
        let body = resp.text().await.unwrap_or_default();
        let token = serde_json::from_str::<Answer>(&body)
            .ok()
            .and_then(|a| a.id_token);
        match token {
            Some(t) if status.is_success() => {
                let exp = expiry(&t).unwrap_or(iat + 3600);
                Ok((t, exp))
            }
            _ => Err(auth_failure(format!(
                "{} gave no ID token ({status}): {body}",
                key.token_uri
            ))),
        }
    }
}

/// The `exp` claim of a JWT, read without verifying it (we are its holder, not its judge).
fn expiry(jwt: &str) -> Option<u64> {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()?
        .get("exp")?
        .as_u64()
}

#[async_trait]
impl TokenSource for GoogleIdTokens {
    async fn token(&self) -> Result<String, WorkerFailure> {
        let mut cached = self.cached.lock().await;
        if let Some((t, exp)) = cached.as_ref() {
            if now() + EARLY < *exp {
                return Ok(t.clone());
            }
        }
        let (t, exp) = self.mint().await?;
        *cached = Some((t.clone(), exp));
        Ok(t)
    }
}
