//! Connections: made on first use and shared (a failed attempt is forgotten, so the
//! next call tries again; a refused configuration is remembered for a while, so a
//! misconfigured server is not reconnected to on every call), standalone, Sentinel or
//! Cluster; redis-rs errors mapped to the store's error kinds, in one line that says
//! what to do.
//!
//! Standalone and Sentinel connections (and every pub/sub connection) are made by a
//! [`Connector`]: TCP, TLS ([`super::tls`]), redis-rs's set-up (AUTH, SELECT), then
//! `HELLO` to learn what the server is and check tokencache's requirements
//! ([`super::server`]). A Sentinel connector first asks the Sentinels for the master's
//! address ([`super::sentinel`]), so every new connection goes to the current master.

use super::server::{self, Expect, ServerInfo};
use super::tls::{self, TlsSetup};
use super::*;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisConnectionInfo};
use std::time::Instant;

pub(super) type ConnectFuture<C> = Shared<BoxFuture<'static, StoreResult<C>>>;

/// How long a write behind Sentinels waits for a replica to confirm it.
pub(super) const CONFIRM_WITHIN: Duration = Duration::from_millis(100);

/// How long a refused configuration (a server too old, a URL of the wrong mode, a TLS
/// certificate refused) is remembered before the next attempt to connect.
const REFUSED_FOR: Duration = Duration::from_secs(10);

pub(super) enum Slot<C> {
    Empty,
    Connecting(ConnectFuture<C>),
    Ready(C, u64),
    Refused(StoreError, Instant),
}

/// A connection made on first use, shared afterwards; a failed attempt is forgotten
/// so that the next use tries again, except a `Config` failure, which is returned at
/// once for [`REFUSED_FOR`]. The mutex is never held across an await.
pub(super) struct Lazy<C: Clone + Send + Sync + 'static> {
    slot: Mutex<Slot<C>>,
    generation: std::sync::atomic::AtomicU64,
    connect: Box<dyn Fn() -> BoxFuture<'static, StoreResult<C>> + Send + Sync>,
}

