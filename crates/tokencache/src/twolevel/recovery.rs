//! The recovery queue: L2 writes and removals that L2 did not take, kept until it is
//! healthy again.
//!
//! * **Latest change per key**: a key is queued at most once; a newer change of the key
//!   is composed with the queued one (and moves it to the back). A write on top of a
//!   queued removal keeps the removal ([`QueuedOp::Merge::prune_before_ms`]): what L2
//!   held before the removal is still removed when the write is applied.
//! * **Two bounds.** Writes ([`QueuedOp::Merge`] without a removal in them) are bounded by
//!   `capacity`: when full, the write queued the longest ago is dropped and counted
//!   (`dropped_overflow`): it is the one most likely to have been written again meanwhile
//!   by another replica. **Sign-outs** (revocation stamps, removals, and writes that carry
//!   a removal) are never dropped: they have their own bound, `signout_capacity`, and when
//!   it is reached a new one is *refused* ([`Pushed::Refused`]): its caller gets a typed
//!   error and can retry, instead of a sign-out vanishing from the queue while its caller
//!   was told it would reach L2.
//! * **Newer value wins** (applied when draining, see [`TwoLevel`](super::TwoLevel)): a
//!   queued change carries the time it was made (`written_at_ms`, the same clock as the
//!   records' times). Before it is applied, L2's current value is read; a queued removal
//!   removes only what was written before it, and a queued merge is replayed record by
//!   record, each record's newer copy winning.
//!
//! The mutex is held for a few map operations, never across an await.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::EntryContext;
use crate::partition::PartitionKind;
use crate::schema::{Partition, PartitionChange};

/// One queued change of a key.
#[derive(Debug, Clone)]
pub(crate) enum QueuedOp {
    /// Remove the key (what L2 holds that was written before the removal).
    Remove,
    /// Merge this change, record by record, into whatever L2 holds (the write could
    /// not read L2, so it never replaces the whole key); the deadline is computed
    /// from the merged partition.
    Merge {
        change: Box<PartitionChange>,
        kind: PartitionKind,
        ctx: EntryContext,
        /// Whose tokens (their revocation stamp refuses the change if newer).
        owner: Option<Arc<str>>,
        /// When the change's tokens were requested (ms since the epoch).
        requested_at_ms: i64,
        /// A removal of the key queued before this change (a sign-out during the same
        /// outage), still to be applied: L2's credentials written at or before this
        /// instant (ms) are removed before the change is merged.
        prune_before_ms: Option<i64>,
    },
    /// A revocation stamp (a sign-out at `at_ms`, ms since the epoch): written as the
    /// later of it and the stamp L2 holds, with this deadline.
    Revoke {
        at_ms: i64,
        deadline_ms: Option<u64>,
    },
}

impl QueuedOp {
    /// Whether this change carries (part of) a sign-out: never dropped from the queue.
    pub(crate) fn is_signout(&self) -> bool {
        match self {
            QueuedOp::Remove | QueuedOp::Revoke { .. } => true,
            QueuedOp::Merge {
                prune_before_ms, ..
            } => prune_before_ms.is_some(),
        }
    }
}

/// A queued change and when it was made.
#[derive(Debug, Clone)]
pub(crate) struct Queued {
    pub(crate) op: QueuedOp,
    /// When the caller made the change, ms since the epoch.
    pub(crate) written_at_ms: i64,
}

