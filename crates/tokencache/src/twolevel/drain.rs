//! Recovery: the queue of changes L2 did not take, the background task that probes
//! L2 and drains the queue, and the outage summary logged when L2 is back.

use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::Duration;

use super::recovery::{Queued, QueuedOp};
use super::stats::{bump, load};
use super::{BreakerState, Core};

impl Core {
    /// Queues a change of `full_key` (latest wins), counting what it displaced.
    pub(super) fn enqueue(&self, full_key: &str, op: QueuedOp) {
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
        let Some((seq, queued)) = self.queue.take(full) else {
            return true; // a write of this key carried it to L2 meanwhile
        };
        self.metrics.queue_depth.set(self.queue.len() as f64);
        let mut pending = PutBack {
            core: self,
            full,
            seq,
            queued: Some(queued.clone()),
        };
        let now = self.clock.now_millis();
        // What to write: decided against what L2 holds now (tokencache's own keys other
        // than stamps are written as they are).
        let write = match &queued.op {
            // tokencache's own keys (link sets) are not partitions: removed as they are.
            QueuedOp::Remove if self.keys.is_own_key(full) => Write::Remove,
            QueuedOp::Remove | QueuedOp::Set { .. } | QueuedOp::Merge { .. } => {
                bump(&self.counters.l2_reads);
                let current = match self.call_with("get", || self.store.get(full)).await {
                    Ok(v) => v,
                    Err(_) => return pending.put_back(),
                };
                if let Some(v) = current.as_ref().filter(|v| {
                    !matches!(queued.op, QueuedOp::Remove)
                        && crate::store::dotnet::is_data_protected(&v.bytes)
                }) {
                    // Another application's encrypted partition: never written over.
                    let then = "the queued change is dropped, not written over it";
                    let e = super::codec::DecodeError::DataProtected;
                    self.unreadable(full, v.bytes.len(), &e, then);
                    pending.queued = None;
                    self.forget_l1(&bare);
                    return true;
                }
                let l2 = current.and_then(|v| match self.decode(full, &v.bytes) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        let then = "replaced by a queued change";
                        self.unreadable(full, v.bytes.len(), &e, then);
                        None
                    }
                });
                match &queued.op {
                    QueuedOp::Merge { change, kind, ctx } => {
                        let mut merged = l2.unwrap_or_default();
                        change.apply_to(&mut merged, queued.written_at);
                        let deadline = self.expiry.deadline(*kind, &merged, ctx, now);
                        let deadline = deadline.at(now);
                        if !merged.has_credentials() || deadline.is_some_and(|d| d <= now) {
                            Write::Remove
                        } else {
                            Write::Set(self.encode(full, &merged), deadline)
                        }
                    }
                    op => {
                        // Newer value wins: another replica stored newer tokens meanwhile.
                        let newer = l2
                            .and_then(|p| p.last_cached_at())
                            .is_some_and(|t| t > queued.written_at);
                        if newer {
                            pending.queued = None;
                            bump(&self.counters.superseded);
                            self.metrics.dropped_superseded.increment(1);
                            self.forget_l1(&bare); // reread the newer value
                            tracing::debug!(key = %full, "queued change not applied: L2 holds newer tokens");
                            return true;
                        }
                        match op {
                            QueuedOp::Set {
                                partition,
                                deadline_ms,
                            } => Write::Set(self.encode(full, partition), *deadline_ms),
                            _ => Write::Remove,
                        }
                    }
                }
            }
            QueuedOp::Revoke { at, deadline_ms } => {
                // A stamp only moves forward: keep another replica's later sign-out.
                bump(&self.counters.l2_reads);
                let current = match self.call_with("get", || self.store.get(full)).await {
                    Ok(v) => v.and_then(|v| parse_stamp(&v.bytes)),
                    Err(_) => return pending.put_back(),
                };
                let at = current.map_or(*at, |c| c.max(*at));
                Write::Set(at.to_string().into_bytes(), *deadline_ms)
            }
        };
        let published = match &write {
            Write::Set(bytes, _) => super::coherence::version_of(bytes),
            Write::Remove => 0,
        };
        let result = match write {
            Write::Set(bytes, deadline_ms) => {
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
                bump(&self.counters.l2_writes);
                self.call_with("set", || self.store.set(full, &bytes, ttl))
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
                    QueuedOp::Revoke { at, .. } => {
                        if let Some(home) = self.keys.revoked_account(full) {
                            self.publish(crate::backplane::Message::Revoked {
                                home_account_id: home.to_owned(),
                                at: *at,
                            });
                        }
                    }
                    _ => self.publish_changed(full, published),
                }
                if matches!(queued.op, QueuedOp::Merge { .. }) {
                    self.forget_l1(&bare); // L1 held only our side of the merge
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
    Set(Vec<u8>, Option<u64>),
    Remove,
}

/// A revocation stamp's value: Unix seconds as decimal text.
pub(crate) fn parse_stamp(bytes: &[u8]) -> Option<i64> {
    std::str::from_utf8(bytes).ok()?.trim().parse().ok()
}

/// A change taken out of the queue to be applied: put back (at its old place) unless
/// it was applied or dropped, including when the drain is cancelled mid-await.
struct PutBack<'a> {
    core: &'a Core,
    full: &'a str,
    seq: u64,
    queued: Option<Queued>,
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
