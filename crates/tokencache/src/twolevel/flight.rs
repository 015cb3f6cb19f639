//! One load per key, whoever waits for it (single flight), at the cost of one map entry
//! when no one else waits.
//!
//! The first caller of a key leads: it makes the entry and runs the load (as its own
//! task, see `read`). A caller that finds the entry follows: the first follower turns
//! the entry into a shared slot (the only allocation made for waiters), every follower
//! waits on it. The load ends by removing the entry and, when someone follows, filling
//! the slot and waking them. A load that ends without an answer (its task panicked, or
//! the runtime dropped it) still does so, through a guard, with no partition: a follower
//! never waits for a load that is gone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::Notify;

use super::locks::FastHash;
use super::Loaded;

/// The loads running, by partition key.
#[derive(Default)]
pub(super) struct Flights {
    // std Mutex: held only to find, insert or remove an entry, never across an await.
    running: Mutex<HashMap<Arc<str>, Flight, FastHash>>,
}

enum Flight {
    /// The leader is loading; no one else waits.
    Alone,
    /// Others wait for the leader's answer here.
    Joined(Arc<Slot>),
}

/// Where followers find the answer.
#[derive(Default)]
pub(super) struct Slot {
    answer: OnceLock<Loaded>,
    ready: Notify,
}

/// What a caller of [`Flights::join`] is to do.
pub(super) enum Role {
    /// Run the load, then [`Flights::land`] with this key.
    Lead(Arc<str>),
    /// Wait for the leader's answer ([`Slot::wait`]).
    Follow(Arc<Slot>),
}

impl Flights {
    /// Joins the load of `key` that is running, or makes the caller its leader.
    pub(super) fn join(&self, key: &str) -> Role {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        match running.get_mut(key) {
            Some(Flight::Joined(slot)) => Role::Follow(slot.clone()),
            Some(flight) => {
                let slot = Arc::new(Slot::default());
                *flight = Flight::Joined(slot.clone());
                Role::Follow(slot)
            }
            None => {
                let key: Arc<str> = Arc::from(key);
                running.insert(key.clone(), Flight::Alone);
                Role::Lead(key)
            }
        }
    }

    /// The load of `key` ended with `answer`: the entry goes, followers get the answer.
    pub(super) fn land(&self, key: &str, answer: &Loaded) {
        let flight = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        if let Some(Flight::Joined(slot)) = flight {
            // The answer first, then the wake-up: a follower that registers after the
            // wake-up finds the answer (see `wait`).
            let _ = slot.answer.set(answer.clone());
            slot.ready.notify_waiters();
        }
    }

    /// Loads running.
    pub(super) fn len(&self) -> usize {
        self.running.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl Slot {
    /// The leader's answer, once it lands.
    pub(super) async fn wait(&self) -> Loaded {
        loop {
            let woken = self.ready.notified();
            tokio::pin!(woken);
            // Registered before the answer is looked at: a landing after this look
            // wakes this waiter; one before it left the answer to find.
            woken.as_mut().enable();
            if let Some(answer) = self.answer.get() {
                return answer.clone();
            }
            woken.await;
        }
    }
}

/// Lands a load that ends without an answer with none: made before the load's future is
/// first polled (it is one of its arguments), so that a future dropped unpolled (a
/// runtime shutting down), cancelled or panicking still lands.
pub(super) struct LandOnDrop {
    flights: Arc<Flights>,
    key: Arc<str>,
    armed: bool,
}

impl LandOnDrop {
    /// A guard for the load of `key`.
    pub(super) fn new(flights: Arc<Flights>, key: Arc<str>) -> Self {
        LandOnDrop {
            flights,
            key,
            armed: true,
        }
    }

    /// The load's key.
    pub(super) fn key(&self) -> &Arc<str> {
        &self.key
    }

    /// The load answered: land it with `answer`.
    pub(super) fn land(mut self, answer: &Loaded) {
        self.armed = false;
        self.flights.land(&self.key, answer);
    }
}

impl Drop for LandOnDrop {
    fn drop(&mut self) {
        if self.armed {
            self.flights.land(&self.key, &None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Partition;
    use std::time::Duration;

    #[tokio::test]
    async fn followers_get_the_leaders_answer_and_the_entry_goes() {
        let flights = Arc::new(Flights::default());
        let Role::Lead(key) = flights.join("k") else {
            panic!("the first caller leads");
        };
        let mut followers = Vec::new();
        for _ in 0..3 {
            let Role::Follow(slot) = flights.join("k") else {
                panic!("later callers follow");
            };
            followers.push(tokio::spawn(async move { slot.wait().await }));
        }
        assert!(matches!(flights.join("other"), Role::Lead(_)));
        tokio::time::sleep(Duration::from_millis(10)).await;
        let answer: Loaded = Some(Arc::new(Partition::new()));
        flights.land(&key, &answer);
        for f in followers {
            let got = f.await.unwrap();
            assert!(Arc::ptr_eq(got.as_ref().unwrap(), answer.as_ref().unwrap()));
        }
        flights.land("other", &None);
        assert_eq!(flights.len(), 0);
    }

    #[tokio::test]
    async fn a_load_dropped_before_its_answer_lands_with_none() {
        let flights = Arc::new(Flights::default());
        let Role::Lead(key) = flights.join("k") else {
            panic!("leads");
        };
        let Role::Follow(slot) = flights.join("k") else {
            panic!("follows");
        };
        // The load's future, dropped before it was ever polled: its guard is an argument.
        async fn load(landing: LandOnDrop) {
            std::future::pending::<()>().await;
            landing.land(&None);
        }
        drop(load(LandOnDrop::new(flights.clone(), key)));
        let got = tokio::time::timeout(Duration::from_secs(5), slot.wait()).await;
        assert!(got.expect("not left waiting").is_none());
        assert_eq!(flights.len(), 0);
    }

    #[tokio::test]
    async fn a_follower_that_arrives_after_the_landing_finds_the_answer() {
        let flights = Flights::default();
        let Role::Lead(key) = flights.join("k") else {
            panic!("leads");
        };
        let Role::Follow(slot) = flights.join("k") else {
            panic!("follows");
        };
        flights.land(&key, &Some(Arc::new(Partition::new())));
        assert!(slot.wait().await.is_some());
    }
}
