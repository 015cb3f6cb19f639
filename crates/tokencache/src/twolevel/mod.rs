//! L1 + L2: the read path, the write path, expiry and single-flight.
//!
//! * **Read**: L1 hit → done (with sliding expiration, an L2 touch at most once per
//!   fraction of the window, sent in the background). Miss → one shared load per key
//!   (single-flight): L2 `get` with a timeout → parse → fill L1 → every waiter gets the
//!   same `Arc`. An L2 failure or a corrupted value is logged and is a miss for the
//!   caller, never an error and never another partition's data.
//! * **Write**: read-modify-write of a whole partition, as MSAL does: the current blob
//!   is read from L2 (L2 is the truth shared by replicas; L1 only if L2 fails), changed,
//!   and written to L2 with its deadline, then to L1. A partition with no credentials
//!   left is removed, not written empty.
//! * **Ordering**: loads and writes of one key take that key's async lock, so a load
//!   never fills L1 with a value older than a concurrent write. L1 hits never take it.

mod expiry;
mod locks;

pub use expiry::{Deadline, EntryContext, ExpiryOptions, OboExpiry};

use futures::future::{BoxFuture, FutureExt, Shared};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::SharedClock;
use crate::error::Error;
use crate::memory::{L1Entry, L1Options, MemoryCache};
use crate::partition::{KeySpace, PartitionKind};
use crate::schema::Partition;
use crate::store::{SharedStore, StoreError, StoreErrorKind, StoreResult};
use locks::KeyLocks;

/// Settings of the two-level composition.
#[derive(Debug, Clone)]
pub struct TwoLevelOptions {
    /// L1 settings; `None` disables L1 (every read goes to L2).
    pub l1: Option<L1Options>,
    /// Put in front of every L2 key (Redis "instance name").
    pub key_prefix: String,
    /// Expiry rules.
    pub expiry: ExpiryOptions,
    /// Upper bound of every L2 call.
    pub l2_timeout: Duration,
}

impl Default for TwoLevelOptions {
    fn default() -> Self {
        Self {
            l1: Some(L1Options::default()),
            key_prefix: String::new(),
            expiry: ExpiryOptions::default(),
            l2_timeout: Duration::from_millis(1000),
        }
    }
}

/// Counters of what the cache did.
#[derive(Debug, Default)]
struct Counters {
    l1_hits: AtomicU64,
    l1_misses: AtomicU64,
    l2_hits: AtomicU64,
    l2_misses: AtomicU64,
    l2_reads: AtomicU64,
    l2_writes: AtomicU64,
    l2_errors: AtomicU64,
    bad_blobs: AtomicU64,
}

/// A snapshot of the cache's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Reads answered by L1.
    pub l1_hits: u64,
    /// Reads L1 could not answer.
    pub l1_misses: u64,
    /// L2 reads that found a usable partition.
    pub l2_hits: u64,
    /// L2 reads that found nothing usable.
    pub l2_misses: u64,
    /// L2 `get` calls made (reads and the read half of writes).
    pub l2_reads: u64,
    /// L2 `set`/`remove` calls made.
    pub l2_writes: u64,
    /// L2 calls that failed or timed out.
    pub l2_errors: u64,
    /// L2 values that could not be parsed.
    pub bad_blobs: u64,
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOutcome {
    /// The partition still holds credentials (false: it was removed).
    pub stored: bool,
    /// L2 took the write (false: it failed; L1 holds the new value).
    pub l2_written: bool,
    /// The TTL given to L2 (`None`: no expiry).
    pub ttl: Option<Duration>,
}

type Loaded = Option<Arc<Partition>>;

/// The two-level cache of partitions.
pub struct TwoLevel {
    l1: Option<MemoryCache<Partition>>,
    store: SharedStore,
    keys: KeySpace,
    clock: SharedClock,
    expiry: ExpiryOptions,
    l2_timeout: Duration,
    locks: KeyLocks,
    // std Mutex: held only to find or insert a shared load, never across an await.
    inflight: Mutex<HashMap<Arc<str>, Shared<BoxFuture<'static, Loaded>>>>,
    counters: Counters,
}

impl fmt::Debug for TwoLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwoLevel")
            .field("l1", &self.l1)
            .field("store", &self.store.endpoint())
            .field("keys", &self.keys)
            .field("expiry", &self.expiry)
            .finish()
    }
}

impl TwoLevel {
    /// Composes L1 (if enabled) over `store`.
    pub fn new(store: SharedStore, clock: SharedClock, options: TwoLevelOptions) -> Self {
        Self {
            l1: options.l1.as_ref().map(|o| MemoryCache::new(o, clock.clone())),
            store,
            keys: KeySpace::new(options.key_prefix),
            clock,
            expiry: options.expiry,
            l2_timeout: options.l2_timeout,
            locks: KeyLocks::default(),
            inflight: Mutex::new(HashMap::new()),
            counters: Counters::default(),
        }
    }

