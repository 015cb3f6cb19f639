//! The backplane on Redis pub/sub (`PUBLISH` / `SUBSCRIBE`).
//!
//! * **Standalone**: a dedicated subscriber connection per subscription; publishing
//!   goes through one multiplexed connection of its own (reconnecting by itself).
//! * **Cluster**: classic pub/sub, not sharded. A Redis Cluster broadcasts every
//!   `PUBLISH` to all its nodes over the cluster bus, so a subscriber connected to *any*
//!   one node receives every message, and a publisher may publish on any node. The
//!   backplane uses the seed nodes in turn: the first that answers, the next one when it
//!   fails. (Sharded pub/sub, `SSUBSCRIBE`, would deliver a channel's messages only
//!   from the shard owning its slot, and lose them while that shard fails over.)
//!
//! A subscription's stream ends when its connection drops: the subscriber then knows
//! it may have missed messages. Every connection attempt is bounded by the connect
//! timeout; publishing by the response timeout.

use async_trait::async_trait;
use futures::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Mutex;

use super::{Backplane, Subscription};
use crate::store::{StoreErrorKind, StoreResult};

/// Pub/sub over Redis nodes (one for standalone, the seeds of a Cluster).
pub struct RedisBackplane {
    /// The nodes to use, in order of preference.
    clients: Vec<redis::Client>,
    /// `host:port` of each node, for logs.
    endpoints: Vec<String>,
    connect_timeout: Duration,
    response_timeout: Duration,
    /// The node in use for publishing (index into `clients`).
    current: AtomicUsize,
    // tokio Mutex: held across the connection attempt so that concurrent first
    // publishes share one connection.
    publisher: Mutex<Option<(usize, ConnectionManager)>>,
}

impl fmt::Debug for RedisBackplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackplane")
            .field("nodes", &self.endpoints)
            .finish()
    }
}

impl RedisBackplane {
    /// A backplane on these nodes (their clients carry credentials and TLS settings);
    /// `endpoints` names them for logs. Does not connect.
    pub fn new(
        clients: Vec<redis::Client>,
        endpoints: Vec<String>,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Self {
        Self {
            clients,
            endpoints,
            connect_timeout,
            response_timeout,
            current: AtomicUsize::new(0),
            publisher: Mutex::new(None),
        }
    }

    fn node(&self, i: usize) -> &str {
        self.endpoints.get(i).map_or("redis", String::as_str)
    }

    fn err(&self, i: usize, e: &redis::RedisError) -> crate::store::StoreError {
        crate::store::redis::map_error(self.node(i), e)
    }

    async fn publisher(&self) -> StoreResult<(usize, ConnectionManager)> {
        let mut slot = self.publisher.lock().await;
        if let Some((i, c)) = &*slot {
            return Ok((*i, c.clone()));
        }
        let i = self.current.load(Ordering::Relaxed) % self.clients.len().max(1);
        let client = self.clients.get(i).cloned().ok_or_else(|| {
            super::error(
                StoreErrorKind::Config,
                "redis",
                "no Redis node to publish on",
            )
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.response_timeout))
            .set_number_of_retries(0);
        let c = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| {
                self.rotate(i);
                self.err(i, &e)
            })?;
        *slot = Some((i, c.clone()));
        Ok((i, c))
    }

    /// Moves on to the next node after node `i` failed.
    fn rotate(&self, i: usize) {
        let n = self.clients.len().max(1);
        let _ = self
            .current
            .compare_exchange(i, (i + 1) % n, Ordering::Relaxed, Ordering::Relaxed);
    }
}

#[async_trait]
impl Backplane for RedisBackplane {
    async fn publish(&self, channel: &str, payload: &[u8]) -> StoreResult<()> {
        let (i, mut c) = self.publisher().await?;
        let sent: redis::RedisResult<i64> = redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async(&mut c)
            .await;
        match sent {
            Ok(_) => Ok(()),
            Err(e) => {
                if self.clients.len() > 1 && (e.is_io_error() || e.is_connection_dropped()) {
                    // Cluster: try another node next time.
                    self.rotate(i);
                    *self.publisher.lock().await = None;
                }
                Err(self.err(i, &e))
            }
        }
    }

    async fn subscribe(&self, channel: &str) -> StoreResult<Subscription> {
        let n = self.clients.len();
        let first = self.current.load(Ordering::Relaxed);
        let mut last = None;
        for k in 0..n.max(1) {
            let i = (first + k) % n.max(1);
            let Some(client) = self.clients.get(i) else {
                break;
            };
            let attempt = async {
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(channel).await?;
                Ok::<_, redis::RedisError>(pubsub)
            };
            match tokio::time::timeout(self.connect_timeout, attempt).await {
                Ok(Ok(pubsub)) => {
                    let stream = pubsub
                        .into_on_message()
                        .map(|m| m.get_payload_bytes().to_vec());
                    return Ok(Box::pin(stream));
                }
                Ok(Err(e)) => last = Some(self.err(i, &e)),
                Err(_) => {
                    last = Some(super::error(
                        StoreErrorKind::Timeout,
                        self.node(i),
                        format!("no subscription within {:?}", self.connect_timeout),
                    ))
                }
            }
            self.rotate(i);
        }
        Err(last.unwrap_or_else(|| {
            super::error(
                StoreErrorKind::Config,
                "redis",
                "no Redis node to subscribe on",
            )
        }))
    }

    fn endpoint(&self) -> String {
        self.endpoints.join(",")
    }
}
