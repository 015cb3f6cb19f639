//! Graceful shutdown: on SIGTERM or Ctrl-C the server stops accepting connections,
//! `/readyz` turns 503, the requests in flight finish (each bounded by the request
//! timeout), then the recovery queue (L2 writes and removals that failed) gets a
//! bounded time to drain into L2, and the process exits 0.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokencache::TokenCache;

use super::routes::Shared;

/// Resolves at the first SIGTERM or Ctrl-C (SIGINT), after marking the server draining.
pub(crate) async fn signal(state: Shared) {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    let which = tokio::select! {
        _ = ctrl_c => "SIGINT",
        _ = term => "SIGTERM",
    };
    state.draining.store(true, Ordering::Relaxed);
    tracing::info!(
        signal = which,
        "shutting down: no new connections; finishing the requests in flight"
    );
}

/// Gives the recovery queue up to `bound` to drain into L2. Whether it is empty.
pub(crate) async fn drain(cache: &TokenCache, bound: Duration) -> bool {
    let two = cache.two_level();
    let deadline = Instant::now() + bound;
    loop {
        let depth = two.queue_depth();
        if depth == 0 {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            tracing::warn!(
                queued = depth,
                "the recovery queue did not drain in time: these L2 changes are lost (cached tokens still expire on their own)"
            );
            return false;
        }
        two.recover_now().await;
        if two.queue_depth() > 0 {
            tokio::time::sleep((deadline - now).min(Duration::from_millis(100))).await;
        }
    }
}
