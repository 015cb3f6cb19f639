//! L1 + L2: the read path, the write path, expiry, single-flight, and what happens
//! when L2 fails (docs/design.md §6).
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
//!
//! # When L2 fails
//!
//! The caller never sees an L2 failure. Every L2 call of the crate goes through one
//! gate ([`TwoLevel::call`] / [`TwoLevel::call_with`]) that applies, in order:
//!
//! 1. the **circuit breaker** ([`BreakerOptions`]): while open, the call skips L2 at once;
//! 2. the **timeout** ([`TwoLevelOptions::l2_timeout`], default 250 ms);
//! 3. **classification** of the failure ([`StoreErrorKind`]: connection, timeout,
//!    server, bad data, config), counted per class in [`Stats`] and in metrics;
//! 4. the **failure policy** ([`FailurePolicy`]): the `on_l2_failure` callback may ask for
//!    a retry, after a bounded exponential backoff.
//!
//! Then: a failed read is served from L1 or is a miss; a failed write or removal lands
//! in L1 and in the bounded **recovery queue** (latest change per key wins; when full the
//! change queued the longest ago is dropped and counted), which a background task drains as soon as a probe
//! finds L2 healthy again.
//!
//! **Newer value wins.** Each queued change carries the time it was made (`written_at`,
//! Unix seconds of the cache's clock). Before applying it, L2's current value is read;
//! if that value's [`Partition::last_cached_at`] is later than `written_at`, another
//! replica stored newer tokens during the outage: the queued change is *not* applied
//! (counted `superseded`) and this replica drops its L1 copy so that it rereads L2. A
//! tie goes to the queued change (seconds cannot order two writes of one second). The
//! rule compares record timestamps, so it relies on replicas' clocks agreeing to within
//! a second or so, and it cannot see a newer *removal of some records* by another
//! replica (a blob carries no write time of its own, only its records' `cached_at`).
//!
//! **Logging.** The first failure of an outage is logged once at error level with the
//! operation, endpoint (never a password) and cause, e.g. `L2 unreachable at
//! 127.0.0.1:6390 (connection refused); serving from L1; 0 writes queued`. Later failures
//! of the same outage are counted, not logged one by one (debug level only). Recovery is
//! logged with the outage's length, its failed and skipped calls, and how many queued
//! changes were applied and dropped (and why). At start-up a probe (`PING`) reports a
//! wrong host, password or TLS setting the same way, and the cache works from L1.
//!
//! The defaults: timeout 250 ms (a healthy Redis answers in about a millisecond; waiting
//! longer than a token request takes would make the cache slower than no cache);
//! breaker opens after 5 failures in a row, probes after 1 s, doubling to at most 10 s
//! while probes fail; no retries without a callback (at most 2 with one, 20 ms then
//! 40 ms, capped at 200 ms); a queue of 10,000 keys that drops the oldest when full.

mod breaker;
mod expiry;
mod locks;
mod metrics;
mod policy;
mod recovery;

pub use breaker::{BreakerOptions, BreakerState};
pub use expiry::{Deadline, EntryContext, ExpiryOptions, OboExpiry};
pub use policy::{FailurePolicy, L2Decision, L2Failure, OnL2Failure, RetryOptions};

use futures::future::{BoxFuture, FutureExt, Shared};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::clock::SharedClock;
use crate::error::Error;
use crate::memory::{L1Entry, L1Options, MemoryCache};
use crate::partition::{KeySpace, PartitionKind};
use crate::schema::Partition;
use crate::store::{SharedStore, StoreError, StoreErrorKind, StoreResult};
use breaker::{Admit, Breaker, Transition};
use locks::KeyLocks;
use metrics::Metrics;
use recovery::{Queued, QueuedOp, RecoveryQueue};

/// The default bound of every L2 call.
pub const DEFAULT_L2_TIMEOUT: Duration = Duration::from_millis(250);

/// The default bound of the recovery queue, in keys.
pub const DEFAULT_QUEUE_CAPACITY: usize = 10_000;

/// Settings of the two-level composition.
#[derive(Debug, Clone)]
pub struct TwoLevelOptions {
    /// L1 settings; `None` disables L1 (every read goes to L2).
    pub l1: Option<L1Options>,
    /// Put in front of every L2 key (Redis "instance name").
    pub key_prefix: String,
    /// Expiry rules.
    pub expiry: ExpiryOptions,
    /// Upper bound of every L2 call (each attempt). Default [`DEFAULT_L2_TIMEOUT`].
    pub l2_timeout: Duration,
    /// The circuit breaker in front of L2.
    pub breaker: BreakerOptions,
    /// Retry or give up, per failed L2 call.
    pub policy: FailurePolicy,
    /// Keys the recovery queue holds at most (0: queue nothing). Default
    /// [`DEFAULT_QUEUE_CAPACITY`].
    pub queue_capacity: usize,
    /// Probe L2 (`PING`) when the cache is built, to report a misconfiguration at once.
    /// Default true.
    pub probe_at_start: bool,
}

