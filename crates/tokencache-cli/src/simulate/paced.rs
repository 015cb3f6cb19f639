//! Virtual time on a store that keeps real time (Redis).
//!
//! Redis expires keys by its own clock, which a [`ManualClock`](tokencache::clock::ManualClock)
//! cannot move. So on Redis the simulation is *paced*: virtual time runs `factor` times
//! faster than real time ([`PacedClock`]), and every TTL crossing into the store is
//! divided by `factor` (and every TTL read back multiplied by it) by [`PacedStore`].
//! An entry given 90 virtual minutes lives 1.5 real seconds at the default 3600×, and
//! Redis itself removes it: expiry is Redis's, not the simulation's. The price: the run
//! takes `hours × 3600 / factor` real seconds, and it is not bit-for-bit repeatable
//! (events are stamped with the virtual time at which they actually ran).
//!
//! A paced run can fall behind: when the machine cannot do an event's work before the
//! next event is due, events run later in virtual time than the workload scheduled
//! them, while Redis keeps expiring keys on time. Then users call after their tokens
//! expired, sessions end late, and the counts drift from the embedded run's. [`Lag`]
//! measures how far behind each event ran, so the report can say so (and warn when the
//! lag exceeds one sample interval) instead of reporting as if it kept pace.

use async_trait::async_trait;
use std::fmt;
use std::time::{Duration, Instant};
use tokencache::clock::Clock;
use tokencache::store::{SharedStore, StampAt, Store, StoreResult, StoreValue};

/// A clock whose time runs `factor` times faster than real time from `start_ms`.
#[derive(Debug)]
pub(crate) struct PacedClock {
    start_ms: u64,
    started: Instant,
    factor: f64,
}

impl PacedClock {
    /// Virtual `start_ms` now, running `factor`× real time.
    pub(crate) fn new(start_ms: u64, factor: f64) -> Self {
        PacedClock {
            start_ms,
            started: Instant::now(),
            factor,
        }
    }

    /// Real time until the virtual clock shows `virtual_ms` (zero if it has).
    pub(crate) fn real_until(&self, virtual_ms: u64) -> Duration {
        let now = self.now_millis();
        Duration::from_secs_f64(virtual_ms.saturating_sub(now) as f64 / 1000.0 / self.factor)
    }
}

impl Clock for PacedClock {
    fn now_millis(&self) -> u64 {
        self.start_ms + (self.started.elapsed().as_secs_f64() * 1000.0 * self.factor) as u64
    }
}

/// How far behind schedule the events of a paced run ran, in virtual milliseconds.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Lag {
    /// The largest lag of one event.
    pub(crate) max_ms: u64,
    /// The sum of all lags (for the mean).
    sum_ms: u128,
    /// Events observed.
    pub(crate) events: u64,
    /// Events that ran more than `late_ms` behind.
    pub(crate) late: u64,
    /// The threshold of "late": one sample interval.
    late_ms: u64,
}

impl Lag {
    /// Counts events later than `late_ms` (virtual) as late.
    pub(crate) fn new(late_ms: u64) -> Self {
        Lag {
            late_ms,
            ..Lag::default()
        }
    }

    /// Records an event due at virtual `due_ms` that ran at virtual `ran_ms`.
    pub(crate) fn observe(&mut self, due_ms: u64, ran_ms: u64) {
        let lag = ran_ms.saturating_sub(due_ms);
        self.max_ms = self.max_ms.max(lag);
        self.sum_ms += u128::from(lag);
        self.events += 1;
        self.late += u64::from(lag > self.late_ms);
    }

    /// The mean lag, virtual milliseconds.
    pub(crate) fn mean_ms(&self) -> u64 {
        self.sum_ms
            .checked_div(u128::from(self.events))
            .map_or(0, |m| m as u64)
    }

    /// Whether some event ran more than one sample interval behind.
    pub(crate) fn fell_behind(&self) -> bool {
        self.late > 0
    }
}

/// A store whose TTLs are virtual: divided by `factor` on the way in, multiplied on
/// the way out.
pub(crate) struct PacedStore {
    inner: SharedStore,
    factor: f64,
}

impl fmt::Debug for PacedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PacedStore")
            .field("inner", &self.inner.endpoint())
            .field("factor", &self.factor)
            .finish()
    }
}

impl PacedStore {
    /// Wraps `inner`.
    pub(crate) fn new(inner: SharedStore, factor: f64) -> Self {
        PacedStore { inner, factor }
    }

    fn down(&self, ttl: Duration) -> Duration {
        // At least 1 ms: a TTL never becomes "no expiry".
        Duration::from_secs_f64(ttl.as_secs_f64() / self.factor).max(Duration::from_millis(1))
    }

    fn up(&self, value: Option<StoreValue>) -> Option<StoreValue> {
        value.map(|mut v| {
            v.ttl = v
                .ttl
                .map(|t| Duration::from_secs_f64(t.as_secs_f64() * self.factor));
            v
        })
    }
}

