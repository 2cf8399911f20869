//! Exponential backoff with full jitter: attempt `n` waits a uniformly random time in
//! `[0, min(max, base · 2^(n-1))]`, which spreads retries of many chunks apart.

use std::time::Duration;

use rand::Rng;

use crate::spec::RetryPolicy;

/// The upper bound of the delay after failed attempt `n` (from 1).
pub fn ceiling(policy: &RetryPolicy, n: u32) -> Duration {
    let exp = policy.base_backoff_ms.saturating_mul(
        1u64.checked_shl(n.saturating_sub(1).min(32))
            .unwrap_or(u64::MAX),
    );
    Duration::from_millis(exp.min(policy.max_backoff_ms))
}

/// A random delay after failed attempt `n`.
pub fn delay(policy: &RetryPolicy, n: u32) -> Duration {
    let cap = ceiling(policy, n).as_millis() as u64;
    Duration::from_millis(rand::rng().random_range(0..=cap))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps() {
        let p = RetryPolicy {
            base_backoff_ms: 100,
            max_backoff_ms: 1000,
            ..Default::default()
        };
        assert_eq!(ceiling(&p, 1), Duration::from_millis(100));
        assert_eq!(ceiling(&p, 3), Duration::from_millis(400));
        assert_eq!(ceiling(&p, 10), Duration::from_millis(1000));
        assert_eq!(ceiling(&p, 100), Duration::from_millis(1000));
        for n in 1..20 {
            assert!(delay(&p, n) <= ceiling(&p, n));
        }
    }
}