impl Default for TwoLevelOptions {
    fn default() -> Self {
        Self {
            l1: Some(L1Options::default()),
            key_prefix: String::new(),
            expiry: ExpiryOptions::default(),
            l2_timeout: DEFAULT_L2_TIMEOUT,
            breaker: BreakerOptions::default(),
            policy: FailurePolicy::default(),
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            probe_at_start: true,
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
    errors_by_class: [AtomicU64; 5],
    l2_skipped: AtomicU64,
    l2_retries: AtomicU64,
    breaker_opened: AtomicU64,
    bad_blobs: AtomicU64,
    queued: AtomicU64,
    recovered: AtomicU64,
    dropped_overflow: AtomicU64,
    superseded: AtomicU64,
    expired: AtomicU64,
}

fn class_index(kind: StoreErrorKind) -> usize {
    match kind {
        StoreErrorKind::Connection => 0,
        StoreErrorKind::Timeout => 1,
        StoreErrorKind::Server => 2,
        StoreErrorKind::BadData => 3,
        StoreErrorKind::Config => 4,
    }
}

/// L2 errors by class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorsByClass {
    /// Unreachable: refused, reset, DNS, TLS handshake.
    pub connection: u64,
    /// No answer within the timeout.
    pub timeout: u64,
    /// Error replies (auth, OOM, wrong type...).
    pub server: u64,
    /// Answers that could not be understood.
    pub bad_data: u64,
    /// The store cannot do what its configuration asks.
    pub config: u64,
}

impl ErrorsByClass {
    /// The count of one class.
    pub fn get(&self, kind: StoreErrorKind) -> u64 {
        match kind {
            StoreErrorKind::Connection => self.connection,
            StoreErrorKind::Timeout => self.timeout,
            StoreErrorKind::Server => self.server,
            StoreErrorKind::BadData => self.bad_data,
            StoreErrorKind::Config => self.config,
        }
    }
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
    /// L2 calls that failed or timed out (each attempt; skipped calls are not errors).
    pub l2_errors: u64,
    /// [`l2_errors`](Self::l2_errors) by class.
    pub l2_errors_by_class: ErrorsByClass,
    /// L2 calls skipped because the circuit breaker was open.
    pub l2_skipped: u64,
    /// Retries the `on_l2_failure` callback asked for.
    pub l2_retries: u64,
    /// Times the circuit breaker opened.
    pub breaker_opened: u64,
    /// L2 values that could not be parsed.
    pub bad_blobs: u64,
    /// Writes and removals that went to the recovery queue.
    pub queued: u64,
    /// Keys in the recovery queue now.
    pub queue_depth: u64,
    /// Queued changes L2 took after it recovered (or that a later write carried there).
    pub recovered: u64,
    /// Queued changes dropped because the queue was full.
    pub dropped_overflow: u64,
    /// Queued changes not applied because L2 held newer tokens (another replica's).
    pub superseded: u64,
    /// Queued writes whose deadline passed before L2 recovered (nothing to write).
    pub expired: u64,
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOutcome {
    /// The partition still holds credentials (false: it was removed).
    pub stored: bool,
    /// L2 took the write (false: it failed or was skipped; L1 holds the new value and
    /// the change waits in the recovery queue).
    pub l2_written: bool,
    /// The TTL given to L2 (`None`: no expiry).
    pub ttl: Option<Duration>,
}

type Loaded = Option<Arc<Partition>>;

/// How one attempt at an L2 call went wrong.
struct Attempted {
    error: StoreError,
    /// The breaker was open: L2 was not called.
    skipped: bool,
}

/// The outage being lived through, for logging once and summing up at recovery.
#[derive(Debug, Default)]
struct Outage {
    active: bool,
    since: Option<tokio::time::Instant>,
    failures: u64,
    skipped: u64,
    /// Counters when the outage began: (recovered, overflow, superseded, expired).
    base: (u64, u64, u64, u64),
}

/// The two-level cache of partitions.
pub struct TwoLevel {
    core: Arc<Core>,
}

/// Everything the cache and its background tasks (touches, recovery) share.
struct Core {
    /// Itself, for the tasks it spawns (they hold it weakly and end with the cache).
    me: Weak<Core>,
    l1: Option<MemoryCache<Partition>>,
    store: SharedStore,
    endpoint: String,
    keys: KeySpace,
    clock: SharedClock,
    expiry: ExpiryOptions,
    l2_timeout: Duration,
    locks: KeyLocks,
    // std Mutex: held only to find or insert a shared load, never across an await.
    inflight: Mutex<HashMap<Arc<str>, Shared<BoxFuture<'static, Loaded>>>>,
    counters: Counters,
    metrics: Metrics,
    breaker: Breaker,
    breaker_options: BreakerOptions,
    policy: FailurePolicy,
    queue: RecoveryQueue,
    // std Mutex: a few field updates, never across an await.
    outage: Mutex<Outage>,
    /// A recovery task is running.
    recovering: AtomicBool,
}

impl fmt::Debug for TwoLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.core;
        f.debug_struct("TwoLevel")
            .field("l1", &c.l1)
            .field("store", &c.endpoint)
            .field("keys", &c.keys)
            .field("expiry", &c.expiry)
            .field("breaker", &c.breaker.state())
            .field("queue_depth", &c.queue.len())
            .finish()
    }
}

