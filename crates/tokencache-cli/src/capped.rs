//! A store whose entries all end by a deadline: every TTL written through it (values,
//! link sets, stamps, touches) is cut to the time left until `deadline`, and an entry
//! written "without expiry" gets that time too. `load`, `simulate` and `bench` write
//! through it with the deadline "end of the run plus a margin", so that whatever they
//! leave (a SIGKILL, a crash, `--keep`) is gone soon after, never after 90 days.
//! Reads, removals and scans pass through unchanged, and so does the backplane.
//!
//! The deadline is read on a clock: the system's, or the virtual clock of a
//! simulation whose store expires entries by that clock (`simulate` on an embedded
//! file).

use async_trait::async_trait;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokencache::backplane::SharedBackplane;
use tokencache::clock::{SharedClock, SystemClock};
use tokencache::store::{
    EntryExpiry, SharedStore, StampAt, Store, StoreResult, StoreValue, ValueDigest, ValueLayout,
};

/// The margin added to a run's length for the TTL of what it writes.
pub(crate) const MARGIN: Duration = Duration::from_secs(600);

/// See the module docs.
pub(crate) struct CappedStore {
    inner: SharedStore,
    clock: SharedClock,
    /// The deadline on `clock`, in milliseconds.
    deadline_ms: u64,
}

impl fmt::Debug for CappedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CappedStore")
            .field("inner", &self.inner.endpoint())
            .finish()
    }
}

impl CappedStore {
    /// Wraps `inner`: every entry written ends within `run + MARGIN` from now.
    pub(crate) fn new(inner: SharedStore, run: Duration) -> Self {
        let clock: SharedClock = Arc::new(SystemClock);
        let deadline_ms = clock.now_millis() + (run + MARGIN).as_millis() as u64;
        Self::until(inner, clock, deadline_ms)
    }

    /// Wraps `inner`: every entry written ends by `deadline_ms` on `clock`.
    pub(crate) fn until(inner: SharedStore, clock: SharedClock, deadline_ms: u64) -> Self {
        CappedStore {
            inner,
            clock,
            deadline_ms,
        }
    }

    /// `ttl` cut to the time left (at least 1 ms: a TTL never becomes "no expiry").
    fn cap(&self, ttl: Option<Duration>) -> Duration {
        let left_ms = self
            .deadline_ms
            .saturating_sub(self.clock.now_millis())
            .max(1);
        let left = Duration::from_millis(left_ms);
        ttl.map_or(left, |t| t.min(left))
    }

    fn cap_expiry(&self, expiry: EntryExpiry) -> EntryExpiry {
        EntryExpiry {
            absolute: Some(self.cap(expiry.absolute)),
            sliding: expiry.sliding.map(|s| self.cap(Some(s))),
        }
    }
}

