//! In-process store, for tests and single-process tools.
//!
//! An ordered map behind a `std::sync::Mutex` (never held across an await). Entries and
//! link sets share one key space, as in Redis: a string command on a link set (or the
//! other way round) is a `Server` error ("WRONGTYPE"). Time comes from an injected
//! [`SharedClock`], so tests can move it; expired entries are never returned and are
//! dropped lazily (on access, and by a sweep every few thousand writes).

use super::util::{deadline, wrong_type, ScanCursors};
use super::{Store, StoreResult, StoreValue};
use crate::backplane::{LocalBackplane, SharedBackplane};
use crate::clock::{SharedClock, SystemClock};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The endpoint name of memory stores.
const ENDPOINT: &str = "memory";

/// Writes between two sweeps of expired entries.
const SWEEP_EVERY: u64 = 4096;

#[derive(Debug)]
enum Value {
    Bytes(Vec<u8>),
    /// Link set: member → the member's own deadline (`None`: none).
    Set(BTreeMap<String, Option<u64>>),
}

#[derive(Debug)]
struct Entry {
    value: Value,
    /// Milliseconds since the epoch; `None`: no expiry.
    deadline: Option<u64>,
}

impl Entry {
    fn live(&self, now: u64) -> bool {
        !matches!(self.deadline, Some(d) if d <= now)
    }

    fn ttl(&self, now: u64) -> Option<Duration> {
        self.deadline
            .map(|d| Duration::from_millis(d.saturating_sub(now)))
    }
}

#[derive(Default)]
struct Inner {
    map: BTreeMap<String, Entry>,
    writes: u64,
}

/// An L2 store in process memory (tests, tools). Cheap to share behind an `Arc`.
pub struct MemoryStore {
    inner: Mutex<Inner>,
    clock: SharedClock,
    cursors: ScanCursors,
    /// Every cache on this store in this process shares it.
    backplane: Arc<LocalBackplane>,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the values: they hold token secrets.
        f.debug_struct("MemoryStore")
            .field("entries", &self.lock().map.len())
            .finish()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store on the system clock.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }

    /// An empty store on the given clock (tests move a [`crate::clock::ManualClock`]).
    pub fn with_clock(clock: SharedClock) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            clock,
            cursors: ScanCursors::new(),
            backplane: Arc::new(LocalBackplane::new(ENDPOINT)),
        }
    }

    /// The number of live entries and link sets.
    pub fn len(&self) -> usize {
        let now = self.clock.now_millis();
        self.lock().map.values().filter(|e| e.live(now)).count()
    }

    /// Whether the store holds no live entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while locked cannot leave the map half-updated (single calls).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The live entry of `key`, dropping it when expired.
    fn live<'a>(inner: &'a mut Inner, key: &str, now: u64) -> Option<&'a mut Entry> {
        if inner.map.get(key).is_some_and(|e| !e.live(now)) {
            inner.map.remove(key);
        }
        inner.map.get_mut(key)
    }

    fn wrote(inner: &mut Inner, now: u64) {
        inner.writes += 1;
        if inner.writes >= SWEEP_EVERY {
            inner.writes = 0;
            inner.map.retain(|_, e| e.live(now));
        }
    }
}

