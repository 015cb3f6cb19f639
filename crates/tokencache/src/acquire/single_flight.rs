//! One request per key at a time in a process: the first caller for a key starts the
//! work, every caller that arrives while it runs waits for the same result.
//!
//! The work is a shared future: it runs as long as one caller still waits for it (a
//! caller that gives up does not cancel it for the others), and its entry is removed the
//! moment it finishes, so a failure is handed to the callers that waited for it and to
//! nobody else: failures are never cached.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::{BoxFuture, FutureExt, Shared};

type Entry<V> = (u64, Shared<BoxFuture<'static, V>>);

/// Shares one run of `work` per key among concurrent callers.
pub(crate) struct SingleFlight<V: Clone + Send + Sync + 'static> {
    inner: Arc<Mutex<HashMap<String, Entry<V>>>>,
    next_id: AtomicU64,
    started: AtomicU64,
}

impl<V: Clone + Send + Sync + 'static> Default for SingleFlight<V> {
    fn default() -> Self {
        Self {
            inner: Arc::new(Mutex::new(HashMap::new())),
            next_id: AtomicU64::new(0),
            started: AtomicU64::new(0),
        }
    }
}

impl<V: Clone + Send + Sync + 'static> SingleFlight<V> {
    /// Runs `work` for `key`, or joins the run already in flight for it.
    pub(crate) async fn run<F, Fut>(&self, key: &str, work: F) -> V
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V> + Send + 'static,
    {
        let shared = {
            let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(key) {
                Some((_, s)) => s.clone(),
                None => {
                    let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                    self.started.fetch_add(1, Ordering::Relaxed);
                    let inner = Arc::downgrade(&self.inner);
                    let owned_key = key.to_string();
                    let fut = work();
                    let wrapped = async move {
                        let out = fut.await;
                        if let Some(map) = inner.upgrade() {
                            let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
                            if map.get(&owned_key).is_some_and(|(i, _)| *i == id) {
                                map.remove(&owned_key);
                            }
                        }
                        out
                    }
                    .boxed()
                    .shared();
                    map.insert(key.to_string(), (id, wrapped.clone()));
                    wrapped
                }
            }
        };
        shared.await
    }

    /// How many runs were started (not joined) so far.
    pub(crate) fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// How many keys have a run in flight.
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    #[tokio::test]
    async fn concurrent_callers_share_one_run_and_failures_are_not_kept() {
        let flights = Arc::new(SingleFlight::<Result<u32, String>>::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..100 {
            let (f, r) = (flights.clone(), runs.clone());
            tasks.push(tokio::spawn(async move {
                f.run("k", move || async move {
                    r.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Err::<u32, String>("boom".into())
                })
                .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), Err("boom".into()));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(flights.in_flight(), 0);
        // the failure is gone: the next caller runs again
        let r = runs.clone();
        let ok = flights
            .run("k", move || async move {
                r.fetch_add(1, Ordering::SeqCst);
                Ok(7)
            })
            .await;
        assert_eq!(ok, Ok(7));
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(flights.started(), 2);
    }

    #[tokio::test]
    async fn a_caller_that_gives_up_does_not_cancel_the_others() {
        let flights = Arc::new(SingleFlight::<u32>::default());
        let f = flights.clone();
        let waiter = tokio::spawn(async move {
            f.run("k", || async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                5
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let quitter = flights.run("k", || async { 9 });
        // gives up after 10 ms
        assert!(tokio::time::timeout(Duration::from_millis(10), quitter)
            .await
            .is_err());
        assert_eq!(waiter.await.unwrap(), 5);
        // different keys do not share
        assert_eq!(flights.run("other", || async { 1 }).await, 1);
    }
}
