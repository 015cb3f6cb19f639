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

use crate::backplane::SharedBackplane;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub mod chaos;
pub mod dotnet;
pub mod embedded;
pub mod memory;
pub mod redis;
pub mod stamp;
mod url;
mod util;

pub use self::dotnet::{StoreLayout, ValueLayout};
pub use self::embedded::{EmbeddedOptions, EmbeddedStore};
pub use self::memory::MemoryStore;
pub use self::redis::{RedisOptions, RedisStore};
pub use self::stamp::StampAt;
pub use self::url::{
    default_embedded_dir, default_embedded_path, default_embedded_path_for, open, open_existing,
    redact_url, StoreUrl,
};
pub(crate) use self::url::{open_with_layout, ConfiguredUrl};

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

/// How long a written entry lives, in the terms of .NET's `DistributedCacheEntryOptions`
/// (both relative to now): the store's TTL is the earlier of the two. Stores that keep
/// only a TTL use [`ttl`](Self::ttl); a Redis store writing the .NET layout also
/// stores both fields, so that a .NET reader expires and slides the entry as its writer
/// meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EntryExpiry {
    /// Time left until the entry's hard end (`None`: none).
    pub absolute: Option<Duration>,
    /// The sliding window: each read may give the entry this long again, up to
    /// `absolute` (`None`: no sliding).
    pub sliding: Option<Duration>,
}

impl EntryExpiry {
    /// An entry that ends after `ttl` (`None`: never), without sliding.
    pub fn after(ttl: Option<Duration>) -> Self {
        Self {
            absolute: ttl,
            sliding: None,
        }
    }

    /// The TTL to give the entry now: the earlier of the two (`None`: no expiry).
    pub fn ttl(&self) -> Option<Duration> {
        match (self.absolute, self.sliding) {
            (Some(a), Some(s)) => Some(a.min(s)),
            (a, None) => a,
            (None, s) => s,
        }
    }
}

/// How a store call failed; decides retry and logging (docs/design.md §6).
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
    /// The failure concerns one shard of a Redis Cluster while the others answer: the
    /// store fails that shard's keys fast on its own, and the cache's circuit breaker
    /// (which stands for L2 as a whole) does not count it.
    pub shard_scoped: bool,
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
            shard_scoped: false,
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

    /// Reads `key` as [`get`](Self::get) does (as [`get_and_touch`](Self::get_and_touch)
    /// with `touch`) and the plain value of `also` (a revocation stamp), in one round
    /// trip where the store can (Redis standalone: one script; elsewhere both requests
    /// are sent before either answer is awaited). One call: both answers, or an error.
    async fn get_along(
        &self,
        key: &str,
        touch: Option<Duration>,
        also: &str,
    ) -> StoreResult<(Option<StoreValue>, Option<Vec<u8>>)> {
        get_apart(self, key, touch, also).await
    }

    /// Writes a value with a TTL (`None`: no expiry), replacing any previous value and TTL.
    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> StoreResult<()>;

    /// Writes a value that lives as `expiry` says, replacing any previous value. The
    /// default writes it with [`EntryExpiry::ttl`]; the Redis store keeps an existing
    /// key's layout and writes a new one in its configured [`StoreLayout`] (a .NET hash
    /// gets `absexp` and `sldexp` from `expiry`).
    async fn set_with_expiry(
        &self,
        key: &str,
        value: &[u8],
        expiry: EntryExpiry,
    ) -> StoreResult<()> {
        self.set(key, value, expiry.ttl()).await
    }

    /// Reads a value as [`get`](Self::get) does, and says in which layout it was found.
    /// The default (stores that only keep plain values) says [`ValueLayout::String`].
    async fn get_with_layout(&self, key: &str) -> StoreResult<Option<(StoreValue, ValueLayout)>> {
        Ok(self.get(key).await?.map(|v| (v, ValueLayout::String)))
    }

    /// The [`ValueDigest`] of the value [`get`](Self::get) would return for `key`
    /// (`None`: no live entry), without its side effects (no sliding refresh): a cheap
    /// version check, for strict reads. The default reads the value and digests it
    /// here; Redis digests it on the server (a script: 20 bytes on the wire, not 7 KB).
    async fn digest(&self, key: &str) -> StoreResult<Option<ValueDigest>> {
        Ok(self.get(key).await?.map(|v| ValueDigest::of(&v.bytes)))
    }

    /// Writes a value only if no live entry (or link set) exists under `key`, atomically
    /// (Redis `SET NX PX`); returns whether it was written. For "seen once" markers.
    async fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> StoreResult<bool>;

    /// Replaces the value of `key` only if it holds exactly `expected` now (`None`: no
    /// live entry), atomically: `new` with `expiry` (a store that keeps only a TTL uses
    /// [`EntryExpiry::ttl`]), or a removal when `new` is `None`. An entry keeps its
    /// layout (a .NET hash stays a hash). Returns whether it did (false: another writer
    /// changed the key since it was read). The optimistic write path's compare-and-swap.
    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        expiry: EntryExpiry,
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

    /// The store's own clock, in ms since the epoch (Redis `TIME`), when it has one that
    /// replicas share; `None` (the default) when it has none of its own. Replicas measure
    /// their offset from it so that the times they compare (sign-outs, record times)
    /// come from one clock (docs/design.md §7).
    async fn time_ms(&self) -> StoreResult<Option<u64>> {
        Ok(None)
    }

    /// Writes a revocation stamp ([`stamp`]) under `key`, living `ttl`: at `at` (by the
    /// store's own clock where it has one and `at` asks for it), or the stamp the key
    /// holds when that is later (a stamp only moves forward). Returns the stamp written,
    /// ms since the epoch. The default reads, compares and writes (stores of one process);
    /// Redis does it in one script, with `TIME` read inside it.
    async fn write_stamp(&self, key: &str, at: StampAt, ttl: Option<Duration>) -> StoreResult<i64> {
        let now = match at {
            StampAt::StoreClock { fallback_ms } => match self.time_ms().await? {
                Some(t) => i64::try_from(t).unwrap_or(fallback_ms),
                None => fallback_ms,
            },
            StampAt::Instant(ms) => ms,
        };
        let held = self
            .get(key)
            .await?
            .and_then(|v| stamp::parse_stamp(&v.bytes));
        let ms = held.map_or(now, |h| h.max(now));
        self.set(key, stamp::format_stamp(ms).as_bytes(), ttl)
            .await?;
        Ok(ms)
    }

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

    /// Checks what tokencache needs of the store's server and user, with keys and the
    /// backplane channel under `prefix` (Redis: [`RedisStore::check`], what `tokencache
    /// check` prints). `None`: nothing to check (the stores in this process).
    async fn requirements(&self, prefix: &str) -> Option<self::redis::CheckReport> {
        let _ = prefix;
        None
    }

    /// The backplane of the replicas sharing this store (see [`crate::backplane`]):
    /// Redis pub/sub for Redis, in process for the memory and embedded stores. `None`:
    /// replicas are not told of each other's writes (wrappers that do not forward it).
    fn backplane(&self) -> Option<SharedBackplane> {
        None
    }
}

