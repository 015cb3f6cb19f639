//! Redis store: standalone or Cluster, shared by every replica.
//!
//! * Standalone uses a [`ConnectionManager`] (one multiplexed connection that
//!   reconnects by itself after a drop).
//! * Cluster uses a [`ClusterConnection`] built from the seed nodes (it follows
//!   `MOVED`/`ASK` and refreshes its slot map).
//!
//! **Lazy connection.** Constructors never touch the network: they parse the
//! configuration and return at once. The first call connects; concurrent first calls
//! share one attempt. If the attempt fails (server down, wrong host, wrong password),
//! that call and those waiting on it get the error, and the next call tries again. So
//! a cache built while Redis is down works from L1 and starts using Redis as soon as
//! it answers. Every connection attempt is bounded by
//! [`RedisOptions::connect_timeout`] and every command by
//! [`RedisOptions::response_timeout`], so no call hangs.
//!
//! Commands: `get`, `get_and_touch`, `set` and `touch` are each one Lua script on the
//! one key (one round trip, Cluster-safe) that looks at its `TYPE` and reads or writes
//! a string (`GET`/`PTTL`, `PEXPIRE`, `SET [PX]`) or a .NET `RedisCache` hash
//! (`HMGET absexp sldexp data`, its `Refresh`, `HSET` + `EXPIRE`), so that a key
//! holding either is read, an existing key keeps its layout and a new one gets
//! [`RedisOptions::layout`] (see [`super::dotnet`]); no read ever meets `WRONGTYPE`; `remove_many` = one `DEL` per
//! hash slot (sent concurrently in Cluster, never a cross-slot `DEL`); link sets are
//! sorted sets scored by each member's own deadline (Lua scripts on the one key, so
//! Cluster-safe: members past their deadline are pruned on every add and read, and the
//! set's TTL is its longest-lived member's); `scan` = `SCAN MATCH prefix* COUNT`, on every master in Cluster (see
//! [`RedisStore::scan`](Store::scan) below); `health` = `PING`.
//!
//! Errors: I/O, refused or dropped connections → `Connection`; timeouts → `Timeout`;
//! server error replies (`NOAUTH`, `WRONGPASS`, `OOM`, `WRONGTYPE`, exhausted
//! redirections) → `Server`; unparsable replies → `BadData`. Messages never hold a
//! password, and [`Store::endpoint`] is the `host:port` list only.

use super::dotnet::{self, StoreLayout, ValueLayout};
use super::stamp::{self, StampAt};
use super::util::ttl_millis;
use super::EntryExpiry;
use super::{Store, StoreError, StoreErrorKind, StoreResult, StoreValue, ValueDigest};
use crate::backplane::{RedisBackplane, SharedBackplane};
use async_trait::async_trait;
use futures::future::{BoxFuture, FutureExt, Shared};
use futures::stream::{self, StreamExt, TryStreamExt};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{ConnectionAddr, ErrorKind, RedisError, RedisResult, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

mod connection;
mod read;
mod scripts;
mod slots;

pub(crate) use connection::map_error;
use connection::{addr_string, config_error, ensure_tls_provider, is_tls, Backend, Conn, Lazy};
use scripts::{link_script, CAS_LUA, LINK_ADD_BODY, LINK_MEMBERS_BODY, LINK_REMOVE_BODY};
use slots::glob_escape;
pub use slots::key_slot;

/// Keys per `DEL` command in standalone mode.
const DEL_CHUNK: usize = 512;

/// `DEL` commands in flight at once in Cluster mode.
const DEL_CONCURRENCY: usize = 16;

/// Bits of a cluster scan cursor that carry the node's own cursor; the node index
/// sits above them.
const NODE_CURSOR_BITS: u32 = 56;

/// Connection settings of a [`RedisStore`].
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// Longest wait for one connection attempt (TCP + TLS + AUTH). Default 2 s.
    pub connect_timeout: Duration,
    /// Longest wait for the answer to one command. Default 2 s.
    pub response_timeout: Duration,
    /// Retries of a failed command inside the Cluster client (redirections,
    /// reconnections). Default 2: a dead node fails fast; the cache has its own policy.
    pub cluster_retries: u32,
    /// PEM root certificate(s) to trust for `rediss://` instead of the built-in web
    /// roots (a private CA). URL form: `?tls_ca_file=/path/ca.pem`.
    pub tls_ca_pem: Option<Vec<u8>>,
    /// The layout new keys are written in (an existing key keeps its own): a Redis
    /// string (default) or .NET `RedisCache`'s hash. URL form: `?layout=dotnet`.
    pub layout: StoreLayout,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(2),
            cluster_retries: 2,
            tls_ca_pem: None,
            layout: StoreLayout::String,
        }
    }
}

