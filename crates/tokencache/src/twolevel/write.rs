//! The write path's helpers: filling L1, revocation stamps, removals, bulk removals.
//! (The optimistic read-modify-write of a partition is in `optimistic`.)

use std::sync::Arc;
use std::time::Duration;

use super::recovery::QueuedOp;
use super::stats::bump;
use super::Core;
use crate::schema::Partition;
use crate::store::StoreResult;

impl Core {
    /// Puts a partition into L1 (when enabled) with an L1 deadline derived from its L2
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
        if let Some(l1) = &self.l1 {
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

    /// Writes a revocation stamp (`full` is its full key): at `at_ms` (ms since the
    /// epoch), living `ttl`. When L2 does not take it, it is queued (a stamp only moves
    /// forward when drained). Returns whether L2 took it now.
    pub(super) async fn write_stamp(&self, full: &str, at_ms: i64, ttl: Option<Duration>) -> bool {
        let bare = self.keys.strip(full).unwrap_or(full).to_string();
        let _guard = self.locks.lock(&bare).await;
        let bytes = super::drain::format_stamp(at_ms);
        bump(&self.counters.l2_writes);
        match self
            .call_with("set", || self.store.set(full, bytes.as_bytes(), ttl))
            .await
        {
            Ok(()) => {
                self.settled(full);
                true
            }
            Err(_) => {
                let now = self.clock.now_millis();
                let deadline_ms = ttl.map(|t| now.saturating_add(t.as_millis() as u64));
                self.enqueue(full, QueuedOp::Revoke { at_ms, deadline_ms });
                false
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

    pub(super) async fn remove_keys(&self, full_keys: &[String]) -> StoreResult<u64> {
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
                Ok(_) => {
                    self.settled(full);
                    if !self.keys.is_own_key(full) {
                        self.publish_changed(full, 0);
                    }
                }
                Err(_) => self.enqueue(full, QueuedOp::Remove),
            }
        }
        drop(guards);
        result
    }
}
