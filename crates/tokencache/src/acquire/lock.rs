//! The cross-replica lock around refresh-token redemption: a short-lived L2 entry
//! written with [`Store::set_if_absent`](crate::store::Store::set_if_absent) (Redis
//! `SET NX PX`), holding a random owner id.
//!
//! Why: a provider that rotates refresh tokens treats a second redemption of the same
//! token as theft and revokes the whole grant. Two replicas holding the same cached
//! refresh token must therefore not both redeem it. The one that takes the lock redeems
//! and saves (the new refresh token replaces the old in L2); the other waits, reads the
//! partition again from L2, and uses what the first saved.
//!
//! The lock lives [`RefreshLockOptions::ttl`] at a time, and its holder renews it while
//! it works: a task of the guard's extends it every third of the TTL, only while it is
//! still this owner's (one compare-and-swap of the owner id with itself, new TTL), so a
//! provider that holds the answer longer than the TTL does not let another replica in.
//! The renewal stops when the guard is released or dropped; a replica that dies holding
//! the lock blocks the user's refresh one TTL at most. Release is one compare-and-delete
//! (removed only if it still holds this owner's id), atomic in every store: a lock that
//! expired and was taken by another replica is never removed by its former holder.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::store::EntryExpiry;
use crate::twolevel::TwoLevel;

/// Settings of the refresh lock.
#[derive(Debug, Clone, Copy)]
pub struct RefreshLockOptions {
    /// How long a lock lives unless its holder renews it (every third of it, while the
    /// redemption runs). Default 10 s: how long a replica that dies holding the lock
    /// blocks the user's refresh.
    pub ttl: Duration,
    /// How often a replica waiting for the lock looks at L2 again. Default 50 ms.
    pub poll: Duration,
}

impl Default for RefreshLockOptions {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(10),
            poll: Duration::from_millis(50),
        }
    }
}

/// The outcome of trying to take the lock.
pub(crate) enum Taken {
    /// This replica holds it.
    Held(LockGuard),
    /// Another replica holds it.
    Busy,
    /// L2 did not answer: nobody can be told apart, go on without a lock.
    Unavailable,
}

/// A held lock, renewed in the background until it is released or dropped;
/// [`release`](Self::release) it when done.
pub(crate) struct LockGuard {
    two: Arc<TwoLevel>,
    key: String,
    owner: String,
    renewal: tokio::task::JoinHandle<()>,
    lost: Arc<AtomicBool>,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // Released or abandoned (a cancelled redemption): renew no more; an unreleased
        // lock ends with its TTL.
        self.renewal.abort();
    }
}

/// The full L2 key of the refresh lock of `home_account_id` for `client_id`.
pub(crate) fn lock_key(two: &TwoLevel, client_id: &str, home_account_id: &str) -> String {
    format!(
        "{}tc:lock:refresh:{{{}}}:{}",
        two.keys().prefix(),
        home_account_id,
        client_id
    )
}

pub(crate) async fn try_take(
    two: &Arc<TwoLevel>,
    key: &str,
    options: &RefreshLockOptions,
) -> Taken {
    let owner = super::random::token(16);
    let store = two.store().clone();
    match two
        .call(
            "refresh_lock",
            store.set_if_absent(key, owner.as_bytes(), Some(options.ttl)),
        )
        .await
    {
        Ok(true) => {
            let lost = Arc::new(AtomicBool::new(false));
            let renewal = tokio::spawn(renew(
                two.clone(),
                key.to_string(),
                owner.clone(),
                options.ttl,
                lost.clone(),
            ));
            Taken::Held(LockGuard {
                two: two.clone(),
                key: key.to_string(),
                owner,
                renewal,
                lost,
            })
        }
        Ok(false) => Taken::Busy,
        Err(e) => {
            tracing::warn!(error = %e, "refresh lock: L2 failed; redeeming without the cross-replica lock");
            Taken::Unavailable
        }
    }
}

