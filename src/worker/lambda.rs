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
    if let Some(problem) = outside_lambda(|name| std::env::var(name).ok()) {
        return Err(format!(
            "{problem}: `worker lambda` runs inside AWS Lambda (or an emulator such as \
             `cargo lambda watch`); on a host of your own, use `helios-infra worker serve`"
        )
        .into());
    }
    lambda_runtime::run(service_fn(handle)).await
}

/// What is missing from the environment Lambda gives a function, if anything. The runtime
/// crate panics on a missing variable; this names them instead.
fn outside_lambda(var: impl Fn(&str) -> Option<String>) -> Option<String> {
    let missing: Vec<&str> = [
        "AWS_LAMBDA_RUNTIME_API",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    ]
    .into_iter()
    .filter(|name| var(name).is_none_or(|v| v.trim().is_empty()))
    .collect();
    if !missing.is_empty() {
        return Some(format!("{} not set", missing.join(", ")));
    }
    let memory = var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE").unwrap_or_default();
    if memory.trim().parse::<i32>().is_err() {
        return Some(format!(
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE is {memory:?}, not a number of megabytes"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::outside_lambda;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn names_what_lambda_would_have_set() {
        let mut all = [
            ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
            ("AWS_LAMBDA_FUNCTION_NAME", "helios"),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "2048"),
        ];
        assert_eq!(
            outside_lambda(env(&all[..1])).as_deref(),
            Some(
                "AWS_LAMBDA_FUNCTION_NAME, AWS_LAMBDA_FUNCTION_VERSION, \
                 AWS_LAMBDA_FUNCTION_MEMORY_SIZE not set"
            )
        );
        assert!(outside_lambda(env(&[])).is_some());
        assert_eq!(outside_lambda(env(&all)), None);
        all[3].1 = "lots";
        assert!(outside_lambda(env(&all)).unwrap().contains("not a number"));
    }
}
