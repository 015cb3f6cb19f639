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
///
/// A key's entry counts its users (the holder and the waiters) and goes with the last
/// of them, whether it held the lock or gave up waiting (a cancelled caller): the map
/// never keeps a key nobody holds or waits for.
#[derive(Debug, Default)]
pub(crate) struct KeyLocks {
    // std Mutex: held only to find, count or drop a key's lock, never across an await.
    map: Mutex<HashMap<Arc<str>, Slot, FastHash>>,
}

#[derive(Debug)]
struct Slot {
    mutex: Arc<AsyncMutex<()>>,
    /// The holder and the waiters.
    users: usize,
}

/// One user of a key's lock (waiting or holding): released on drop.
struct User<'a> {
    locks: &'a KeyLocks,
    key: Arc<str>,
}

impl Drop for User<'_> {
    fn drop(&mut self) {
        let mut map = self.locks.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = map.get_mut(&self.key) {
            slot.users -= 1;
            if slot.users == 0 {
                map.remove(&self.key);
            }
        }
    }
}

/// Holds a key's lock; releases it (and forgets the key when idle) on drop.
pub(crate) struct KeyGuard<'a> {
    // Field order is drop order: the lock is released before the key is let go of.
    _guard: OwnedMutexGuard<()>,
    _user: User<'a>,
}

impl KeyLocks {
    pub(crate) async fn lock(&self, key: &str) -> KeyGuard<'_> {
        let (key, mutex) = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            match map.get_key_value(key) {
                Some((k, _)) => {
                    let k = k.clone();
                    let slot = map.get_mut(&k).expect("the key is there");
                    slot.users += 1;
                    (k, slot.mutex.clone())
                }
                None => {
                    let k: Arc<str> = Arc::from(key);
                    let mutex = Arc::new(AsyncMutex::new(()));
                    map.insert(
                        k.clone(),
                        Slot {
                            mutex: mutex.clone(),
                            users: 1,
                        },
                    );
                    (k, mutex)
                }
            }
        };
        // A caller dropped while it waits lets go of the key here.
        let user = User { locks: self, key };
        let guard = mutex.lock_owned().await;
        KeyGuard {
            _guard: guard,
            _user: user,
        }
    }

    /// Keys whose lock is held or waited for.
    pub(crate) fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
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

    /// A waiter dropped after the holder let go (woken, never polled again) does not
    /// leave the key behind.
    #[tokio::test]
    async fn a_waiter_dropped_after_the_holder_released_leaves_nothing() {
        let locks = KeyLocks::default();
        let holder = locks.lock("k").await;
        let mut waiter = Box::pin(locks.lock("k"));
        assert!(futures::poll!(waiter.as_mut()).is_pending());
        assert_eq!(locks.len(), 1);
        drop(holder);
        drop(waiter);
        assert_eq!(locks.len(), 0, "the key went with its last user");
        // and a waiter dropped while the lock is held
        let holder = locks.lock("k").await;
        let mut waiter = Box::pin(locks.lock("k"));
        assert!(futures::poll!(waiter.as_mut()).is_pending());
        drop(waiter);
        assert_eq!(locks.len(), 1);
        drop(holder);
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