impl<C: Clone + Send + Sync + 'static> Lazy<C> {
    pub(super) fn new(
        connect: impl Fn() -> BoxFuture<'static, StoreResult<C>> + Send + Sync + 'static,
    ) -> Self {
        Self {
            slot: Mutex::new(Slot::Empty),
            generation: std::sync::atomic::AtomicU64::new(0),
            connect: Box::new(connect),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slot<C>> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The connection and its generation (see [`reset`](Self::reset)).
    pub(super) async fn get(&self) -> StoreResult<(C, u64)> {
        let fut = {
            let mut slot = self.lock();
            match &*slot {
                Slot::Ready(c, g) => return Ok((c.clone(), *g)),
                Slot::Refused(e, at) if at.elapsed() < REFUSED_FOR => return Err(e.clone()),
                Slot::Connecting(f) => f.clone(),
                Slot::Empty | Slot::Refused(..) => {
                    let f = (self.connect)().shared();
                    *slot = Slot::Connecting(f.clone());
                    f
                }
            }
        };
        let res = fut.clone().await;
        let mut slot = self.lock();
        let generation = match &*slot {
            Slot::Connecting(current) if current.ptr_eq(&fut) => {
                let g = self
                    .generation
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    + 1;
                *slot = match &res {
                    Ok(c) => Slot::Ready(c.clone(), g),
                    Err(e) if e.kind == StoreErrorKind::Config => {
                        Slot::Refused(e.clone(), Instant::now())
                    }
                    Err(_) => Slot::Empty,
                };
                g
            }
            Slot::Ready(_, g) => *g,
            _ => 0,
        };
        res.map(|c| (c, generation))
    }

    /// Forgets the connection of `generation` (`None`: whichever is there), so that the
    /// next call connects afresh; a newer connection is kept.
    pub(super) fn reset(&self, generation: Option<u64>) {
        let mut slot = self.lock();
        if let Slot::Ready(_, g) = &*slot {
            if generation.is_none_or(|want| want == *g) {
                *slot = Slot::Empty;
            }
        }
    }

    pub(super) fn is_connected(&self) -> bool {
        matches!(&*self.lock(), Slot::Ready(..))
    }
}

/// A standalone or Sentinel-found server: one multiplexed connection, made by its
/// [`Connector`], replaced when it breaks (and, behind Sentinels, when the server
/// stopped being the master: `READONLY`, or a timeout).
pub(super) struct Single {
    pub(super) lazy: Lazy<Connected>,
    pub(super) connector: Arc<Connector>,
}

impl Single {
    /// After a failed command on the connection of `generation`: drop it if it cannot
    /// serve again, so that the next call connects (and asks the Sentinels) anew.
    pub(super) fn after_error(&self, e: &RedisError, generation: u64) {
        let sentinel = matches!(self.connector.target, Target::Sentinel(_));
        if e.is_unrecoverable_error()
            || e.is_connection_dropped()
            || e.kind() == ErrorKind::AuthenticationFailed
            || e.kind() == ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
            || (sentinel && e.is_timeout())
        {
            self.lazy.reset(Some(generation));
        }
    }
}

pub(super) enum Backend {
    Single(Arc<Single>),
    Cluster(Arc<super::cluster::ClusterBackend>),
}

/// A connection of either kind, for one call.
#[derive(Clone)]
pub(super) enum Conn {
    Single {
        conn: MultiplexedConnection,
        generation: u64,
        owner: Arc<Single>,
        /// Replicas a write must reach (`WAIT`), behind Sentinels.
        replicas: usize,
    },
    Cluster(ClusterConnection),
}

impl Conn {
    fn after<T>(&self, r: RedisResult<T>) -> RedisResult<T> {
        if let (
            Err(e),
            Conn::Single {
                generation, owner, ..
            },
        ) = (&r, self)
        {
            owner.after_error(e, *generation);
        }
        r
    }

    pub(super) async fn query<T: redis::FromRedisValue>(
        &mut self,
        cmd: &redis::Cmd,
    ) -> RedisResult<T> {
        let r = match self {
            Conn::Single { conn, .. } => cmd.query_async(conn).await,
            Conn::Cluster(c) => cmd.query_async(c).await,
        };
        self.after(r)
    }

    pub(super) async fn pipeline<T: redis::FromRedisValue>(
        &mut self,
        pipe: &redis::Pipeline,
    ) -> RedisResult<T> {
        let r = match self {
            Conn::Single { conn, .. } => pipe.query_async(conn).await,
            Conn::Cluster(c) => pipe.query_async(c).await,
        };
        self.after(r)
    }

    /// Behind Sentinels with replicas up: waits until one replica has this
    /// connection's writes (`WAIT 1`, at most [`CONFIRM_WITHIN`]); else a `Connection`
    /// error, and the connection is dropped (a failover may be under way: the write is
    /// then queued and applied to the master that comes out of it).
    pub(super) async fn confirm_write(&mut self, endpoint: &str) -> StoreResult<()> {
        let Conn::Single {
            conn,
            replicas,
            generation,
            owner,
        } = self
        else {
            return Ok(());
        };
        if *replicas == 0 {
            return Ok(());
        }
        let acked: RedisResult<i64> = redis::cmd("WAIT")
            .arg(1)
            .arg(CONFIRM_WITHIN.as_millis() as u64)
            .query_async(conn)
            .await;
        match acked {
            Ok(n) if n >= 1 => Ok(()),
            Ok(_) => {
                owner.lazy.reset(Some(*generation));
                Err(StoreError::new(
                    StoreErrorKind::Connection,
                    endpoint,
                    format!("no replica confirmed the write within {CONFIRM_WITHIN:?} (a failover under way?): it is applied again to the master"),
                ))
            }
            Err(e) => {
                owner.after_error(&e, *generation);
                Err(map_error(endpoint, &e))
            }
        }
    }

    pub(super) async fn script<T: redis::FromRedisValue>(
        &mut self,
        inv: &redis::ScriptInvocation<'_>,
    ) -> RedisResult<T> {
        let r = match self {
            Conn::Single { conn, .. } => inv.invoke_async(conn).await,
            Conn::Cluster(c) => inv.invoke_async(c).await,
        };
        self.after(r)
    }
}

/// Where a [`Connector`] connects.
pub(crate) enum Target {
    /// One server.
    Node {
        /// Host name or IP address.
        host: String,
        /// TCP port.
        port: u16,
    },
    /// The master the Sentinels name.
    Sentinel(Arc<super::sentinel::Sentinels>),
    /// A unix socket.
    Unix(std::path::PathBuf),
}

/// A connection with what the server said it is.
#[derive(Clone)]
pub(crate) struct Connected {
    pub(crate) conn: MultiplexedConnection,
    /// `host:port` of the server it reached.
    pub(crate) endpoint: String,
    /// What `HELLO` (or `INFO server`) said; `None`: neither was allowed.
    pub(crate) info: Option<ServerInfo>,
    /// Behind Sentinels: the failovers seen when it was made (see
    /// [`super::sentinel::Sentinels::epoch`]).
    pub(crate) epoch: u64,
}

/// A stream to a server, plain or TLS.
pub(crate) trait Stream:
    tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send
{
}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

/// Makes connections to one server (or to the master the Sentinels name): TCP, TLS,
/// redis-rs's set-up with the credentials, then the requirements check.
pub(crate) struct Connector {
    pub(crate) target: Target,
    /// User, password, database, protocol: never shown.
    redis: RedisConnectionInfo,
    pub(crate) tls: Option<Arc<TlsSetup>>,
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Duration,
    /// The mode the server must be in (a Cluster's nodes, for the backplane).
    expect: Expect,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("endpoint", &self.endpoint())
            .field("tls", &self.tls)
            .finish()
    }
}