impl Queued {
    /// `l2` (L2's partition now) with this change made to it: a queued removal removes
    /// what was written before it; a merge first applies the removal it carries, then is
    /// replayed record by record.
    pub(crate) fn applied_to(&self, mut l2: Partition) -> Partition {
        match &self.op {
            QueuedOp::Remove => {
                l2.remove_credentials_written_by(self.written_at_ms);
                l2
            }
            QueuedOp::Merge {
                change,
                prune_before_ms,
                ..
            } => {
                if let Some(ms) = prune_before_ms {
                    l2.remove_credentials_written_by(*ms);
                }
                change.apply_to(&mut l2, self.written_at_ms.div_euclid(1000));
                l2
            }
            QueuedOp::Revoke { .. } => l2,
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    by_key: HashMap<String, (u64, Queued)>,
    /// Queue order of the writes (evictable), and of the sign-outs (never evicted).
    writes: BTreeMap<u64, String>,
    signouts: BTreeMap<u64, String>,
    next: u64,
}

impl Inner {
    fn order(&mut self, signout: bool) -> &mut BTreeMap<u64, String> {
        if signout {
            &mut self.signouts
        } else {
            &mut self.writes
        }
    }

    fn remove(&mut self, key: &str) -> Option<(u64, Queued)> {
        let (seq, q) = self.by_key.remove(key)?;
        self.order(q.op.is_signout()).remove(&seq);
        Some((seq, q))
    }

    fn insert(&mut self, key: &str, seq: u64, queued: Queued) {
        self.order(queued.op.is_signout())
            .insert(seq, key.to_string());
        self.by_key.insert(key.to_string(), (seq, queued));
    }
}

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Queued; `replaced`: the key's older change was composed into it; `evicted`:
    /// another key's write was dropped to make room.
    Queued { replaced: bool, evicted: bool },
    /// A write with no room (a capacity of 0): not queued.
    Dropped,
    /// A sign-out with no room left for sign-outs: not queued (nothing was dropped).
    Refused,
}

/// The bounded queue of changes L2 has not taken yet.
#[derive(Debug)]
pub(crate) struct RecoveryQueue {
    capacity: usize,
    signout_capacity: usize,
    /// Keys waiting.
    len: AtomicUsize,
    /// Keys taken out by a drain that has not ended yet (applied, dropped or put back):
    /// not in L2 yet either, so the queue is not empty while one is out.
    draining: AtomicUsize,
    inner: Mutex<Inner>,
}

impl RecoveryQueue {
    pub(crate) fn new(capacity: usize, signout_capacity: usize) -> Self {
        Self {
            capacity,
            signout_capacity,
            len: AtomicUsize::new(0),
            draining: AtomicUsize::new(0),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keys queued now: waiting, or being drained.
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Acquire) + self.draining.load(Ordering::Acquire)
    }

    /// Nothing waits and no drain is under way: every change reached L2 (or was dropped).
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether no key waits (a drain may still be under way).
    fn none_waiting(&self) -> bool {
        self.len.load(Ordering::Acquire) == 0
    }

    /// Queues a change of `full_key`, replacing the key's older change (the caller has
    /// composed the two). A write makes room by dropping the oldest write when full; a
    /// sign-out is refused when the sign-outs' bound is reached (none is ever dropped).
    pub(crate) fn push(&self, full_key: &str, queued: Queued) -> Pushed {
        let signout = queued.op.is_signout();
        let mut g = self.lock();
        let seq = g.next;
        let old = g.remove(full_key);
        let replaced = old.is_some();
        let mut evicted = false;
        if signout {
            let was_signout = old.as_ref().is_some_and(|(_, q)| q.op.is_signout());
            if !was_signout && g.signouts.len() >= self.signout_capacity {
                if let Some((s, q)) = old {
                    g.insert(full_key, s, q); // leave the queue as it was
                }
                return Pushed::Refused;
            }
        } else if !replaced && g.writes.len() >= self.capacity {
            match g.writes.first_key_value().map(|(_, k)| k.clone()) {
                Some(oldest) => {
                    g.remove(&oldest);
                    evicted = true;
                }
                None => {
                    self.len.store(g.by_key.len(), Ordering::Release);
                    return Pushed::Dropped;
                }
            }
        }
        g.next += 1;
        g.insert(full_key, seq, queued);
        self.len.store(g.by_key.len(), Ordering::Release);
        Pushed::Queued { replaced, evicted }
    }