/// Releases a half-open probe whose call was dropped before it answered.
struct ProbeGuard<'a> {
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

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl TwoLevel {
    /// Composes L1 (if enabled) over `store`. Handles of the metrics are registered with
    /// the recorder installed now. Inside a Tokio runtime, a start-up probe checks L2
    /// (unless [`TwoLevelOptions::probe_at_start`] is off) and reports a misconfiguration.
    pub fn new(store: SharedStore, clock: SharedClock, options: TwoLevelOptions) -> Self {
        let endpoint = store.endpoint();
        let core = Arc::new_cyclic(|me| Core {
            me: me.clone(),
            l1: options
                .l1
                .as_ref()
                .map(|o| MemoryCache::new(o, clock.clone())),
            store,
            endpoint,
            keys: KeySpace::new(options.key_prefix),
            clock,
            expiry: options.expiry,
            l2_timeout: options.l2_timeout,
            locks: KeyLocks::default(),
            inflight: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            metrics: Metrics::register(),
            breaker: Breaker::new(options.breaker.clone()),
            breaker_options: options.breaker,
            policy: options.policy,
            queue: RecoveryQueue::new(options.queue_capacity),
            outage: Mutex::new(Outage::default()),
            recovering: AtomicBool::new(false),
        });
        core.metrics
            .breaker_state
            .set(BreakerState::Closed.as_gauge());
        core.metrics.queue_depth.set(0.0);
        if options.probe_at_start {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                let weak = Arc::downgrade(&core);
                handle.spawn(async move {
                    if let Some(core) = weak.upgrade() {
                        let store = core.store.clone();
                        let _ = core
                            .call_with("health (start-up probe)", || store.health())
                            .await;
                    }
                });
            }
        }
        Self { core }
    }

    /// The L2 store.
    pub fn store(&self) -> &SharedStore {
        &self.core.store
    }

    /// The key space (prefix and tokencache's own keys).
    pub fn keys(&self) -> &KeySpace {
        &self.core.keys
    }

    /// The clock.
    pub fn clock(&self) -> &SharedClock {
        &self.core.clock
    }

    /// The expiry rules.
    pub fn expiry(&self) -> &ExpiryOptions {
        &self.core.expiry
    }

    /// The L1, when enabled.
    pub fn l1(&self) -> Option<&MemoryCache<Partition>> {
        self.core.l1.as_ref()
    }

    /// The circuit breaker's state now.
    pub fn breaker_state(&self) -> BreakerState {
        self.core.breaker.state()
    }

    /// Keys waiting in the recovery queue now.
    pub fn queue_depth(&self) -> usize {
        self.core.queue.len()
    }

    /// Whether an L2 outage is going on (it ends once a probe succeeded and the recovery
    /// queue is drained) or changes are still queued.
    pub fn is_degraded(&self) -> bool {
        !self.core.queue.is_empty() || self.core.outage().active
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.core.stats()
    }

    /// The partition under `key` (a partition key without prefix), from L1 or L2.
    /// `None`: nowhere, expired, unreadable, or L2 failed and L1 had nothing.
    #[inline]
    pub async fn get(
        self: &Arc<Self>,
        kind: PartitionKind,
        key: &str,
        ctx: EntryContext,
    ) -> Option<Arc<Partition>> {
        let now_ms = self.core.clock.now_millis();
        self.get_at(kind, key, ctx, now_ms).await
    }

    /// [`get`](Self::get) with "now" (clock milliseconds) already read by the caller, so
    /// that an L1 hit reads the clock once.
    #[inline]
    pub async fn get_at(
        self: &Arc<Self>,
        kind: PartitionKind,
        key: &str,
        ctx: EntryContext,
        now_ms: u64,
    ) -> Option<Arc<Partition>> {
        self.get_lazy(kind, key, move || ctx, now_ms).await
    }

    /// [`get_at`](Self::get_at) with the entry context built only when it is needed: on
    /// a miss (to compute the deadline of what is loaded) or for a due sliding touch. An
    /// L1 hit of an OBO partition then never decodes the incoming assertion.
    #[inline]
    pub async fn get_lazy(
        self: &Arc<Self>,
        kind: PartitionKind,
        key: &str,
        ctx: impl FnOnce() -> EntryContext,
        now_ms: u64,
    ) -> Option<Arc<Partition>> {
        let core = &self.core;
        if let Some(l1) = &core.l1 {
            if let Some(entry) = l1.get_at(key, now_ms) {
                bump(&core.counters.l1_hits);
                core.metrics.l1_hits.increment(1);
                core.slide(kind, key, &entry, ctx);
                return Some(entry.value().clone());
            }
            bump(&core.counters.l1_misses);
            core.metrics.l1_misses.increment(1);
        }
        core.load_shared(kind, key, ctx()).await
    }

    /// Changes the partition under `key` with `change`, then writes it through both
    /// levels (or removes it when no credentials are left). Returns what `change`
    /// returned and what the write did. When L2 fails, the change lands in L1 and in the
    /// recovery queue; it is not an error.
    pub async fn update<R>(
        &self,
        kind: PartitionKind,
        key: &str,
        ctx: EntryContext,
        change: impl FnOnce(&mut Partition) -> Result<R, Error>,
    ) -> Result<(R, WriteOutcome), Error> {
        self.core.update(kind, key, ctx, change).await
    }

    /// Removes the partition under `key` from both levels. Returns whether L2 took it
    /// (false: the removal waits in the recovery queue).
    pub async fn remove(&self, key: &str) -> bool {
        let core = &self.core;
        let _guard = core.locks.lock(key).await;
        let full = core.keys.partition_str(key);
        core.remove_locked(key, &full).await
    }

    /// Removes many keys (full keys, prefix included: partitions, link sets, ...) from
    /// L2 in one call and their partitions from this replica's L1; what L2 does not take
    /// goes to the recovery queue as removals. Changes of these keys queued earlier are
    /// replaced (a removal is the latest change). Returns how many keys L2 deleted.
    ///
    /// This is the way to remove keys in bulk (sign-out): the keys' locks are held
    /// during the call, so a drain of the recovery queue cannot write one back after it.
    pub async fn remove_keys(&self, full_keys: &[String]) -> StoreResult<u64> {
        self.core.remove_keys(full_keys).await
    }

    /// Queues the removal of `full_key` (prefix included) for when L2 is healthy again,
    /// replacing any change of it queued earlier, and drops its partition from this
    /// replica's L1. For a removal that failed outside [`remove`](Self::remove) and
    /// [`remove_keys`](Self::remove_keys), which queue by themselves. A removal is
    /// applied unless L2 meanwhile got a partition with records cached after now (see the
    /// module docs: newer value wins).
    pub async fn queue_removal(&self, full_key: &str) {
        let core = &self.core;
        let bare = core.keys.strip(full_key).unwrap_or(full_key).to_string();
        let _guard = core.locks.lock(&bare).await;
        core.forget_l1(&bare);
        core.enqueue(full_key, QueuedOp::Remove);
    }

    /// Runs one recovery round now: probe L2 (through the breaker), then apply the
    /// queued changes. Returns true when L2 answered and the queue is empty. The
    /// background task does the same by itself; this is for tools and shutdown paths.
    pub async fn recover_now(&self) -> bool {
        self.core.recover_once().await
    }

    /// Drops a key from L1 only (another replica changed it).
    pub fn forget_local(&self, key: &str) {
        self.core.forget_l1(key);
    }

    /// Runs one L2 call through the failure policy: the circuit breaker (while open the
    /// call is not made and a `Connection`-class error saying so is returned), the
    /// timeout, classification, counting and outage logging. One attempt: a future
    /// cannot be run twice, so the `on_l2_failure` callback is not asked (use
    /// [`call_with`](Self::call_with) for retries). Every L2 call of the crate goes
    /// through here or there.
    pub async fn call<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        self.core.call(operation, call).await
    }

    /// As [`call`](Self::call), with retries: `make` builds the call afresh for each
    /// attempt, and the `on_l2_failure` callback decides (within
    /// [`RetryOptions`]) whether a failed attempt is retried after the backoff.
    pub async fn call_with<T, F, Fut>(&self, operation: &'static str, make: F) -> StoreResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = StoreResult<T>>,
    {
        self.core.call_with(operation, make).await
    }
}

