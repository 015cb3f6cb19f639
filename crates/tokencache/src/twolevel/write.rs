//! The write path's helpers: filling L1, revocation stamps, removals, bulk removals.
//! (The optimistic read-modify-write of a partition is in `optimistic`.)

use std::sync::Arc;
use std::time::Duration;

use super::recovery::QueuedOp;
use super::stats::bump;
use super::Core;
use crate::schema::Partition;
use crate::store::{StampAt, StoreResult};

/// What became of a revocation stamp (ms since the epoch: the one written, or queued).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StampWritten {
    /// L2 took it (the later of it and L2's).
    Written(i64),
    /// Queued until L2 is back.
    Queued(i64),
    /// Neither: the recovery queue's sign-outs are at their bound.
    Refused(i64),
}

impl Core {
    /// Puts a partition into L1 (when enabled and not bypassed) with an L1 deadline derived from its L2
    /// deadline; `l2_bytes`: the value L2 holds for it, when known (strict reads
    /// compare its digest with L2's on every hit; without it, the first strict hit
    /// rereads L2).
    pub(super) fn fill_l1(
        &self,
        key: &str,
        partition: Arc<Partition>,
        size: usize,
        now_ms: u64,
        l2_deadline: Option<u64>,
        l2_bytes: Option<&[u8]>,
    ) {
        // Not while L1 is bypassed: what is put there now could miss an invalidation.
        if let Some(l1) = self.l1.as_ref().filter(|_| self.l1_trusted()) {
            let version = match l2_bytes {
                Some(b) if self.strict_reads => crate::store::ValueDigest::of(b).short(),
                _ => 0,
            };
            l1.insert_versioned(
                key,
                partition,
                size,
                self.expiry.l1_deadline(now_ms, l2_deadline),
                version,
            );
        }
    }

    /// [`fill_l1`](Self::fill_l1), unless a backplane message arrived since the
    /// invalidation counter read `seen` (before the L2 call whose result this is): that
    /// message may be of a later write. Checked again after the fill, which closes the
    /// window between the check and the insert: the listener counts a message before it
    /// drops the entry, so a message counted after the second check drops what we put.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn fill_l1_unless_invalidated(
        &self,
        key: &str,
        partition: Arc<Partition>,
        size: usize,
        now_ms: u64,
        l2_deadline: Option<u64>,
        l2_bytes: Option<&[u8]>,
        seen: u64,
    ) {
        if self.invalidations() != seen {
            return;
        }
        self.fill_l1(key, partition, size, now_ms, l2_deadline, l2_bytes);
        if self.invalidations() != seen {
            self.forget_l1(key);
        }
    }

    /// Writes a revocation stamp (`full` is its full key) at `at`, living `ttl`, as the
    /// later of it and the stamp L2 holds. When L2 does not take it, it is queued (and
    /// only moves forward when drained) unless the queue's sign-outs are at their bound.
    pub(super) async fn write_stamp(
        &self,
        full: &str,
        at: StampAt,
        ttl: Option<Duration>,
    ) -> StampWritten {
        let bare = self.keys.strip(full).unwrap_or(full).to_string();
        let _guard = self.locks.lock(&bare).await;
        bump(&self.counters.l2_writes);
        match self
            .call_with("write_stamp", || self.store.write_stamp(full, at, ttl))
            .await
        {
            Ok(ms) => {
                self.settled(full);
                StampWritten::Written(ms)
            }
            Err(_) => {
                let at_ms = at.fallback();
                let now = self.clock.now_millis();
                let deadline_ms = ttl.map(|t| now.saturating_add(t.as_millis() as u64));
                if self.enqueue(full, QueuedOp::Revoke { at_ms, deadline_ms }) {
                    StampWritten::Queued(at_ms)
                } else {
                    StampWritten::Refused(at_ms)
                }
            }
        }
    }

    /// L2 took a write or removal of `full` (under its lock): a change of it still
    /// queued was its base (or is replaced by it), so it has reached L2 too.
    pub(super) fn settled(&self, full: &str) {
        if self.queue.take(full).is_some() {
            bump(&self.counters.recovered);
            self.metrics.applied.increment(1);
            self.metrics.queue_depth.set(self.queue.len() as f64);
        }
    }

    pub(super) async fn remove_locked(&self, key: &str, full: &str) -> bool {
        self.forget_l1(key);
        bump(&self.counters.l2_writes);
        match self.call_with("remove", || self.store.remove(full)).await {
            Ok(_) => {
                self.settled(full);
                self.publish_changed(full, 0);
                true
            }
            Err(_) => {
                self.enqueue(full, QueuedOp::Remove);
                false
            }
        }
    }

    /// Removes `full_keys` (see [`TwoLevel::remove_keys`](super::TwoLevel::remove_keys));
    /// also says whether a removal L2 did not take could not be queued either (the
    /// queue's sign-outs at their bound).
    pub(super) async fn remove_keys(&self, full_keys: &[String]) -> (StoreResult<u64>, bool) {
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
        let mut refused = false;
        for full in full_keys {
            match &result {
                Ok(_) => {
                    self.settled(full);
                    if !self.keys.is_own_key(full) {
                        self.publish_changed(full, 0);
                    }
                }
                Err(_) => refused |= !self.enqueue(full, QueuedOp::Remove),
            }
        }
        drop(guards);
        (result, refused)
    }
}
