//! The gate every L2 call goes through: circuit breaker → timeout → classification
//! → counting and outage logging → the failure policy's retries.

use std::future::Future;

use super::breaker::Breaker;
use super::breaker::{Admit, Transition};
use super::policy::L2Failure;
use super::quiet::Say;
use super::stats::class_index;
use super::stats::{bump, load};
use super::Core;
use crate::store::{StoreError, StoreErrorKind, StoreResult};

/// How one attempt at an L2 call went wrong.
pub(super) struct Attempted {
    pub(super) error: StoreError,
    /// The breaker was open: L2 was not called.
    pub(super) skipped: bool,
}

/// The outage being lived through, for logging once and summing up at recovery.
#[derive(Debug, Default)]
pub(super) struct Outage {
    pub(super) active: bool,
    pub(super) since: Option<tokio::time::Instant>,
    pub(super) failures: u64,
    pub(super) skipped: u64,
    /// Counters when the outage began: (recovered, overflow, superseded, expired).
    pub(super) base: (u64, u64, u64, u64),
}

/// Releases a half-open probe whose call was dropped before it answered.
pub(super) struct ProbeGuard<'a> {
    breaker: &'a Breaker,
    armed: bool,
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.breaker.on_abandoned_probe();
        }
    }
}

impl Core {
    pub(super) fn outage(&self) -> std::sync::MutexGuard<'_, Outage> {
        self.outage.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) async fn call<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        self.attempt(operation, call).await.map_err(|a| a.error)
    }

    pub(super) async fn call_with<T, F, Fut>(
        &self,
        operation: &'static str,
        mut make: F,
    ) -> StoreResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = StoreResult<T>>,
    {
        let mut attempt = 1u32;
        loop {
            match self.attempt(operation, make()).await {
                Ok(v) => return Ok(v),
                Err(a) if a.skipped => return Err(a.error),
                Err(a) => {
                    let failure = L2Failure {
                        operation,
                        error: &a.error,
                        attempt,
                    };
                    if !self.policy.should_retry(&failure) {
                        return Err(a.error);
                    }
                    bump(&self.counters.l2_retries);
                    self.metrics.l2_retries.increment(1);
                    tokio::time::sleep(self.policy.retry.backoff(attempt)).await;
                    attempt += 1;
                }
            }
        }
    }

    /// One attempt: breaker, timeout, classification, counting, logging.
    pub(super) async fn attempt<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = StoreResult<T>>,
    ) -> Result<T, Attempted> {
        let admit = self.breaker.admit();
        if admit == Admit::Reject {
            bump(&self.counters.l2_skipped);
            self.metrics.l2_skipped.increment(1);
            self.outage().skipped += 1;
            self.ensure_recovery();
            return Err(Attempted {
                error: StoreError::new(
                    StoreErrorKind::Connection,
                    self.endpoint.clone(),
                    "not called: the L2 circuit breaker is open",
                ),
                skipped: true,
            });
        }
        let mut probe = ProbeGuard {
            breaker: &self.breaker,
            armed: admit == Admit::Probe,
        };
        let result = match tokio::time::timeout(self.l2_timeout, call).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::new(
                StoreErrorKind::Timeout,
                self.endpoint.clone(),
                format!("no answer within {:?}", self.l2_timeout),
            )),
        };
        probe.armed = false;
        match result {
            Ok(v) => {
                self.breaker_moved(self.breaker.on_success(admit));
                Ok(v)
            }
            Err(e) => {
                self.failed(operation, &e, admit);
                Err(Attempted {
                    error: e,
                    skipped: false,
                })
            }
        }
    }

    pub(super) fn breaker_moved(&self, t: Transition) {
        match t {
            Transition::None => return,
            Transition::Opened => {
                bump(&self.counters.breaker_opened);
                self.metrics.breaker_opened.increment(1);
                tracing::warn!(
                    endpoint = %self.endpoint,
                    failures = self.breaker_options.failure_threshold,
                    "L2 circuit breaker opened at {} after {} failures in a row: L2 calls are skipped, reads served from L1, writes queued; probing in {:?}",
                    self.endpoint,
                    self.breaker_options.failure_threshold,
                    self.breaker.probe_in(),
                );
            }
            Transition::Closed => {
                tracing::info!(endpoint = %self.endpoint, "L2 circuit breaker closed: a probe of {} succeeded", self.endpoint);
            }
        }
        self.metrics
            .breaker_state
            .set(self.breaker.state().as_gauge());
    }

    pub(super) fn failed(&self, operation: &'static str, e: &StoreError, admit: Admit) {
        bump(&self.counters.l2_errors);
        bump(&self.counters.errors_by_class[class_index(e.kind)]);
        self.metrics.error(e.kind).increment(1);
        if e.kind == StoreErrorKind::BadData {
            // L2 answered: this says nothing about its health.
            self.breaker_moved(self.breaker.on_success(admit));
            let then = consequence(operation);
            match self.quiet.occurred("bad_data") {
                Say::First => tracing::warn!(
                    operation,
                    endpoint = %e.endpoint,
                    cause = %e.message,
                    "L2 at {} gave an answer to `{operation}` that could not be understood ({}); {then}; more of these are counted (metric tokencache_l2_errors_total, class bad_data) and summed up once a minute",
                    e.endpoint,
                    e.message,
                ),
                Say::Summary(n) => tracing::warn!(
                    operation,
                    endpoint = %e.endpoint,
                    count = n,
                    "L2 at {}: {n} more answers could not be understood in the last minute (the latest to `{operation}`: {}); {then}",
                    e.endpoint,
                    e.message,
                ),
                Say::Nothing => {
                    tracing::debug!(operation, cause = %e.message, "L2 answer could not be understood")
                }
            }
            return;
        }
        if e.shard_scoped {
            // One Cluster shard fails while the others answer: the store fails its keys
            // fast and logs its outage; L2 as a whole is up (docs/design.md §16).
            self.breaker_moved(self.breaker.on_success(admit));
            return;
        }
        self.breaker_moved(self.breaker.on_failure(admit));
        self.l2_failing
            .store(true, std::sync::atomic::Ordering::Release);
        let first = {
            let mut o = self.outage();
            if o.active {
                o.failures += 1;
                false
            } else {
                let c = &self.counters;
                *o = Outage {
                    active: true,
                    since: Some(tokio::time::Instant::now()),
                    failures: 1,
                    skipped: 0,
                    base: (
                        load(&c.recovered),
                        load(&c.dropped_overflow),
                        load(&c.superseded),
                        load(&c.expired),
                    ),
                };
                true
            }
        };
        if first {
            let what = match e.kind {
                StoreErrorKind::Connection => "unreachable",
                StoreErrorKind::Timeout => "not answering",
                StoreErrorKind::Server => "refused a call",
                StoreErrorKind::Config => "misconfigured",
                StoreErrorKind::BadData => "answered nonsense",
            };
            tracing::error!(
                operation,
                endpoint = %e.endpoint,
                class = %e.kind,
                cause = %e.message,
                "L2 {what} at {} ({}); serving from L1; {} writes queued",
                e.endpoint,
                e.message,
                self.queue.len(),
            );
        } else {
            tracing::debug!(operation, endpoint = %e.endpoint, class = %e.kind, cause = %e.message, "L2 still failing");
        }
        self.ensure_recovery();
    }
}

