//! Helpers shared by the in-process backends (memory, embedded).

use super::{StoreError, StoreErrorKind, StoreResult};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

/// `text` on one line: its lines joined by "; " (blank lines dropped).
pub(crate) fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// A TTL in whole milliseconds, at least 1 (Redis refuses `PX 0`; a sub-millisecond TTL
/// still means "expires almost at once", not "no expiry").
pub(crate) fn ttl_millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// The deadline (ms since epoch) of a TTL starting at `now`.
pub(crate) fn deadline(now: u64, ttl: Duration) -> u64 {
    now.saturating_add(ttl_millis(ttl))
}

/// The error Redis gives when a string command meets a set (or the other way round).
pub(crate) fn wrong_type(endpoint: &str, key: &str) -> StoreError {
    StoreError::new(
        StoreErrorKind::Server,
        endpoint,
        format!("WRONGTYPE key {key:?} holds a value of another kind (entry vs link set)"),
    )
}

/// How many scan positions are remembered at most (oldest forgotten first).
const MAX_CURSORS: usize = 4096;

/// Scan positions of ordered backends: a cursor is a token standing for "after this key".
///
/// Unlike an offset, a position survives removals of keys already returned, so a full
/// scan returns every key present from its start to its end (the guarantee of Redis
/// `SCAN`). Tokens are kept in memory (at most [`MAX_CURSORS`]); an unknown token
/// (forgotten, or from before a restart) is a `BadData` error.
#[derive(Debug)]
pub(crate) struct ScanCursors {
    inner: Mutex<CursorsInner>,
}

#[derive(Debug)]
struct CursorsInner {
    next: u64,
    after: HashMap<u64, String>,
    order: VecDeque<u64>,
}

impl ScanCursors {
    /// An empty registry. Tokens start at a value derived from the address and time so
    /// that a token of another store instance is unlikely to be taken for one of ours.
    pub(crate) fn new() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Self {
            inner: Mutex::new(CursorsInner {
                next: (seed & 0x0000_ffff_ffff_ffff) | 1,
                after: HashMap::new(),
                order: VecDeque::new(),
            }),
        }
    }

    /// The key after which a scan resumes (`None` for cursor 0: from the start).
    pub(crate) fn resume(&self, endpoint: &str, cursor: u64) -> StoreResult<Option<String>> {
        if cursor == 0 {
            return Ok(None);
        }
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match inner.after.get(&cursor) {
            Some(k) => Ok(Some(k.clone())),
            None => Err(StoreError::new(
                StoreErrorKind::BadData,
                endpoint,
                format!("unknown or expired scan cursor {cursor}; start again at 0"),
            )),
        }
    }

    /// A new cursor standing for "after `last`".
    pub(crate) fn save(&self, last: String) -> u64 {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let token = inner.next;
        inner.next = inner.next.wrapping_add(1).max(1);
        inner.after.insert(token, last);
        inner.order.push_back(token);
        while inner.order.len() > MAX_CURSORS {
            if let Some(old) = inner.order.pop_front() {
                inner.after.remove(&old);
            }
        }
        token
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_is_at_least_one_millisecond() {
        assert_eq!(ttl_millis(Duration::ZERO), 1);
        assert_eq!(ttl_millis(Duration::from_micros(10)), 1);
        assert_eq!(ttl_millis(Duration::from_secs(2)), 2000);
        assert_eq!(deadline(u64::MAX - 1, Duration::from_secs(1)), u64::MAX);
    }

    #[test]
    fn cursors_resume_and_forget() {
        let c = ScanCursors::new();
        assert_eq!(c.resume("e", 0).unwrap(), None);
        let t = c.save("k1".into());
        assert_ne!(t, 0);
        assert_eq!(c.resume("e", t).unwrap().as_deref(), Some("k1"));
        let err = c.resume("e", t.wrapping_add(12345)).unwrap_err();
        assert_eq!(err.kind, StoreErrorKind::BadData);
        for i in 0..MAX_CURSORS {
            c.save(format!("x{i}"));
        }
        assert!(c.resume("e", t).is_err(), "oldest cursor forgotten");
    }
}