impl Core {
    fn outage(&self) -> std::sync::MutexGuard<'_, Outage> {
        self.outage.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stats(&self) -> Stats {
        let c = &self.counters;
        let e = &c.errors_by_class;
        Stats {
            l1_hits: load(&c.l1_hits),
            l1_misses: load(&c.l1_misses),
            l2_hits: load(&c.l2_hits),
            l2_misses: load(&c.l2_misses),
            l2_reads: load(&c.l2_reads),
            l2_writes: load(&c.l2_writes),
            l2_errors: load(&c.l2_errors),
            l2_errors_by_class: ErrorsByClass {
                connection: load(&e[0]),
                timeout: load(&e[1]),
                server: load(&e[2]),
                bad_data: load(&e[3]),
                config: load(&e[4]),
            },
            l2_skipped: load(&c.l2_skipped),
            l2_retries: load(&c.l2_retries),
            breaker_opened: load(&c.breaker_opened),
            bad_blobs: load(&c.bad_blobs),
            queued: load(&c.queued),
            queue_depth: self.queue.len() as u64,
            recovered: load(&c.recovered),
            dropped_overflow: load(&c.dropped_overflow),
            superseded: load(&c.superseded),
            expired: load(&c.expired),
        }
    }

    fn forget_l1(&self, key: &str) {
        if let Some(l1) = &self.l1 {
            l1.remove(key);
        }
    }

