//! Metrics through the [`metrics`] facade (any exporter: Prometheus, StatsD, ...).
//!
//! Handles are registered when the cache is built, so install the recorder first.
//!
//! | name | kind | labels | meaning |
//! |---|---|---|---|
//! | `tokencache_hits_total` | counter | `level` = `l1`, `l2` | reads answered by that level |
//! | `tokencache_misses_total` | counter | `level` = `l1`, `l2` | reads that level could not answer |
//! | `tokencache_l2_errors_total` | counter | `class` = `connection`, `timeout`, `server`, `bad_data`, `config` | failed L2 calls |
//! | `tokencache_l2_skipped_total` | counter | | L2 calls skipped because the breaker was open |
//! | `tokencache_l2_retries_total` | counter | | retries asked for by `on_l2_failure` |
//! | `tokencache_l2_breaker_state` | gauge | | 0 closed, 1 open, 2 half-open |
//! | `tokencache_l2_breaker_opened_total` | counter | | times the breaker opened |
//! | `tokencache_recovery_queue_depth` | gauge | | keys waiting for L2 |
//! | `tokencache_recovery_queued_total` | counter | | writes and removals queued |
//! | `tokencache_recovery_applied_total` | counter | | queued changes L2 took after recovering |
//! | `tokencache_recovery_dropped_total` | counter | `reason` = `overflow`, `superseded`, `expired` | queued changes not applied |
//! | `tokencache_backplane_invalidations_total` | counter | | L1 entries dropped or users revoked on another replica's message |
//! | `tokencache_backplane_losses_total` | counter | | times the backplane subscription was lost (L1 cleared and bypassed) |

use metrics::{counter, gauge, Counter, Gauge};

use crate::store::StoreErrorKind;

/// The registered handles.
#[derive(Debug)]
pub(crate) struct Metrics {
    pub(crate) invalidated: Counter,
    pub(crate) backplane_losses: Counter,
    pub(crate) l1_hits: Counter,
    pub(crate) l1_misses: Counter,
    pub(crate) l2_hits: Counter,
    pub(crate) l2_misses: Counter,
    errors: [Counter; 5],
    pub(crate) l2_skipped: Counter,
    pub(crate) l2_retries: Counter,
    pub(crate) breaker_state: Gauge,
    pub(crate) breaker_opened: Counter,
    pub(crate) queue_depth: Gauge,
    pub(crate) queued: Counter,
    pub(crate) applied: Counter,
    pub(crate) dropped_overflow: Counter,
    pub(crate) dropped_superseded: Counter,
    pub(crate) dropped_expired: Counter,
}

impl Metrics {
    /// Registers every handle with the current recorder.
    pub(crate) fn register() -> Self {
        let err = |class: &'static str| counter!("tokencache_l2_errors_total", "class" => class);
        Self {
            l1_hits: counter!("tokencache_hits_total", "level" => "l1"),
            l1_misses: counter!("tokencache_misses_total", "level" => "l1"),
            l2_hits: counter!("tokencache_hits_total", "level" => "l2"),
            l2_misses: counter!("tokencache_misses_total", "level" => "l2"),
            errors: [
                err(StoreErrorKind::Connection.as_str()),
                err(StoreErrorKind::Timeout.as_str()),
                err(StoreErrorKind::Server.as_str()),
                err(StoreErrorKind::BadData.as_str()),
                err(StoreErrorKind::Config.as_str()),
            ],
            l2_skipped: counter!("tokencache_l2_skipped_total"),
            l2_retries: counter!("tokencache_l2_retries_total"),
            breaker_state: gauge!("tokencache_l2_breaker_state"),
            breaker_opened: counter!("tokencache_l2_breaker_opened_total"),
            queue_depth: gauge!("tokencache_recovery_queue_depth"),
            queued: counter!("tokencache_recovery_queued_total"),
            applied: counter!("tokencache_recovery_applied_total"),
            dropped_overflow: counter!("tokencache_recovery_dropped_total", "reason" => "overflow"),
            dropped_superseded: counter!("tokencache_recovery_dropped_total", "reason" => "superseded"),
            dropped_expired: counter!("tokencache_recovery_dropped_total", "reason" => "expired"),
            invalidated: counter!("tokencache_backplane_invalidations_total"),
            backplane_losses: counter!("tokencache_backplane_losses_total"),
        }
    }

    /// The error counter of a class.
    pub(crate) fn error(&self, kind: StoreErrorKind) -> &Counter {
        let i = match kind {
            StoreErrorKind::Connection => 0,
            StoreErrorKind::Timeout => 1,
            StoreErrorKind::Server => 2,
            StoreErrorKind::BadData => 3,
            StoreErrorKind::Config => 4,
        };
        &self.errors[i]
    }
}
