//! The backplane on Redis pub/sub (`PUBLISH` / `SUBSCRIBE`).
//!
//! * **Standalone**: a dedicated subscriber connection per subscription; publishing
//!   goes through one multiplexed connection of its own, made again after it failed.
//! * **Sentinel**: the same, to the master the Sentinels name when the connection is
//!   made: after a failover (Sentinel kills the old master's clients, or it is gone) the
//!   subscription ends, and the next one goes to the new master.
//! * **Cluster**: classic pub/sub, not sharded. A Redis Cluster broadcasts every
//!   `PUBLISH` to all its nodes over the cluster bus, so a subscriber connected to *any*
//!   one node receives every message, and a publisher may publish on any node. The
//!   backplane uses the seed nodes in turn, then the nodes the cluster itself names
//!   (its slot map, as the store last read it): when its node goes away, it moves on to
//!   another, even one that was no seed. (Sharded pub/sub, `SSUBSCRIBE`, would deliver a
//!   channel's messages only from the shard owning its slot, and lose them while that
//!   shard fails over.)
//!
//! Connections are made as the store's are (credentials, TLS, client certificate). A
//! subscription's stream ends when its connection drops: the subscriber then knows it
//! may have missed messages. Every connection attempt is bounded by the connect
//! timeout; publishing by the response timeout. A subscription refused by the server's
//! ACL names the channel and the rule to add.

use async_trait::async_trait;
use futures::StreamExt;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::Mutex;

use super::{Backplane, Subscription};
use crate::store::redis::{Connector, Target};
use crate::store::{StoreError, StoreErrorKind, StoreResult};

/// The cluster's nodes (`host:port`) as the store last read them.
pub(crate) type Discover = Arc<dyn Fn() -> Vec<String> + Send + Sync>;

/// Pub/sub over Redis nodes (one for standalone and Sentinel; a Cluster's seeds, then
/// the nodes it names).
pub struct RedisBackplane {
    /// The configured nodes, in order of preference.
    seeds: Vec<Arc<Connector>>,
    /// Where a Cluster's other nodes are learnt.
    discover: Option<Discover>,
    /// Nodes learnt from the cluster, after the seeds.
    found: std::sync::Mutex<Vec<Arc<Connector>>>,
    /// The node in use (index into the candidates).
    current: AtomicUsize,
    // tokio Mutex: held across the connection attempt so that concurrent first
    // publishes share one connection.
    publisher: Mutex<Option<(usize, redis::aio::MultiplexedConnection, u64)>>,
    /// A publisher connection refused for its configuration (a server too old...),
    /// remembered a while so that heartbeats do not connect once a second.
    refused: std::sync::Mutex<Option<(StoreError, std::time::Instant)>>,
}

/// How long a refused publisher connection is remembered.
const REFUSED_FOR: std::time::Duration = std::time::Duration::from_secs(10);

/// Behind Sentinels: the failovers seen so far (0 elsewhere).
fn epoch_of(node: &Connector) -> u64 {
    match &node.target {
        Target::Sentinel(s) => s.epoch(),
        _ => 0,
    }
}

impl fmt::Debug for RedisBackplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackplane")
            .field("nodes", &self.endpoint())
            .finish()
    }
}

impl RedisBackplane {
    /// A backplane on these nodes (their connectors carry credentials and TLS), and
    /// for a Cluster the nodes `discover` names. Does not connect.
    pub(crate) fn new(seeds: Vec<Arc<Connector>>, discover: Option<Discover>) -> Self {
        Self {
            seeds,
            discover,
            found: std::sync::Mutex::new(Vec::new()),
            current: AtomicUsize::new(0),
            publisher: Mutex::new(None),
            refused: std::sync::Mutex::new(None),
        }
    }

    /// The nodes to try, in order: seeds, then the ones learnt from the cluster.
    fn candidates(&self) -> Vec<Arc<Connector>> {
        let mut all = self.seeds.clone();
        all.extend(
            self.found
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .cloned(),
        );
        all
    }

    /// Adds the nodes the cluster names that are not known yet.
    fn learn(&self) {
        let (Some(discover), Some(template)) = (&self.discover, self.seeds.first()) else {
            return;
        };
        let named = discover();
        let mut found = self.found.lock().unwrap_or_else(|p| p.into_inner());
        for node in named {
            let known = self
                .seeds
                .iter()
                .chain(found.iter())
                .any(|c| c.endpoint() == node);
            if known {
                continue;
            }
            let Some((host, port)) = node.rsplit_once(':') else {
                continue;
            };
            let Ok(port) = port.parse::<u16>() else {
                continue;
            };
            found.push(Arc::new(template.for_node(host, port)));
        }
    }