    /// The L2 store.
    pub fn store(&self) -> &SharedStore {
        &self.store
    }

    /// The key space (prefix and tokencache's own keys).
    pub fn keys(&self) -> &KeySpace {
        &self.keys
    }

    /// The clock.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// The expiry rules.
    pub fn expiry(&self) -> &ExpiryOptions {
        &self.expiry
    }

    /// The L1, when enabled.
    pub fn l1(&self) -> Option<&MemoryCache<Partition>> {
        self.l1.as_ref()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            l1_hits: g(&c.l1_hits),
            l1_misses: g(&c.l1_misses),
            l2_hits: g(&c.l2_hits),
            l2_misses: g(&c.l2_misses),
            l2_reads: g(&c.l2_reads),
            l2_writes: g(&c.l2_writes),
            l2_errors: g(&c.l2_errors),
            bad_blobs: g(&c.bad_blobs),
        }
    }

    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The partition under `key` (a partition key without prefix), from L1 or L2.
    /// `None`: nowhere, expired, unreadable, or L2 failed and L1 had nothing.
    #[inline]
    pub async fn get(self: &Arc<Self>, kind: PartitionKind, key: &str, ctx: EntryContext) -> Option<Arc<Partition>> {
        if let Some(l1) = &self.l1 {
            if let Some(entry) = l1.get(key) {
                Self::bump(&self.counters.l1_hits);
                self.slide(kind, key, &entry, &ctx);
                return Some(entry.value().clone());
            }
            Self::bump(&self.counters.l1_misses);
        }
        self.load_shared(kind, key, ctx).await
    }

    /// Sliding expiration on an L1 hit: at most once per touch interval, move the L1
    /// deadline and refresh L2's TTL in the background (no round trip on the hit).
    fn slide(self: &Arc<Self>, kind: PartitionKind, key: &str, entry: &Arc<L1Entry<Partition>>, ctx: &EntryContext) {
        let Some(interval) = self.expiry.touch_interval() else {
            return;
        };
        let now = self.clock.now_millis();
        let seen = entry.touched_ms();
        if now.saturating_sub(seen) < interval.as_millis() as u64 || !entry.claim_touch(seen, now) {
            return;
        }
        let deadline = self.expiry.deadline(kind, entry.value(), ctx, now);
        let Some(ttl) = deadline.ttl_at(now) else {
            return;
        };
        if ttl.is_zero() {
            return; // past its hard deadline: let it die
        }
        entry.set_deadline_ms(self.expiry.l1_deadline(now, deadline.at(now)));
        let this = self.clone();
        let full = self.keys.partition_str(key);
        tokio::spawn(async move {
            if let Err(e) = this.l2(this.store.touch(&full, ttl)).await {
                this.l2_failed("touch", &e);
            }
        });
    }

    async fn load_shared(self: &Arc<Self>, kind: PartitionKind, key: &str, ctx: EntryContext) -> Loaded {
        let fut = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            match inflight.get(key) {
                Some(f) => f.clone(),
                None => {
                    let k: Arc<str> = Arc::from(key);
                    let f = self.clone().load(kind, k.clone(), ctx).boxed().shared();
                    inflight.insert(k, f.clone());
                    f
                }
            }
        };
        fut.await
    }

    async fn load(self: Arc<Self>, kind: PartitionKind, key: Arc<str>, ctx: EntryContext) -> Loaded {
        let result = {
            let _guard = self.locks.lock(&key).await;
            self.load_locked(kind, &key, &ctx).await
        };
        self.inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        result
    }

    async fn load_locked(&self, kind: PartitionKind, key: &str, ctx: &EntryContext) -> Loaded {
        if let Some(entry) = self.l1.as_ref().and_then(|l1| l1.get(key)) {
            return Some(entry.value().clone()); // filled while we waited for the lock
        }
        let full = self.keys.partition_str(key);
        Self::bump(&self.counters.l2_reads);
        let read = match self.expiry.sliding_expiration {
            Some(window) => self.l2(self.store.get_and_touch(&full, window)).await,
            None => self.l2(self.store.get(&full)).await,
        };
        let value = match read {
            Ok(Some(v)) => v,
            Ok(None) => {
                Self::bump(&self.counters.l2_misses);
                return None;
            }
            Err(e) => {
                self.l2_failed("get", &e);
                return None;
            }
        };
        let partition = match Partition::parse(&value.bytes) {
            Ok(p) => p,
            Err(e) => {
                Self::bump(&self.counters.bad_blobs);
                tracing::error!(key = %full, bytes = value.bytes.len(), error = %e, "unreadable partition in L2; treated as a miss");
                return None;
            }
        };
        let now = self.clock.now_millis();
        let deadline = self.expiry.deadline(kind, &partition, ctx, now);
        let mut l2_deadline = deadline.at(now);
        if !partition.has_credentials() || l2_deadline.is_some_and(|d| d <= now) {
            Self::bump(&self.counters.l2_misses);
            return None;
        }
        if let (Some(window), Some(d)) = (self.expiry.sliding_expiration, l2_deadline) {
            // GETEX gave it a full window; its hard deadline may be sooner.
            let left = Duration::from_millis(d - now);
            if left < window {
                if let Err(e) = self.l2(self.store.touch(&full, left)).await {
                    self.l2_failed("touch", &e);
                }
            }
        }
        if let Some(ttl) = value.ttl {
            let l2_left = now.saturating_add(ttl.as_millis() as u64);
            l2_deadline = Some(l2_deadline.map_or(l2_left, |d| d.min(l2_left)));
        }
        Self::bump(&self.counters.l2_hits);
        let partition = Arc::new(partition);
        if let Some(l1) = &self.l1 {
            l1.insert(key, partition.clone(), value.bytes.len(), self.expiry.l1_deadline(now, l2_deadline));
        }
        Some(partition)
    }

    /// Changes the partition under `key` with `change`, then writes it through both
    /// levels (or removes it when no credentials are left). Returns what `change`
    /// returned and what the write did.
    pub async fn update<R>(
        &self,
        kind: PartitionKind,
        key: &str,
        ctx: EntryContext,
        change: impl FnOnce(&mut Partition) -> Result<R, Error>,
    ) -> Result<(R, WriteOutcome), Error> {
        let _guard = self.locks.lock(key).await;
        let full = self.keys.partition_str(key);
        Self::bump(&self.counters.l2_reads);
        let mut partition = match self.l2(self.store.get(&full)).await {
            Ok(Some(v)) => match Partition::parse(&v.bytes) {
                Ok(p) => p,
                Err(e) => {
                    Self::bump(&self.counters.bad_blobs);
                    tracing::error!(key = %full, error = %e, "unreadable partition in L2 is replaced by this write");
                    Partition::new()
                }
            },
            Ok(None) => Partition::new(),
            Err(e) => {
                self.l2_failed("get", &e);
                self.l1
                    .as_ref()
                    .and_then(|l1| l1.get(key))
                    .map(|entry| Partition::clone(entry.value()))
                    .unwrap_or_default()
            }
        };
        let result = change(&mut partition)?;
        let now = self.clock.now_millis();
        let deadline = self.expiry.deadline(kind, &partition, &ctx, now);
        let ttl = deadline.ttl_at(now);
        if !partition.has_credentials() || ttl.is_some_and(|t| t.is_zero()) {
            let l2_written = self.remove_locked(key, &full).await;
            return Ok((result, WriteOutcome { stored: false, l2_written, ttl: None }));
        }
        let bytes = partition.to_vec();
        Self::bump(&self.counters.l2_writes);
        let l2_written = match self.l2(self.store.set(&full, &bytes, ttl)).await {
            Ok(()) => true,
            Err(e) => {
                self.l2_failed("set", &e);
                false
            }
        };
        if let Some(l1) = &self.l1 {
            l1.insert(key, Arc::new(partition), bytes.len(), self.expiry.l1_deadline(now, deadline.at(now)));
        }
        Ok((result, WriteOutcome { stored: true, l2_written, ttl }))
    }

    /// Removes the partition under `key` from both levels. Returns whether L2 took it.
    pub async fn remove(&self, key: &str) -> bool {
        let _guard = self.locks.lock(key).await;
        let full = self.keys.partition_str(key);
        self.remove_locked(key, &full).await
    }

    async fn remove_locked(&self, key: &str, full: &str) -> bool {
        if let Some(l1) = &self.l1 {
            l1.remove(key);
        }
        Self::bump(&self.counters.l2_writes);
        match self.l2(self.store.remove(full)).await {
            Ok(_) => true,
            Err(e) => {
                self.l2_failed("remove", &e);
                false
            }
        }
    }

    /// Drops a key from L1 only (another replica changed it).
    pub fn forget_local(&self, key: &str) {
        if let Some(l1) = &self.l1 {
            l1.remove(key);
        }
    }

    /// Runs one L2 call through the failure policy (today: the timeout; failures are
    /// counted and logged). Every L2 call of the crate goes through here.
    pub async fn call<T>(&self, operation: &'static str, call: impl std::future::Future<Output = StoreResult<T>>) -> StoreResult<T> {
        let r = self.l2(call).await;
        if let Err(e) = &r {
            self.l2_failed(operation, e);
        }
        r
    }

    /// Runs one L2 call under the timeout.
    async fn l2<T>(&self, call: impl std::future::Future<Output = StoreResult<T>>) -> StoreResult<T> {
        match tokio::time::timeout(self.l2_timeout, call).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::new(
                StoreErrorKind::Timeout,
                self.store.endpoint(),
                format!("no answer within {:?}", self.l2_timeout),
            )),
        }
    }

    fn l2_failed(&self, operation: &str, e: &StoreError) {
        Self::bump(&self.counters.l2_errors);
        tracing::warn!(operation, kind = %e.kind, endpoint = %e.endpoint, cause = %e.message, "L2 call failed; serving from L1");
    }
}