#[async_trait]
impl Store for PacedStore {
    async fn get(&self, key: &str) -> StoreResult<Option<StoreValue>> {
        Ok(self.up(self.inner.get(key).await?))
    }
    async fn get_and_touch(&self, key: &str, ttl: Duration) -> StoreResult<Option<StoreValue>> {
        Ok(self.up(self.inner.get_and_touch(key, self.down(ttl)).await?))
    }
    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> StoreResult<()> {
        self.inner.set(key, value, ttl.map(|t| self.down(t))).await
    }
    async fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> StoreResult<bool> {
        self.inner
            .set_if_absent(key, value, ttl.map(|t| self.down(t)))
            .await
    }
    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        expiry: tokencache::store::EntryExpiry,
    ) -> StoreResult<bool> {
        let expiry = tokencache::store::EntryExpiry {
            absolute: expiry.absolute.map(|t| self.down(t)),
            sliding: expiry.sliding.map(|t| self.down(t)),
        };
        self.inner
            .compare_and_swap(key, expected, new, expiry)
            .await
    }
    async fn touch(&self, key: &str, ttl: Duration) -> StoreResult<bool> {
        self.inner.touch(key, self.down(ttl)).await
    }
    async fn remove(&self, key: &str) -> StoreResult<bool> {
        self.inner.remove(key).await
    }
    async fn remove_many(&self, keys: &[String]) -> StoreResult<u64> {
        self.inner.remove_many(keys).await
    }
    async fn link_add(
        &self,
        set_key: &str,
        member: &str,
        ttl: Option<Duration>,
    ) -> StoreResult<()> {
        self.inner
            .link_add(set_key, member, ttl.map(|t| self.down(t)))
            .await
    }
    async fn link_members(&self, set_key: &str) -> StoreResult<Vec<String>> {
        self.inner.link_members(set_key).await
    }
    async fn link_remove(&self, set_key: &str, members: &[String]) -> StoreResult<()> {
        self.inner.link_remove(set_key, members).await
    }
    async fn health(&self) -> StoreResult<()> {
        self.inner.health().await
    }
    // No store clock (`time_ms` stays the default `None`): the simulation's times are its
    // virtual clock's. Stamps are still written atomically by the store.
    async fn write_stamp(&self, key: &str, at: StampAt, ttl: Option<Duration>) -> StoreResult<i64> {
        self.inner
            .write_stamp(key, at, ttl.map(|t| self.down(t)))
            .await
    }
    async fn scan(
        &self,
        prefix: &str,
        cursor: u64,
        count: usize,
    ) -> StoreResult<(u64, Vec<String>)> {
        self.inner.scan(prefix, cursor, count).await
    }
    fn endpoint(&self) -> String {
        self.inner.endpoint()
    }

    fn backplane(&self) -> Option<tokencache::backplane::SharedBackplane> {
        self.inner.backplane()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokencache::store::MemoryStore;

    #[tokio::test]
    async fn ttls_are_scaled_both_ways() {
        let inner: SharedStore = Arc::new(MemoryStore::new());
        let paced = PacedStore::new(inner.clone(), 3600.0);
        paced
            .set("k", b"v", Some(Duration::from_secs(7200)))
            .await
            .unwrap();
        let real = inner.get("k").await.unwrap().unwrap().ttl.unwrap();
        assert!(
            real <= Duration::from_secs(2) && real > Duration::from_millis(1900),
            "{real:?}"
        );
        let seen = paced.get("k").await.unwrap().unwrap().ttl.unwrap();
        assert!(
            seen > Duration::from_secs(6800) && seen <= Duration::from_secs(7200),
            "{seen:?}"
        );
        paced.set("n", b"v", None).await.unwrap();
        assert_eq!(inner.get("n").await.unwrap().unwrap().ttl, None);
    }

    #[test]
    fn lag_is_measured_against_the_schedule() {
        let mut lag = Lag::new(60_000);
        lag.observe(1_000, 1_000);
        lag.observe(2_000, 1_500); // early (the clock waited): no lag
        lag.observe(3_000, 33_000);
        assert_eq!((lag.max_ms, lag.events, lag.late), (30_000, 3, 0));
        assert!(!lag.fell_behind());
        lag.observe(4_000, 100_000);
        assert_eq!(lag.late, 1);
        assert!(lag.fell_behind());
        assert_eq!(lag.mean_ms(), (30_000 + 96_000) / 4);
    }

    #[test]
    fn paced_clock_runs_faster() {
        let c = PacedClock::new(1_000_000, 1000.0);
        std::thread::sleep(Duration::from_millis(20));
        assert!(c.now_millis() >= 1_000_000 + 20_000);
        assert_eq!(c.real_until(0), Duration::ZERO);
    }
}