impl Connector {
    pub(crate) fn new(
        target: Target,
        redis: RedisConnectionInfo,
        tls: Option<Arc<TlsSetup>>,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Self {
        let expect = match target {
            Target::Sentinel(_) => Expect::SentinelMaster,
            _ => Expect::Standalone,
        };
        Self {
            target,
            redis,
            tls,
            connect_timeout,
            response_timeout,
            expect,
        }
    }

    /// The same, for a node of a Cluster (the backplane's connections).
    pub(crate) fn in_cluster(mut self) -> Self {
        self.expect = Expect::Cluster;
        self
    }

    /// The same credentials and TLS for another server.
    pub(crate) fn for_node(&self, host: &str, port: u16) -> Connector {
        Connector {
            target: Target::Node {
                host: host.to_string(),
                port,
            },
            redis: self.redis.clone(),
            tls: self.tls.clone(),
            connect_timeout: self.connect_timeout,
            response_timeout: self.response_timeout,
            expect: match self.expect {
                Expect::SentinelMaster => Expect::Standalone,
                other => other,
            },
        }
    }

    /// The same TLS, no credentials: for Sentinels (asked without them first).
    pub(crate) fn anonymous(&self, host: &str, port: u16) -> Connector {
        let mut c = self.for_node(host, port);
        c.redis = RedisConnectionInfo::default().set_skip_set_lib_name();
        c
    }

    /// Where it connects, for logs: `host:port`, or the Sentinels and the master's name.
    pub(crate) fn endpoint(&self) -> String {
        match &self.target {
            Target::Node { host, port } => format!("{host}:{port}"),
            Target::Sentinel(s) => s.endpoint(),
            Target::Unix(path) => path.display().to_string(),
        }
    }

    /// The password, if any: for the Sentinels that demand it. Never log it.
    pub(super) fn password(&self) -> Option<&str> {
        self.redis.password()
    }

    /// The ACL user name, if any (not a secret).
    pub(crate) fn username(&self) -> Option<&str> {
        self.redis.username()
    }

    /// Credentials, database and protocol: never log them.
    pub(super) fn settings(&self) -> &RedisConnectionInfo {
        &self.redis
    }

    /// A TCP connection to `host:port`, in TLS when the connector has TLS; errors say
    /// which problem it is (refused, unresolvable host, untrusted certificate, name
    /// mismatch, TLS/plain mismatch).
    pub(crate) async fn stream(&self, host: &str, port: u16) -> StoreResult<Box<dyn Stream>> {
        let endpoint = format!("{host}:{port}");
        let tcp = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| {
                let message = match e.kind() {
                    std::io::ErrorKind::ConnectionRefused => {
                        format!("connection refused (is Redis listening on {endpoint}?)")
                    }
                    _ if e.to_string().contains("lookup") || e.to_string().contains("resolve") => {
                        format!("cannot resolve the host {host:?}: {e}")
                    }
                    _ => format!("cannot connect: {e}"),
                };
                StoreError::new(StoreErrorKind::Connection, &endpoint, message)
            })?;
        let _ = tcp.set_nodelay(true);
        let Some(tls) = &self.tls else {
            return Ok(Box::new(tcp));
        };
        match tls.handshake(tcp, host).await {
            Ok(s) => Ok(Box::new(s)),
            Err(e) => Err(self.tls_failure(&e, host, port).await),
        }
    }

