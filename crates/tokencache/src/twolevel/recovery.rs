//! The recovery queue: L2 writes and removals that L2 did not take, kept until it is
//! healthy again.
//!
//! * **Latest write per key wins**: a key is queued at most once; a newer write or
//!   removal of the key replaces the queued one (and moves it to the back).
//! * **Bounded**: at most `capacity` keys. When full, the key queued the longest ago is
//!   dropped and counted (`dropped_overflow`): it is the one most likely to have been
//!   written again meanwhile by another replica, and the one whose L1 copy here is the
//!   most likely to be gone already.
//! * **Newer value wins** (applied when draining, see [`TwoLevel`](super::TwoLevel)): a
//!   queued write carries the time it was made (`written_at_ms`, the same clock as the
//!   records' times). Before it is applied, L2's current value is read; if that value has
//!   a credential written *later* ([`Partition::has_credentials_written_after`]: to the
//!   millisecond for tokencache's records, else by the second), another replica wrote
//!   newer tokens while this one could not reach L2, and the queued removal is dropped
//!   and counted as `superseded` instead of removing them; a queued merge is replayed
//!   record by record, each record's newer copy winning. A tie goes to the queued write.
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
    /// Remove the key.
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
    },
    /// A revocation stamp (a sign-out at `at_ms`, ms since the epoch): written as the
    /// later of it and the stamp L2 holds, with this deadline.
    Revoke {
        at_ms: i64,
        deadline_ms: Option<u64>,
    },
}

/// A queued change and when it was made.
#[derive(Debug, Clone)]
pub(crate) struct Queued {
    pub(crate) op: QueuedOp,
    /// When the caller made the change, ms since the epoch.
    pub(crate) written_at_ms: i64,
}

impl Queued {
    /// `l2` (L2's partition now) with this change made to it: a queued whole value or
    /// removal wins unless L2 holds newer tokens; a merge is replayed record by record.
    pub(crate) fn applied_to(&self, mut l2: Partition) -> Partition {
        let l2_newer = || l2.has_credentials_written_after(self.written_at_ms);
        match &self.op {
            QueuedOp::Remove if !l2_newer() => Partition::new(),
            QueuedOp::Merge { change, .. } => {
                change.apply_to(&mut l2, self.written_at_ms.div_euclid(1000));
                l2
            }
            QueuedOp::Remove | QueuedOp::Revoke { .. } => l2,
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    by_key: HashMap<String, (u64, Queued)>,
    order: BTreeMap<u64, String>,
    next: u64,
}

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pushed {
    /// The key was already queued (its older change was replaced).
    pub(crate) replaced: bool,
    /// Another key was dropped to make room.
    pub(crate) evicted: bool,
}

/// The bounded, latest-wins queue of changes L2 has not taken yet.
#[derive(Debug)]
pub(crate) struct RecoveryQueue {
    capacity: usize,
    len: AtomicUsize,
    inner: Mutex<Inner>,
}

impl RecoveryQueue {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            len: AtomicUsize::new(0),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keys queued now.
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues a change of `full_key`, replacing any older one of the same key; drops the
    /// oldest key when full. A capacity of 0 queues nothing (every push is dropped).
    pub(crate) fn push(&self, full_key: &str, queued: Queued) -> Pushed {
        if self.capacity == 0 {
            return Pushed {
                replaced: false,
                evicted: true,
            };
        }
        let mut g = self.lock();
        let seq = g.next;
        g.next += 1;
        let replaced = match g.by_key.remove(full_key) {
            Some((old, _)) => {
                g.order.remove(&old);
                true
            }
            None => false,
        };
        let mut evicted = false;
        if !replaced && g.by_key.len() >= self.capacity {
            if let Some((_, oldest)) = g.order.pop_first() {
                g.by_key.remove(&oldest);
                evicted = true;
            }
        }
        g.by_key.insert(full_key.to_string(), (seq, queued));
        g.order.insert(seq, full_key.to_string());
        self.len.store(g.by_key.len(), Ordering::Release);
        Pushed { replaced, evicted }
    }

    /// Puts back a change that could not be applied, unless the key was queued again
    /// meanwhile (that newer change wins). It goes to the front: it is the oldest.
    pub(crate) fn restore(&self, full_key: &str, queued: Queued, seq: u64) -> bool {
        let mut g = self.lock();
        if g.by_key.contains_key(full_key) || g.by_key.len() >= self.capacity {
            return false;
        }
        g.by_key.insert(full_key.to_string(), (seq, queued));
        g.order.insert(seq, full_key.to_string());
        self.len.store(g.by_key.len(), Ordering::Release);
        true
    }

    /// The queued change of `full_key`, left in the queue.
    pub(crate) fn peek(&self, full_key: &str) -> Option<Queued> {
        if self.is_empty() {
            return None;
        }
        self.lock().by_key.get(full_key).map(|(_, q)| q.clone())
    }

    /// Takes the queued change of `full_key` out (with its position).
    pub(crate) fn take(&self, full_key: &str) -> Option<(u64, Queued)> {
        if self.is_empty() {
            return None;
        }
        let mut g = self.lock();
        let (seq, q) = g.by_key.remove(full_key)?;
        g.order.remove(&seq);
        self.len.store(g.by_key.len(), Ordering::Release);
        Some((seq, q))
    }

    /// The key queued the longest ago.
    pub(crate) fn oldest_key(&self) -> Option<String> {
        self.lock().order.first_key_value().map(|(_, k)| k.clone())
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

    #[test]
    fn latest_write_per_key_wins_and_moves_to_the_back() {
        let q = RecoveryQueue::new(10);
        q.push("a", set(1));
        q.push("b", set(2));
        let p = q.push("a", rm(3));
        assert!(p.replaced && !p.evicted);
        assert_eq!(q.len(), 2);
        assert!(matches!(q.peek("a").unwrap().op, QueuedOp::Remove));
        assert_eq!(q.oldest_key().as_deref(), Some("b"));
    }

    #[test]
    fn overflow_drops_the_oldest_key() {
        let q = RecoveryQueue::new(2);
        q.push("a", set(1));
        q.push("b", set(2));
        let p = q.push("c", set(3));
        assert!(p.evicted);
        assert_eq!(q.len(), 2);
        assert!(q.peek("a").is_none());
        assert!(q.peek("b").is_some() && q.peek("c").is_some());
        // replacing a queued key when full evicts nothing
        assert!(!q.push("b", set(4)).evicted);
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn restore_never_beats_a_newer_change() {
        let q = RecoveryQueue::new(4);
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
    }

    #[test]
    fn zero_capacity_queues_nothing() {
        let q = RecoveryQueue::new(0);
        assert!(q.push("a", set(1)).evicted);
        assert!(q.is_empty());
    }
}
