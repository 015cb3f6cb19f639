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
//! 3. **classification** of the failure ([`StoreErrorKind`](crate::store::StoreErrorKind): connection, timeout,
//!    server, bad data, config), counted per class in [`Stats`] and in metrics;
//! 4. the **failure policy** ([`FailurePolicy`]): the `on_l2_failure` callback may ask for
//!    a retry, after a bounded exponential backoff.
//!
//! Then: a failed read is served from L1 or is a miss; a failed write or removal lands
//! in L1 and in the bounded **recovery queue** (latest change per key wins; when full the
//! change queued the longest ago is dropped and counted), which a background task drains as soon as a probe
//! finds L2 healthy again.
//!
//! **Newer value wins.** Each queued change carries the time it was made
//! (`written_at_ms`, the cache's clock). Before applying it, L2's current value is read;
//! if that value has a credential written later
//! ([`Partition::has_credentials_written_after`]: to the millisecond for records
//! tokencache wrote, by the second for others), another replica stored newer tokens
//! during the outage: a queued removal is *not* applied (counted `superseded`) and this
//! replica drops its L1 copy so that it rereads L2; a queued merge is replayed record by
//! record, the newer copy of each record winning. A tie goes to the queued change. The
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
mod codec;
mod coherence;
mod drain;
mod expiry;
mod flight;
mod gate;
mod locks;
mod metrics;
mod optimistic;
mod policy;
mod quiet;
mod read;
mod recovery;
mod revocations;
mod stats;
mod strict;
mod time;
mod write;

pub use breaker::{BreakerOptions, BreakerState};
pub use coherence::{BackplaneOptions, BackplaneStatus};
pub use expiry::{Deadline, EntryContext, ExpiryOptions, OboExpiry, MAX_TTL};
pub use policy::{FailurePolicy, L2Decision, L2Failure, OnL2Failure, RetryOptions};
pub use time::{MAX_ADOPTED_OFFSET, REMEASURE_EVERY};

use std::fmt;
use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::clock::SharedClock;
use crate::error::Error;
use crate::memory::{L1Options, MemoryCache};
use crate::partition::{KeySpace, PartitionKind};
use crate::protect::{Protection, Reporter};
use crate::schema::Partition;
use crate::store::{SharedStore, StoreResult};
use breaker::Breaker;
use gate::Outage;
use locks::KeyLocks;
use metrics::Metrics;
use recovery::{QueuedOp, RecoveryQueue};
use stats::Counters;
pub use stats::{ErrorsByClass, Stats};
pub(crate) use write::StampWritten;

/// The default bound of every L2 call.
pub const DEFAULT_L2_TIMEOUT: Duration = Duration::from_millis(250);

/// The default bound of the recovery queue's writes, in keys.
pub const DEFAULT_QUEUE_CAPACITY: usize = 10_000;