    /// A failed TLS handshake, in one line.
    async fn tls_failure(&self, e: &std::io::Error, host: &str, port: u16) -> StoreError {
        let endpoint = format!("{host}:{port}");
        let name = self.tls.as_ref().map_or(host, |t| t.name_for(host));
        match tls::rustls_error(e) {
            Some(r) => {
                let mut message = tls::describe(&r, name);
                if matches!(
                    r,
                    rustls::Error::InvalidMessage(_)
                        | rustls::Error::InappropriateMessage { .. }
                        | rustls::Error::InappropriateHandshakeMessage { .. }
                ) && tls::speaks_plain_redis((host, port), self.probe_timeout()).await
                {
                    message = format!("TLS/plain mismatch: {endpoint} serves plain Redis, not TLS: use redis:// (or the server's TLS port)");
                }
                StoreError::new(StoreErrorKind::Config, &endpoint, message)
            }
            None => {
                self.mismatch_or(
                    host,
                    port,
                    StoreError::new(
                        StoreErrorKind::Connection,
                        &endpoint,
                        format!("TLS handshake failed: {e}"),
                    ),
                )
                .await
            }
        }
    }

    fn probe_timeout(&self) -> Duration {
        self.connect_timeout.min(Duration::from_secs(1))
    }

    /// `original`, or a TLS/plain mismatch error when the port speaks the other one.
    async fn mismatch_or(&self, host: &str, port: u16, original: StoreError) -> StoreError {
        let endpoint = format!("{host}:{port}");
        if self.tls.is_some() {
            if tls::speaks_plain_redis((host, port), self.probe_timeout()).await {
                return StoreError::new(
                    StoreErrorKind::Config,
                    &endpoint,
                    format!("TLS/plain mismatch: {endpoint} serves plain Redis, not TLS: use redis:// (or the server's TLS port)"),
                );
            }
        } else if tls::speaks_tls((host, port), self.probe_timeout()).await {
            return StoreError::new(
                StoreErrorKind::Config,
                &endpoint,
                format!("TLS/plain mismatch: {endpoint} serves TLS: use rediss:// (with ?tls_ca_file= for a private CA)"),
            );
        }
        original
    }

