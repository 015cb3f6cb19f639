//! The read path: L1 hit (with the sliding touch), else one shared load per key.

use std::sync::Arc;
use std::time::Duration;

use super::flight::{LandOnDrop, Role};
use super::recovery::QueuedOp;
use super::stats::bump;
use super::{Core, EntryContext, Loaded};
use crate::memory::L1Entry;
use crate::partition::PartitionKind;
use crate::schema::Partition;

impl Core {
    /// Sliding expiration on an L1 hit: at most once per touch interval, move the L1
    /// deadline and refresh L2's TTL in the background (no round trip on the hit).
    pub(super) fn slide(
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

    /// One load per key, whoever waits for it (`flight`: the leader's load costs one map
    /// entry, followers share one slot). The load runs as its own task when a Tokio
    /// runtime is there, so it finishes (and releases the key's lock, the in-flight
    /// entry and any half-open probe it carries) even when every caller is dropped
    /// mid-await: a client that disconnects, an app-level timeout.
    pub(super) async fn load_shared(
        &self,
        kind: PartitionKind,
        key: &str,
        ctx: EntryContext,
    ) -> Loaded {
        let key = match self.flights.join(key) {
            Role::Follow(slot) => return slot.wait().await,
            Role::Lead(key) => key,
        };
        let landing = LandOnDrop::new(self.flights.clone(), key);
        let Some(this) = self.me.upgrade() else {
            return None; // the guard lands it
        };
        // The guard is an argument: a future dropped before it ever ran still lands.
        let load = this.load(kind, landing, ctx);
        match tokio::runtime::Handle::try_current() {
            // A dropped JoinHandle detaches the task: it runs on and lands the load.
            Ok(rt) => rt.spawn(load).await.unwrap_or(None),
            // Boxed: held across the await, the load's state would make every read's
            // future (L1 hits included) as large as a load's.
            Err(_) => Box::pin(load).await,
        }
    }

    pub(super) async fn load(
        self: Arc<Self>,
        kind: PartitionKind,
        landing: LandOnDrop,
        ctx: EntryContext,
    ) -> Loaded {
        let key = landing.key().clone();
        let result = {
            let _guard = self.locks.lock(&key).await;
            self.load_locked(kind, &key, &ctx).await
        };
        landing.land(&result);
        result
    }

    pub(super) async fn load_locked(
        &self,
        kind: PartitionKind,
        key: &str,
        ctx: &EntryContext,
    ) -> Loaded {
        // Filled while we waited for the lock, unless L1 is bypassed (then nothing is
        // served from it, on any path).
        let l1 = self.l1.as_ref().filter(|_| self.l1_trusted());
        if let Some(entry) = l1.and_then(|l1| l1.get(key)) {
            return Some(entry.value().clone());
        }
        let full = self.keys.partition_str(key);
        let queued = self.queue.peek(&full);
        // This replica's latest change, not in L2 yet: a removal is the answer; a change
        // to merge into L2's copy is made on top of what is read.
        if let Some(QueuedOp::Remove) = queued.as_ref().map(|q| &q.op) {
            return None;
        }
        let merge = |mut p: Partition| {
            if let Some(q) = &queued {
                p = q.applied_to(p);
            }
            p
        };
        // A message that arrives while we read may concern what we read: then the value
        // is served but not kept (see `coherence`).
        let seen = self.invalidations();
        bump(&self.counters.l2_reads);
        // The owner's revocation stamp is read along (one round trip), so a replica
        // that missed a sign-out's message, or started after it, still refuses what
        // predates it.
        let touch = self.expiry.sliding_expiration;
        let read = match ctx.owner.as_deref() {
            Some(owner) => {
                let stamp_key = self.keys.revocation(owner);
                let read = self
                    .call_with("get", || self.store.get_along(&full, touch, &stamp_key))
                    .await;
                read.map(|(value, stamp)| {
                    if let Some(ms) = stamp.as_deref().and_then(crate::store::stamp::parse_stamp) {
                        self.revoke_locally_ms(owner, ms);
                    }
                    value
                })
            }
            None => match touch {
                Some(window) => {
                    self.call_with("get", || self.store.get_and_touch(&full, window))
                        .await
                }
                None => self.call_with("get", || self.store.get(&full)).await,
            },
        };
        let pending = matches!(queued.as_ref().map(|q| &q.op), Some(QueuedOp::Merge { .. }));
        let mut l2_bytes = None;
        let (partition, size, l2_ttl) = match read {
            Ok(Some(value)) => match self.decode_to_read(&full, &value.bytes) {
                Ok(p) => {
                    let size = value.bytes.len();
                    if !pending {
                        l2_bytes = Some(value.bytes);
                    }
                    (merge(p), size, value.ttl)
                }
                Err(e) => {
                    self.unreadable(&full, value.bytes.len(), &e, "read as a miss");
                    return None;
                }
            },
            Ok(None) if pending => {
                let p = merge(Partition::new());
                let size = p.to_vec().len();
                (p, size, None)
            }
            Ok(None) => {
                self.l2_miss();
                return None;
            }
            // L2 failed; what this replica changed (and has not written yet) is known.
            Err(_) if pending => {
                let p = merge(Partition::new());
                let size = p.to_vec().len();
                (p, size, None)
            }
            Err(_) => return None,
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
        if let Some(ttl) = l2_ttl {
            let l2_left = now.saturating_add(ttl.as_millis() as u64);
            l2_deadline = Some(l2_deadline.map_or(l2_left, |d| d.min(l2_left)));
        }
        bump(&self.counters.l2_hits);
        self.metrics.l2_hits.increment(1);
        let partition = Arc::new(partition);
        self.fill_l1_unless_invalidated(
            key,
            partition.clone(),
            size,
            now,
            l2_deadline,
            l2_bytes.as_deref(),
            seen,
        );
        Some(partition)
    }

    pub(super) fn l2_miss(&self) {
        bump(&self.counters.l2_misses);
        self.metrics.l2_misses.increment(1);
    }
}
