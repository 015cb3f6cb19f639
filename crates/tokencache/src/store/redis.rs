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
//! Commands: `get` = pipeline `GET` + `PTTL` (one round trip); `get_and_touch` =
//! `GETEX PX`; `set` = `SET [PX]`; `touch` = `PEXPIRE`; `remove_many` = one `DEL` per
//! hash slot (sent concurrently in Cluster, never a cross-slot `DEL`); link sets are
//! Redis sets (`SADD` plus a Lua script that only ever lengthens the TTL, `SMEMBERS`,
//! `SREM`); `scan` = `SCAN MATCH prefix* COUNT`, on every master in Cluster (see
//! [`RedisStore::scan`](Store::scan) below); `health` = `PING`.
//!
//! Errors: I/O, refused or dropped connections → `Connection`; timeouts → `Timeout`;
//! server error replies (`NOAUTH`, `WRONGPASS`, `OOM`, `WRONGTYPE`, exhausted
//! redirections) → `Server`; unparsable replies → `BadData`. Messages never hold a
//! password, and [`Store::endpoint`] is the `host:port` list only.

use super::util::ttl_millis;
use super::{Store, StoreError, StoreErrorKind, StoreResult, StoreValue};
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
use std::sync::Mutex;
use std::time::Duration;

/// Sets the link set's TTL only if that lengthens it (a new set takes the TTL; a set
/// without expiry keeps none; ARGV[2] < 0 means "no expiry").
const LINK_ADD_LUA: &str = r#"
local existed = redis.call('EXISTS', KEYS[1])
redis.call('SADD', KEYS[1], ARGV[1])
local want = tonumber(ARGV[2])
if want < 0 then
  redis.call('PERSIST', KEYS[1])
elseif existed == 0 then
  redis.call('PEXPIRE', KEYS[1], want)
else
  local cur = redis.call('PTTL', KEYS[1])
  if cur >= 0 and cur < want then
    redis.call('PEXPIRE', KEYS[1], want)
  end
end
return 1
"#;

/// Compare-and-set of one string key: `SET` (with `PX` unless ARGV[3] < 0) only if the
/// current value is ARGV[1]. A missing key or a link set (another type) is "not equal".
const SET_IF_EQUAL_LUA: &str = r#"
local cur = redis.pcall('GET', KEYS[1])
if type(cur) ~= 'string' or cur ~= ARGV[1] then
  return 0
end
local ttl = tonumber(ARGV[3])
if ttl < 0 then
  redis.call('SET', KEYS[1], ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
end
return 1
"#;

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
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(2),
            cluster_retries: 2,
            tls_ca_pem: None,
        }
    }
}

type ConnectFuture<C> = Shared<BoxFuture<'static, RedisResult<C>>>;

enum Slot<C> {
    Empty,
    Connecting(ConnectFuture<C>),
    Ready(C),
}

/// A connection made on first use, shared afterwards; a failed attempt is forgotten
/// so that the next use tries again. The mutex is never held across an await.
struct Lazy<C: Clone + Send + Sync + 'static> {
    slot: Mutex<Slot<C>>,
    connect: Box<dyn Fn() -> BoxFuture<'static, RedisResult<C>> + Send + Sync>,
}

impl<C: Clone + Send + Sync + 'static> Lazy<C> {
    fn new(
        connect: impl Fn() -> BoxFuture<'static, RedisResult<C>> + Send + Sync + 'static,
    ) -> Self {
        Self {
            slot: Mutex::new(Slot::Empty),
            connect: Box::new(connect),
        }
    }

    async fn get(&self) -> RedisResult<C> {
        let fut = {
            let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
            match &*slot {
                Slot::Ready(c) => return Ok(c.clone()),
                Slot::Connecting(f) => f.clone(),
                Slot::Empty => {
                    let f = (self.connect)().shared();
                    *slot = Slot::Connecting(f.clone());
                    f
                }
            }
        };
        let res = fut.clone().await;
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Slot::Connecting(current) = &*slot {
            if current.ptr_eq(&fut) {
                *slot = match &res {
                    Ok(c) => Slot::Ready(c.clone()),
                    Err(_) => Slot::Empty,
                };
            }
        }
        res
    }

    /// Forgets the connection (after an authentication failure: connect afresh).
    fn reset(&self) {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        if matches!(&*slot, Slot::Ready(_)) {
            *slot = Slot::Empty;
        }
    }

    fn is_connected(&self) -> bool {
        matches!(
            &*self.slot.lock().unwrap_or_else(|e| e.into_inner()),
            Slot::Ready(_)
        )
    }
}