    /// Connects to `host:port` (no requirements check): for Sentinels and probes.
    pub(crate) async fn raw(
        &self,
        host: &str,
        port: u16,
        redis: &RedisConnectionInfo,
    ) -> StoreResult<MultiplexedConnection> {
        let endpoint = format!("{host}:{port}");
        let attempt = async {
            let stream = self.stream(host, port).await?;
            let config =
                AsyncConnectionConfig::new().set_response_timeout(Some(self.response_timeout));
            let (conn, driver) = MultiplexedConnection::new_with_config(redis, stream, config)
                .await
                .map_err(|e| map_error(&endpoint, &e))?;
            tokio::spawn(driver);
            Ok::<_, StoreError>(conn)
        };
        match tokio::time::timeout(self.connect_timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::new(
                StoreErrorKind::Timeout,
                &endpoint,
                format!("no connection within {:?}", self.connect_timeout),
            )),
        }
    }

    /// A connection to the server (the master, behind Sentinels), checked: the server
    /// must be Redis or Valkey 6.2 or later and in the URL's mode (see [`server`]).
    pub(crate) async fn connect(&self) -> StoreResult<Connected> {
        let expect = self.expect;
        let (host, port, epoch) = match &self.target {
            Target::Unix(path) => return self.connect_unix(path).await,
            Target::Node { host, port } => (host.clone(), *port, 0),
            Target::Sentinel(s) => {
                s.watch(self);
                let epoch = s.epoch();
                let r = s.master(self).await?;
                (r.addr.0, r.addr.1, epoch)
            }
        };
        let endpoint = format!("{host}:{port}");
        let attempt = async {
            let mut conn = self.raw(&host, port, &self.redis).await?;
            let info = server::ask(&mut conn)
                .await
                .map_err(|e| map_error(&endpoint, &e))?;
            if let Some(i) = &info {
                server::require(i, expect, &endpoint)?;
            }
            Ok::<_, StoreError>(Connected {
                conn,
                endpoint: endpoint.clone(),
                info,
                epoch,
            })
        };
        let result = match tokio::time::timeout(self.connect_timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::new(
                StoreErrorKind::Timeout,
                &endpoint,
                format!("no connection within {:?}", self.connect_timeout),
            )),
        };
        match result {
            // A plain connection to a TLS port is closed (or left hanging) by the
            // server during set-up; a TLS handshake with a plain port may hang: find
            // out whether that is what happened.
            Err(e)
                if matches!(
                    e.kind,
                    StoreErrorKind::Connection | StoreErrorKind::Timeout | StoreErrorKind::BadData
                ) && !e.message.contains("connection refused") =>
            {
                Err(self.mismatch_or(&host, port, e).await)
            }
            other => other,
        }
    }

    /// A connection over a unix socket, checked as [`connect`](Self::connect) does.
    async fn connect_unix(&self, path: &std::path::Path) -> StoreResult<Connected> {
        let endpoint = path.display().to_string();
        let attempt = async {
            let stream = self.unix_stream(path).await?;
            let config =
                AsyncConnectionConfig::new().set_response_timeout(Some(self.response_timeout));
            let (mut conn, driver) =
                MultiplexedConnection::new_with_config(&self.redis, stream, config)
                    .await
                    .map_err(|e| map_error(&endpoint, &e))?;
            tokio::spawn(driver);
            let info = server::ask(&mut conn)
                .await
                .map_err(|e| map_error(&endpoint, &e))?;
            if let Some(i) = &info {
                server::require(i, Expect::Standalone, &endpoint)?;
            }
            Ok::<_, StoreError>(Connected {
                conn,
                endpoint: endpoint.clone(),
                info,
                epoch: 0,
            })
        };
        tokio::time::timeout(self.connect_timeout, attempt)
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::new(
                    StoreErrorKind::Timeout,
                    &endpoint,
                    format!("no connection within {:?}", self.connect_timeout),
                ))
            })
    }

    #[cfg(unix)]
    async fn unix_stream(&self, path: &std::path::Path) -> StoreResult<Box<dyn Stream>> {
        let s = tokio::net::UnixStream::connect(path).await.map_err(|e| {
            StoreError::new(
                StoreErrorKind::Connection,
                path.display().to_string(),
                format!("cannot connect: {e}"),
            )
        })?;
        Ok(Box::new(s))
    }

    #[cfg(not(unix))]
    async fn unix_stream(&self, path: &std::path::Path) -> StoreResult<Box<dyn Stream>> {
        Err(StoreError::new(
            StoreErrorKind::Config,
            path.display().to_string(),
            "unix sockets exist on unix only",
        ))
    }

    /// A pub/sub connection (to the master, behind Sentinels).
    pub(crate) async fn pubsub(&self) -> StoreResult<(redis::aio::PubSub, String)> {
        let (host, port) = match &self.target {
            Target::Unix(path) => {
                let endpoint = path.display().to_string();
                let stream = self.unix_stream(path).await?;
                let p = tokio::time::timeout(
                    self.connect_timeout,
                    redis::aio::PubSub::new(&self.redis, stream),
                )
                .await
                .map_err(|_| {
                    StoreError::new(
                        StoreErrorKind::Timeout,
                        &endpoint,
                        "no pub/sub connection in time",
                    )
                })?
                .map_err(|e| map_error(&endpoint, &e))?;
                return Ok((p, endpoint));
            }
            Target::Node { host, port } => (host.clone(), *port),
            Target::Sentinel(s) => {
                s.watch(self);
                s.master(self).await?.addr
            }
        };
        let endpoint = format!("{host}:{port}");
        let attempt = async {
            let stream = self.stream(&host, port).await?;
            redis::aio::PubSub::new(&self.redis, stream)
                .await
                .map_err(|e| map_error(&endpoint, &e))
        };
        match tokio::time::timeout(self.connect_timeout, attempt).await {
            Ok(r) => r.map(|p| (p, endpoint)),
            Err(_) => Err(StoreError::new(
                StoreErrorKind::Timeout,
                &endpoint,
                format!("no pub/sub connection within {:?}", self.connect_timeout),
            )),
        }
    }
}