    /// Moves on to the next node after node `i` failed.
    fn rotate(&self, i: usize, n: usize) {
        let _ = self.current.compare_exchange(
            i,
            (i + 1) % n.max(1),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    async fn publisher(&self) -> StoreResult<(usize, redis::aio::MultiplexedConnection)> {
        let mut slot = self.publisher.lock().await;
        if let Some((i, c, epoch)) = &*slot {
            let current = self.candidates().get(*i).map_or(0, |n| epoch_of(n));
            if current == *epoch {
                return Ok((*i, c.clone()));
            }
            // a failover since: publish on the new master
        }
        if let Some((e, at)) = &*self.refused.lock().unwrap_or_else(|p| p.into_inner()) {
            if at.elapsed() < REFUSED_FOR {
                return Err(e.clone());
            }
        }
        self.learn();
        let nodes = self.candidates();
        let i = self.current.load(Ordering::Relaxed) % nodes.len().max(1);
        let node = nodes.get(i).ok_or_else(|| {
            super::error(
                StoreErrorKind::Config,
                "redis",
                "no Redis node to publish on",
            )
        })?;
        let epoch = epoch_of(node);
        let c = node.connect().await.inspect_err(|e| {
            self.rotate(i, nodes.len());
            if e.kind == StoreErrorKind::Config {
                *self.refused.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((e.clone(), std::time::Instant::now()));
            }
        })?;
        *slot = Some((i, c.conn.clone(), epoch));
        Ok((i, c.conn))
    }
}

/// A refused subscription or publication, naming the channel and the ACL rule to add.
fn refused(e: &redis::RedisError, endpoint: &str, channel: &str) -> StoreError {
    let mut err = crate::store::redis::map_error(endpoint, e);
    let text = e.to_string();
    if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoPerm)
        || text.contains("NOPERM")
        || text.contains("NoPerm")
    {
        err.message = format!(
            "the Redis ACL user may not use the backplane channel {channel:?} (NOPERM: add &{channel}, or &PREFIX*, to the user's ACL; `tokencache check` shows the whole rule)"
        );
    }
    err
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
                let nodes = self.candidates();
                let endpoint = nodes
                    .get(i)
                    .map_or_else(|| "redis".into(), |n| n.endpoint());
                if e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_unrecoverable_error()
                    || e.is_timeout()
                {
                    // Connect afresh next time (behind Sentinels: to the master then;
                    // in a Cluster: to another node).
                    if nodes.len() > 1 {
                        self.rotate(i, nodes.len());
                    }
                    *self.publisher.lock().await = None;
                }
                Err(refused(&e, &endpoint, channel))
            }
        }
    }

    async fn subscribe(&self, channel: &str) -> StoreResult<Subscription> {
        self.learn();
        let nodes = self.candidates();
        let n = nodes.len();
        let first = self.current.load(Ordering::Relaxed);
        let mut last = None;
        for k in 0..n.max(1) {
            let i = (first + k) % n.max(1);
            let Some(node) = nodes.get(i) else {
                break;
            };
            let start = epoch_of(node);
            let attempt = async {
                let (mut pubsub, endpoint) = node.pubsub().await?;
                pubsub
                    .subscribe(channel)
                    .await
                    .map_err(|e| refused(&e, &endpoint, channel))?;
                Ok::<_, StoreError>(pubsub)
            };
            match tokio::time::timeout(node.connect_timeout * 2, attempt).await {
                Ok(Ok(pubsub)) => {
                    let stream = pubsub
                        .into_on_message()
                        .map(|m| m.get_payload_bytes().to_vec());
                    if let Target::Sentinel(sentinels) = &node.target {
                        // A failover announced: this subscription is on the old master;
                        // it ends, and the next one goes to the new master.
                        let mut changes = sentinels.changes();
                        let switched = async move {
                            loop {
                                if *changes.borrow_and_update() != start {
                                    return;
                                }
                                if changes.changed().await.is_err() {
                                    futures::future::pending::<()>().await;
                                }
                            }
                        };
                        return Ok(Box::pin(stream.take_until(switched)));
                    }
                    return Ok(Box::pin(stream));
                }
                Ok(Err(e)) => {
                    let denied = e.message.contains("(NOPERM");
                    last = Some(e);
                    if denied {
                        // every node has the same ACL: no use trying the others
                        break;
                    }
                }
                Err(_) => {
                    last = Some(super::error(
                        StoreErrorKind::Timeout,
                        &node.endpoint(),
                        format!("no subscription within {:?}", node.connect_timeout * 2),
                    ))
                }
            }
            self.rotate(i, n);
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
        self.candidates()
            .iter()
            .map(|c| c.endpoint())
            .collect::<Vec<_>>()
            .join(",")
    }
}
