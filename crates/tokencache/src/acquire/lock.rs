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
//! The lock expires by itself after [`RefreshLockOptions::ttl`] (a replica that dies
//! holding it blocks the user's refresh that long at most). Release removes the entry
//! only if it still holds this owner's id (read, compare, remove: a lock that expired
//! and was taken by another replica in between is left alone, except in the instant
//! between the read and the remove, which the TTL bounds).

use std::sync::Arc;
use std::time::Duration;

use crate::twolevel::TwoLevel;

/// Settings of the refresh lock.
#[derive(Debug, Clone, Copy)]
pub struct RefreshLockOptions {
    /// How long a lock lives if its holder never releases it. Default 10 s (keep it above
    /// the token endpoint's timeout).
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

/// A held lock; [`release`](Self::release) it when done.
pub(crate) struct LockGuard {
    two: Arc<TwoLevel>,
    key: String,
    owner: String,
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
        Ok(true) => Taken::Held(LockGuard {
            two: two.clone(),
            key: key.to_string(),
            owner,
        }),
        Ok(false) => Taken::Busy,
        Err(e) => {
            tracing::warn!(error = %e, "refresh lock: L2 failed; redeeming without the cross-replica lock");
            Taken::Unavailable
        }
    }
}

/// Whether the lock is free now (false also when L2 fails: keep waiting).
pub(crate) async fn is_free(two: &Arc<TwoLevel>, key: &str) -> bool {
    let store = two.store().clone();
    matches!(two.call("refresh_lock_get", store.get(key)).await, Ok(None))
}

impl LockGuard {
    /// Removes the lock if it is still this owner's.
    pub(crate) async fn release(self) {
        let store = self.two.store().clone();
        match self
            .two
            .call("refresh_lock_get", store.get(&self.key))
            .await
        {
            Ok(Some(v)) if v.bytes == self.owner.as_bytes() => {
                let _ = self
                    .two
                    .call("refresh_lock_release", store.remove(&self.key))
                    .await;
            }
            // expired (and maybe taken by another replica), or L2 failed: the TTL ends it
            _ => {}
        }
    }
}