/// `host:port` (or the socket path) of a connection address, without credentials.
pub(super) fn addr_string(addr: &ConnectionAddr) -> String {
    match addr {
        ConnectionAddr::Tcp(h, p) => format!("{h}:{p}"),
        ConnectionAddr::TcpTls { host, port, .. } => format!("{host}:{port}"),
        ConnectionAddr::Unix(path) => path.display().to_string(),
        other => format!("{other:?}"),
    }
}

/// Makes sure rustls has a process-wide crypto provider before a TLS connection is
/// built (`ClientConfig::builder()` panics without one). Installs *ring* unless the
/// application installed another provider first.
pub(crate) fn ensure_tls_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: a provider is then in place.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

pub(super) fn is_tls(addr: &ConnectionAddr) -> bool {
    matches!(addr, ConnectionAddr::TcpTls { .. })
}

pub(super) fn config_error(endpoint: &str, e: &RedisError) -> StoreError {
    StoreError::new(
        StoreErrorKind::Config,
        endpoint,
        format!("invalid Redis configuration: {e}"),
    )
}

/// The ACL fix for a `NOPERM` reply, by what it says was refused.
pub(crate) fn noperm_hint(message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    if m.contains("channel") {
        "the Redis ACL user may not use the backplane channel: add &PREFIX* (or &PREFIXtc:backplane) to the user; `tokencache check` shows the rule"
    } else if m.contains("key") {
        "the Redis ACL user may not access this key: add ~PREFIX* to the user; `tokencache check` shows the rule"
    } else {
        "the Redis ACL user may not run a command tokencache needs: `tokencache check` shows the rule to add"
    }
}

/// Maps a redis-rs error to the store's error kinds (see the module docs).
pub(crate) fn map_error(endpoint: &str, e: &RedisError) -> StoreError {
    if let Some(r) = tls::rustls_error(e) {
        let host = endpoint
            .split(',')
            .next()
            .and_then(|h| h.rsplit_once(':').map(|(h, _)| h))
            .unwrap_or(endpoint);
        return StoreError::new(StoreErrorKind::Config, endpoint, tls::describe(&r, host));
    }
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
    let text = e.to_string();
    let message = if e.kind() == ErrorKind::AuthenticationFailed {
        format!("authentication failed (check the user name and password: in the URL, TOKENCACHE_REDIS_PASSWORD or TOKENCACHE_REDIS_PASSWORD_FILE): {text}")
    } else if e.code() == Some("NOAUTH") {
        "NOAUTH: the server requires a password (give it in the URL, TOKENCACHE_REDIS_PASSWORD or TOKENCACHE_REDIS_PASSWORD_FILE)".to_string()
    } else if e.kind() == ErrorKind::Parse {
        // Something answered, but not in the Redis protocol (an HTTP or SSH server, a
        // TLS port without rediss://): say that, not the parser's multi-line story.
        "did not answer as Redis (its reply is not the Redis protocol; check the host, the port and redis:// vs rediss://)".to_string()
    } else if e.kind() == ErrorKind::Server(redis::ServerErrorKind::NoPerm)
        || text.contains("NOPERM")
        || text.contains("can't run this command")
    {
        format!(
            "{} (NOPERM: {})",
            super::super::util::one_line(&text),
            noperm_hint(&text)
        )
    } else if text.contains("cluster support disabled") {
        format!("{endpoint} is not a Cluster node (cluster mode is off): use redis:// (rediss:// with TLS)")
    } else {
        super::super::util::one_line(&text)
    };
    StoreError::new(kind, endpoint, message)
}