enum Backend {
    Standalone(Lazy<ConnectionManager>),
    Cluster(Lazy<ClusterConnection>),
}

/// A connection of either kind, for one call.
#[derive(Clone)]
enum Conn {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    async fn query<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> RedisResult<T> {
        match self {
            Conn::Standalone(c) => cmd.query_async(c).await,
            Conn::Cluster(c) => cmd.query_async(c).await,
        }
    }

    async fn query_pipe<T: redis::FromRedisValue>(
        &mut self,
        p: &redis::Pipeline,
    ) -> RedisResult<T> {
        match self {
            Conn::Standalone(c) => p.query_async(c).await,
            Conn::Cluster(c) => p.query_async(c).await,
        }
    }

    async fn script(&mut self, inv: &redis::ScriptInvocation<'_>) -> RedisResult<i64> {
        match self {
            Conn::Standalone(c) => inv.invoke_async(c).await,
            Conn::Cluster(c) => inv.invoke_async(c).await,
        }
    }
}

/// An L2 store on Redis, standalone or Cluster. Cheap to share behind an `Arc`.
pub struct RedisStore {
    backend: Backend,
    endpoint: String,
    link_add: redis::Script,
    set_if_equal: redis::Script,
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
            .finish()
    }
}

/// `host:port` (or the socket path) of a connection address, without credentials.
fn addr_string(addr: &ConnectionAddr) -> String {
    match addr {
        ConnectionAddr::Tcp(h, p) => format!("{h}:{p}"),
        ConnectionAddr::TcpTls { host, port, .. } => format!("{host}:{port}"),
        ConnectionAddr::Unix(path) => path.display().to_string(),
        other => format!("{other:?}"),
    }
}

/// Makes sure rustls has a process-wide crypto provider before a `rediss://`
/// connection is built (redis-rs uses `ClientConfig::builder()`, which panics without
/// one). Installs *ring* unless the application installed another provider first.
fn ensure_tls_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: a provider is then in place.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

fn is_tls(addr: &ConnectionAddr) -> bool {
    matches!(addr, ConnectionAddr::TcpTls { .. })
}

fn config_error(endpoint: &str, e: &RedisError) -> StoreError {
    StoreError::new(
        StoreErrorKind::Config,
        endpoint,
        format!("invalid Redis configuration: {e}"),
    )
}

/// Maps a redis-rs error to the store's error kinds (see the module docs).
pub(crate) fn map_error(endpoint: &str, e: &RedisError) -> StoreError {
    let kind = if e.is_timeout() {
        StoreErrorKind::Timeout
    } else {
        match e.kind() {
            ErrorKind::Io | ErrorKind::ClusterConnectionNotFound => StoreErrorKind::Connection,
            ErrorKind::Parse | ErrorKind::UnexpectedReturnType => StoreErrorKind::BadData,
            ErrorKind::InvalidClientConfig => StoreErrorKind::Config,
            ErrorKind::Client if e.is_connection_dropped() || e.is_connection_refusal() => {
                StoreErrorKind::Connection
            }
            _ => StoreErrorKind::Server,
        }
    };
    let message = if e.kind() == ErrorKind::AuthenticationFailed {
        format!("authentication failed (check the user name and password of the Redis URL): {e}")
    } else {
        e.to_string()
    };
    StoreError::new(kind, endpoint, message)
}

/// Escapes the glob characters of a key prefix for `SCAN MATCH`.
fn glob_escape(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('*');
    out
}

