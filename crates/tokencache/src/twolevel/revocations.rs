//! The revocation stamps this replica knows: user → when they last signed out (ms
//! since the epoch). Tokens of the user cached at or before the stamp are refused, from L1 as
//! from L2. Stamps come from this replica's sign-outs, from the backplane (another
//! replica's), and from L2. They end with their TTL, here as in L2.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::RwLock;

/// Known revocation stamps.
#[derive(Debug, Default)]
pub(crate) struct Revocations {
    // std RwLock: read on hits only when `any` is set, never held across an await.
    map: RwLock<HashMap<String, i64>>,
    /// Whether `map` has anything (keeps the hit path free of the lock).
    any: AtomicBool,
    /// `map`'s size after it was last pruned of expired stamps.
    pruned_at: AtomicUsize,
}

impl Revocations {
    /// Records that `home` signed out at `stamp` (the later stamp wins). Stamps older
    /// than `horizon` (now − the stamps' TTL, same unit) are pruned, amortized (when
    /// the map has doubled since the last pruning), so the map never only grows.
    pub(crate) fn revoke(&self, home: &str, stamp: i64, horizon: i64) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        let entry = map.entry(home.to_string()).or_insert(stamp);
        *entry = (*entry).max(stamp);
        let pruned = self.pruned_at.load(Ordering::Relaxed);
        if map.len() >= pruned.max(64) * 2 {
            map.retain(|_, s| *s > horizon);
            self.pruned_at.store(map.len(), Ordering::Relaxed);
        }
        self.any.store(true, Ordering::Release);
    }

    /// The stamp of `home`, unless older than `horizon`.
    #[inline]
    pub(crate) fn of(&self, home: &str, horizon: i64) -> Option<i64> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let stamp = self
            .map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(home)
            .copied()?;
        (stamp > horizon).then_some(stamp)
    }

    /// Whether any stamp is known (cheap).
    #[inline]
    pub(crate) fn any(&self) -> bool {
        self.any.load(Ordering::Acquire)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.read().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_stamps_win_and_old_ones_are_pruned() {
        let r = Revocations::default();
        assert!(!r.any());
        r.revoke("a", 100, 0);
        r.revoke("a", 50, 0);
        assert_eq!(r.of("a", 0), Some(100));
        assert_eq!(r.of("a", 100), None, "past its TTL");
        for i in 0..200 {
            r.revoke(&format!("u{i}"), 10, 0);
        }
        for i in 0..100 {
            r.revoke(&format!("late{i}"), 1000, 500);
        }
        assert!(
            r.len() <= 100,
            "the stamps past their TTL went: {}",
            r.len()
        );
        assert_eq!(r.of("late7", 500), Some(1000));
        assert_eq!(r.of("u7", 0), None);
    }
}