/// Drops the members past their own deadline; returns the set's deadline: that of its
/// longest-lived member (`None` when one has none).
fn prune(members: &mut BTreeMap<String, Option<u64>>, now: u64) -> Option<u64> {
    members.retain(|_, d| d.is_none_or(|d| d > now));
    members
        .values()
        .try_fold(0u64, |acc, d| d.map(|d| acc.max(d)))
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, key: &str) -> StoreResult<Option<StoreValue>> {
        let now = self.clock.now_millis();
        let mut inner = self.lock();
        match Self::live(&mut inner, key, now) {
            None => Ok(None),
            Some(Entry {
                value: Value::Set(_),
                ..
            }) => Err(wrong_type(ENDPOINT, key)),
            Some(
                e @ Entry {
                    value: Value::Bytes(_),
                    ..
                },
            ) => {
                let ttl = e.ttl(now);
                let Value::Bytes(b) = &e.value else {
                    unreachable!("matched above")
                };
                Ok(Some(StoreValue {
                    bytes: b.clone(),
                    ttl,
                }))
            }
        }
    }

    async fn get_and_touch(&self, key: &str, ttl: Duration) -> StoreResult<Option<StoreValue>> {
        let now = self.clock.now_millis();
        let mut inner = self.lock();
        match Self::live(&mut inner, key, now) {
            None => Ok(None),
            Some(e) => match &e.value {
                Value::Set(_) => Err(wrong_type(ENDPOINT, key)),
                Value::Bytes(b) => {
                    let bytes = b.clone();
                    e.deadline = Some(deadline(now, ttl));
                    Ok(Some(StoreValue {
                        bytes,
                        ttl: e.ttl(now),
                    }))
                }
            },
        }
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> StoreResult<()> {
        let now = self.clock.now_millis();
        let mut inner = self.lock();
        inner.map.insert(
            key.to_owned(),
            Entry {
                value: Value::Bytes(value.to_vec()),
                deadline: ttl.map(|t| deadline(now, t)),
            },
        );
        Self::wrote(&mut inner, now);
        Ok(())
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        expiry: super::EntryExpiry,
    ) -> StoreResult<bool> {
        let ttl = expiry.ttl();
        let now = self.clock.now_millis();
        let mut inner = self.lock();
        let current = match Self::live(&mut inner, key, now) {
            None => None,
            Some(Entry {
                value: Value::Bytes(b),
                ..
            }) => Some(b.as_slice()),
            Some(_) => return Err(wrong_type(ENDPOINT, key)),
        };
        if current != expected {
            return Ok(false);
        }
        match new {
            Some(v) => {
                inner.map.insert(
                    key.to_owned(),
                    Entry {
                        value: Value::Bytes(v.to_vec()),
                        deadline: ttl.map(|t| deadline(now, t)),
                    },
                );
            }
            None => {
                inner.map.remove(key);
            }
        }
        Self::wrote(&mut inner, now);
        Ok(true)
    }

    async fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> StoreResult<bool> {
        let now = self.clock.now_millis();
        let mut inner = self.lock();
        if inner.map.get(key).is_some_and(|e| e.live(now)) {
            return Ok(false);
        }
        inner.map.insert(
            key.to_owned(),
            Entry {
                value: Value::Bytes(value.to_vec()),
                deadline: ttl.map(|t| deadline(now, t)),
            },
        );
        Self::wrote(&mut inner, now);
        Ok(true)
    }

    async fn touch(&self, key: &str, ttl: Duration) -> StoreResult<bool> {
        let now = self.clock.now_millis();
        let mut inner = self.lock();
        Ok(match Self::live(&mut inner, key, now) {
            Some(e) => {
                e.deadline = Some(deadline(now, ttl));
                true
            }
            None => false,
        })
    }

    async fn remove(&self, key: &str) -> StoreResult<bool> {
        let now = self.clock.now_millis();
        let mut inner = self.lock();
        Ok(inner.map.remove(key).is_some_and(|e| e.live(now)))
    }

    async fn remove_many(&self, keys: &[String]) -> StoreResult<u64> {
        let now = self.clock.now_millis();
        let mut inner = self.lock();
        Ok(keys
            .iter()
            .filter(|k| inner.map.remove(k.as_str()).is_some_and(|e| e.live(now)))
            .count() as u64)
    }

    async fn link_add(
        &self,
        set_key: &str,
        member: &str,
        ttl: Option<Duration>,
    ) -> StoreResult<()> {
        let now = self.clock.now_millis();
        let mut inner = self.lock();
        let want = ttl.map(|t| deadline(now, t));
        let entry = match Self::live(&mut inner, set_key, now) {
            Some(e) => e,
            None => inner.map.entry(set_key.to_owned()).or_insert(Entry {
                value: Value::Set(BTreeMap::new()),
                deadline: want,
            }),
        };
        let Value::Set(members) = &mut entry.value else {
            return Err(wrong_type(ENDPOINT, set_key));
        };
        // A member's deadline is never shortened: no expiry beats any, later wins.
        let d = members.entry(member.to_owned()).or_insert(want);
        *d = match (*d, want) {
            (None, _) | (_, None) => None,
            (Some(a), Some(b)) => Some(a.max(b)),
        };
        entry.deadline = prune(members, now);
        if members.is_empty() {
            inner.map.remove(set_key);
        }
        Self::wrote(&mut inner, now);
        Ok(())
    }

    async fn link_members(&self, set_key: &str) -> StoreResult<Vec<String>> {
        let now = self.clock.now_millis();
        let mut inner = self.lock();
        match Self::live(&mut inner, set_key, now) {
            None => Ok(Vec::new()),
            Some(e) => {
                let Value::Set(m) = &mut e.value else {
                    return Err(wrong_type(ENDPOINT, set_key));
                };
                e.deadline = prune(m, now);
                Ok(m.keys().cloned().collect())
            }
        }
    }

    async fn link_remove(&self, set_key: &str, members: &[String]) -> StoreResult<()> {
        let now = self.clock.now_millis();
        let mut inner = self.lock();
        let empty = match Self::live(&mut inner, set_key, now) {
            None => return Ok(()),
            Some(e) => {
                let Value::Set(m) = &mut e.value else {
                    return Err(wrong_type(ENDPOINT, set_key));
                };
                for member in members {
                    m.remove(member);
                }
                e.deadline = prune(m, now);
                m.is_empty()
            }
        };
        if empty {
            inner.map.remove(set_key);
        }
        Ok(())
    }

    async fn time_ms(&self) -> StoreResult<Option<u64>> {
        Ok(Some(self.clock.now_millis()))
    }

    async fn write_stamp(
        &self,
        key: &str,
        at: super::StampAt,
        ttl: Option<Duration>,
    ) -> StoreResult<i64> {
        let now = self.clock.now_millis();
        let mut ms = match at {
            super::StampAt::StoreClock { .. } => now as i64,
            super::StampAt::Instant(ms) => ms,
        };
        let mut inner = self.lock();
        if let Some(Entry {
            value: Value::Bytes(held),
            ..
        }) = Self::live(&mut inner, key, now)
        {
            if let Some(h) = super::stamp::parse_stamp(held) {
                ms = ms.max(h);
            }
        }
        inner.map.insert(
            key.to_owned(),
            Entry {
                value: Value::Bytes(super::stamp::format_stamp(ms).into_bytes()),
                deadline: ttl.map(|t| deadline(now, t)),
            },
        );
        Self::wrote(&mut inner, now);
        Ok(ms)
    }

    async fn health(&self) -> StoreResult<()> {
        Ok(())
    }

    async fn scan(
        &self,
        prefix: &str,
        cursor: u64,
        count: usize,
    ) -> StoreResult<(u64, Vec<String>)> {
        let after = self.cursors.resume(ENDPOINT, cursor)?;
        let now = self.clock.now_millis();
        let count = count.max(1);
        let inner = self.lock();
        let start = match &after {
            Some(k) => Bound::Excluded(k.as_str()),
            None => Bound::Included(prefix),
        };
        let mut keys = Vec::new();
        let mut more = false;
        for (k, e) in inner
            .map
            .range::<str, _>((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
        {
            if !e.live(now) {
                continue;
            }
            if keys.len() == count {
                more = true;
                break;
            }
            keys.push(k.clone());
        }
        drop(inner);
        let next = match (more, keys.last()) {
            (true, Some(last)) => self.cursors.save(last.clone()),
            _ => 0,
        };
        Ok((next, keys))
    }

    fn endpoint(&self) -> String {
        ENDPOINT.to_owned()
    }

    fn backplane(&self) -> Option<SharedBackplane> {
        Some(self.backplane.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[tokio::test]
    async fn manual_clock_expires_entries_and_sets() {
        let clock = ManualClock::new(1_000_000);
        let s = MemoryStore::with_clock(Arc::new(clock.clone()));
        s.set("a", b"1", Some(Duration::from_secs(10)))
            .await
            .unwrap();
        s.set("b", b"2", None).await.unwrap();
        s.link_add("l", "a", Some(Duration::from_secs(5)))
            .await
            .unwrap();
        let v = s.get("a").await.unwrap().unwrap();
        assert_eq!(v.ttl, Some(Duration::from_secs(10)));
        clock.advance_secs(6);
        assert!(s.link_members("l").await.unwrap().is_empty());
        assert_eq!(s.len(), 2);
        clock.advance_secs(4);
        assert_eq!(s.get("a").await.unwrap(), None);
        assert!(!s.touch("a", Duration::from_secs(1)).await.unwrap());
        assert_eq!(s.get("b").await.unwrap().unwrap().ttl, None);
        assert_eq!(s.scan("", 0, 10).await.unwrap(), (0, vec!["b".to_owned()]));
    }

    #[tokio::test]
    async fn link_members_end_with_their_own_deadline() {
        let clock = ManualClock::new(1_000_000);
        let s = MemoryStore::with_clock(Arc::new(clock.clone()));
        s.link_add("l", "short", Some(Duration::from_secs(5)))
            .await
            .unwrap();
        s.link_add("l", "long", Some(Duration::from_secs(60)))
            .await
            .unwrap();
        clock.advance_secs(6);
        assert_eq!(s.link_members("l").await.unwrap(), vec!["long".to_owned()]);
        // a shorter TTL never shortens a member
        s.link_add("l", "long", Some(Duration::from_secs(1)))
            .await
            .unwrap();
        clock.advance_secs(30);
        assert_eq!(s.link_members("l").await.unwrap(), vec!["long".to_owned()]);
        clock.advance_secs(30);
        assert!(s.link_members("l").await.unwrap().is_empty());
        assert_eq!(s.len(), 0, "the set went with its last member");
    }

    #[tokio::test]
    async fn kinds_do_not_mix() {
        let s = MemoryStore::new();
        s.set("k", b"v", None).await.unwrap();
        let e = s.link_add("k", "m", None).await.unwrap_err();
        assert_eq!(e.kind, super::super::StoreErrorKind::Server);
        s.link_add("l", "m", None).await.unwrap();
        assert!(s.get("l").await.is_err());
        assert!(format!("{s:?}").contains("entries"));
    }
}