/// The Redis Cluster hash slot of a key (CRC16/XMODEM of the key or its `{hash tag}`).
pub fn key_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let hashed = match bytes.iter().position(|&b| b == b'{') {
        Some(open) => match bytes[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &bytes[open + 1..open + 1 + len],
            _ => bytes,
        },
        None => bytes,
    };
    crc16(hashed) % 16384
}

fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
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
        let lazy = Lazy::new(move || {
            let client = client.clone();
            let config = config.clone();
            async move { ConnectionManager::new_with_config(client, config).await }.boxed()
        });
        Ok(Self {
            backend: Backend::Standalone(lazy),
            endpoint,
            link_add: redis::Script::new(LINK_ADD_LUA),
            set_if_equal: redis::Script::new(SET_IF_EQUAL_LUA),
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
            endpoint,
            link_add: redis::Script::new(LINK_ADD_LUA),
            set_if_equal: redis::Script::new(SET_IF_EQUAL_LUA),
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

#[async_trait]
impl Store for RedisStore {
    async fn get(&self, key: &str) -> StoreResult<Option<StoreValue>> {
        let mut c = self.conn().await?;
        let mut p = redis::pipe();
        p.cmd("GET").arg(key).cmd("PTTL").arg(key);
        let (bytes, pttl): (Option<Vec<u8>>, i64) =
            c.query_pipe(&p).await.map_err(|e| self.err(&e))?;
        Ok(match (bytes, pttl) {
            (None, _) => None,
            // Expired between GET and PTTL: never return an expired entry.
            (Some(_), -2) => None,
            (Some(bytes), -1) => Some(StoreValue { bytes, ttl: None }),
            (Some(bytes), ms) => Some(StoreValue {
                bytes,
                ttl: Some(Duration::from_millis(ms.max(0) as u64)),
            }),
        })
    }

    async fn get_and_touch(&self, key: &str, ttl: Duration) -> StoreResult<Option<StoreValue>> {
        let ms = ttl_millis(ttl);
        let bytes: Option<Vec<u8>> = self
            .query(redis::cmd("GETEX").arg(key).arg("PX").arg(ms).clone())
            .await?;
        Ok(bytes.map(|bytes| StoreValue {
            bytes,
            ttl: Some(Duration::from_millis(ms)),
        }))
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> StoreResult<()> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value);
        if let Some(t) = ttl {
            cmd.arg("PX").arg(ttl_millis(t));
        }
        let _: () = self.query(cmd).await?;
        Ok(())
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

    async fn set_if_equal(
        &self,
        key: &str,
        expected: &[u8],
        new: &[u8],
        ttl: Option<Duration>,
    ) -> StoreResult<bool> {
        let px: i64 = ttl.map_or(-1, |t| i64::try_from(ttl_millis(t)).unwrap_or(i64::MAX));
        let mut c = self.conn().await?;
        let mut inv = self.set_if_equal.key(key);
        inv.arg(expected).arg(new).arg(px);
        let written = c.script(&inv).await.map_err(|e| self.err(&e))?;
        Ok(written == 1)
    }

    async fn touch(&self, key: &str, ttl: Duration) -> StoreResult<bool> {
        let n: i64 = self
            .query(redis::cmd("PEXPIRE").arg(key).arg(ttl_millis(ttl)).clone())
            .await?;
        Ok(n == 1)
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
        c.script(&inv).await.map_err(|e| self.err(&e))?;
        Ok(())
    }

    async fn link_members(&self, set_key: &str) -> StoreResult<Vec<String>> {
        self.query(redis::cmd("SMEMBERS").arg(set_key).clone())
            .await
    }

    async fn link_remove(&self, set_key: &str, members: &[String]) -> StoreResult<()> {
        if members.is_empty() {
            return Ok(());
        }
        let _: i64 = self
            .query(redis::cmd("SREM").arg(set_key).arg(members).clone())
            .await?;
        Ok(())
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
        assert_eq!(key_slot("a{}b"), crc16(b"a{}b") % 16384);
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