/// [`Store::get_along`] as two reads sent together (both requests are on the wire
/// before either answer is awaited): the default, and a Cluster's (the keys are in
/// different slots).
pub(crate) async fn get_apart<S: Store + ?Sized>(
    store: &S,
    key: &str,
    touch: Option<Duration>,
    also: &str,
) -> StoreResult<(Option<StoreValue>, Option<Vec<u8>>)> {
    let first = async {
        match touch {
            Some(t) => store.get_and_touch(key, t).await,
            None => store.get(key).await,
        }
    };
    let (value, other) = futures::join!(first, store.get(also));
    Ok((value?, other?.map(|v| v.bytes)))
}

/// A digest of a stored value's bytes: SHA-1, which Redis computes in a script
/// (`redis.sha1hex`), so that a replica can ask whether a value changed without
/// fetching it. A change detector between writers that share the store, not a
/// protection against them (a writer of the store can write anything anyway).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ValueDigest(pub [u8; 20]);

impl ValueDigest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, bytes);
        let mut out = [0u8; 20];
        out.copy_from_slice(d.as_ref());
        Self(out)
    }

    /// From its 40 hex digits (as `redis.sha1hex` gives it); `None` if malformed.
    pub fn from_hex(hex: &[u8]) -> Option<Self> {
        if hex.len() != 40 {
            return None;
        }
        let nibble = |c: u8| -> Option<u8> {
            match c {
                b'0'..=b'9' => Some(c - b'0'),
                b'a'..=b'f' => Some(c - b'a' + 10),
                b'A'..=b'F' => Some(c - b'A' + 10),
                _ => None,
            }
        };
        let mut out = [0u8; 20];
        for (i, pair) in hex.chunks_exact(2).enumerate() {
            out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        Some(Self(out))
    }

    /// A short form of it (its first 8 bytes), never 0: what an L1 entry keeps.
    pub fn short(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[..8]);
        u64::from_be_bytes(b) | 1
    }
}

/// A shared store handle.
pub type SharedStore = Arc<dyn Store>;
