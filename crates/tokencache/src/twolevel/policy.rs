//! The failure policy of one L2 call: the user's `on_l2_failure` callback and the
//! bounded backoff between retries.
//!
//! A failed call is shown to the callback with its operation, error and attempt number;
//! it answers [`L2Decision::Retry`] or [`L2Decision::GiveUp`]. Retries are bounded by
//! [`RetryOptions::max_retries`] whatever the callback says, wait an exponential backoff
//! capped at [`RetryOptions::max_backoff`], and never happen while the circuit breaker
//! is open. Without a callback nothing is retried: a failed read is a miss and a failed
//! write goes to the recovery queue, which is cheaper for the caller than waiting.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::store::StoreError;

/// What the `on_l2_failure` callback decides about a failed L2 call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L2Decision {
    /// Try the call again after the backoff (if retries are left and the breaker allows).
    Retry,
    /// Stop: a read becomes a miss, a write goes to the recovery queue.
    GiveUp,
}

/// A failed L2 call, as the `on_l2_failure` callback sees it.
#[derive(Debug, Clone, Copy)]
pub struct L2Failure<'a> {
    /// The store operation (`get`, `set`, `remove`, `remove_many`, `link_add`, ...).
    pub operation: &'a str,
    /// The error, classified by [`StoreError::kind`]; its endpoint holds no secret.
    pub error: &'a StoreError,
    /// 1 for the first attempt, 2 for the first retry, ...
    pub attempt: u32,
}

/// The callback deciding retry or not, per failed L2 call. It runs on the caller's task:
/// keep it quick and never block in it.
pub type OnL2Failure = Arc<dyn Fn(&L2Failure<'_>) -> L2Decision + Send + Sync>;

/// Bounds of retries asked for by the `on_l2_failure` callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryOptions {
    /// Retries of one call at most, whatever the callback says. Default 2.
    pub max_retries: u32,
    /// Wait before the first retry; doubled before each next one. Default 20 ms.
    pub initial_backoff: Duration,
    /// Longest wait between two attempts. Default 200 ms.
    pub max_backoff: Duration,
}

impl Default for RetryOptions {
    fn default() -> Self {
        Self {
            max_retries: 2,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
        }
    }
}

impl RetryOptions {
    /// The wait before retry number `retry` (1 = the first retry).
    pub fn backoff(&self, retry: u32) -> Duration {
        let shift = retry.saturating_sub(1).min(20);
        self.initial_backoff
            .saturating_mul(1u32 << shift)
            .min(self.max_backoff)
    }
}

/// The failure policy: the callback (none = never retry) and the retry bounds.
#[derive(Clone, Default)]
pub struct FailurePolicy {
    /// Decides retry or give up per failed call; `None`: give up at once.
    pub on_l2_failure: Option<OnL2Failure>,
    /// Bounds of the retries the callback may ask for.
    pub retry: RetryOptions,
}

impl fmt::Debug for FailurePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailurePolicy")
            .field(
                "on_l2_failure",
                &self.on_l2_failure.as_ref().map(|_| "<callback>"),
            )
            .field("retry", &self.retry)
            .finish()
    }
}

impl FailurePolicy {
    /// Whether to retry after `failure`: the callback says so and retries are left.
    pub(crate) fn should_retry(&self, failure: &L2Failure<'_>) -> bool {
        if failure.attempt > self.retry.max_retries {
            return false;
        }
        match &self.on_l2_failure {
            Some(cb) => cb(failure) == L2Decision::Retry,
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreErrorKind;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let r = RetryOptions::default();
        assert_eq!(r.backoff(1), Duration::from_millis(20));
        assert_eq!(r.backoff(2), Duration::from_millis(40));
        assert_eq!(r.backoff(3), Duration::from_millis(80));
        assert_eq!(r.backoff(5), Duration::from_millis(200));
        assert_eq!(r.backoff(1000), Duration::from_millis(200));
    }

    #[test]
    fn retries_are_bounded_whatever_the_callback_says() {
        let policy = FailurePolicy {
            on_l2_failure: Some(Arc::new(|_: &L2Failure<'_>| L2Decision::Retry)),
            retry: RetryOptions {
                max_retries: 2,
                ..RetryOptions::default()
            },
        };
        let e = StoreError::new(StoreErrorKind::Timeout, "h:1", "slow");
        let at = |attempt| L2Failure {
            operation: "get",
            error: &e,
            attempt,
        };
        assert!(policy.should_retry(&at(1)));
        assert!(policy.should_retry(&at(2)));
        assert!(!policy.should_retry(&at(3)));
        assert!(
            !FailurePolicy::default().should_retry(&at(1)),
            "no callback: no retry"
        );
    }
}
