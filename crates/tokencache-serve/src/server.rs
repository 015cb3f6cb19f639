//! The connection loop: accepts TCP or unix-socket connections (at most
//! `max_connections` at once; more wait in the listen queue), tells each request how its
//! caller reached the server ([`Peer`]), bounds the reading of a request's headers (and
//! the wait of an idle kept-alive connection for its next request) by
//! `header_read_timeout_ms`, and shuts down in bounded time however clients behave.
//!
//! At the stop signal: no more connections are accepted; a connection with no request
//! in flight (idle, or with a half-sent request) is closed at once; one with a request
//! in flight gets the request's own timeout (plus a second to write the answer), then
//! is closed. The caller then drains the recovery queue.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tower::ServiceExt;

use super::guard::Peer;

/// How connections are bounded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Reading a request's headers; waiting for the next request on a kept-alive connection.
    pub(crate) header_read_timeout: Duration,
    /// Connections served at once.
    pub(crate) max_connections: usize,
    /// The bound of one request (the guard's timeout): how long a request in flight at
    /// shutdown may take.
    pub(crate) request_timeout: Duration,
}

/// A listening socket.
pub(crate) enum Listener {
    /// TCP: the peer is loopback or remote by its address.
    Tcp(tokio::net::TcpListener),
    /// A unix socket (its file's permissions say who may connect).
    #[cfg(unix)]
    Unix(tokio::net::UnixListener),
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

impl Listener {
    async fn accept(&self) -> std::io::Result<(Box<dyn Io>, Peer)> {
        match self {
            Listener::Tcp(l) => {
                let (s, addr) = l.accept().await?;
                let _ = s.set_nodelay(true);
                Ok((Box::new(s), Peer::of_ip(addr.ip())))
            }
            #[cfg(unix)]
            Listener::Unix(l) => {
                let (s, _) = l.accept().await?;
                Ok((Box::new(s), Peer::Unix))
            }
        }
    }
}

/// Counts a connection's requests in flight while alive.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(n: &Arc<AtomicUsize>) -> Self {
        n.fetch_add(1, Ordering::SeqCst);
        InFlight(n.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves `app` on `listener` until `stop` resolves, then closes every connection in
/// bounded time (see the module's documentation).
pub(crate) async fn serve(
    listener: Listener,
    app: Router,
    stop: impl std::future::Future<Output = ()>,
    limits: Limits,
) {
    let (stopping, stopped) = watch::channel(false);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut connections = JoinSet::new();
    tokio::pin!(stop);
    loop {
        // Reap finished connections as we go (the set does not grow without bound).
        while connections.try_join_next().is_some() {}
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut stop => break,
        };
        let (io, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let app = app.clone();
        let stopped = stopped.clone();
        connections.spawn(async move {
            let _permit = permit;
            connection(io, peer, app, stopped, limits).await;
        });
    }
    drop(listener);
    let _ = stopping.send(true);
    while connections.join_next().await.is_some() {}
}

async fn connection(
    io: Box<dyn Io>,
    peer: Peer,
    app: Router,
    mut stopped: watch::Receiver<bool>,
    limits: Limits,
) {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let counter = in_flight.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(peer);
        let guard = InFlight::enter(&counter);
        let app = app.clone();
        async move {
            let _guard = guard;
            app.oneshot(request.map(Body::new)).await
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = stopped.wait_for(|s| *s), if deadline.is_none() => {
                conn.as_mut().graceful_shutdown();
                let grace = if in_flight.load(Ordering::SeqCst) > 0 {
                    limits.request_timeout + Duration::from_secs(1)
                } else {
                    // idle, or a request not fully sent: closed now (a short moment
                    // lets an answer already written leave)
                    Duration::from_millis(100)
                };
                deadline = Some(tokio::time::Instant::now() + grace);
            }
            () = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() => return,
        }
    }
}