    /// Puts back a change that could not be applied, unless the key was queued again
    /// meanwhile (that newer change, composed over it, wins). It goes back to its place.
    /// A sign-out always goes back (it was counted in its bound before); a write only
    /// when there is room. Returns whether it is queued again.
    pub(crate) fn restore(&self, full_key: &str, queued: Queued, seq: u64) -> bool {
        let mut g = self.lock();
        if g.by_key.contains_key(full_key) {
            return false;
        }
        if !queued.op.is_signout() && g.writes.len() >= self.capacity {
            return false;
        }
        g.insert(full_key, seq, queued);
        self.len.store(g.by_key.len(), Ordering::Release);
        true
    }

    /// The queued change of `full_key`, left in the queue.
    pub(crate) fn peek(&self, full_key: &str) -> Option<Queued> {
        if self.none_waiting() {
            return None;
        }
        self.lock().by_key.get(full_key).map(|(_, q)| q.clone())
    }

    /// Takes the queued change of `full_key` out (with its position): it reached L2.
    pub(crate) fn take(&self, full_key: &str) -> Option<(u64, Queued)> {
        if self.none_waiting() {
            return None;
        }
        let mut g = self.lock();
        let taken = g.remove(full_key)?;
        self.len.store(g.by_key.len(), Ordering::Release);
        Some(taken)
    }

    /// Takes the queued change of `full_key` out to drain it: it counts as queued until
    /// the [`Draining`] returned with it is dropped (once the drain applied it, dropped
    /// it or put it back), so that the queue never looks empty while a change is on its
    /// way to L2 (a shutdown, a tool waiting for L2 to catch up).
    pub(crate) fn take_to_drain(&self, full_key: &str) -> Option<(u64, Queued, Draining<'_>)> {
        if self.none_waiting() {
            return None;
        }
        let mut g = self.lock();
        let (seq, q) = g.remove(full_key)?;
        // counted as draining before it stops counting as waiting
        self.draining.fetch_add(1, Ordering::AcqRel);
        self.len.store(g.by_key.len(), Ordering::Release);
        Some((seq, q, Draining { queue: self }))
    }

    /// The key queued the longest ago, sign-out or write.
    pub(crate) fn oldest_key(&self) -> Option<String> {
        let g = self.lock();
        let w = g.writes.first_key_value();
        let s = g.signouts.first_key_value();
        match (w, s) {
            (Some(w), Some(s)) => Some(if w.0 < s.0 { w.1 } else { s.1 }.clone()),
            (Some((_, k)), None) | (None, Some((_, k))) => Some(k.clone()),
            (None, None) => None,
        }
    }
}

/// A change out of the queue being drained: counted until dropped.
pub(crate) struct Draining<'a> {
    queue: &'a RecoveryQueue,
}