/// Extends the lock every third of its TTL while it is `owner`'s; stops when it is not
/// (it expired and maybe another replica took it) — or when the guard aborts it.
async fn renew(
    two: Arc<TwoLevel>,
    key: String,
    owner: String,
    ttl: Duration,
    lost: Arc<AtomicBool>,
) {
    let every = (ttl / 3).max(Duration::from_millis(1));
    loop {
        tokio::time::sleep(every).await;
        let store = two.store().clone();
        let renewed = two
            .call(
                "refresh_lock_renew",
                store.compare_and_swap(
                    &key,
                    Some(owner.as_bytes()),
                    Some(owner.as_bytes()),
                    EntryExpiry::after(Some(ttl)),
                ),
            )
            .await;
        match renewed {
            Ok(true) => {}
            Ok(false) => {
                lost.store(true, Ordering::Relaxed);
                tracing::warn!(
                    "refresh lock: expired before its holder could renew it (L2 was slow or down); another replica may redeem too"
                );
                return;
            }
            // L2 failed (logged by `call`): try again; the TTL ends the lock if L2 stays down
            Err(_) => {}
        }
    }
}

/// Whether the lock is free now (false also when L2 fails: keep waiting).
pub(crate) async fn is_free(two: &Arc<TwoLevel>, key: &str) -> bool {
    let store = two.store().clone();
    matches!(two.call("refresh_lock_get", store.get(key)).await, Ok(None))
}

impl LockGuard {
    /// Whether the lock was found expired (not this owner's any more) when it was to be
    /// renewed.
    pub(crate) fn lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }

    /// Stops the renewal and removes the lock if it is still this owner's, in one
    /// compare-and-delete.
    pub(crate) async fn release(self) {
        self.renewal.abort();
        let store = self.two.store().clone();
        // expired (and maybe taken by another replica), or L2 failed: the TTL ends it
        let _ = self
            .two
            .call(
                "refresh_lock_release",
                store.compare_and_swap(
                    &self.key,
                    Some(self.owner.as_bytes()),
                    None,
                    EntryExpiry::after(None),
                ),
            )
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TokenCache;

    async fn two() -> Arc<TwoLevel> {
        let cache = TokenCache::builder()
            .store_url("memory://")
            .build()
            .await
            .unwrap();
        cache.two_level().clone()
    }

    fn options(ttl_ms: u64) -> RefreshLockOptions {
        RefreshLockOptions {
            ttl: Duration::from_millis(ttl_ms),
            poll: Duration::from_millis(10),
        }
    }

    async fn holder(two: &TwoLevel, key: &str) -> Option<Vec<u8>> {
        two.store().get(key).await.unwrap().map(|v| v.bytes)
    }

    #[tokio::test]
    async fn a_held_lock_outlives_its_ttl_while_renewed_and_goes_at_release() {
        let two = two().await;
        let key = "tc:lock:refresh:{u}:c";
        let Taken::Held(guard) = try_take(&two, key, &options(300)).await else {
            panic!("free lock not taken")
        };
        // three TTLs later it is still held (renewed), and still refused to others
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert_eq!(
            holder(&two, key).await.as_deref(),
            Some(guard.owner.as_bytes())
        );
        assert!(matches!(
            try_take(&two, key, &options(300)).await,
            Taken::Busy
        ));
        assert!(!guard.lost());
        guard.release().await;
        assert_eq!(holder(&two, key).await, None);
        assert!(is_free(&two, key).await);
    }

    #[tokio::test]
    async fn a_dropped_guard_renews_no_more_and_the_ttl_ends_the_lock() {
        let two = two().await;
        let key = "tc:lock:refresh:{u}:c";
        let Taken::Held(guard) = try_take(&two, key, &options(300)).await else {
            panic!("free lock not taken")
        };
        drop(guard);
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert_eq!(holder(&two, key).await, None, "expired, not renewed");
    }

    #[tokio::test]
    async fn release_never_removes_another_owners_lock_and_renewal_stops_when_lost() {
        let two = two().await;
        let key = "tc:lock:refresh:{u}:c";
        let Taken::Held(guard) = try_take(&two, key, &options(300)).await else {
            panic!("free lock not taken")
        };
        // the lock expired and another replica took it
        two.store()
            .set(key, b"another-owner", Some(Duration::from_secs(60)))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(guard.lost(), "the renewal saw the lock was not ours");
        assert_eq!(
            holder(&two, key).await.as_deref(),
            Some(&b"another-owner"[..])
        );
        guard.release().await;
        assert_eq!(
            holder(&two, key).await.as_deref(),
            Some(&b"another-owner"[..]),
            "the other owner's lock stays"
        );
    }
}