/// An L2 store on Redis, standalone or Cluster. Cheap to share behind an `Arc`.
pub struct RedisStore {
    backend: Backend,
    endpoint: String,
    link_add: redis::Script,
    link_members: redis::Script,
    link_remove: redis::Script,
    cas: redis::Script,
    write_stamp: redis::Script,
    backplane: Arc<RedisBackplane>,
    /// Reads and writes of both layouts (see [`dotnet`]).
    layouts: LayoutScripts,
}

/// The scripts that read and write a key in either layout, and the layout of new keys.
struct LayoutScripts {
    layout: StoreLayout,
    read: redis::Script,
    write: redis::Script,
    touch: redis::Script,
    digest: redis::Script,
    read_along: redis::Script,
}

impl LayoutScripts {
    fn new(layout: StoreLayout) -> Self {
        Self {
            layout,
            read: redis::Script::new(dotnet::READ_ANY_LUA),
            write: redis::Script::new(dotnet::WRITE_ANY_LUA),
            touch: redis::Script::new(dotnet::TOUCH_ANY_LUA),
            digest: redis::Script::new(dotnet::DIGEST_ANY_LUA),
            read_along: redis::Script::new(&dotnet::read_along_lua()),
        }
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field(
                "mode",
                &match self.backend {
                    Backend::Standalone(_) => "standalone",
                    Backend::Cluster(_) => "cluster",
                },
            )
            .field("endpoint", &self.endpoint)
            .field("layout", &self.layouts.layout)
            .finish()
    }
}

impl RedisStore {
    /// A standalone store for a `redis://[user:pass@]host[:port][/db]` or `rediss://`
    /// URL. Does not connect (see the module docs).
    ///
    /// # Errors
    /// `Config` when the URL is not a valid Redis URL.
    pub fn standalone(url: &str, options: RedisOptions) -> StoreResult<Self> {
        let client = match &options.tls_ca_pem {
            Some(pem) => redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            ),
            None => redis::Client::open(url),
        }
        .map_err(|e| config_error("redis (URL not shown)", &e))?;
        let endpoint = addr_string(client.get_connection_info().addr());
        if is_tls(client.get_connection_info().addr()) {
            ensure_tls_provider();
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(Some(options.response_timeout))
            // One attempt per (re)connection: a dead server fails fast; the next call
            // (or the cache's breaker probe) tries again.
            .set_number_of_retries(0);
        let backplane = Arc::new(RedisBackplane::new(
            vec![client.clone()],
            vec![endpoint.clone()],
            options.connect_timeout,
            options.response_timeout,
        ));
        let lazy = Lazy::new(move || {
            let client = client.clone();
            let config = config.clone();
            async move { ConnectionManager::new_with_config(client, config).await }.boxed()
        });
        Ok(Self {
            backend: Backend::Standalone(lazy),
            backplane,
            endpoint,
            link_add: link_script(LINK_ADD_BODY),
            link_members: link_script(LINK_MEMBERS_BODY),
            link_remove: link_script(LINK_REMOVE_BODY),
            cas: redis::Script::new(CAS_LUA),
            write_stamp: redis::Script::new(stamp::WRITE_STAMP_LUA),
            layouts: LayoutScripts::new(options.layout),
        })
    }