impl Drop for Draining<'_> {
    fn drop(&mut self) {
        self.queue.draining.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(at: i64) -> Queued {
        Queued {
            op: QueuedOp::Merge {
                change: Box::default(),
                kind: PartitionKind::User,
                ctx: EntryContext::default(),
                owner: None,
                requested_at_ms: at * 1000,
                prune_before_ms: None,
            },
            written_at_ms: at * 1000,
        }
    }

    fn rm(at: i64) -> Queued {
        Queued {
            op: QueuedOp::Remove,
            written_at_ms: at * 1000,
        }
    }

    fn revoke(at: i64) -> Queued {
        Queued {
            op: QueuedOp::Revoke {
                at_ms: at * 1000,
                deadline_ms: None,
            },
            written_at_ms: at * 1000,
        }
    }

    fn queued(p: Pushed) -> (bool, bool) {
        match p {
            Pushed::Queued { replaced, evicted } => (replaced, evicted),
            other => panic!("not queued: {other:?}"),
        }
    }

    #[test]
    fn latest_write_per_key_wins_and_moves_to_the_back() {
        let q = RecoveryQueue::new(10, 10);
        q.push("a", set(1));
        q.push("b", set(2));
        let (replaced, evicted) = queued(q.push("a", rm(3)));
        assert!(replaced && !evicted);
        assert_eq!(q.len(), 2);
        assert!(matches!(q.peek("a").unwrap().op, QueuedOp::Remove));
        assert_eq!(q.oldest_key().as_deref(), Some("b"));
    }

    #[test]
    fn overflow_drops_the_oldest_write_never_a_signout() {
        let q = RecoveryQueue::new(2, 10);
        q.push("stamp", revoke(0));
        q.push("gone", rm(0));
        q.push("a", set(1));
        q.push("b", set(2));
        let (_, evicted) = queued(q.push("c", set(3)));
        assert!(evicted);
        assert_eq!(q.len(), 4);
        assert!(q.peek("a").is_none(), "the oldest write went");
        assert!(q.peek("stamp").is_some() && q.peek("gone").is_some());
        assert!(q.peek("b").is_some() && q.peek("c").is_some());
        // replacing a queued key when full evicts nothing
        assert!(!queued(q.push("b", set(4))).1);
        assert_eq!(q.oldest_key().as_deref(), Some("stamp"));
    }

    #[test]
    fn signouts_beyond_their_bound_are_refused_not_dropped() {
        let q = RecoveryQueue::new(10, 2);
        q.push("s1", revoke(1));
        q.push("s2", rm(1));
        assert_eq!(q.push("s3", rm(2)), Pushed::Refused);
        assert_eq!(q.len(), 2);
        // a key already holding a sign-out may be queued again (no new room needed)
        assert!(queued(q.push("s2", rm(3))).0);
        // a write turning into a sign-out needs room: refused, the write stays as it was
        q.push("w", set(4));
        assert_eq!(q.push("w", rm(5)), Pushed::Refused);
        assert!(matches!(q.peek("w").unwrap().op, QueuedOp::Merge { .. }));
        // writes still evict writes only
        let q = RecoveryQueue::new(1, 1);
        q.push("s", revoke(1));
        q.push("w1", set(1));
        assert!(queued(q.push("w2", set(2))).1);
        assert!(q.peek("s").is_some());
    }

    #[test]
    fn restore_never_beats_a_newer_change_and_always_restores_a_signout() {
        let q = RecoveryQueue::new(4, 1);
        q.push("a", set(1));
        let (seq, old) = q.take("a").unwrap();
        assert!(q.is_empty());
        q.push("a", set(5));
        assert!(!q.restore("a", old.clone(), seq));
        assert_eq!(q.peek("a").unwrap().written_at_ms, 5000);
        let (_, newer) = q.take("a").unwrap();
        assert!(q.restore("a", old, seq));
        assert_eq!(q.oldest_key().as_deref(), Some("a"));
        drop(newer);
        // a sign-out taken out for draining goes back even when its bound filled up
        q.push("s1", revoke(1));
        let (seq, s1) = q.take("s1").unwrap();
        q.push("s2", revoke(2));
        assert!(q.restore("s1", s1, seq));
        assert!(q.peek("s1").is_some() && q.peek("s2").is_some());
    }

    #[test]
    fn a_change_being_drained_still_counts() {
        let q = RecoveryQueue::new(4, 4);
        q.push("a", set(1));
        let (seq, queued, draining) = q.take_to_drain("a").unwrap();
        assert_eq!(q.oldest_key(), None, "nothing waits");
        assert!(!q.is_empty(), "but the change is not in L2 yet");
        assert_eq!(q.len(), 1);
        assert!(q.restore("a", queued, seq));
        drop(draining);
        assert_eq!(q.len(), 1);
        let (_, _, draining) = q.take_to_drain("a").unwrap();
        drop(draining);
        assert!(q.is_empty());
    }

    #[test]
    fn zero_capacity_queues_no_write() {
        let q = RecoveryQueue::new(0, 1);
        assert_eq!(q.push("a", set(1)), Pushed::Dropped);
        assert!(q.is_empty());
        assert!(matches!(q.push("s", rm(1)), Pushed::Queued { .. }));
    }
}
