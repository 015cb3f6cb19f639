//! L1: the in-process level.
//!
//! Holds `Arc`s of *decoded* partitions so that a hit costs a hash lookup and a
//! reference-count increment: no parsing, no copy, no network.
//!
//! * **Bounded in bytes.** Each entry weighs its serialized size (what it cost to
//!   fetch); the total is capped ([`L1Options::max_bytes`], default 256 MiB) and the
//!   least useful entries are evicted first (moka's TinyLFU admission + LRU eviction).
//! * **Per-entry deadline.** Every entry carries its own deadline, read from the
//!   injected [`Clock`](crate::clock::Clock) on each hit, so a moved clock (tests, the
//!   simulation) is honoured exactly; the same deadline is given to moka so memory is
//!   reclaimed in real time too.
//! * **Sliding support.** An entry records when L2 was last touched for it, so the
//!   two-level layer can refresh the L2 TTL at most once per fraction of the window.
//!
//! Why moka: it is the well-kept concurrent cache that has both a weigher and
//! per-entry expiry (quick_cache has no per-entry TTL; a plain `HashMap` has no bound).
//! The `bench` command and `benches/twolevel.rs` measure a hit next to a bare
//! `HashMap` lookup.

use moka::sync::Cache;
use moka::Expiry;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::SharedClock;

/// L1 settings.
#[derive(Debug, Clone)]
pub struct L1Options {
    /// Upper bound of the summed entry weights (serialized bytes). Default 256 MiB.
    pub max_bytes: u64,
}

impl Default for L1Options {
    fn default() -> Self {
        Self {
            max_bytes: 256 * 1024 * 1024,
        }
    }
}

/// One L1 entry: the decoded value plus its bookkeeping.
pub struct L1Entry<V> {
    value: Arc<V>,
    weight: u32,
    /// Deadline in clock milliseconds; moved forward by sliding refreshes.
    deadline_ms: AtomicU64,
    /// When L2's TTL was last set for this entry (clock milliseconds).
    touched_ms: AtomicU64,
    /// When this entry was filled (clock milliseconds); compared with revocation stamps.
    loaded_ms: u64,
    /// The short [`ValueDigest`](crate::store::ValueDigest) of the L2 value it was
    /// filled from or written as (0: not known); strict reads compare it with L2's.
    version: u64,
    /// The deadline moka's own timer was last given (so that a read, which moka asks
    /// about every time, reads the clock only when a sliding refresh moved the deadline).
    timer_ms: AtomicU64,
}

impl<V> L1Entry<V> {
    /// The decoded value.
    pub fn value(&self) -> &Arc<V> {
        &self.value
    }

    /// The short digest of the L2 value this entry mirrors (0: not known).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The entry's weight (serialized bytes).
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// The current deadline (clock milliseconds).
    pub fn deadline_ms(&self) -> u64 {
        self.deadline_ms.load(Ordering::Relaxed)
    }

    /// When L2's TTL was last set for this entry.
    pub fn touched_ms(&self) -> u64 {
        self.touched_ms.load(Ordering::Relaxed)
    }

    /// When the entry was filled.
    pub fn loaded_ms(&self) -> u64 {
        self.loaded_ms
    }

    /// Records a sliding refresh: L2 was touched at `now_ms`, and the entry now lives
    /// until `deadline_ms`. Returns false when another caller claimed this refresh first
    /// (so only one of many concurrent hits sends the touch).
    pub fn claim_touch(&self, seen_touched_ms: u64, now_ms: u64) -> bool {
        self.touched_ms
            .compare_exchange(seen_touched_ms, now_ms, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Moves the deadline (sliding refresh).
    pub fn set_deadline_ms(&self, deadline_ms: u64) {
        self.deadline_ms.store(deadline_ms, Ordering::Relaxed);
    }
}

impl<V> fmt::Debug for L1Entry<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The value holds secrets: show only bookkeeping.
        f.debug_struct("L1Entry")
            .field("weight", &self.weight)
            .field("deadline_ms", &self.deadline_ms())
            .field("touched_ms", &self.touched_ms())
            .field("loaded_ms", &self.loaded_ms)
            .finish()
    }
}

/// Tells moka when an entry expires, from the entry's own deadline.
struct DeadlineExpiry {
    clock: SharedClock,
}

