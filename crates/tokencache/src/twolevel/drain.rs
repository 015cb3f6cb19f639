//! Recovery: the queue of changes L2 did not take, the background task that probes
//! L2 and drains the queue, and the outage summary logged when L2 is back.

use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::Duration;

use super::optimistic::Committed;
use super::quiet::Say;
use super::recovery::{Draining, Pushed, Queued, QueuedOp};
use super::stats::{bump, load};
use super::WriteScope;
use super::{BreakerState, Core};
use crate::schema::PartitionChange;
use crate::store::{EntryExpiry, StampAt};

impl Core {
    /// Queues a change of `full_key` (latest wins), counting what it displaced. Returns
    /// false when it could not be queued: a write with no room (capacity 0), or a
    /// sign-out with no room left for sign-outs (refused, never dropped: the caller says
    /// so to its own caller).
    pub(super) fn enqueue(&self, full_key: &str, op: QueuedOp) -> bool {
        self.enqueue_at(full_key, op, self.record_now_ms())
    }

    /// [`enqueue`](Self::enqueue) of a change made at `written_at_ms` (a removal of what
    /// predates a sign-out at that instant).
    pub(super) fn enqueue_at(&self, full_key: &str, op: QueuedOp, written_at_ms: i64) -> bool {
        let pushed = self.queue.push(full_key, Queued { op, written_at_ms });
        let queued = match pushed {
            Pushed::Queued { evicted, .. } => {
                bump(&self.counters.queued);
                self.metrics.queued.increment(1);
                if evicted {
                    bump(&self.counters.dropped_overflow);
                    self.metrics.dropped_overflow.increment(1);
                    tracing::debug!(
                        capacity = self.queue.len(),
                        "recovery queue full: the oldest queued write was dropped"
                    );
                }
                true
            }
            Pushed::Dropped => {
                bump(&self.counters.dropped_overflow);
                self.metrics.dropped_overflow.increment(1);
                false
            }
            Pushed::Refused => {
                bump(&self.counters.refused_signouts);
                match self.quiet.occurred("signout_refused") {
                    Say::First => {
                        tracing::error!(endpoint = %self.endpoint, "L2 at {} is unreachable and the recovery queue holds as many sign-outs as it may: a sign-out was refused (its caller got an error and may retry); none queued is ever dropped", self.endpoint)
                    }
                    Say::Summary(n) => {
                        tracing::error!(endpoint = %self.endpoint, count = n, "{n} more sign-outs refused in the last minute: the recovery queue's sign-outs are at their bound")
                    }
                    Say::Nothing => {}
                }
                false
            }
        };
        self.metrics.queue_depth.set(self.queue.len() as f64);
        self.ensure_recovery();
        queued
    }

