//! The Lambda adapter: each attempt is a synchronous `Invoke` (RequestResponse) of a
//! function running `helios-infra worker lambda`, with the worker payload as the event.
//!
//! Throttling (`TooManyRequestsException`, rate exceeded) and 5xx answers are retried here
//! with backoff; an invoke that hangs is abandoned after a client-side timeout; a
//! `FunctionError` (crash, out of memory, Lambda timeout) is a retryable lost worker.
//! Region, credentials and endpoint come from the standard AWS environment
//! (`AWS_REGION`, `AWS_ENDPOINT_URL_LAMBDA` / `AWS_ENDPOINT_URL`, …).

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_lambda::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;

use super::http::ThrottlePolicy;
use super::{ChunkReport, ChunkRequest, FailureKind, WorkerAdapter, WorkerFailure};
use crate::backoff;
use crate::worker::protocol::WorkerResponse;

/// Settings of the Lambda adapter.
#[derive(Debug, Clone)]
pub struct LambdaOptions {
    /// Function name or ARN.
    pub function: String,
    /// Region (else from the environment).
    pub region: Option<String>,
    /// Version or alias.
    pub qualifier: Option<String>,
    /// Longest an invoke may take before it is abandoned (Lambda's own maximum is 15 min).
    pub invoke_timeout: Duration,
}

/// Invokes a Lambda function per attempt.
pub struct LambdaAdapter {
    client: aws_sdk_lambda::Client,
    options: LambdaOptions,
    throttle: ThrottlePolicy,
}

impl LambdaAdapter {
    /// Builds a client from the standard AWS configuration chain.
    pub async fn new(options: LambdaOptions) -> Self {
        let shared = crate::net::aws_config(options.region.as_deref()).await;
        // Retries are ours (logged, with full jitter); the SDK makes one try per call.
        let config = aws_sdk_lambda::config::Builder::from(&shared)
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .build();
        Self {
            client: aws_sdk_lambda::Client::from_conf(config),
            options,
            throttle: ThrottlePolicy::default(),
        }
    }

    /// The Lambda client (`doctor` and `deploy` use the adapter's own client).
    pub fn client(&self) -> &aws_sdk_lambda::Client {
        &self.client
    }

    /// Replaces the throttling policy (tests use short delays).
    pub fn with_throttle(mut self, throttle: ThrottlePolicy) -> Self {
        self.throttle = throttle;
        self
    }
}

/// What one invoke came to.
enum Outcome {
    Done(Result<ChunkReport, WorkerFailure>),
    Throttled(String),
}

#[async_trait]
impl WorkerAdapter for LambdaAdapter {
    fn name(&self) -> &'static str {
        "lambda"
    }

    async fn run_chunk(&self, req: &ChunkRequest) -> Result<ChunkReport, WorkerFailure> {
        let payload = serde_json::to_vec(req)
            .map_err(|e| WorkerFailure::fatal(FailureKind::Internal, e.to_string()))?;
        let mut throttled = 0;
        loop {
            match self.invoke(req, &payload).await {
                Outcome::Done(r) => return r,
                Outcome::Throttled(why) => {
                    throttled += 1;
                    if throttled >= self.throttle.max_tries {
                        return Err(WorkerFailure::retryable(
                            FailureKind::Throttled,
                            format!(
                                "Lambda throttled chunk {} {throttled} times in a row: {why}",
                                req.chunk
                            ),
                        ));
                    }
                    let delay = backoff::delay(&self.throttle.backoff, throttled);
                    tracing::warn!(
                        function = %self.options.function, chunk = req.chunk, tries = throttled,
                        backoff_ms = delay.as_millis() as u64, reason = %why,
                        "throttled; backing off"
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

impl LambdaAdapter {
    async fn invoke(&self, req: &ChunkRequest, payload: &[u8]) -> Outcome {
        let call = self
            .client
            .invoke()
            .function_name(&self.options.function)
            .set_qualifier(self.options.qualifier.clone())
            .invocation_type(InvocationType::RequestResponse)
            .payload(Blob::new(payload.to_vec()))
            .send();
        let result = match tokio::time::timeout(self.options.invoke_timeout, call).await {
            Ok(r) => r,
            Err(_) => {
                return Outcome::Done(Err(WorkerFailure::retryable(
                    FailureKind::Timeout,
                    format!(
                        "invoke of {} for chunk {} got no answer within {}s",
                        self.options.function,
                        req.chunk,
                        self.options.invoke_timeout.as_secs()
                    ),
                )))
            }
        };
        let out = match result {
            Ok(out) => out,
            Err(err) => return classify(&self.options.function, err),
        };
        let body = out
            .payload()
            .map(|b| b.as_ref().to_vec())
            .unwrap_or_default();
        if let Some(kind) = out.function_error() {
            return Outcome::Done(Err(WorkerFailure::retryable(
                FailureKind::LostWorker,
                format!(
                    "Lambda function {} failed ({kind}) on chunk {}: {}",
                    self.options.function,
                    req.chunk,
                    String::from_utf8_lossy(&body[..body.len().min(500)])
                ),
            )));
        }
        Outcome::Done(match serde_json::from_slice::<WorkerResponse>(&body) {
            Ok(answer) => answer.into(),
            Err(e) => Err(WorkerFailure::retryable(
                FailureKind::LostWorker,
                format!(
                    "unreadable answer from {} for chunk {}: {e}",
                    self.options.function, req.chunk
                ),
            )),
        })
    }
}

fn classify<E, R>(function: &str, err: SdkError<E, R>) -> Outcome
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    let status = match &err {
        SdkError::ServiceError(s) => Some(raw_status(s.raw())),
        _ => None,
    };
    let code = err.code().unwrap_or_default().to_string();
    let message = err
        .message()
        .map(str::to_string)
        .unwrap_or_else(|| crate::error_chain(&err));
    let why = format!("{code} {message}").trim().to_string();
    let throttling = code == "TooManyRequestsException"
        || code.contains("Throttl")
        || message.to_ascii_lowercase().contains("rate exceeded")
        || status == Some(429);
    if throttling || status.is_some_and(|s| s >= 500) {
        return Outcome::Throttled(why);
    }
    match err {
        SdkError::ServiceError(_) => Outcome::Done(Err(WorkerFailure::fatal(
            FailureKind::InvalidRequest,
            format!("Lambda refused to invoke {function}: {why}"),
        ))),
        // Dispatch, timeout and response errors: the network or the service hiccuped.
        other => Outcome::Done(Err(WorkerFailure::retryable(
            FailureKind::LostWorker,
            format!("invoking {function} failed: {}", crate::error_chain(&other)),
        ))),
    }
}

fn raw_status<R: std::fmt::Debug>(raw: &R) -> u16 {
    // The raw response's Debug output carries its status; avoids depending on the HTTP types.
    let text = format!("{raw:?}");
    text.split("status: StatusCode(")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}
