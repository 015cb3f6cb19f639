//! One request per key at a time in a process: the first caller for a key starts the
//! work, every caller that arrives while it runs waits for the same result.
//!
//! The work runs as a task of its own (`tokio::spawn`), not inside its callers: a
//! caller that gives up (a timeout, a dropped request) cancels nothing, and when every
//! caller is gone the work still finishes — a token request that reached the provider
//! is saved (a rotated refresh token is never lost), and the partition lock, the request
//! body and the map entry are released. The entry is removed by the task itself when
//! the work ends (a guard, so a panic removes it too), before its result is handed out:
//! a failure reaches only the callers that waited for it, never a later one (failures
//! are never cached).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use futures::future::{BoxFuture, FutureExt, Shared};

type Map<V> = Mutex<HashMap<String, (u64, Shared<BoxFuture<'static, V>>)>>;

/// Shares one run of `work` per key among concurrent callers.
pub(crate) struct SingleFlight<V: Clone + Send + Sync + 'static> {
    inner: Arc<Map<V>>,
    next_id: AtomicU64,
    started: AtomicU64,
    /// The answer when the work's task ended without one (it panicked, or the runtime
    /// was shut down under it).
    lost: fn() -> V,
}

/// Removes a run's map entry when the run's task ends, however it ends.
struct Landing<V: Clone + Send + Sync + 'static> {
    map: Weak<Map<V>>,
    key: String,
    id: u64,
}

impl<V: Clone + Send + Sync + 'static> Drop for Landing<V> {
    fn drop(&mut self) {
        if let Some(map) = self.map.upgrade() {
            let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
            if map.get(&self.key).is_some_and(|(i, _)| *i == self.id) {
                map.remove(&self.key);
            }
        }
    }
}

impl<V: Clone + Send + Sync + 'static> SingleFlight<V> {
    /// An empty set of flights; `lost` answers the callers of a run whose task ended
    /// without an answer.
    pub(crate) fn new(lost: fn() -> V) -> Self {
        Self {
            inner: Arc::new(Mutex::new(HashMap::new())),
            next_id: AtomicU64::new(0),
            started: AtomicU64::new(0),
            lost,
        }
    }

    /// Runs `work` for `key` as its own task, or joins the run already in flight for it.
    /// Must be called within a Tokio runtime.
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
                    // Made before the task first runs: a task dropped unpolled (a
                    // runtime shutting down) still removes the entry.
                    let landing = Landing {
                        map: Arc::downgrade(&self.inner),
                        key: key.to_string(),
                        id,
                    };
                    let fut = work();
                    let task = tokio::spawn(async move {
                        let out = fut.await;
                        // the entry goes before anyone is handed the result
                        drop(landing);
                        out
                    });
                    let lost = self.lost;
                    let shared = async move { task.await.unwrap_or_else(|_| lost()) }
                        .boxed()
                        .shared();
                    map.insert(key.to_string(), (id, shared.clone()));
                    shared
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
        let flights = Arc::new(SingleFlight::<Result<u32, String>>::new(|| {
            Err("lost".into())
        }));
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
        let flights = Arc::new(SingleFlight::<u32>::new(|| 0));
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

    #[tokio::test]
    async fn the_work_finishes_when_every_caller_gave_up_and_its_entry_goes() {
        let flights = Arc::new(SingleFlight::<u32>::new(|| 0));
        let done = Arc::new(AtomicUsize::new(0));
        let d = done.clone();
        let quitter = flights.run("k", move || async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            d.fetch_add(1, Ordering::SeqCst);
            3
        });
        // the only caller gives up while the work runs
        assert!(tokio::time::timeout(Duration::from_millis(5), quitter)
            .await
            .is_err());
        assert_eq!(flights.in_flight(), 1);
        for _ in 0..200 {
            if flights.in_flight() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(done.load(Ordering::SeqCst), 1, "the work ran to its end");
        assert_eq!(flights.in_flight(), 0, "and its entry is gone");
    }

    #[tokio::test]
    async fn a_panicking_run_answers_lost_and_leaves_no_entry() {
        let flights = Arc::new(SingleFlight::<u32>::new(|| 42));
        let out = flights
            .run("k", || async {
                if flights_never() {
                    return 1;
                }
                panic!("boom")
            })
            .await;
        assert_eq!(out, 42);
        assert_eq!(flights.in_flight(), 0);
        assert_eq!(flights.run("k", || async { 7 }).await, 7);
    }

    fn flights_never() -> bool {
        std::hint::black_box(false)
    }
}
