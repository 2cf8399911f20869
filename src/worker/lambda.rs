//! `worker lambda`: the same binary as an AWS Lambda function (custom runtime, `bootstrap`).
//!
//! The event is a [`ChunkRequest`]; the function returns the chunk report or
//! `{"error": …}` as its normal payload, so that the classification (retryable or fatal)
//! survives. Crashes and Lambda's own timeouts surface to the caller as `FunctionError`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_runtime::{service_fn, LambdaEvent};

use super::protocol::WorkerResponse;
use super::{ChunkRequest, FailureKind, WorkerFailure};

/// Time kept back from Lambda's deadline to upload an error answer.
const DEADLINE_MARGIN: Duration = Duration::from_secs(5);

/// Time left before `deadline_ms` (Unix milliseconds), if it is a plausible absolute time.
/// Emulators sometimes send a relative value; that is treated as no deadline.
pub fn remaining(deadline_ms: u64) -> Option<Duration> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_millis() as u64;
    // Anything before 2020 is not an absolute deadline.
    if deadline_ms < 1_577_836_800_000 {
        return None;
    }
    Some(Duration::from_millis(deadline_ms.saturating_sub(now)))
}

async fn handle(event: LambdaEvent<ChunkRequest>) -> Result<WorkerResponse, lambda_runtime::Error> {
    let req = event.payload;
    let result = match remaining(event.context.deadline) {
        Some(left) => {
            let budget = left.saturating_sub(DEADLINE_MARGIN);
            match tokio::time::timeout(budget, super::run(&req)).await {
                Ok(r) => r,
                Err(_) => Err(WorkerFailure::retryable(
                    FailureKind::Timeout,
                    format!(
                        "chunk {} did not finish within the Lambda deadline ({}s left at start)",
                        req.chunk,
                        left.as_secs()
                    ),
                )),
            }
        }
        None => super::run(&req).await,
    };
    Ok(WorkerResponse::from(result))
}

/// Serves invocations from the Lambda Runtime API (`AWS_LAMBDA_RUNTIME_API`) until the
/// process is stopped.
pub async fn run() -> Result<(), lambda_runtime::Error> {
    if std::env::var("AWS_LAMBDA_RUNTIME_API").map_or(true, |v| v.is_empty()) {
        return Err("AWS_LAMBDA_RUNTIME_API is not set: `worker lambda` runs inside AWS Lambda (or an emulator such as `cargo lambda watch`)".into());
    }
    lambda_runtime::run(service_fn(handle)).await
}
