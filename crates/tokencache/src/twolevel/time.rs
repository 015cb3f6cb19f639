//! The clock of the times replicas compare with each other (docs/design.md §7): when a
//! user signed out (revocation stamps), when tokens were requested, when a queued change
//! was made. Replicas' clocks disagree by some skew; so, where the store has a clock of
//! its own (Redis `TIME`), stamps are written by it and every replica measures its offset
//! from it (at start, then every [`REMEASURE_EVERY`]) and gives those times on the
//! store's clock: what is left of the skew is the error of the measure (half a round
//! trip) and the drift between two measures.
//!
//! An offset over [`MAX_ADOPTED_OFFSET`] is not adopted: no replica's clock is that far
//! off by accident (NTP), so the cache's clock was set so deliberately (a simulation, a
//! test's manual clock) and is kept; it is said once in the logs. The entry deadlines (L1
//! and L2 TTLs) and token expiry stay on the cache's own clock: skew moves them by
//! seconds against lifetimes of an hour and more.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Core;
use crate::store::StampAt;

/// How far the store's clock may be from the cache's to be adopted.
pub const MAX_ADOPTED_OFFSET: Duration = Duration::from_secs(600);

/// How often the offset is measured again.
pub const REMEASURE_EVERY: Duration = Duration::from_secs(30);

/// The measured offset of the store's clock.
#[derive(Debug, Default)]
pub(super) struct StoreClock {
    /// Store's clock − the cache's, ms (0 until adopted).
    offset_ms: AtomicI64,
    /// An offset is adopted (the store has a clock, within [`MAX_ADOPTED_OFFSET`]).
    adopted: AtomicBool,
    /// When it was last measured (a monotonic instant: a test's manual clock moving on
    /// does not make it measure again); `None`: never.
    measured_at: Mutex<Option<Instant>>,
    /// A measure is running.
    measuring: AtomicBool,
    /// The "not adopted" line was logged.
    said: AtomicBool,
}

impl Core {
    /// Now, on the clock replicas compare times by: the store's where adopted, else the
    /// cache's (ms since the epoch). Schedules a new measure when the last is old.
    pub(super) fn record_now_ms(&self) -> i64 {
        let due = self
            .store_clock
            .measured_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none_or(|at| at.elapsed() >= REMEASURE_EVERY);
        if due {
            self.remeasure_in_background();
        }
        self.to_store_ms(self.clock.now_millis() as i64)
    }

    /// An instant of the cache's clock (ms) on the store's clock.
    pub(super) fn to_store_ms(&self, local_ms: i64) -> i64 {
        let sc = &self.store_clock;
        if sc.adopted.load(Ordering::Acquire) {
            local_ms.saturating_add(sc.offset_ms.load(Ordering::Acquire))
        } else {
            local_ms
        }
    }

    /// The adopted offset (store − cache, ms), if any.
    pub(super) fn store_clock_offset(&self) -> Option<i64> {
        let sc = &self.store_clock;
        sc.adopted
            .load(Ordering::Acquire)
            .then(|| sc.offset_ms.load(Ordering::Acquire))
    }

    /// How a sign-out now is stamped: by the store's clock when its offset is adopted.
    pub(super) fn stamp_now(&self) -> StampAt {
        let fallback_ms = self.record_now_ms();
        if self.store_clock.adopted.load(Ordering::Acquire) {
            StampAt::StoreClock { fallback_ms }
        } else {
            StampAt::Instant(fallback_ms)
        }
    }

    /// Measures the store's clock against the cache's (one `time` call, bounded by the
    /// L2 timeout; not through the gate: a clock reading is no reason to open the
    /// breaker, and no probe); keeps the last good measure when the store does not
    /// answer.
    pub(super) async fn measure_store_clock(&self) {
        let sc = &self.store_clock;
        let before = self.clock.now_millis();
        let answer = tokio::time::timeout(self.l2_timeout, self.store.time_ms()).await;
        let after = self.clock.now_millis();
        *sc.measured_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        let Ok(Ok(Some(store_ms))) = answer else {
            return; // no clock of its own, or no answer: keep what we had
        };
        let midpoint = before.saturating_add(after) / 2;
        let offset = store_ms as i64 - midpoint as i64;
        if offset.unsigned_abs() <= MAX_ADOPTED_OFFSET.as_millis() as u64 {
            sc.offset_ms.store(offset, Ordering::Release);
            sc.adopted.store(true, Ordering::Release);
        } else {
            sc.adopted.store(false, Ordering::Release);
            if !sc.said.swap(true, Ordering::Relaxed) {
                tracing::info!(
                    endpoint = %self.endpoint,
                    offset_ms = offset,
                    "the clock of L2 at {} is {:.0} s away from this cache's: not adopted (a clock set on purpose, or a broken one); sign-outs and record times stay on this cache's clock",
                    self.endpoint,
                    offset as f64 / 1000.0
                );
            }
        }
    }

    fn remeasure_in_background(&self) {
        if self.store_clock.measuring.swap(true, Ordering::AcqRel) {
            return;
        }
        let (Some(this), Ok(rt)) = (self.me.upgrade(), tokio::runtime::Handle::try_current())
        else {
            self.store_clock.measuring.store(false, Ordering::Release);
            return;
        };
        rt.spawn(async move {
            this.measure_store_clock().await;
            this.store_clock.measuring.store(false, Ordering::Release);
        });
    }
}
