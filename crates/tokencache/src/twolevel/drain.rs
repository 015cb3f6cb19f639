//! Recovery: the queue of changes L2 did not take, the background task that probes
//! L2 and drains the queue, and the outage summary logged when L2 is back.

use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::Duration;

use super::optimistic::Committed;
use super::recovery::{Queued, QueuedOp};
use super::stats::{bump, load};
use super::WriteScope;
use super::{BreakerState, Core};
use crate::store::EntryExpiry;

impl Core {
    /// Queues a change of `full_key` (latest wins), counting what it displaced.
    pub(super) fn enqueue(&self, full_key: &str, op: QueuedOp) {
        let written_at_ms = self.clock.now_millis() as i64;
        let pushed = self.queue.push(full_key, Queued { op, written_at_ms });
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
        if let QueuedOp::Merge {
            change,
            kind,
            ctx,
            owner,
            requested_at_ms,
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
            let revoked = |pending: &mut PutBack<'_>| {
                pending.queued = None;
                bump(&self.counters.superseded);
                self.metrics.dropped_superseded.increment(1);
                self.forget_l1(&bare);
                tracing::debug!(key = %full, "queued change not applied: its user signed out since");
                true
            };
            if current.protected || current.foreign {
                // Another application's (or another key ring's) partition: never written
                // over; the change is dropped.
                pending.queued = None;
                self.forget_l1(&bare);
                return true;
            }
            if scope.revoked_by(current.stamp) {
                return revoked(&mut pending);
            }
            // A queue composes a key's changes under the latest request time: a part
            // from before a sign-out that the latest part postdates is dropped by the
            // records' own times, to the millisecond where they carry it.
            let change = match current.stamp {
                Some(ms) => &change.without_credentials_written_by(ms),
                None => change,
            };
            let mut partition = std::mem::take(&mut current.partition);
            change.apply_to(&mut partition, queued.written_at_ms.div_euclid(1000));
            return match self
                .commit(
                    *kind, &bare, full, ctx, scope, None, change, current, partition,
                )
                .await
            {
                Committed::Written(_) => {
                    pending.queued = None;
                    bump(&self.counters.recovered);
                    self.metrics.applied.increment(1);
                    true
                }
                Committed::Revoked => revoked(&mut pending),
                Committed::Protected | Committed::Foreign(_) => {
                    pending.queued = None;
                    self.forget_l1(&bare);
                    true
                }
                Committed::Failed(_) => pending.put_back(),
            };
        }
        // What to write: decided against what L2 holds now (tokencache's own keys other
        // than stamps are written as they are).
        let write = match &queued.op {
            // tokencache's own keys (link sets) are not partitions: removed as they are.
            QueuedOp::Remove if self.keys.is_own_key(full) => Write::Remove,
            QueuedOp::Remove => {
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
                    p.has_credentials_written_after(queued.written_at_ms)
                        .then_some((v, p))
                });
                if let Some((value, mut partition)) = newer {
                    bump(&self.counters.superseded);
                    self.metrics.dropped_superseded.increment(1);
                    self.forget_l1(&bare); // reread the newer value
                    if partition.remove_credentials_written_by(queued.written_at_ms) == 0 {
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
            QueuedOp::Merge { .. } => return true, // handled above
            QueuedOp::Revoke { at_ms, deadline_ms } => {
                // A stamp only moves forward: keep another replica's later sign-out.
                bump(&self.counters.l2_reads);
                let current = match self.call_with("get", || self.store.get(full)).await {
                    Ok(v) => v.and_then(|v| parse_stamp(&v.bytes)),
                    Err(_) => return pending.put_back(),
                };
                let at = current.map_or(*at_ms, |c| c.max(*at_ms));
                Write::Set(format_stamp(at).into_bytes(), *deadline_ms)
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
                    QueuedOp::Revoke { at_ms, .. } => {
                        if let Some(home) = self.keys.revoked_account(full) {
                            self.publish(crate::backplane::Message::Revoked {
                                home_account_id: home.to_owned(),
                                at_ms: *at_ms,
                            });
                        }
                    }
                    _ => self.publish_changed(full, published),
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

/// A revocation stamp's value, in ms since the epoch: written as decimal Unix seconds
/// with milliseconds (`1800000000.123`); plain seconds (stamps written before) read as
/// the end of that second.
pub(crate) fn parse_stamp(bytes: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(bytes).ok()?.trim();
    match s.split_once('.') {
        Some((secs, frac)) if frac.len() == 3 && frac.bytes().all(|b| b.is_ascii_digit()) => {
            let secs: i64 = secs.parse().ok()?;
            let ms: i64 = frac.parse().ok()?;
            secs.checked_mul(1000)?.checked_add(ms)
        }
        Some(_) => None,
        None => s.parse::<i64>().ok()?.checked_mul(1000)?.checked_add(999),
    }
}

/// The stored form of a stamp (see [`parse_stamp`]).
pub(crate) fn format_stamp(at_ms: i64) -> String {
    format!("{}.{:03}", at_ms.div_euclid(1000), at_ms.rem_euclid(1000))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_read_both_forms_and_refuse_garbage() {
        assert_eq!(parse_stamp(b"1800000000.123"), Some(1_800_000_000_123));
        assert_eq!(
            parse_stamp(format_stamp(1_800_000_000_007).as_bytes()),
            Some(1_800_000_000_007)
        );
        // written before stamps had milliseconds: the end of that second
        assert_eq!(parse_stamp(b"1800000000"), Some(1_800_000_000_999));
        for bad in [
            &b""[..],
            b"x",
            b"1.2",
            b"1.2345",
            b"1.-12",
            b"99999999999999999999",
            b"\xff",
        ] {
            assert_eq!(parse_stamp(bad), None, "{bad:?}");
        }
        assert_eq!(
            parse_stamp(format!("{}", i64::MAX).as_bytes()),
            None,
            "overflow"
        );
    }
}