    /// A Cluster store from seed node URLs (`redis://[user:pass@]host:port` or
    /// `rediss://`); credentials and TLS are taken from the first. Does not connect.
    ///
    /// # Errors
    /// `Config` when there is no seed or a URL is invalid.
    pub fn cluster(seeds: &[String], options: RedisOptions) -> StoreResult<Self> {
        let mut infos = Vec::with_capacity(seeds.len());
        for s in seeds {
            let info = redis::IntoConnectionInfo::into_connection_info(s.as_str())
                .map_err(|e| config_error("redis cluster (URL not shown)", &e))?;
            infos.push(info);
        }
        if infos.is_empty() {
            return Err(StoreError::new(
                StoreErrorKind::Config,
                "redis cluster",
                "a Redis Cluster URL needs at least one seed node",
            ));
        }
        if infos.iter().any(|i| is_tls(i.addr())) {
            ensure_tls_provider();
        }
        let endpoint = infos
            .iter()
            .map(|i| addr_string(i.addr()))
            .collect::<Vec<_>>()
            .join(",");
        let mut pubsub_clients = Vec::with_capacity(infos.len());
        for info in &infos {
            let c = match &options.tls_ca_pem {
                Some(pem) => redis::Client::build_with_tls(
                    info.clone(),
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem.clone()),
                    },
                ),
                None => redis::Client::open(info.clone()),
            }
            .map_err(|e| config_error(&endpoint, &e))?;
            pubsub_clients.push(c);
        }
        let backplane = Arc::new(RedisBackplane::new(
            pubsub_clients,
            infos.iter().map(|i| addr_string(i.addr())).collect(),
            options.connect_timeout,
            options.response_timeout,
        ));
        let mut builder = ClusterClientBuilder::new(infos);
        if let Some(pem) = &options.tls_ca_pem {
            builder = builder.certs(redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.clone()),
            });
        }
        let client: ClusterClient = builder
            .connection_timeout(options.connect_timeout)
            .response_timeout(options.response_timeout)
            .retries(options.cluster_retries)
            .min_retry_wait(10)
            .max_retry_wait(200)
            .build()
            .map_err(|e| config_error(&endpoint, &e))?;
        let lazy = Lazy::new(move || {
            let client = client.clone();
            async move { client.get_async_connection().await }.boxed()
        });
        Ok(Self {
            backend: Backend::Cluster(lazy),
            backplane,
            endpoint,
            link_add: link_script(LINK_ADD_BODY),
            link_members: link_script(LINK_MEMBERS_BODY),
            link_remove: link_script(LINK_REMOVE_BODY),
            cas: redis::Script::new(CAS_LUA),
            write_stamp: redis::Script::new(stamp::WRITE_STAMP_LUA),
            layouts: LayoutScripts::new(options.layout),
        })
    }

    /// Whether this store talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.backend, Backend::Cluster(_))
    }

    /// Whether a connection is currently established (it may still have dropped
    /// since; the next call finds out).
    pub fn is_connected(&self) -> bool {
        match &self.backend {
            Backend::Standalone(l) => l.is_connected(),
            Backend::Cluster(l) => l.is_connected(),
        }
    }

    fn err(&self, e: &RedisError) -> StoreError {
        if e.kind() == ErrorKind::AuthenticationFailed {
            // Credentials may be fixed on the server side: connect afresh next time.
            match &self.backend {
                Backend::Standalone(l) => l.reset(),
                Backend::Cluster(l) => l.reset(),
            }
        }
        map_error(&self.endpoint, e)
    }

    async fn conn(&self) -> StoreResult<Conn> {
        let c = match &self.backend {
            Backend::Standalone(l) => l.get().await.map(Conn::Standalone),
            Backend::Cluster(l) => l.get().await.map(Conn::Cluster),
        };
        c.map_err(|e| self.err(&e))
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> StoreResult<T> {
        let mut c = self.conn().await?;
        c.query(&cmd).await.map_err(|e| self.err(&e))
    }

    /// The masters of the cluster, sorted by address (from `CLUSTER SLOTS`).
    async fn masters(&self, conn: &mut ClusterConnection) -> StoreResult<Vec<(String, u16)>> {
        let slots: Value = conn
            .route_command(
                redis::cmd("CLUSTER").arg("SLOTS").clone(),
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
            )
            .await
            .map_err(|e| self.err(&e))?;
        let bad = || {
            StoreError::new(
                StoreErrorKind::BadData,
                &self.endpoint,
                "unexpected CLUSTER SLOTS reply",
            )
        };
        let Value::Array(ranges) = slots else {
            return Err(bad());
        };
        let mut masters = BTreeMap::new();
        for range in ranges {
            let Value::Array(items) = range else {
                return Err(bad());
            };
            let Some(Value::Array(node)) = items.get(2) else {
                return Err(bad());
            };
            let host: String = node
                .first()
                .and_then(|v| redis::from_redis_value_ref(v).ok())
                .ok_or_else(bad)?;
            let port: u16 = node
                .get(1)
                .and_then(|v| redis::from_redis_value_ref(v).ok())
                .ok_or_else(bad)?;
            masters.insert((host, port), ());
        }
        Ok(masters.into_keys().collect())
    }
}