    // ---- the gate every L2 call goes through -------------------------------------

    async fn call<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        self.attempt(operation, call).await.map_err(|a| a.error)
    }

    async fn call_with<T, F, Fut>(&self, operation: &'static str, mut make: F) -> StoreResult<T>
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
    async fn attempt<T>(
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

    fn breaker_moved(&self, t: Transition) {
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

    fn failed(&self, operation: &'static str, e: &StoreError, admit: Admit) {
        bump(&self.counters.l2_errors);
        bump(&self.counters.errors_by_class[class_index(e.kind)]);
        self.metrics.error(e.kind).increment(1);
        if e.kind == StoreErrorKind::BadData {
            // L2 answered: this says nothing about its health.
            self.breaker_moved(self.breaker.on_success(admit));
            tracing::warn!(operation, endpoint = %e.endpoint, cause = %e.message, "L2 answer could not be understood; treated as a miss");
            return;
        }
        self.breaker_moved(self.breaker.on_failure(admit));
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

    // ---- recovery --------------------------------------------------------------

    /// Queues a change of `full_key` (latest wins), counting what it displaced.
    fn enqueue(&self, full_key: &str, op: QueuedOp) {
        let written_at = self.clock.now_secs();
        let pushed = self.queue.push(full_key, Queued { op, written_at });
        bump(&self.counters.queued);
        self.metrics.queued.increment(1);
        if pushed.evicted {
            bump(&self.counters.dropped_overflow);
            self.metrics.dropped_overflow.increment(1);
            tracing::debug!(
                capacity = self.queue.len(),
                "recovery queue full: the oldest queued change was dropped"
            );
        }
        self.metrics.queue_depth.set(self.queue.len() as f64);
        self.ensure_recovery();
    }

    /// Starts the recovery task unless one runs (needs a Tokio runtime).
    fn ensure_recovery(&self) {
        if self.recovering.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            self.recovering.store(false, Ordering::Release);
            return;
        };
        handle.spawn(recovery_loop(self.me.clone()));
    }

    /// How long the recovery task waits before its next probe.
    fn next_probe_wait(&self) -> Duration {
        match self.breaker.state() {
            BreakerState::Closed => self.breaker_options.open_for.max(Duration::from_millis(1)),
            _ => self.breaker.probe_in().max(Duration::from_millis(1)),
        }
    }

    /// Probe, then drain. True when L2 answered and nothing is left to do.
    async fn recover_once(&self) -> bool {
        let store = self.store.clone();
        if self.call_with("health", || store.health()).await.is_err() {
            return false;
        }
        while let Some(full) = self.queue.oldest_key() {
            if !self.drain_key(&full).await {
                return false;
            }
        }
        self.end_outage();
        true
    }

    fn end_outage(&self) {
        let o = std::mem::take(&mut *self.outage());
        if !o.active {
            return;
        }
        let c = &self.counters;
        let applied = load(&c.recovered) - o.base.0;
        let overflow = load(&c.dropped_overflow) - o.base.1;
        let superseded = load(&c.superseded) - o.base.2;
        let expired = load(&c.expired) - o.base.3;
        let secs = o.since.map(|s| s.elapsed().as_secs_f64()).unwrap_or(0.0);
        tracing::warn!(
            endpoint = %self.endpoint,
            outage_secs = secs,
            failed_calls = o.failures,
            skipped_calls = o.skipped,
            applied,
            dropped = overflow + superseded + expired,
            dropped_overflow = overflow,
            superseded,
            expired,
            "L2 at {} is back after {:.1} s ({} failed and {} skipped calls): {} queued writes applied, {} dropped ({} over the queue bound, {} superseded by newer values in L2, {} expired)",
            self.endpoint,
            secs,
            o.failures,
            o.skipped,
            applied,
            overflow + superseded + expired,
            overflow,
            superseded,
            expired,
        );
    }

    /// Applies the queued change of one key (under the key's lock). False when L2
    /// failed (the change is back in the queue, unless a newer one came meanwhile).
    async fn drain_key(&self, full: &str) -> bool {
        let bare = self.keys.strip(full).unwrap_or(full).to_string();
        let _guard = self.locks.lock(&bare).await;
        let Some((seq, queued)) = self.queue.take(full) else {
            return true; // a write of this key carried it to L2 meanwhile
        };
        self.metrics.queue_depth.set(self.queue.len() as f64);
        let put_back = |q: Queued| {
            if !self.queue.restore(full, q, seq) && self.queue.peek(full).is_none() {
                // no room left for it (the queue filled up meanwhile): dropped
                bump(&self.counters.dropped_overflow);
                self.metrics.dropped_overflow.increment(1);
            }
            self.metrics.queue_depth.set(self.queue.len() as f64);
            false
        };
        // Newer value wins: what does L2 hold now? (tokencache's own keys are not blobs.)
        if !self.keys.is_own_key(full) {
            bump(&self.counters.l2_reads);
            let current = match self.call_with("get", || self.store.get(full)).await {
                Ok(v) => v,
                Err(_) => return put_back(queued),
            };
            let newer = current
                .and_then(|v| Partition::parse(&v.bytes).ok())
                .and_then(|p| p.last_cached_at())
                .is_some_and(|t| t > queued.written_at);
            if newer {
                bump(&self.counters.superseded);
                self.metrics.dropped_superseded.increment(1);
                self.forget_l1(&bare); // reread the newer value
                tracing::debug!(key = %full, "queued change not applied: L2 holds newer tokens");
                return true;
            }
        }
        let result = match &queued.op {
            QueuedOp::Set {
                partition,
                deadline_ms,
            } => {
                let now = self.clock.now_millis();
                let ttl = match deadline_ms {
                    None => None,
                    Some(d) if *d <= now => {
                        bump(&self.counters.expired);
                        self.metrics.dropped_expired.increment(1);
                        return true;
                    }
                    Some(d) => Some(Duration::from_millis(d - now)),
                };
                let bytes = partition.to_vec();
                bump(&self.counters.l2_writes);
                self.call_with("set", || self.store.set(full, &bytes, ttl))
                    .await
                    .map(|_| ())
            }
            QueuedOp::Remove => {
                bump(&self.counters.l2_writes);
                self.call_with("remove", || self.store.remove(full))
                    .await
                    .map(|_| ())
            }
        };
        match result {
            Ok(()) => {
                bump(&self.counters.recovered);
                self.metrics.applied.increment(1);
                true
            }
            Err(_) => put_back(queued),
        }
    }

    // ---- read path ---------------------------------------------------------------

    /// Sliding expiration on an L1 hit: at most once per touch interval, move the L1
    /// deadline and refresh L2's TTL in the background (no round trip on the hit).
    fn slide(
        &self,
        kind: PartitionKind,
        key: &str,
        entry: &Arc<L1Entry<Partition>>,
        ctx: impl FnOnce() -> EntryContext,
    ) {
        let Some(interval) = self.expiry.touch_interval() else {
            return;
        };
        let now = self.clock.now_millis();
        let seen = entry.touched_ms();
        if now.saturating_sub(seen) < interval.as_millis() as u64 || !entry.claim_touch(seen, now) {
            return;
        }
        let deadline = self.expiry.deadline(kind, entry.value(), &ctx(), now);
        let Some(ttl) = deadline.ttl_at(now) else {
            return;
        };
        if ttl.is_zero() {
            return; // past its hard deadline: let it die
        }
        entry.set_deadline_ms(self.expiry.l1_deadline(now, deadline.at(now)));
        let Some(this) = self.me.upgrade() else {
            return;
        };
        let full = self.keys.partition_str(key);
        tokio::spawn(async move {
            let _ = this.call("touch", this.store.touch(&full, ttl)).await;
        });
    }

    async fn load_shared(&self, kind: PartitionKind, key: &str, ctx: EntryContext) -> Loaded {
        let fut = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            match inflight.get(key) {
                Some(f) => f.clone(),
                None => {
                    let this = self.me.upgrade()?;
                    let k: Arc<str> = Arc::from(key);
                    let f = this.load(kind, k.clone(), ctx).boxed().shared();
                    inflight.insert(k, f.clone());
                    f
                }
            }
        };
        fut.await
    }

    async fn load(
        self: Arc<Self>,
        kind: PartitionKind,
        key: Arc<str>,
        ctx: EntryContext,
    ) -> Loaded {
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
        if let Some(queued) = self.queue.peek(&full) {
            // This replica's latest change, not in L2 yet: it is the answer.
            return match queued.op {
                QueuedOp::Remove => None,
                QueuedOp::Set {
                    partition,
                    deadline_ms,
                } => {
                    let now = self.clock.now_millis();
                    if deadline_ms.is_some_and(|d| d <= now) {
                        return None;
                    }
                    if let Some(l1) = &self.l1 {
                        let size = partition.to_vec().len();
                        l1.insert(
                            key,
                            partition.clone(),
                            size,
                            self.expiry.l1_deadline(now, deadline_ms),
                        );
                    }
                    Some(partition)
                }
            };
        }
        bump(&self.counters.l2_reads);
        let read = match self.expiry.sliding_expiration {
            Some(window) => {
                self.call_with("get", || self.store.get_and_touch(&full, window))
                    .await
            }
            None => self.call_with("get", || self.store.get(&full)).await,
        };
        let value = match read {
            Ok(Some(v)) => v,
            Ok(None) => {
                self.l2_miss();
                return None;
            }
            Err(_) => return None,
        };
        let partition = match Partition::parse(&value.bytes) {
            Ok(p) => p,
            Err(e) => {
                bump(&self.counters.bad_blobs);
                tracing::error!(key = %full, bytes = value.bytes.len(), error = %e, "unreadable partition in L2; treated as a miss");
                return None;
            }
        };
        let now = self.clock.now_millis();
        let deadline = self.expiry.deadline(kind, &partition, ctx, now);
        let mut l2_deadline = deadline.at(now);
        if !partition.has_credentials() || l2_deadline.is_some_and(|d| d <= now) {
            self.l2_miss();
            return None;
        }
        if let (Some(window), Some(d)) = (self.expiry.sliding_expiration, l2_deadline) {
            // GETEX gave it a full window; its hard deadline may be sooner.
            let left = Duration::from_millis(d - now);
            if left < window {
                let _ = self.call("touch", self.store.touch(&full, left)).await;
            }
        }
        if let Some(ttl) = value.ttl {
            let l2_left = now.saturating_add(ttl.as_millis() as u64);
            l2_deadline = Some(l2_deadline.map_or(l2_left, |d| d.min(l2_left)));
        }
        bump(&self.counters.l2_hits);
        self.metrics.l2_hits.increment(1);
        let partition = Arc::new(partition);
        if let Some(l1) = &self.l1 {
            l1.insert(
                key,
                partition.clone(),
                value.bytes.len(),
                self.expiry.l1_deadline(now, l2_deadline),
            );
        }
        Some(partition)
    }

    fn l2_miss(&self) {
        bump(&self.counters.l2_misses);
        self.metrics.l2_misses.increment(1);
    }

    // ---- write path --------------------------------------------------------------

    async fn update<R>(
        &self,
        kind: PartitionKind,
        key: &str,
        ctx: EntryContext,
        change: impl FnOnce(&mut Partition) -> Result<R, Error>,
    ) -> Result<(R, WriteOutcome), Error> {
        let _guard = self.locks.lock(key).await;
        let full = self.keys.partition_str(key);
        let queued = self.queue.peek(&full);
        bump(&self.counters.l2_reads);
        let from_queue = |q: &Queued| match &q.op {
            QueuedOp::Set { partition, .. } => Partition::clone(partition),
            QueuedOp::Remove => Partition::new(),
        };
        let mut partition = match self.call_with("get", || self.store.get(&full)).await {
            Ok(current) => {
                let l2 = match current {
                    Some(v) => match Partition::parse(&v.bytes) {
                        Ok(p) => p,
                        Err(e) => {
                            bump(&self.counters.bad_blobs);
                            tracing::error!(key = %full, error = %e, "unreadable partition in L2 is replaced by this write");
                            Partition::new()
                        }
                    },
                    None => Partition::new(),
                };
                match &queued {
                    // Our queued change is the base unless L2 holds newer tokens.
                    Some(q) if l2.last_cached_at().is_none_or(|t| t <= q.written_at) => {
                        from_queue(q)
                    }
                    _ => l2,
                }
            }
            Err(_) => match &queued {
                Some(q) => from_queue(q),
                None => self
                    .l1
                    .as_ref()
                    .and_then(|l1| l1.get(key))
                    .map(|entry| Partition::clone(entry.value()))
                    .unwrap_or_default(),
            },
        };
        let result = change(&mut partition)?;
        let now = self.clock.now_millis();
        let deadline = self.expiry.deadline(kind, &partition, &ctx, now);
        let ttl = deadline.ttl_at(now);
        if !partition.has_credentials() || ttl.is_some_and(|t| t.is_zero()) {
            let l2_written = self.remove_locked(key, &full).await;
            return Ok((
                result,
                WriteOutcome {
                    stored: false,
                    l2_written,
                    ttl: None,
                },
            ));
        }
        let bytes = partition.to_vec();
        let partition = Arc::new(partition);
        bump(&self.counters.l2_writes);
        let l2_written = match self
            .call_with("set", || self.store.set(&full, &bytes, ttl))
            .await
        {
            Ok(()) => {
                self.settled(&full);
                true
            }
            Err(_) => {
                self.enqueue(
                    &full,
                    QueuedOp::Set {
                        partition: partition.clone(),
                        deadline_ms: deadline.at(now),
                    },
                );
                false
            }
        };
        if let Some(l1) = &self.l1 {
            l1.insert(
                key,
                partition,
                bytes.len(),
                self.expiry.l1_deadline(now, deadline.at(now)),
            );
        }
        Ok((
            result,
            WriteOutcome {
                stored: true,
                l2_written,
                ttl,
            },
        ))
    }

    /// L2 took a write or removal of `full` (under its lock): a change of it still
    /// queued was its base (or is replaced by it), so it has reached L2 too.
    fn settled(&self, full: &str) {
        if self.queue.take(full).is_some() {
            bump(&self.counters.recovered);
            self.metrics.applied.increment(1);
            self.metrics.queue_depth.set(self.queue.len() as f64);
        }
    }

    async fn remove_locked(&self, key: &str, full: &str) -> bool {
        self.forget_l1(key);
        bump(&self.counters.l2_writes);
        match self.call_with("remove", || self.store.remove(full)).await {
            Ok(_) => {
                self.settled(full);
                true
            }
            Err(_) => {
                self.enqueue(full, QueuedOp::Remove);
                false
            }
        }
    }

    async fn remove_keys(&self, full_keys: &[String]) -> StoreResult<u64> {
        let mut bare: Vec<&str> = full_keys
            .iter()
            .map(|k| self.keys.strip(k).unwrap_or(k))
            .collect();
        bare.sort_unstable();
        bare.dedup();
        // Sorted order: two bulk removals never wait for each other in a cycle.
        let mut guards = Vec::with_capacity(bare.len());
        for k in &bare {
            guards.push(self.locks.lock(k).await);
        }
        for k in &bare {
            self.forget_l1(k);
        }
        bump(&self.counters.l2_writes);
        let result = self
            .call_with("remove_many", || self.store.remove_many(full_keys))
            .await;
        for full in full_keys {
            match &result {
                Ok(_) => self.settled(full),
                Err(_) => self.enqueue(full, QueuedOp::Remove),
            }
        }
        drop(guards);
        result
    }
}

/// The recovery task: waits for the breaker's next probe, probes, drains the queue, and
/// ends when L2 is healthy and nothing is queued, or when the cache is dropped.
async fn recovery_loop(weak: Weak<Core>) {
    loop {
        let Some(wait) = weak.upgrade().map(|c| c.next_probe_wait()) else {
            return;
        };
        tokio::time::sleep(wait).await;
        let Some(core) = weak.upgrade() else {
            return;
        };
        if core.recover_once().await {
            core.recovering.store(false, Ordering::Release);
            // Something may have been queued (or failed) after the last look.
            let more = !core.queue.is_empty() || core.outage().active;
            if !more || core.recovering.swap(true, Ordering::AcqRel) {
                return;
            }
        }
    }
}