/// The default bound of the recovery queue's sign-outs (stamps and removals), in keys:
/// they are never dropped, so a sign-out beyond it is refused.
pub const DEFAULT_SIGNOUT_QUEUE_CAPACITY: usize = 10_000;

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
    /// Writes the recovery queue holds at most, in keys (0: queue no write); when full,
    /// the oldest write is dropped. Default [`DEFAULT_QUEUE_CAPACITY`].
    pub queue_capacity: usize,
    /// Sign-outs (revocation stamps and removals) the recovery queue holds at most, in
    /// keys: never dropped; a sign-out beyond it is refused with an error. Default
    /// [`DEFAULT_SIGNOUT_QUEUE_CAPACITY`].
    pub signout_queue_capacity: usize,
    /// Probe L2 (`PING`) when the cache is built, to report a misconfiguration at once.
    /// Default true.
    pub probe_at_start: bool,
    /// Cross-replica L1 invalidation over the store's backplane.
    pub backplane: BackplaneOptions,
    /// Encryption at rest of partitions in L2 (`None`: plaintext MSAL JSON).
    pub protection: Option<Protection>,
    /// Strict reads: every L1 hit checks that L2 still holds the value L1 mirrors (one
    /// small round trip: the value's digest), for read-your-writes across replicas
    /// without waiting for the backplane's message. Default false (see `strict`).
    pub strict_reads: bool,
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
            signout_queue_capacity: DEFAULT_SIGNOUT_QUEUE_CAPACITY,
            probe_at_start: true,
            backplane: BackplaneOptions::default(),
            protection: None,
            strict_reads: false,
        }
    }
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOutcome {
    /// The partition still holds credentials (false: it was removed).
    pub stored: bool,
    /// L2 took the write (false: it failed or was skipped; L1 holds the new value and
    /// the change waits in the recovery queue; or L2 holds the partition sealed with a
    /// key id this replica's ring lacks, which is never overwritten, and L1 alone holds
    /// the new value).
    pub l2_written: bool,
    /// The TTL given to L2 (`None`: no expiry).
    pub ttl: Option<Duration>,
    /// L2 could not be read or written: the change waits in the recovery queue and is
    /// merged, record by record, into L2's partition when L2 is back (it never replaces
    /// records it did not see).
    pub merged_later: bool,
    /// The owner signed out after the tokens were requested: nothing was written.
    pub revoked: bool,
}

/// Whose partition a write changes and when its tokens were requested: a sign-out of
/// the owner at or after that moment refuses the write (docs/design.md §7).
#[derive(Debug, Clone, Copy)]
pub struct WriteScope<'a> {
    /// The user the partition belongs to (the user itself, or an OBO partition's user);
    /// `None` for app partitions.
    pub owner: Option<&'a str>,
    /// When the tokens were requested (ms since the epoch, the cache's clock).
    pub requested_at_ms: i64,
}

impl WriteScope<'_> {
    /// Whether a sign-out at `stamp_ms` refuses this write (the sign-out came at or
    /// after the request).
    pub(crate) fn revoked_by(&self, stamp_ms: Option<i64>) -> bool {
        stamp_ms.is_some_and(|s| s >= self.requested_at_ms)
    }
}

/// Locks and loads held by operations in flight (see [`TwoLevel::in_flight`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InFlight {
    /// Keys whose per-key lock is held or waited for.
    pub locks: usize,
    /// Keys with a shared load running.
    pub loads: usize,
}

type Loaded = Option<Arc<Partition>>;

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
    /// The loads running (one per key, whoever waits).
    flights: Arc<flight::Flights>,
    counters: Counters,
    metrics: Metrics,
    breaker: Breaker,
    breaker_options: BreakerOptions,
    policy: FailurePolicy,
    queue: RecoveryQueue,
    // std Mutex: a few field updates, never across an await.
    outage: Mutex<Outage>,
    /// Repeated problems (unreadable answers and blobs), logged once a minute.
    quiet: quiet::Quiet,
    /// A recovery task is running.
    recovering: AtomicBool,
    /// The backplane, when the store has one and it is enabled.
    backplane: Option<crate::backplane::SharedBackplane>,
    /// Its channel (`{prefix}tc:backplane`).
    channel: String,
    /// This instance's id in backplane messages.
    origin: u64,
    /// The subscription is down: L1 may be stale (see `coherence`).
    l1_suspect: AtomicBool,
    /// The subscription's state and why (std Mutex: set by the listener, read by
    /// `backplane_status`; never held across an await).
    backplane_status: Mutex<BackplaneStatus>,
    /// The channel's refusal (`NOPERM`) was logged: once, whether the subscription or a
    /// publish met it first; again only after a grant (see `coherence`).
    refusal_said: AtomicBool,
    /// Bumped by every invalidation; a load keeps its value in L1 only if unchanged.
    invalidations: std::sync::atomic::AtomicU64,
    /// An L2 outage is going on (set on the first failure, cleared when it ends).
    l2_failing: AtomicBool,
    /// Users signed out, as far as this replica knows.
    revocations: revocations::Revocations,
    /// Seals and opens partitions (codec.rs); `None`: plaintext.
    protection: Option<Protection>,
    /// Values that could not be opened, logged once per key id and kind.
    protect_log: Reporter,
    /// Every L1 hit checks L2's digest (see `strict`).
    strict_reads: bool,
    /// The store's clock, as measured from here (see `time`).
    store_clock: time::StoreClock,
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
            .field("protection", &c.protection)
            .finish()
    }
}