impl DeadlineExpiry {
    fn remaining(&self, deadline_ms: u64) -> Option<Duration> {
        let now = self.clock.now_millis();
        Some(Duration::from_millis(deadline_ms.saturating_sub(now)))
    }

    /// The time left to give moka's timer for `entry`, recorded as given.
    fn arm<V>(&self, entry: &L1Entry<V>) -> Option<Duration> {
        let deadline = entry.deadline_ms();
        entry.timer_ms.store(deadline, Ordering::Relaxed);
        self.remaining(deadline)
    }
}

impl<V> Expiry<Arc<str>, Arc<L1Entry<V>>> for DeadlineExpiry {
    fn expire_after_create(
        &self,
        _key: &Arc<str>,
        value: &Arc<L1Entry<V>>,
        _created_at: Instant,
    ) -> Option<Duration> {
        self.arm(value)
    }

    fn expire_after_update(
        &self,
        _key: &Arc<str>,
        value: &Arc<L1Entry<V>>,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        self.arm(value)
    }

    fn expire_after_read(
        &self,
        _key: &Arc<str>,
        value: &Arc<L1Entry<V>>,
        _read_at: Instant,
        duration_until_expiry: Option<Duration>,
        _last_modified_at: Instant,
    ) -> Option<Duration> {
        // Only sliding refreshes move a deadline, and they only move it forward:
        // keep moka's timer unless the entry's own deadline now lies beyond the one it
        // was given (the common read: no clock read, nothing to change).
        if value.deadline_ms() <= value.timer_ms.load(Ordering::Relaxed) {
            return duration_until_expiry;
        }
        match (duration_until_expiry, self.arm(value)) {
            (Some(current), Some(wanted)) if wanted > current => Some(wanted),
            (current, _) => current,
        }
    }
}

/// foldhash: keys are account ids and hashes chosen by the identity provider, not by
/// an attacker who can also read timings; with per-process random seeds it is
/// "minimally DoS-resistant" and several times faster than SipHash on 70-byte keys.
type Hasher = foldhash::fast::RandomState;

/// The in-process cache of decoded values, keyed by full store key.
pub struct MemoryCache<V: Send + Sync + 'static> {
    cache: Cache<Arc<str>, Arc<L1Entry<V>>, Hasher>,
    clock: SharedClock,
}

impl<V: Send + Sync + 'static> fmt::Debug for MemoryCache<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryCache")
            .field("entries", &self.cache.entry_count())
            .field("weighted_bytes", &self.cache.weighted_size())
            .finish()
    }
}

