//! L2 stores: the [`Store`] trait and its backends.
//!
//! A store keeps opaque byte values under string keys, each with an optional time to
//! live, plus *link sets* (a set of member keys under one key, with its own TTL) that
//! tie OBO partitions to their user. Backends:
//!
//! * [`embedded`]: a single redb file, the default on one machine;
//! * [`redis`]: Redis standalone or Cluster, shared by every replica;
//! * [`memory`]: in process, for tests.
//!
//! Every method takes full keys (prefix included; see [`crate::partition::KeySpace`]).
//! Expiry is given as a time to live relative to the store's own "now" so that a
//! store never has to agree with the caller's clock.

use async_trait::async_trait;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub mod chaos;
pub mod embedded;
pub mod memory;
pub mod redis;
mod url;
mod util;

pub use self::embedded::{EmbeddedOptions, EmbeddedStore};
pub use self::memory::MemoryStore;
pub use self::redis::{RedisOptions, RedisStore};
pub(crate) use self::url::ConfiguredUrl;
pub use self::url::{default_embedded_path, open, redact_url, StoreUrl};

/// A value read from a store with the time it has left to live (`None`: no expiry).
#[derive(Clone, PartialEq, Eq)]
pub struct StoreValue {
    /// The stored bytes.
    pub bytes: Vec<u8>,
    /// Time left to live, when the store knows it and the entry has one.
    pub ttl: Option<Duration>,
}

impl fmt::Debug for StoreValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values hold token secrets: show only their size.
        f.debug_struct("StoreValue")
            .field("bytes", &format_args!("<{} bytes>", self.bytes.len()))
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// How a store call failed; decides retry and logging (DESIGN.md section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreErrorKind {
    /// The store could not be reached (refused, reset, DNS, TLS handshake).
    Connection,
    /// The call did not finish in time.
    Timeout,
    /// The store answered with an error (auth, OOM, wrong type, cluster moved...).
    Server,
    /// A value or answer could not be understood.
    BadData,
    /// The store was asked something its configuration cannot do (bad URL, ...).
    Config,
}

impl StoreErrorKind {
    /// A short lower-case name, for logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreErrorKind::Connection => "connection",
            StoreErrorKind::Timeout => "timeout",
            StoreErrorKind::Server => "server",
            StoreErrorKind::BadData => "bad_data",
            StoreErrorKind::Config => "config",
        }
    }
}

impl fmt::Display for StoreErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An L2 failure: its class, the endpoint (never a password), and the cause.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind} error at {endpoint}: {message}")]
pub struct StoreError {
    /// The class of failure.
    pub kind: StoreErrorKind,
    /// Where: host:port, cluster seed list, or file path; never credentials.
    pub endpoint: String,
    /// What happened, in the backend's words (no secrets, no values).
    pub message: String,
}

impl StoreError {
    /// A new error.
    pub fn new(
        kind: StoreErrorKind,
        endpoint: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            endpoint: endpoint.into(),
            message: message.into(),
        }
    }
}

/// Result of a store call.
pub type StoreResult<T> = Result<T, StoreError>;

/// An L2 backend. Implementations are cheap to share (`Arc<dyn Store>`) and safe to
/// call from many tasks at once; no call holds a lock across an await of the network.
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// Reads a value and its remaining TTL. Expired entries are never returned.
    async fn get(&self, key: &str) -> StoreResult<Option<StoreValue>>;

    /// Reads a value and, in the same round trip, sets its TTL to `ttl` (sliding expiry;
    /// Redis `GETEX PX`). The returned `ttl` is the new one.
    async fn get_and_touch(&self, key: &str, ttl: Duration) -> StoreResult<Option<StoreValue>>;

    /// Writes a value with a TTL (`None`: no expiry), replacing any previous value and TTL.
    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> StoreResult<()>;

    /// Writes a value only if no live entry (or link set) exists under `key`, atomically
    /// (Redis `SET NX PX`); returns whether it was written. For "seen once" markers.
    async fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> StoreResult<bool>;

    /// Replaces the value under `key` with `new` (TTL `ttl`; `None`: no expiry) only if
    /// a live value equal to `expected` is there now, atomically (compare-and-set; a
    /// Lua script on Redis); returns whether it was written. For rewriting a value
    /// (re-encryption) without overwriting a change another replica made meanwhile.
    async fn set_if_equal(
        &self,
        key: &str,
        expected: &[u8],
        new: &[u8],
        ttl: Option<Duration>,
    ) -> StoreResult<bool>;

    /// Sets the TTL of an existing entry; returns whether it existed.
    async fn touch(&self, key: &str, ttl: Duration) -> StoreResult<bool>;

    /// Removes an entry; returns whether it existed.
    async fn remove(&self, key: &str) -> StoreResult<bool>;

    /// Removes many entries (any slots, in Cluster); returns how many existed.
    async fn remove_many(&self, keys: &[String]) -> StoreResult<u64>;

    /// Adds `member` to the link set `set_key` and makes the set live at least `ttl`
    /// (`None`: no expiry). The set's TTL is never shortened by this call.
    async fn link_add(&self, set_key: &str, member: &str, ttl: Option<Duration>)
        -> StoreResult<()>;

    /// The members of a link set (empty when it does not exist).
    async fn link_members(&self, set_key: &str) -> StoreResult<Vec<String>>;

    /// Removes members from a link set (the set goes when it is empty).
    async fn link_remove(&self, set_key: &str, members: &[String]) -> StoreResult<()>;

    /// Checks that the store answers (Redis `PING`).
    async fn health(&self) -> StoreResult<()>;

    /// Lists keys starting with `prefix`, a page at a time (Redis `SCAN`, never `KEYS`).
    /// Start with `cursor = 0`; a returned cursor of 0 means the end.
    async fn scan(
        &self,
        prefix: &str,
        cursor: u64,
        count: usize,
    ) -> StoreResult<(u64, Vec<String>)>;

    /// Where the store is, for logs: no credentials.
    fn endpoint(&self) -> String;
}

/// A shared store handle.
pub type SharedStore = Arc<dyn Store>;