impl TwoLevel {
    /// Composes L1 (if enabled) over `store`. Handles of the metrics are registered with
    /// the recorder installed now. Inside a Tokio runtime, a start-up probe checks L2
    /// (unless [`TwoLevelOptions::probe_at_start`] is off) and reports a misconfiguration.
    pub fn new(store: SharedStore, clock: SharedClock, options: TwoLevelOptions) -> Self {
        let endpoint = store.endpoint();
        let keys = KeySpace::new(options.key_prefix);
        let backplane = if options.backplane.enabled {
            store.backplane()
        } else {
            None
        };
        let channel = keys.backplane_channel();
        let backplane_enabled = backplane.is_some();
        let core = Arc::new_cyclic(|me| Core {
            me: me.clone(),
            l1: options
                .l1
                .as_ref()
                .map(|o| MemoryCache::new(o, clock.clone())),
            store,
            endpoint,
            keys,
            clock,
            expiry: options.expiry,
            l2_timeout: options.l2_timeout,
            locks: KeyLocks::default(),
            flights: Arc::default(),
            counters: Counters::default(),
            metrics: Metrics::register(),
            breaker: Breaker::new(options.breaker.clone()),
            breaker_options: options.breaker,
            policy: options.policy,
            queue: RecoveryQueue::new(options.queue_capacity, options.signout_queue_capacity),
            outage: Mutex::new(Outage::default()),
            quiet: quiet::Quiet::default(),
            recovering: AtomicBool::new(false),
            backplane,
            channel,
            origin: coherence::new_origin(),
            l1_suspect: AtomicBool::new(false),
            backplane_status: Mutex::new(if backplane_enabled {
                BackplaneStatus::Down("not subscribed yet".into())
            } else {
                BackplaneStatus::None
            }),
            refusal_said: AtomicBool::new(false),
            invalidations: std::sync::atomic::AtomicU64::new(0),
            l2_failing: AtomicBool::new(false),
            revocations: revocations::Revocations::default(),
            protection: options.protection,
            protect_log: Reporter::default(),
            strict_reads: options.strict_reads,
            store_clock: time::StoreClock::default(),
        });
        coherence::start(&core, &options.backplane);
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

    /// How partitions are protected in L2 (`None`: plaintext).
    pub fn protection(&self) -> Option<&Protection> {
        self.core.protection.as_ref()
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

    /// What is held right now for operations in flight: per-key locks and shared
    /// loads. Both are zero when nothing runs (a cancelled caller leaves neither behind).
    pub fn in_flight(&self) -> InFlight {
        InFlight {
            locks: self.core.locks.len(),
            loads: self.core.flights.len(),
        }
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
        if let Some(l1) = core.l1.as_ref().filter(|_| core.l1_trusted()) {
            if let Some(entry) = l1.get_at(key, now_ms) {
                // Boxed (a round trip, opt-in): kept inline, its state would enlarge
                // every read's future.
                if !core.strict_reads || Box::pin(core.still_current(key, &entry)).await {
                    core.counters.l1_hits.bump();
                    core.metrics.l1_hits.increment(1);
                    core.slide(kind, key, &entry, ctx);
                    return Some(entry.value().clone());
                }
            }
            core.counters.l1_misses.bump();
            core.metrics.l1_misses.increment(1);
        }
        // Boxed: a miss waits for L2 anyway; inline, the load's state would be moved
        // with every read's future, L1 hits included.
        Box::pin(core.load_shared(kind, key, ctx())).await
    }

    /// Changes the partition under `key` with `change`, then writes it through both
    /// levels (or removes it when no credentials are left), optimistically: only over
    /// what it read, else the change is replayed record by record onto what another
    /// writer stored (see `optimistic`). Refused when `scope`'s owner signed out at or
    /// after `scope.requested_at_ms`. Returns what `change` returned and what the write
    /// did. When L2 fails, the change lands in L1 and in the recovery queue; it is not
    /// an error.
    pub async fn update<R>(
        &self,
        kind: PartitionKind,
        key: &str,
        ctx: EntryContext,
        scope: WriteScope<'_>,
        change: impl FnOnce(&mut Partition) -> Result<R, Error>,
    ) -> Result<(R, WriteOutcome), Error> {
        self.core.update(kind, key, ctx, scope, change).await
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
        self.core.remove_keys(full_keys).await.0
    }

    /// [`remove_keys`](Self::remove_keys), also saying whether a removal L2 did not take
    /// could not be queued either (the recovery queue's sign-outs at their bound).
    pub(crate) async fn remove_keys_for_signout(
        &self,
        full_keys: &[String],
    ) -> (StoreResult<u64>, bool) {
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

    /// Makes this replica refuse tokens of `home_account_id` cached at or before
    /// `stamp` (Unix seconds: the end of that second), until the stamp's TTL
    /// ([`stamp_ttl`](Self::stamp_ttl)).
    pub fn revoke_locally(&self, home_account_id: &str, stamp: i64) {
        let ms = stamp.saturating_mul(1000).saturating_add(999);
        self.core.revoke_locally_ms(home_account_id, ms);
    }

    /// The revocation stamp of `home_account_id` this replica knows, if still live, in
    /// Unix seconds (tokens with `cached_at` at or before it are refused).
    #[inline]
    pub fn revocation_of(&self, home_account_id: &str) -> Option<i64> {
        self.core
            .revocation_ms(home_account_id)
            .map(|ms| ms.div_euclid(1000))
    }

    /// Whether L1 is bypassed now because the backplane subscription is down (and L2
    /// is healthy): reads go to L2 until the replica has subscribed again.
    pub fn l1_bypassed(&self) -> bool {
        !self.core.l1_trusted()
    }

    /// The backplane subscription's state, and why when it is down or refused (a Redis
    /// ACL user without the channel): while it is not subscribed, L1 is bypassed (see
    /// [`l1_bypassed`](Self::l1_bypassed)).
    pub fn backplane_status(&self) -> BackplaneStatus {
        self.core
            .backplane_status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether this cache listens to a backplane (the store has one and it is enabled).
    pub fn has_backplane(&self) -> bool {
        self.core.backplane.is_some()
    }

    /// Whether this replica knows any revocation stamp (cheap: for hit paths).
    #[inline]
    pub fn any_revocation(&self) -> bool {
        self.core.revocations.any()
    }

    /// The revocation stamp of `home_account_id` this replica knows, if still live, in
    /// ms since the epoch (on the clock of [`store_now_ms`](Self::store_now_ms)).
    #[inline]
    pub fn revocation_ms_of(&self, home_account_id: &str) -> Option<i64> {
        self.core.revocation_ms(home_account_id)
    }

    /// Reads the user's revocation stamp from L2 and applies it here; returns it (Unix
    /// seconds).
    pub async fn refresh_revocation(&self, home_account_id: &str) -> StoreResult<Option<i64>> {
        let core = &self.core;
        let key = core.keys.revocation(home_account_id);
        let value = core.call("get", core.store.get(&key)).await?;
        let stamp = value.and_then(|v| crate::store::stamp::parse_stamp(&v.bytes));
        if let Some(ms) = stamp {
            core.revoke_locally_ms(home_account_id, ms);
        }
        Ok(stamp.map(|ms| ms.div_euclid(1000)))
    }

    /// How long a revocation stamp lives: as long as a token cached before it could
    /// still be served (a refresh-token lifetime, at most [`MAX_TTL`]).
    pub fn stamp_ttl(&self) -> Duration {
        self.core.stamp_ttl()
    }

    /// Tells every replica that `home_account_id` signed out at `at_ms` (ms since the
    /// epoch): writes the stamp
    /// to L2 (queued when L2 does not take it, and drained as the later of it and L2's stamp)
    /// and publishes it on the backplane. Returns whether L2 took it now.
    pub async fn revoke_everywhere(&self, home_account_id: &str, at_ms: i64) -> bool {
        let (_, written) = self
            .core
            .revoke(home_account_id, crate::store::StampAt::Instant(at_ms))
            .await;
        matches!(written, StampWritten::Written(_))
    }

    /// Tells every replica that `home_account_id` signed out now, by the store's clock
    /// where it has one (see [`store_now_ms`](Self::store_now_ms)). Returns the stamp
    /// (ms since the epoch) and what became of it in L2.
    pub(crate) async fn revoke_now(&self, home_account_id: &str) -> (i64, StampWritten) {
        let at = self.core.stamp_now();
        self.core.revoke(home_account_id, at).await
    }

    /// Now, on the clock replicas compare times by (ms since the epoch): the store's
    /// where it has one (Redis `TIME`; measured at start and every [`REMEASURE_EVERY`]),
    /// else this cache's. Times of requests, record times and sign-outs are given on it.
    pub fn store_now_ms(&self) -> i64 {
        self.core.record_now_ms()
    }

    /// An instant of this cache's clock (ms since the epoch) on the clock of
    /// [`store_now_ms`](Self::store_now_ms).
    pub fn to_store_ms(&self, local_ms: i64) -> i64 {
        self.core.to_store_ms(local_ms)
    }

    /// The offset of the store's clock from this cache's (ms), once measured and
    /// adopted (see [`MAX_ADOPTED_OFFSET`]); `None` otherwise.
    pub fn store_clock_offset_ms(&self) -> Option<i64> {
        self.core.store_clock_offset()
    }

    /// Measures the store's clock against this cache's now (one call through the gate).
    /// Done at start by [`TokenCacheBuilder::build`](crate::TokenCacheBuilder::build), then
    /// in the background every [`REMEASURE_EVERY`].
    pub async fn sync_store_clock(&self) {
        self.core.measure_store_clock().await;
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
    /// Refuses tokens of `home` from before `at` here, in L2 and on every replica.
    async fn revoke(&self, home: &str, at: crate::store::StampAt) -> (i64, StampWritten) {
        self.revoke_locally_ms(home, at.fallback());
        let full = self.keys.revocation(home);
        let written = self.write_stamp(&full, at, Some(self.stamp_ttl())).await;
        let at_ms = match written {
            StampWritten::Written(ms) | StampWritten::Queued(ms) | StampWritten::Refused(ms) => ms,
        };
        self.revoke_locally_ms(home, at_ms);
        self.publish(crate::backplane::Message::Revoked {
            home_account_id: home.to_owned(),
            at_ms,
        });
        (at_ms, written)
    }

    /// Records a stamp (ms since the epoch).
    pub(super) fn revoke_locally_ms(&self, home: &str, stamp_ms: i64) {
        self.revocations
            .revoke(home, stamp_ms, self.stamp_horizon_ms());
    }

    /// A live stamp of `home` (ms since the epoch).
    #[inline]
    pub(super) fn revocation_ms(&self, home: &str) -> Option<i64> {
        if !self.revocations.any() {
            return None;
        }
        self.revocations.of(home, self.stamp_horizon_ms())
    }

    /// Stamps at or before this (ms) have outlived their TTL.
    fn stamp_horizon_ms(&self) -> i64 {
        self.clock.now_millis() as i64 - self.stamp_ttl().as_millis() as i64
    }

    pub(super) fn stamp_ttl(&self) -> Duration {
        self.expiry.refresh_token_lifetime.min(MAX_TTL)
    }

    pub(super) fn forget_l1(&self, key: &str) {
        if let Some(l1) = &self.l1 {
            l1.remove(key);
        }
    }
}
