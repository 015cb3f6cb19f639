//! The crate's top-level error.

use crate::protect::KeysError;
use crate::schema::SchemaError;
use crate::store::StoreError;

/// Anything a [`TokenCache`](crate::TokenCache) call can fail with.
///
/// L2 failures during reads are not errors for the caller (the cache falls back to
/// L1 or a miss); they surface here only from calls that cannot do without L2
/// (opening a store, administrative removal).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A blob or token response could not be understood.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// The L2 store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The key ring (builder, provider, `TOKENCACHE_KEYS` or `TOKENCACHE_KEYS_FILE`)
    /// could not be loaded.
    #[error("encryption keys: {0}")]
    Keys(#[from] KeysError),
    /// A stored value could not be opened with the key ring.
    #[error(transparent)]
    Protect(#[from] crate::protect::ProtectError),
    /// A sign-out L2 did not take could not be queued either: the recovery queue
    /// already holds as many sign-outs as it may (none queued is ever dropped). What
    /// could be queued of it stays queued; retry when L2 is back (it is idempotent).
    #[error("the sign-out of {home_account_id} is not recorded: L2 is unreachable and the recovery queue holds as many sign-outs as it may; retry")]
    SignOutRefused {
        /// Whose sign-out.
        home_account_id: String,
    },
    /// The request itself is not valid (an empty client id, no scopes...).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The partition in L2 is encrypted by ASP.NET Core Data Protection (a
    /// Microsoft.Identity.Web cache with `Encrypt` on): tokencache cannot read it, and
    /// refuses to write over it, which would sign its .NET users out.
    #[error("the partition {key} in L2 is encrypted by .NET Data Protection; tokencache cannot read it and did not overwrite it (turn Microsoft.Identity.Web's Encrypt off to share this cache)")]
    DataProtected {
        /// The full L2 key.
        key: String,
    },
}