impl<V: Send + Sync + 'static> MemoryCache<V> {
    /// A new L1 with the given bounds and clock.
    pub fn new(options: &L1Options, clock: SharedClock) -> Self {
        let cache = Cache::builder()
            .max_capacity(options.max_bytes)
            .weigher(|_k: &Arc<str>, e: &Arc<L1Entry<V>>| e.weight)
            .expire_after(DeadlineExpiry {
                clock: clock.clone(),
            })
            .build_with_hasher(Hasher::default());
        Self { cache, clock }
    }

    /// The live entry under `key`, or `None` (absent, or past its deadline by the clock).
    /// A hit is a hash lookup and an `Arc` clone: no parsing, no copy, no I/O.
    #[inline]
    pub fn get(&self, key: &str) -> Option<Arc<L1Entry<V>>> {
        self.get_at(key, self.clock.now_millis())
    }

    /// [`get`](Self::get) with "now" already read from the clock (one clock read per hit).
    #[inline]
    pub fn get_at(&self, key: &str, now_ms: u64) -> Option<Arc<L1Entry<V>>> {
        let entry = self.cache.get(key)?;
        if entry.deadline_ms() <= now_ms {
            self.cache.invalidate(key);
            return None;
        }
        Some(entry)
    }

    /// Stores a value until `deadline_ms` (clock milliseconds), weighing `weight` bytes.
    /// A deadline already past removes the key instead. Returns the stored entry.
    pub fn insert(
        &self,
        key: &str,
        value: Arc<V>,
        weight: usize,
        deadline_ms: u64,
    ) -> Option<Arc<L1Entry<V>>> {
        self.insert_versioned(key, value, weight, deadline_ms, 0)
    }

    /// [`insert`](Self::insert), recording the short digest of the L2 value the entry
    /// mirrors (see [`L1Entry::version`]).
    pub fn insert_versioned(
        &self,
        key: &str,
        value: Arc<V>,
        weight: usize,
        deadline_ms: u64,
        version: u64,
    ) -> Option<Arc<L1Entry<V>>> {
        let now = self.clock.now_millis();
        if deadline_ms <= now {
            self.cache.invalidate(key);
            return None;
        }
        let entry = Arc::new(L1Entry {
            value,
            weight: u32::try_from(weight).unwrap_or(u32::MAX),
            deadline_ms: AtomicU64::new(deadline_ms),
            touched_ms: AtomicU64::new(now),
            loaded_ms: now,
            version,
            timer_ms: AtomicU64::new(deadline_ms),
        });
        self.cache.insert(Arc::from(key), entry.clone());
        Some(entry)
    }

    /// Drops the entry under `key`.
    pub fn remove(&self, key: &str) {
        self.cache.invalidate(key);
    }

    /// Drops every entry.
    pub fn clear(&self) {
        self.cache.invalidate_all();
    }

    /// Runs pending evictions now (moka defers them); for tests and reports.
    pub fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks();
    }

    /// Number of entries (approximate until [`run_pending_tasks`](Self::run_pending_tasks)).
    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Summed weights of the entries, in bytes (approximate, as above).
    pub fn weighted_bytes(&self) -> u64 {
        self.cache.weighted_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};

    fn l1(max: u64) -> (MemoryCache<String>, ManualClock) {
        let clock = ManualClock::at_secs(1_000_000);
        let c = MemoryCache::new(&L1Options { max_bytes: max }, Arc::new(clock.clone()));
        (c, clock)
    }

    #[test]
    fn hit_returns_the_same_arc() {
        let (c, clock) = l1(1 << 20);
        let v = Arc::new("v".to_string());
        c.insert("k", v.clone(), 10, clock.now_millis() + 1000);
        let e = c.get("k").expect("hit");
        assert!(Arc::ptr_eq(e.value(), &v));
        assert!(c.get("other").is_none());
    }

    #[test]
    fn deadline_follows_the_injected_clock() {
        let (c, clock) = l1(1 << 20);
        c.insert("k", Arc::new("v".into()), 10, clock.now_millis() + 1000);
        clock.advance_millis(999);
        assert!(c.get("k").is_some());
        clock.advance_millis(1);
        assert!(c.get("k").is_none(), "served at its deadline");
        // past deadlines are not stored
        assert!(c
            .insert("k", Arc::new("v".into()), 10, clock.now_millis())
            .is_none());
        assert!(c.get("k").is_none());
    }

    #[test]
    fn sliding_moves_the_deadline_and_one_claim_wins() {
        let (c, clock) = l1(1 << 20);
        let e = c
            .insert("k", Arc::new("v".into()), 10, clock.now_millis() + 1000)
            .unwrap();
        let seen = e.touched_ms();
        clock.advance_millis(800);
        assert!(e.claim_touch(seen, clock.now_millis()));
        assert!(
            !e.claim_touch(seen, clock.now_millis()),
            "second claim must lose"
        );
        e.set_deadline_ms(clock.now_millis() + 1000);
        clock.advance_millis(900);
        assert!(c.get("k").is_some());
    }

    #[test]
    fn bounded_in_bytes() {
        let (c, clock) = l1(10_000);
        for i in 0..100 {
            c.insert(
                &format!("k{i}"),
                Arc::new("v".into()),
                1_000,
                clock.now_millis() + 60_000,
            );
            c.run_pending_tasks();
        }
        c.run_pending_tasks();
        assert!(
            c.weighted_bytes() <= 10_000,
            "weighted {}",
            c.weighted_bytes()
        );
        assert!(c.entry_count() <= 10);
    }

    #[test]
    fn remove_and_clear() {
        let (c, clock) = l1(1 << 20);
        c.insert("a", Arc::new("v".into()), 1, clock.now_millis() + 1000);
        c.insert("b", Arc::new("v".into()), 1, clock.now_millis() + 1000);
        c.remove("a");
        assert!(c.get("a").is_none());
        assert!(c.get("b").is_some());
        c.clear();
        assert!(c.get("b").is_none());
    }
}
