//! Connections: made on first use and shared (a failed attempt is forgotten, so the
//! next call tries again), standalone or Cluster; TLS set-up; redis-rs errors mapped to
//! the store's error kinds.

use super::*;

pub(super) type ConnectFuture<C> = Shared<BoxFuture<'static, RedisResult<C>>>;

pub(super) enum Slot<C> {
    Empty,
    Connecting(ConnectFuture<C>),
    Ready(C),
}

/// A connection made on first use, shared afterwards; a failed attempt is forgotten
/// so that the next use tries again. The mutex is never held across an await.
pub(super) struct Lazy<C: Clone + Send + Sync + 'static> {
    slot: Mutex<Slot<C>>,
    connect: Box<dyn Fn() -> BoxFuture<'static, RedisResult<C>> + Send + Sync>,
}

impl<C: Clone + Send + Sync + 'static> Lazy<C> {
    pub(super) fn new(
        connect: impl Fn() -> BoxFuture<'static, RedisResult<C>> + Send + Sync + 'static,
    ) -> Self {
        Self {
            slot: Mutex::new(Slot::Empty),
            connect: Box::new(connect),
        }
    }

    pub(super) async fn get(&self) -> RedisResult<C> {
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
    pub(super) fn reset(&self) {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        if matches!(&*slot, Slot::Ready(_)) {
            *slot = Slot::Empty;
        }
    }

    pub(super) fn is_connected(&self) -> bool {
        matches!(
            &*self.slot.lock().unwrap_or_else(|e| e.into_inner()),
            Slot::Ready(_)
        )
    }
}

pub(super) enum Backend {
    Standalone(Lazy<ConnectionManager>),
    Cluster(Lazy<ClusterConnection>),
}

/// A connection of either kind, for one call.
#[derive(Clone)]
pub(super) enum Conn {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    pub(super) async fn query<T: redis::FromRedisValue>(
        &mut self,
        cmd: &redis::Cmd,
    ) -> RedisResult<T> {
        match self {
            Conn::Standalone(c) => cmd.query_async(c).await,
            Conn::Cluster(c) => cmd.query_async(c).await,
        }
    }

    pub(super) async fn pipeline<T: redis::FromRedisValue>(
        &mut self,
        pipe: &redis::Pipeline,
    ) -> RedisResult<T> {
        match self {
            Conn::Standalone(c) => pipe.query_async(c).await,
            Conn::Cluster(c) => pipe.query_async(c).await,
        }
    }

    pub(super) async fn script<T: redis::FromRedisValue>(
        &mut self,
        inv: &redis::ScriptInvocation<'_>,
    ) -> RedisResult<T> {
        match self {
            Conn::Standalone(c) => inv.invoke_async(c).await,
            Conn::Cluster(c) => inv.invoke_async(c).await,
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

/// Makes sure rustls has a process-wide crypto provider before a `rediss://`
/// connection is built (redis-rs uses `ClientConfig::builder()`, which panics without
/// one). Installs *ring* unless the application installed another provider first.
pub(super) fn ensure_tls_provider() {
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