/// Both layouts (docs/design.md §4; see [`dotnet`]): one script per call, so a key is
/// read whatever it holds in one round trip and a `WRONGTYPE` never happens.
#[async_trait]
impl Store for RedisStore {
    async fn get(&self, key: &str) -> StoreResult<Option<StoreValue>> {
        if let Some((read, _)) = self.read_strings(key, None, None).await? {
            return Ok(read);
        }
        let read = self
            .read_any(key, None, dotnet::READ_REFRESH_FRACTION)
            .await?;
        Ok(read.map(|(v, _)| v))
    }

    async fn get_with_layout(&self, key: &str) -> StoreResult<Option<(StoreValue, ValueLayout)>> {
        self.read_any(key, None, dotnet::READ_REFRESH_FRACTION)
            .await
    }

    async fn get_and_touch(&self, key: &str, ttl: Duration) -> StoreResult<Option<StoreValue>> {
        if let Some((read, _)) = self.read_strings(key, Some(ttl), None).await? {
            return Ok(read);
        }
        let read = self.read_any(key, Some(ttl), "0").await?;
        Ok(read.map(|(v, _)| v))
    }

    async fn get_along(
        &self,
        key: &str,
        touch: Option<Duration>,
        also: &str,
    ) -> StoreResult<(Option<StoreValue>, Option<Vec<u8>>)> {
        self.read_along(key, touch, also).await
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> StoreResult<()> {
        self.write_any(key, value, EntryExpiry::after(ttl)).await
    }

    async fn set_with_expiry(
        &self,
        key: &str,
        value: &[u8],
        expiry: EntryExpiry,
    ) -> StoreResult<()> {
        self.write_any(key, value, expiry).await
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        expiry: EntryExpiry,
    ) -> StoreResult<bool> {
        let ms: i64 = expiry
            .ttl()
            .map_or(-1, |t| i64::try_from(ttl_millis(t)).unwrap_or(i64::MAX));
        let now = std::time::SystemTime::now();
        let absexp = expiry.absolute.map_or(-1, |a| dotnet::ticks_of(now + a));
        let sldexp = expiry.sliding.map_or(-1, dotnet::duration_ticks);
        let expire = dotnet::expire_seconds(expiry.absolute, expiry.sliding)
            .map_or(-1, |s| i64::try_from(s).unwrap_or(i64::MAX));
        let mut c = self.conn().await?;
        let mut inv = self.cas.key(key);
        inv.arg(if expected.is_some() { "1" } else { "0" })
            .arg(expected.unwrap_or_default())
            .arg(if new.is_some() { "1" } else { "0" })
            .arg(new.unwrap_or_default())
            .arg(self.layouts.layout.as_str())
            .arg(ms)
            .arg(absexp)
            .arg(sldexp)
            .arg(expire);
        let done: i64 = c.script(&inv).await.map_err(|e| self.err(&e))?;
        Ok(done == 1)
    }

    async fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> StoreResult<bool> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value).arg("NX");
        if let Some(t) = ttl {
            cmd.arg("PX").arg(ttl_millis(t));
        }
        // OK when written, nil when the key exists.
        let written: Option<String> = self.query(cmd).await?;
        Ok(written.is_some())
    }

    async fn touch(&self, key: &str, ttl: Duration) -> StoreResult<bool> {
        let mut c = self.conn().await?;
        let mut inv = self.layouts.touch.key(key);
        inv.arg(ttl_millis(ttl));
        let n: i64 = c.script(&inv).await.map_err(|e| self.err(&e))?;
        Ok(n == 1)
    }

    async fn digest(&self, key: &str) -> StoreResult<Option<ValueDigest>> {
        let mut c = self.conn().await?;
        let inv = self.layouts.digest.key(key);
        let hex: Option<Vec<u8>> = c.script(&inv).await.map_err(|e| self.err(&e))?;
        match hex {
            None => Ok(None),
            Some(h) => ValueDigest::from_hex(&h).map(Some).ok_or_else(|| {
                StoreError::new(
                    StoreErrorKind::BadData,
                    &self.endpoint,
                    "unexpected reply to the digest script",
                )
            }),
        }
    }

    async fn remove(&self, key: &str) -> StoreResult<bool> {
        let n: i64 = self.query(redis::cmd("DEL").arg(key).clone()).await?;
        Ok(n > 0)
    }

    async fn remove_many(&self, keys: &[String]) -> StoreResult<u64> {
        if keys.is_empty() {
            return Ok(0);
        }
        let conn = self.conn().await?;
        // One DEL per hash slot: valid in Cluster, and in standalone just chunks.
        let groups: Vec<Vec<&String>> = match &conn {
            Conn::Standalone(_) => keys.chunks(DEL_CHUNK).map(|c| c.iter().collect()).collect(),
            Conn::Cluster(_) => {
                let mut by_slot: BTreeMap<u16, Vec<&String>> = BTreeMap::new();
                for k in keys {
                    by_slot.entry(key_slot(k)).or_default().push(k);
                }
                by_slot.into_values().collect()
            }
        };
        let cmds: Vec<redis::Cmd> = groups
            .into_iter()
            .map(|group| {
                let mut cmd = redis::cmd("DEL");
                for k in group {
                    cmd.arg(k.as_str());
                }
                cmd
            })
            .collect();
        let counts: Vec<i64> = stream::iter(cmds)
            .map(|cmd| {
                let mut c = conn.clone();
                async move { c.query::<i64>(&cmd).await }
            })
            .buffer_unordered(DEL_CONCURRENCY)
            .try_collect()
            .await
            .map_err(|e| self.err(&e))?;
        Ok(counts.into_iter().map(|n| n.max(0) as u64).sum())
    }

    async fn link_add(
        &self,
        set_key: &str,
        member: &str,
        ttl: Option<Duration>,
    ) -> StoreResult<()> {
        let want: i64 = ttl.map_or(-1, |t| i64::try_from(ttl_millis(t)).unwrap_or(i64::MAX));
        let mut c = self.conn().await?;
        let mut inv = self.link_add.key(set_key);
        inv.arg(member).arg(want);
        let _: i64 = c.script(&inv).await.map_err(|e| self.err(&e))?;
        Ok(())
    }

    async fn link_members(&self, set_key: &str) -> StoreResult<Vec<String>> {
        let mut c = self.conn().await?;
        let inv = self.link_members.key(set_key);
        c.script(&inv).await.map_err(|e| self.err(&e))
    }

    async fn link_remove(&self, set_key: &str, members: &[String]) -> StoreResult<()> {
        if members.is_empty() {
            return Ok(());
        }
        let mut c = self.conn().await?;
        let mut inv = self.link_remove.key(set_key);
        inv.arg(members);
        let _: i64 = c.script(&inv).await.map_err(|e| self.err(&e))?;
        Ok(())
    }

    async fn time_ms(&self) -> StoreResult<Option<u64>> {
        // [seconds, microseconds], as strings
        let (secs, micros): (u64, u64) = self.query(redis::cmd("TIME")).await?;
        Ok(Some(
            secs.saturating_mul(1000).saturating_add(micros / 1000),
        ))
    }

    async fn write_stamp(&self, key: &str, at: StampAt, ttl: Option<Duration>) -> StoreResult<i64> {
        let mut c = self.conn().await?;
        let mut inv = self.write_stamp.key(key);
        match at {
            StampAt::StoreClock { .. } => inv.arg(""),
            StampAt::Instant(ms) => inv.arg(ms),
        };
        inv.arg(stamp::ttl_arg(ttl));
        c.script(&inv).await.map_err(|e| self.err(&e))
    }

    async fn health(&self) -> StoreResult<()> {
        let pong: String = self.query(redis::cmd("PING")).await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(StoreError::new(
                StoreErrorKind::BadData,
                &self.endpoint,
                "unexpected PING reply",
            ))
        }
    }

    /// `SCAN cursor MATCH prefix* COUNT count`. In Cluster, the masters (sorted by
    /// address, from `CLUSTER SLOTS`) are scanned one after the other; the returned
    /// cursor carries the master's index in its top 8 bits and that master's own
    /// cursor in the low 56. A topology change during a scan may skip or repeat keys
    /// (as `SCAN` itself may repeat them). Pages may be empty with a non-zero cursor.
    async fn scan(
        &self,
        prefix: &str,
        cursor: u64,
        count: usize,
    ) -> StoreResult<(u64, Vec<String>)> {
        let pattern = glob_escape(prefix);
        let count = count.max(1);
        let scan_cmd = |c: u64| {
            redis::cmd("SCAN")
                .arg(c)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(count)
                .clone()
        };
        let mut conn = self.conn().await?;
        let cluster = match &conn {
            Conn::Cluster(c) => Some(c.clone()),
            Conn::Standalone(_) => None,
        };
        match cluster {
            None => conn
                .query(&scan_cmd(cursor))
                .await
                .map_err(|e| self.err(&e)),
            Some(mut c) => {
                let masters = self.masters(&mut c).await?;
                let index = (cursor >> NODE_CURSOR_BITS) as usize;
                let node_cursor = cursor & ((1u64 << NODE_CURSOR_BITS) - 1);
                let Some((host, port)) = masters.get(index).cloned() else {
                    return Err(StoreError::new(
                        StoreErrorKind::BadData,
                        &self.endpoint,
                        format!("scan cursor {cursor} names no cluster master; start again at 0"),
                    ));
                };
                let reply = c
                    .route_command(
                        scan_cmd(node_cursor),
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port }),
                    )
                    .await
                    .map_err(|e| self.err(&e))?;
                let (next, keys): (u64, Vec<String>) =
                    redis::from_redis_value(reply).map_err(|e| self.err(&RedisError::from(e)))?;
                if next >> NODE_CURSOR_BITS != 0 {
                    return Err(StoreError::new(
                        StoreErrorKind::BadData,
                        &self.endpoint,
                        "a master's scan cursor does not fit in 56 bits",
                    ));
                }
                let next = if next != 0 {
                    ((index as u64) << NODE_CURSOR_BITS) | next
                } else if index + 1 < masters.len() {
                    ((index as u64) + 1) << NODE_CURSOR_BITS
                } else {
                    0
                };
                Ok((next, keys))
            }
        }
    }

    fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    fn backplane(&self) -> Option<SharedBackplane> {
        Some(self.backplane.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis() {
        // Values from `CLUSTER KEYSLOT`.
        assert_eq!(key_slot("foo"), 12182);
        assert_eq!(key_slot("bar"), 5061);
        assert_eq!(key_slot("{user1000}.following"), key_slot("user1000"));
        assert_eq!(key_slot("tc:links:{o.t}"), key_slot("o.t"));
        // An empty tag hashes the whole key.
        assert_eq!(key_slot("a{}b"), slots::crc16(b"a{}b") % 16384);
    }

    #[test]
    fn glob_is_escaped() {
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\*");
        assert_eq!(glob_escape(""), "*");
    }

    #[test]
    fn endpoint_has_no_password() {
        let s = RedisStore::standalone(
            "redis://user:hunter2@127.0.0.1:1/0",
            RedisOptions::default(),
        )
        .unwrap();
        assert_eq!(s.endpoint(), "127.0.0.1:1");
        assert!(!format!("{s:?}").contains("hunter2"));
        let c = RedisStore::cluster(
            &[
                "redis://:hunter2@h1:7000".into(),
                "redis://:hunter2@h2:7001".into(),
            ],
            RedisOptions::default(),
        )
        .unwrap();
        assert_eq!(c.endpoint(), "h1:7000,h2:7001");
        assert!(c.is_cluster());
        let e = RedisStore::standalone("http://x", RedisOptions::default()).unwrap_err();
        assert_eq!(e.kind, StoreErrorKind::Config);
    }
}