/// What the cache does when an L2 call of `operation` fails, for log lines.
fn consequence(operation: &str) -> &'static str {
    match operation {
        "get" | "link_members" => "read as a miss",
        "set" | "remove" | "remove_many" => "the change waits in the recovery queue",
        "touch" => "the entry's TTL was not refreshed",
        "link_add" => "the link is missing; the partition still ends with its deadline",
        _ => "the call is treated as failed",
    }
}

impl Core {
    /// A partition blob L2 holds that does not parse: counted, and logged once per
    /// minute with a count (never the bytes).
    pub(super) fn unreadable(
        &self,
        full: &str,
        size: usize,
        error: &super::codec::DecodeError,
        then: &'static str,
    ) {
        bump(&self.counters.bad_blobs);
        if let super::codec::DecodeError::Protect(e) = error {
            let bare = self.keys.strip(full).unwrap_or(full);
            let kind = crate::protect::kind_of_key(bare);
            self.protect_log.report(e, full, kind, then);
            return;
        }
        match self.quiet.occurred("unreadable_partition") {
            Say::First => {
                tracing::error!(key = %full, bytes = size, error = %error, "unreadable partition in L2 ({error}); {then}; more of these are counted (stats bad_blobs) and summed up once a minute")
            }
            Say::Summary(n) => {
                tracing::error!(key = %full, count = n, "{n} more unreadable partitions in L2 in the last minute (the latest: {full}, {error}); {then}")
            }
            Say::Nothing => {
                tracing::debug!(key = %full, error = %error, "unreadable partition in L2")
            }
        }
    }
}
