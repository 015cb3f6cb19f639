//! Per-key async locks that vanish when nobody holds them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// The hasher of the per-key maps a load goes through (this one's and the shared
/// loads'): foldhash, already L1's, several times cheaper than SipHash on 70-byte keys
/// (they are account ids and hashes, not chosen by whoever could time the map).
pub(crate) type FastHash = foldhash::fast::RandomState;

/// A lock per key. Loads and writes of one partition take it so that a load never
/// puts a value older than a concurrent write into L1; L1 hits never take it, and
/// other keys never wait for it.
#[derive(Debug, Default)]
pub(crate) struct KeyLocks {
    // std Mutex: held only to find or insert the per-key lock, never across an await.
    map: Mutex<HashMap<Arc<str>, Arc<AsyncMutex<()>>, FastHash>>,
}

/// Holds a key's lock; releases it (and forgets the key when idle) on drop.
pub(crate) struct KeyGuard<'a> {
    locks: &'a KeyLocks,
    key: Arc<str>,
    guard: Option<OwnedMutexGuard<()>>,
}

impl KeyLocks {
    pub(crate) async fn lock(&self, key: &str) -> KeyGuard<'_> {
        let (key, mutex) = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            match map.get_key_value(key) {
                Some((k, m)) => (k.clone(), m.clone()),
                None => {
                    let k: Arc<str> = Arc::from(key);
                    let m = Arc::new(AsyncMutex::new(()));
                    map.insert(k.clone(), m.clone());
                    (k, m)
                }
            }
        };
        let guard = mutex.lock_owned().await;
        KeyGuard {
            locks: self,
            key,
            guard: Some(guard),
        }
    }

    /// Keys whose lock is held or waited for.
    pub(crate) fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.locks.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = map.get(&self.key) {
            // Only the map holds it: nobody waits, forget the key.
            if Arc::strong_count(m) == 1 {
                map.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn locks_are_per_key_and_forgotten() {
        let locks = KeyLocks::default();
        {
            let _a = locks.lock("a").await;
            let _b = locks.lock("b").await; // another key does not wait
            assert_eq!(locks.len(), 2);
        }
        assert_eq!(locks.len(), 0);
    }

    #[tokio::test]
    async fn same_key_is_exclusive() {
        let locks = Arc::new(KeyLocks::default());
        let g = locks.lock("k").await;
        let l2 = locks.clone();
        let t = tokio::spawn(async move {
            let _g = l2.lock("k").await;
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!t.is_finished());
        drop(g);
        t.await.unwrap();
        assert_eq!(locks.len(), 0);
    }
}
