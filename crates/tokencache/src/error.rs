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
    /// The request itself is not valid (an empty client id, no scopes...).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}
