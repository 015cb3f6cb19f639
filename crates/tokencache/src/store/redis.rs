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
use super::redis_scripts::{
    link_script, CAS_LUA, LINK_ADD_BODY, LINK_MEMBERS_BODY, LINK_REMOVE_BODY,
};
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

    async fn pipeline<T: redis::FromRedisValue>(
        &mut self,
        pipe: &redis::Pipeline,
    ) -> RedisResult<T> {
        match self {
            Conn::Standalone(c) => pipe.query_async(c).await,
            Conn::Cluster(c) => pipe.query_async(c).await,
        }
    }

    async fn script<T: redis::FromRedisValue>(
        &mut self,
        inv: &redis::ScriptInvocation<'_>,
    ) -> RedisResult<T> {
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
    link_members: redis::Script,
    link_remove: redis::Script,
    cas: redis::Script,
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
    } else if e.kind() == ErrorKind::Parse {
        // Something answered, but not in the Redis protocol (an HTTP or SSH server, a
        // TLS port without rediss://): say that, not the parser's multi-line story.
        "did not answer as Redis (its reply is not the Redis protocol; check the host, the port and redis:// vs rediss://)".to_string()
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
impl RedisStore {
    /// The layout this store writes new keys in.
    pub fn layout(&self) -> StoreLayout {
        self.layouts.layout
    }

    /// [`Store::get_along`]. Standalone: `GET`+`PTTL` of `key` (or `GETEX PX` with
    /// `touch`) and `GET` of `also`, pipelined (one round trip, no Lua); when either key
    /// holds another type (a .NET hash), the read script of both keys in one call. A
    /// Cluster: the keys are in different slots, so two reads sent together.
    async fn read_along(
        &self,
        key: &str,
        touch: Option<Duration>,
        also: &str,
    ) -> StoreResult<(Option<StoreValue>, Option<Vec<u8>>)> {
        if self.is_cluster() {
            return super::get_apart(self, key, touch, also).await;
        }
        if let Some(both) = self.read_strings(key, touch, Some(also)).await? {
            return Ok(both);
        }
        let fraction = if touch.is_some() {
            "0"
        } else {
            dotnet::READ_REFRESH_FRACTION
        };
        let want: i64 = touch.map_or(-1, |t| i64::try_from(ttl_millis(t)).unwrap_or(i64::MAX));
        let mut c = self.conn().await?;
        let mut inv = self.layouts.read_along.key(key);
        inv.key(also).arg(want).arg(fraction);
        let reply: Value = c.script(&inv).await.map_err(|e| self.err(&e))?;
        let bad = || {
            StoreError::new(
                StoreErrorKind::BadData,
                &self.endpoint,
                "unexpected reply to the read script",
            )
        };
        let Value::Array(mut both) = reply else {
            return Err(bad());
        };
        if both.len() != 2 {
            return Err(bad());
        }
        let second = both.pop().ok_or_else(bad)?;
        let first = both.pop().ok_or_else(bad)?;
        let parse = |v| {
            self.parse_read(v)
                .map_err(|(kind, message)| StoreError::new(kind, &self.endpoint, message))
        };
        let value = parse(first)?.map(|(v, _)| v);
        let other = parse(second)?.map(|(v, _)| v.bytes);
        Ok((value, other))
    }

    /// Reads `key` as a string or a .NET hash. `string_ttl`: a TTL to give a string
    /// entry (`GETEX`); a hash follows its own fields, re-armed when it has run down by
    /// `refresh_fraction` of its window.
    async fn read_any(
        &self,
        key: &str,
        string_ttl: Option<Duration>,
        refresh_fraction: &str,
    ) -> StoreResult<Option<(StoreValue, ValueLayout)>> {
        let want: i64 = string_ttl.map_or(-1, |t| i64::try_from(ttl_millis(t)).unwrap_or(i64::MAX));
        let mut c = self.conn().await?;
        let mut inv = self.layouts.read.key(key);
        inv.arg(want).arg(refresh_fraction);
        let reply: Value = c.script(&inv).await.map_err(|e| self.err(&e))?;
        self.parse_read(reply)
            .map_err(|(kind, message)| StoreError::new(kind, &self.endpoint, message))
    }

    /// The fast read of a string entry, without the script: `GET` and `PTTL` pipelined
    /// (one round trip), or `GETEX PX` when `string_ttl` is to be set (the TTL is then
    /// the one set, as the script reports it); with `also`, a `GET` of that key in the
    /// same pipeline. A Lua call costs the server more than the read itself (on
    /// loopback a `GET` of a 7 KB value took 13 µs, the read script 32 µs, `GET` +
    /// `PTTL` pipelined 14 µs). `Ok(None)`: a key holds another type (a .NET hash, a
    /// link set), which [`read_any`](Self::read_any) reads.
    ///
    /// `GET` and `PTTL` are two commands: between them the key may be removed (then
    /// `PTTL` says -2 and this is a miss, as it would be a moment later) or rewritten (then
    /// the TTL is the new value's, which only bounds how long L1 keeps the old one; the
    /// writer's backplane message drops it anyway).
    async fn read_strings(
        &self,
        key: &str,
        string_ttl: Option<Duration>,
        also: Option<&str>,
    ) -> StoreResult<Option<(Option<StoreValue>, Option<Vec<u8>>)>> {
        let mut c = self.conn().await?;
        let bad = |m: &str| StoreError::new(StoreErrorKind::BadData, &self.endpoint, m);
        let touch_ms = string_ttl.map(|t| i64::try_from(ttl_millis(t)).unwrap_or(i64::MAX));
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        match touch_ms {
            Some(ms) => pipe.cmd("GETEX").arg(key).arg("PX").arg(ms),
            None => pipe.cmd("GET").arg(key).cmd("PTTL").arg(key),
        };
        if let Some(other) = also {
            pipe.cmd("GET").arg(other);
        }
        let replies: Vec<Value> = c.pipeline(&pipe).await.map_err(|e| self.err(&e))?;
        let expected = 1 + usize::from(touch_ms.is_none()) + usize::from(also.is_some());
        if replies.len() != expected {
            return Err(bad("unexpected reply to the read pipeline"));
        }
        let wrong_type = |v: &Value| matches!(v, Value::ServerError(e) if e.code() == "WRONGTYPE");
        if replies.iter().any(wrong_type) {
            return Ok(None);
        }
        let mut replies = replies.into_iter();
        let bulk = |v: Option<Value>| match v {
            Some(Value::Nil) => Ok(None),
            Some(Value::BulkString(b)) => Ok(Some(b)),
            Some(Value::ServerError(e)) => Err(self.err(&e.into())),
            _ => Err(bad("unexpected reply to GET")),
        };
        let bytes = bulk(replies.next())?;
        // `None`: removed since the GET.
        let ttl = match touch_ms {
            Some(ms) => Some(Some(Duration::from_millis(ms as u64))),
            None => match replies.next() {
                Some(Value::Int(-2)) => None,
                Some(Value::Int(-1)) => Some(None),
                Some(Value::Int(ms)) if ms >= 0 => Some(Some(Duration::from_millis(ms as u64))),
                Some(Value::ServerError(e)) => return Err(self.err(&e.into())),
                _ => return Err(bad("unexpected reply to PTTL")),
            },
        };
        let other = if also.is_some() {
            bulk(replies.next())?
        } else {
            None
        };
        let value = bytes.and_then(|bytes| ttl.map(|ttl| StoreValue { bytes, ttl }));
        Ok(Some((value, other)))
    }

    /// The read script's reply. A key of another type (a link set, another
    /// application's list) is a `Server` error saying `WRONGTYPE`, as `GET` says.
    fn parse_read(
        &self,
        reply: Value,
    ) -> Result<Option<(StoreValue, ValueLayout)>, (StoreErrorKind, String)> {
        let bad = |m: &str| (StoreErrorKind::BadData, m.to_string());
        let Value::Array(items) = reply else {
            return Err(bad("unexpected reply to the read script"));
        };
        let text = |i: usize| -> Option<&[u8]> {
            match items.get(i) {
                Some(Value::BulkString(b)) => Some(b.as_slice()),
                Some(Value::SimpleString(s)) => Some(s.as_bytes()),
                _ => None,
            }
        };
        let int = |i: usize| -> Option<i64> {
            match items.get(i) {
                Some(Value::Int(n)) => Some(*n),
                _ => None,
            }
        };
        let ttl =
            |pttl: Option<i64>| -> Result<Option<Option<Duration>>, (StoreErrorKind, String)> {
                match pttl {
                    // expired between the commands of the script: never (they are atomic)
                    Some(-2) => Ok(None),
                    Some(-1) => Ok(Some(None)),
                    Some(ms) if ms >= 0 => Ok(Some(Some(Duration::from_millis(ms as u64)))),
                    _ => Err(bad("unexpected TTL in the read script's reply")),
                }
            };
        let kind = text(0).ok_or_else(|| bad("unexpected reply to the read script"))?;
        match kind {
            b"none" | b"expired" => Ok(None),
            b"string" => {
                let Some(bytes) = text(1) else {
                    return Ok(None);
                };
                let bytes = bytes.to_vec();
                Ok(ttl(int(2))?.map(|ttl| (StoreValue { bytes, ttl }, ValueLayout::String)))
            }
            b"hash" => {
                let Some(bytes) = text(1) else {
                    // .NET reads it as a miss; it is no cache entry, and nothing of ours.
                    return Err(bad(dotnet::NOT_A_DOTNET_ENTRY));
                };
                let bytes = bytes.to_vec();
                let absolute_ticks = dotnet::parse_ticks(text(3)).map_err(|e| bad(&e.message))?;
                let sliding = dotnet::parse_ticks(text(4))
                    .map_err(|e| bad(&e.message))?
                    .map(dotnet::ticks_duration);
                let layout = ValueLayout::DotNet {
                    absolute_ticks,
                    sliding,
                };
                Ok(ttl(int(2))?.map(|ttl| (StoreValue { bytes, ttl }, layout)))
            }
            other => Err((
                StoreErrorKind::Server,
                format!(
                    "WRONGTYPE: the key holds a Redis {}, neither a string nor a .NET cache hash",
                    String::from_utf8_lossy(other)
                ),
            )),
        }
    }

    /// Writes `key` in the layout it has, or in the configured one when it is new.
    async fn write_any(&self, key: &str, value: &[u8], expiry: EntryExpiry) -> StoreResult<()> {
        let ms = |d: Option<Duration>| -> i64 {
            d.map_or(-1, |t| i64::try_from(ttl_millis(t)).unwrap_or(i64::MAX))
        };
        let now = std::time::SystemTime::now();
        let absexp = expiry.absolute.map_or(-1, |a| dotnet::ticks_of(now + a));
        let sldexp = expiry.sliding.map_or(-1, dotnet::duration_ticks);
        let expire = dotnet::expire_seconds(expiry.absolute, expiry.sliding)
            .map_or(-1, |s| i64::try_from(s).unwrap_or(i64::MAX));
        let mut c = self.conn().await?;
        let mut inv = self.layouts.write.key(key);
        inv.arg(self.layouts.layout.as_str())
            .arg(value)
            .arg(ms(expiry.ttl()))
            .arg(absexp)
            .arg(sldexp)
            .arg(expire);
        let _: String = c.script(&inv).await.map_err(|e| self.err(&e))?;
        Ok(())
    }
}

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