#[async_trait]
impl Store for CappedStore {
    async fn get(&self, key: &str) -> StoreResult<Option<StoreValue>> {
        self.inner.get(key).await
    }
    async fn get_and_touch(&self, key: &str, ttl: Duration) -> StoreResult<Option<StoreValue>> {
        self.inner.get_and_touch(key, self.cap(Some(ttl))).await
    }
    async fn get_along(
        &self,
        key: &str,
        touch: Option<Duration>,
        also: &str,
    ) -> StoreResult<(Option<StoreValue>, Option<Vec<u8>>)> {
        let touch = touch.map(|t| self.cap(Some(t)));
        self.inner.get_along(key, touch, also).await
    }
    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> StoreResult<()> {
        self.inner.set(key, value, Some(self.cap(ttl))).await
    }
    async fn set_with_expiry(
        &self,
        key: &str,
        value: &[u8],
        expiry: EntryExpiry,
    ) -> StoreResult<()> {
        self.inner
            .set_with_expiry(key, value, self.cap_expiry(expiry))
            .await
    }
    async fn get_with_layout(&self, key: &str) -> StoreResult<Option<(StoreValue, ValueLayout)>> {
        self.inner.get_with_layout(key).await
    }
    async fn digest(&self, key: &str) -> StoreResult<Option<ValueDigest>> {
        self.inner.digest(key).await
    }
    async fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> StoreResult<bool> {
        self.inner
            .set_if_absent(key, value, Some(self.cap(ttl)))
            .await
    }
    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        expiry: EntryExpiry,
    ) -> StoreResult<bool> {
        self.inner
            .compare_and_swap(key, expected, new, self.cap_expiry(expiry))
            .await
    }
    async fn touch(&self, key: &str, ttl: Duration) -> StoreResult<bool> {
        self.inner.touch(key, self.cap(Some(ttl))).await
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
            .link_add(set_key, member, Some(self.cap(ttl)))
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
    // The store's clock and its atomic stamp (Redis TIME inside the script), as the
    // replicas of a real deployment have them.
    async fn time_ms(&self) -> StoreResult<Option<u64>> {
        self.inner.time_ms().await
    }
    async fn write_stamp(&self, key: &str, at: StampAt, ttl: Option<Duration>) -> StoreResult<i64> {
        self.inner.write_stamp(key, at, Some(self.cap(ttl))).await
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
    fn backplane(&self) -> Option<SharedBackplane> {
        self.inner.backplane()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokencache::clock::ManualClock;
    use tokencache::store::MemoryStore;

    #[tokio::test]
    async fn every_write_ends_by_the_deadline() {
        let inner: SharedStore = Arc::new(MemoryStore::new());
        let capped = CappedStore::new(inner.clone(), Duration::from_secs(60));
        let most = Duration::from_secs(60) + MARGIN;
        let ninety_days = Some(Duration::from_secs(90 * 86_400));
        capped.set("forever", b"v", None).await.unwrap();
        capped.set("long", b"v", ninety_days).await.unwrap();
        capped
            .set("short", b"v", Some(Duration::from_secs(5)))
            .await
            .unwrap();
        capped
            .set_with_expiry("exp", b"v", EntryExpiry::after(None))
            .await
            .unwrap();
        assert!(capped
            .compare_and_swap("cas", None, Some(b"v"), EntryExpiry::after(ninety_days))
            .await
            .unwrap());
        assert!(capped.set_if_absent("nx", b"v", None).await.unwrap());
        capped.link_add("links", "m", None).await.unwrap();
        for key in ["forever", "long", "exp", "cas", "nx"] {
            let ttl = inner.get(key).await.unwrap().unwrap().ttl.unwrap();
            assert!(
                ttl <= most && ttl > Duration::from_secs(60),
                "{key}: {ttl:?}"
            );
        }
        let short = inner.get("short").await.unwrap().unwrap().ttl.unwrap();
        assert!(short <= Duration::from_secs(5), "a shorter TTL is kept");
        assert!(capped
            .touch("forever", Duration::from_secs(86_400 * 365))
            .await
            .unwrap());
        let touched = inner.get("forever").await.unwrap().unwrap().ttl.unwrap();
        assert!(touched <= most, "{touched:?}");
    }

    #[tokio::test]
    async fn a_virtual_clock_moves_the_time_left() {
        let clock = ManualClock::new(1_000_000);
        let inner: SharedStore = Arc::new(MemoryStore::with_clock(Arc::new(clock.clone())));
        let capped = CappedStore::until(inner.clone(), Arc::new(clock.clone()), 1_060_000);
        capped.set("a", b"v", None).await.unwrap();
        assert_eq!(
            inner.get("a").await.unwrap().unwrap().ttl,
            Some(Duration::from_secs(60))
        );
        clock.set_millis(1_050_000);
        capped.set("b", b"v", None).await.unwrap();
        assert_eq!(
            inner.get("b").await.unwrap().unwrap().ttl,
            Some(Duration::from_secs(10))
        );
    }
}