    /// Starts the recovery task unless one runs (needs a Tokio runtime).
    pub(super) fn ensure_recovery(&self) {
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
    pub(super) fn next_probe_wait(&self) -> Duration {
        match self.breaker.state() {
            BreakerState::Closed => self.breaker_options.open_for.max(Duration::from_millis(1)),
            _ => self.breaker.probe_in().max(Duration::from_millis(1)),
        }
    }

    /// Probe, then drain. True when L2 answered and nothing is left to do.
    pub(super) async fn recover_once(&self) -> bool {
        let store = self.store.clone();
        if self.call_with("health", || store.health()).await.is_err() {
            return false;
        }
        while let Some(full) = self.queue.oldest_key() {
            if !self.drain_key(&full).await {
                return false;
            }
        }
        // Another drain (the background task's, a tool's) may still carry a change to
        // L2: not caught up until it is done.
        if !self.queue.is_empty() {
            return false;
        }
        self.end_outage();
        true
    }

    pub(super) fn end_outage(&self) {
        self.l2_failing.store(false, Ordering::Release);
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
    /// Cancel-safe: dropped mid-await, the change goes back into the queue.
    pub(super) async fn drain_key(&self, full: &str) -> bool {
        let bare = self.keys.strip(full).unwrap_or(full).to_string();
        let _guard = self.locks.lock(&bare).await;
        let Some((seq, queued, draining)) = self.queue.take_to_drain(full) else {
            return true; // a write of this key carried it to L2 meanwhile
        };
        let mut pending = PutBack {
            core: self,
            full,
            seq,
            queued: Some(queued.clone()),
            _draining: draining,
        };
        let now = self.clock.now_millis();
        // A merge that carries a removal (a sign-out queued before it) on a partition it
        // may not write over is applied as the removal alone.
        let mut as_removal = false;
        if let QueuedOp::Merge {
            change,
            kind,
            ctx,
            owner,
            requested_at_ms,
            prune_before_ms,
        } = &queued.op
        {
            // The same optimistic write as a live save: merged into what L2 holds now,
            // refused when the owner signed out after the tokens were requested.
            let scope = WriteScope {
                owner: owner.as_deref(),
                requested_at_ms: *requested_at_ms,
            };
            let Some(mut current) = self.read_current(full, scope.owner).await else {
                return pending.put_back();
            };
            let superseded = |pending: &mut PutBack<'_>| {
                pending.queued = None;
                bump(&self.counters.superseded);
                self.metrics.dropped_superseded.increment(1);
                self.forget_l1(&bare);
                tracing::debug!(key = %full, "queued change not applied: its user signed out since");
                true
            };
            if current.protected || current.foreign {
                if prune_before_ms.is_none() {
                    // Another application's (or another key ring's) partition: never
                    // written over; the change is dropped.
                    pending.queued = None;
                    self.forget_l1(&bare);
                    return true;
                }
                as_removal = true;
            } else {
                let revoked = scope.revoked_by(current.stamp);
                if revoked && prune_before_ms.is_none() {
                    return superseded(&mut pending);
                }
                // A queue composes a key's changes under the latest request time: a part
                // from before a sign-out is dropped by the records' own times (`commit`
                // also removes from L2's copy what predates the stamp).
                let change = match current.stamp {
                    Some(ms) => change.without_credentials_written_by(ms),
                    None => PartitionChange::clone(change),
                };
                let effective = Queued {
                    op: QueuedOp::Merge {
                        change: Box::new(change),
                        kind: *kind,
                        ctx: ctx.clone(),
                        owner: owner.clone(),
                        requested_at_ms: *requested_at_ms,
                        prune_before_ms: *prune_before_ms,
                    },
                    written_at_ms: queued.written_at_ms,
                };
                // Refused by a later sign-out, the change brings nothing (its records
                // predate the stamp), but the removal it carries is still applied.
                let scope = WriteScope {
                    owner: scope.owner,
                    requested_at_ms: if revoked { i64::MAX } else { *requested_at_ms },
                };
                let partition = effective.applied_to(std::mem::take(&mut current.partition));
                let none = PartitionChange::default();
                return match self
                    .commit(
                        *kind,
                        &bare,
                        full,
                        ctx,
                        scope,
                        Some(&effective),
                        &none,
                        current,
                        partition,
                    )
                    .await
                {
                    Committed::Written(_) if revoked => superseded(&mut pending),
                    Committed::Written(_) => {
                        pending.queued = None;
                        bump(&self.counters.recovered);
                        self.metrics.applied.increment(1);
                        true
                    }
                    Committed::Revoked => superseded(&mut pending),
                    Committed::Protected | Committed::Foreign(_) => {
                        pending.queued = None;
                        self.forget_l1(&bare);
                        true
                    }
                    Committed::Failed(_) => pending.put_back(),
                };
            }
        }
        // What to write: decided against what L2 holds now (tokencache's own keys other
        // than stamps are written as they are).
        let removal_at = match &queued.op {
            QueuedOp::Merge {
                prune_before_ms, ..
            } if as_removal => *prune_before_ms,
            QueuedOp::Remove => Some(queued.written_at_ms),
            _ => None,
        };
        let write = match (&queued.op, removal_at) {
            // tokencache's own keys (link sets) are not partitions: removed as they are.
            (QueuedOp::Remove, _) if self.keys.is_own_key(full) => Write::Remove,
            (QueuedOp::Revoke { at_ms, deadline_ms }, _) => Write::Stamp(*at_ms, *deadline_ms),
            (_, Some(removal_at)) => {
                bump(&self.counters.l2_reads);
                let current = match self.call_with("get", || self.store.get(full)).await {
                    Ok(v) => v,
                    Err(_) => return pending.put_back(),
                };
                // Newer value wins: another replica stored newer tokens meanwhile. They
                // stay; what the removal removes is what was written before it (a
                // sign-out's older tokens must not outlive it in L2, where readers that
                // know nothing of stamps would serve them).
                let newer = current.as_ref().and_then(|v| {
                    let p = self.decode(full, &v.bytes).ok()?;
                    p.has_credentials_written_after(removal_at)
                        .then_some((v, p))
                });
                if let Some((value, mut partition)) = newer {
                    bump(&self.counters.superseded);
                    self.metrics.dropped_superseded.increment(1);
                    self.forget_l1(&bare); // reread the newer value
                    if partition.remove_credentials_written_by(removal_at) == 0 {
                        pending.queued = None;
                        tracing::debug!(key = %full, "queued removal not applied: L2 holds newer tokens only");
                        return true;
                    }
                    let bytes = self.encode(full, &partition);
                    bump(&self.counters.l2_writes);
                    let swapped = self
                        .call_with("compare_and_swap", || {
                            self.store.compare_and_swap(
                                full,
                                Some(&value.bytes),
                                Some(&bytes),
                                EntryExpiry::after(value.ttl),
                            )
                        })
                        .await;
                    return match swapped {
                        Ok(true) => {
                            pending.queued = None;
                            self.publish_changed(full, super::coherence::version_of(&bytes));
                            tracing::debug!(key = %full, "queued removal applied to the tokens written before it; newer ones kept");
                            true
                        }
                        // Changed since it was read, or L2 failed: tried again later.
                        Ok(false) | Err(_) => pending.put_back(),
                    };
                }
                Write::Remove
            }
            // a merge was applied above (as_removal: it has its removal time)
            (QueuedOp::Merge { .. } | QueuedOp::Remove, None) => return true,
        };
        let result = match write {
            Write::Stamp(at_ms, deadline_ms) => {
                let ttl = match deadline_ms {
                    None => None,
                    Some(d) if d <= now => {
                        pending.queued = None;
                        bump(&self.counters.expired);
                        self.metrics.dropped_expired.increment(1);
                        return true;
                    }
                    Some(d) => Some(Duration::from_millis(d - now)),
                };
                // A stamp only moves forward: another replica's later sign-out is kept
                // (one atomic write where the store can).
                bump(&self.counters.l2_writes);
                self.call_with("write_stamp", || {
                    self.store.write_stamp(full, StampAt::Instant(at_ms), ttl)
                })
                .await
                .map(|_| ())
            }
            Write::Remove => {
                bump(&self.counters.l2_writes);
                self.call_with("remove", || self.store.remove(full))
                    .await
                    .map(|_| ())
            }
        };
        match result {
            Ok(()) => {
                pending.queued = None;
                match &queued.op {
                    QueuedOp::Revoke { at_ms, .. } => {
                        if let Some(home) = self.keys.revoked_account(full) {
                            self.publish(crate::backplane::Message::Revoked {
                                home_account_id: home.to_owned(),
                                at_ms: *at_ms,
                            });
                        }
                    }
                    _ => self.publish_changed(full, 0),
                }
                bump(&self.counters.recovered);
                self.metrics.applied.increment(1);
                true
            }
            Err(_) => pending.put_back(),
        }
    }
}

/// What a drained change writes to L2.
enum Write {
    /// A revocation stamp at this instant, with this deadline.
    Stamp(i64, Option<u64>),
    Remove,
}

/// A change taken out of the queue to be applied: put back (at its old place) unless
/// it was applied or dropped, including when the drain is cancelled mid-await.
struct PutBack<'a> {
    core: &'a Core,
    full: &'a str,
    seq: u64,
    queued: Option<Queued>,
    /// The change counts as queued until this goes (after `Drop::drop` put it back).
    _draining: Draining<'a>,
}

impl PutBack<'_> {
    /// Puts the change back now; false (the drain's "L2 failed").
    fn put_back(&mut self) -> bool {
        let Some(q) = self.queued.take() else {
            return false;
        };
        let core = self.core;
        if !core.queue.restore(self.full, q, self.seq) && core.queue.peek(self.full).is_none() {
            // no room left for it (the queue filled up meanwhile): dropped
            bump(&core.counters.dropped_overflow);
            core.metrics.dropped_overflow.increment(1);
        }
        core.metrics.queue_depth.set(core.queue.len() as f64);
        false
    }
}

impl Drop for PutBack<'_> {
    fn drop(&mut self) {
        self.put_back();
        let depth = self.core.queue.len().saturating_sub(1);
        self.core.metrics.queue_depth.set(depth as f64);
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
