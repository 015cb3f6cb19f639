//! L1: the in-process level.
//!
//! Holds `Arc`s of *decoded* partitions so that a hit costs a hash lookup and a
//! reference-count increment: no parsing, no copy, no network.
//!
//! * **Bounded in bytes.** Each entry weighs its serialized size (what it cost to
//!   fetch); the total is capped ([`L1Options::max_bytes`], default 256 MiB) and the
//!   least useful entries are evicted first (quick_cache's CLOCK-Pro: hot and cold
//!   entries, with ghost entries remembering recently evicted keys). An entry heavier
//!   than its shard's budget is not kept (and replaces nothing).
//! * **Per-entry deadline.** Every entry carries its own deadline, read from the
//!   injected [`Clock`](crate::clock::Clock) on each hit, so a moved clock (tests, the
//!   simulation) is honoured exactly. An expired entry is dropped when it is next read;
//!   the others are swept out at most every [`SWEEP_INTERVAL_MS`] by the next insert
//!   (and by [`MemoryCache::run_pending_tasks`]), so memory follows the deadlines too,
//!   while the byte bound holds whatever happens.
//! * **Sliding support.** An entry records when L2 was last touched for it, so the
//!   two-level layer can refresh the L2 TTL at most once per fraction of the window.
//!
//! Why quick_cache, not moka: both bound by weight, but a moka read records itself in
//! a channel every reader shares (and runs housekeeping on the reader's thread), so on
//! this machine class one thread did 4.4–4.9 M `get`s/s and two threads together
//! 1.9–2.4 M/s; quick_cache's sharded reads did 21–27 M/s on one thread and 42–48 M/s
//! on two. It has no per-entry expiry, which the deadline check on every hit (needed
//! anyway for the injected clock) and the sweep make up for. The `bench` command and
//! `benches/twolevel.rs` measure a hit next to a bare `HashMap` lookup.

use quick_cache::sync::Cache;
use quick_cache::Weighter;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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

/// How often, at most, an insert sweeps out the entries past their deadline (ms).
pub const SWEEP_INTERVAL_MS: u64 = 30_000;

/// An entry weighs its serialized size (at least 1: quick_cache never evicts an entry
/// of weight 0).
#[derive(Debug, Clone, Copy)]
struct EntryWeight;

impl<V> Weighter<Arc<str>, Arc<L1Entry<V>>> for EntryWeight {
    fn weight(&self, _key: &Arc<str>, entry: &Arc<L1Entry<V>>) -> u64 {
        u64::from(entry.weight).max(1)
    }
}

/// foldhash: keys are account ids and hashes chosen by the identity provider, not by
/// an attacker who can also read timings; with per-process random seeds it is
/// "minimally DoS-resistant" and several times faster than SipHash on 70-byte keys.
type Hasher = foldhash::fast::RandomState;

/// The in-process cache of decoded values, keyed by full store key.
pub struct MemoryCache<V: Send + Sync + 'static> {
    cache: Cache<Arc<str>, Arc<L1Entry<V>>, EntryWeight, Hasher>,
    clock: SharedClock,
    /// When entries past their deadline were last swept out (clock ms).
    swept_ms: AtomicU64,
}

impl<V: Send + Sync + 'static> fmt::Debug for MemoryCache<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryCache")
            .field("entries", &self.cache.len())
            .field("weighted_bytes", &self.cache.weight())
            .finish()
    }
}

impl<V: Send + Sync + 'static> MemoryCache<V> {
    /// A new L1 with the given bounds and clock.
    pub fn new(options: &L1Options, clock: SharedClock) -> Self {
        // A typical partition weighs a few KB (an app partition ~2 KB, a user's ~7 KB).
        let items = usize::try_from(options.max_bytes / 4096)
            .unwrap_or(usize::MAX)
            .clamp(16, 1 << 22);
        let cache = Cache::with(
            items,
            options.max_bytes,
            EntryWeight,
            Hasher::default(),
            Default::default(),
        );
        let swept_ms = AtomicU64::new(clock.now_millis());
        Self {
            cache,
            clock,
            swept_ms,
        }
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
            // (only this entry: a fresh one inserted meanwhile stays)
            self.cache.remove_if(key, |e| Arc::ptr_eq(e, &entry));
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
        self.sweep_if_due(now);
        if deadline_ms <= now {
            self.cache.remove(key);
            return None;
        }
        let entry = Arc::new(L1Entry {
            value,
            weight: u32::try_from(weight).unwrap_or(u32::MAX),
            deadline_ms: AtomicU64::new(deadline_ms),
            touched_ms: AtomicU64::new(now),
            loaded_ms: now,
            version,
        });
        self.cache.insert(Arc::from(key), entry.clone());
        Some(entry)
    }

    /// Drops the entry under `key`.
    pub fn remove(&self, key: &str) {
        self.cache.remove(key);
    }

    /// Drops every entry.
    pub fn clear(&self) {
        self.cache.clear();
    }

    /// Sweeps out the entries past their deadline now (evictions by weight happen at
    /// once, on insert); for tests and reports.
    pub fn run_pending_tasks(&self) {
        let now = self.clock.now_millis();
        self.swept_ms.store(now, Ordering::Relaxed);
        self.sweep(now);
    }

    /// Number of entries (including expired ones not swept yet).
    pub fn entry_count(&self) -> u64 {
        self.cache.len() as u64
    }

    /// Summed weights of the entries, in bytes (as above).
    pub fn weighted_bytes(&self) -> u64 {
        self.cache.weight()
    }

    /// Sweeps when the last sweep is [`SWEEP_INTERVAL_MS`] old (one caller does it).
    fn sweep_if_due(&self, now: u64) {
        let last = self.swept_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= SWEEP_INTERVAL_MS
            && self
                .swept_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.sweep(now);
        }
    }

    fn sweep(&self, now: u64) {
        self.cache.retain(|_, e| e.deadline_ms() > now);
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
    fn expired_entries_are_swept_by_a_later_insert() {
        let (c, clock) = l1(1 << 20);
        for i in 0..50 {
            c.insert(
                &format!("old{i}"),
                Arc::new("v".into()),
                100,
                clock.now_millis() + 1000,
            );
        }
        c.insert(
            "long",
            Arc::new("v".into()),
            100,
            clock.now_millis() + 3_600_000,
        );
        assert_eq!(c.entry_count(), 51);
        clock.advance_millis(2000);
        c.insert("one", Arc::new("v".into()), 100, clock.now_millis() + 1000);
        assert_eq!(c.entry_count(), 52, "not before the sweep interval");
        clock.advance_millis(SWEEP_INTERVAL_MS);
        c.insert("two", Arc::new("v".into()), 100, clock.now_millis() + 1000);
        assert_eq!(c.entry_count(), 2, "only the live ones are left");
        assert_eq!(c.weighted_bytes(), 200);
        assert!(c.get("long").is_some() && c.get("two").is_some());
    }

    #[test]
    fn an_entry_too_heavy_replaces_nothing_stale() {
        let (c, clock) = l1(10_000);
        c.insert(
            "k",
            Arc::new("small".into()),
            100,
            clock.now_millis() + 1000,
        );
        assert!(c.get("k").is_some());
        c.insert(
            "k",
            Arc::new("huge".into()),
            1_000_000,
            clock.now_millis() + 1000,
        );
        assert!(c.get("k").is_none(), "the older value is not served");
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
