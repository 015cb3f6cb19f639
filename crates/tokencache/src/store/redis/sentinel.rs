//! Sentinel (`redis+sentinel://HOST:PORT[,HOST:PORT…]/MASTER_NAME`): the master's address
//! is asked of the Sentinels (`SENTINEL GET-MASTER-ADDR-BY-NAME`) every time a connection
//! is made, so that a connection lost in a failover (the old master is gone, or Sentinel
//! killed its clients when it turned it into a replica) or one that answers `READONLY`
//! is replaced by one to the new master ([`super::connection::Single::after_error`]);
//! the backplane resubscribes the same way.
//!
//! Sentinels are reached like the data nodes (TLS with `rediss+sentinel://`, the same
//! roots and client certificate); they are asked without credentials first, and with
//! the URL's when a Sentinel demands them (`NOAUTH`). The Sentinel that answered is asked
//! first next time. A server the Sentinels name is checked to be a master
//! ([`super::server::Expect::SentinelMaster`]): right after a failover a Sentinel may
//! still name the old one.
//!
//! Not redis-rs's own Sentinel client: it takes no private CA or client certificate for
//! TLS, and the backplane needs the master's address for its pub/sub connection too.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::StreamExt;
use redis::{RedisConnectionInfo, Value};

use super::connection::{Connector, Target};
use crate::store::{StoreError, StoreErrorKind, StoreResult};

/// The master as a Sentinel named it.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    /// Host and port of the master.
    pub(crate) addr: (String, u16),
    /// Replicas the Sentinel sees up: writes are confirmed by one of them (`WAIT`), so
    /// that a write acknowledged before a failover is on the replica promoted.
    pub(crate) replicas: usize,
}

/// The Sentinels of one master, and the failovers they announced.
#[derive(Debug)]
pub(crate) struct Sentinels {
    nodes: Vec<(String, u16)>,
    master: String,
    /// The Sentinel to ask first (the last that answered).
    first: AtomicUsize,
    /// Counts the failovers seen (`+switch-master` of this master).
    switches: tokio::sync::watch::Sender<u64>,
    watching: AtomicBool,
    /// Replicas up, as a Sentinel last said (at each connection, and every few seconds).
    replicas: AtomicUsize,
}

impl Sentinels {
    pub(crate) fn new(nodes: Vec<(String, u16)>, master: String) -> Self {
        Self {
            nodes,
            master,
            first: AtomicUsize::new(0),
            switches: tokio::sync::watch::channel(0).0,
            watching: AtomicBool::new(false),
            replicas: AtomicUsize::new(0),
        }
    }

    /// Replicas up, as a Sentinel last said: a write waits for one of them (`WAIT 1`).
    pub(crate) fn replicas(&self) -> usize {
        self.replicas.load(Ordering::Relaxed)
    }

    /// Asks a Sentinel again how many replicas are up, on `kept` (a connection kept
    /// between calls; made again after it failed).
    async fn refresh_replicas(
        &self,
        nodes: &[Connector],
        kept: &mut Option<redis::aio::MultiplexedConnection>,
    ) {
        if kept.is_none() {
            for node in nodes {
                let Target::Node { host, port } = &node.target else {
                    continue;
                };
                let anonymous = RedisConnectionInfo::default().set_skip_set_lib_name();
                if let Ok(conn) = node.raw(host, *port, &anonymous).await {
                    *kept = Some(conn);
                    break;
                }
            }
        }
        let Some(conn) = kept.as_mut() else { return };
        match redis::cmd("SENTINEL")
            .arg("REPLICAS")
            .arg(&self.master)
            .query_async::<Value>(conn)
            .await
        {
            Ok(v) => self.replicas.store(replicas_up(&v), Ordering::Relaxed),
            Err(_) => *kept = None,
        }
    }

    /// Failovers seen so far: a connection made before the latest one is replaced.
    pub(crate) fn epoch(&self) -> u64 {
        *self.switches.borrow()
    }

    /// A receiver told of each failover.
    pub(crate) fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.switches.subscribe()
    }

    /// Starts (once) the task that listens to the Sentinels' `+switch-master` events, so
    /// that connections move to the new master as soon as a Sentinel announces it
    /// (rather than when the old one is reconfigured, which kills its clients).
    pub(crate) fn watch(self: &Arc<Self>, via: &Connector) {
        if self.watching.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            self.watching.store(false, Ordering::Release);
            return;
        };
        let me: Weak<Self> = Arc::downgrade(self);
        let nodes: Vec<Connector> = self
            .nodes
            .iter()
            .map(|(h, p)| via.anonymous(h, *p))
            .collect();
        let master = self.master.clone();
        handle.spawn(async move {
            let mut i = 0usize;
            let mut query = None;
            loop {
                if me.strong_count() == 0 {
                    return;
                }
                let node = &nodes[i % nodes.len()];
                i += 1;
                let Ok((mut pubsub, _)) = node.pubsub().await else {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                };
                if pubsub.subscribe("+switch-master").await.is_err() {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                let mut messages = pubsub.into_on_message();
                loop {
                    let next =
                        tokio::time::timeout(Duration::from_secs(2), messages.next()).await;
                    let Some(me) = me.upgrade() else { return };
                    match next {
                        Err(_) => {
                            // quiet: still watched; how many replicas are up now?
                            me.refresh_replicas(&nodes, &mut query).await;
                            continue;
                        }
                        Ok(None) => break,  // connection lost: another Sentinel
                        Ok(Some(m)) => {
                            let text = String::from_utf8_lossy(m.get_payload_bytes()).into_owned();
                            if text.split_whitespace().next() == Some(master.as_str()) {
                                tracing::warn!(
                                    master = %master,
                                    "Sentinel announced a failover of {master} ({text}): connections move to the new master"
                                );
                                me.switches.send_modify(|n| *n += 1);
                            }
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }

    /// `sentinel h1:p1,h2:p2/NAME`, for logs.
    pub(crate) fn endpoint(&self) -> String {
        let nodes: Vec<String> = self.nodes.iter().map(|(h, p)| format!("{h}:{p}")).collect();
        format!("sentinel {}/{}", nodes.join(","), self.master)
    }

    /// The master's name.
    pub(crate) fn master_name(&self) -> &str {
        &self.master
    }

    /// The master's address, from the first Sentinel that knows it.
    pub(crate) async fn master(&self, via: &Connector) -> StoreResult<Resolved> {
        let n = self.nodes.len();
        let start = self.first.load(Ordering::Relaxed);
        let mut why = Vec::new();
        for k in 0..n {
            let i = (start + k) % n;
            let (host, port) = &self.nodes[i];
            match self.ask(via, host, *port).await {
                Ok(Some(resolved)) => {
                    self.first.store(i, Ordering::Relaxed);
                    self.replicas.store(resolved.replicas, Ordering::Relaxed);
                    return Ok(resolved);
                }
                Ok(None) => why.push(format!(
                    "{host}:{port} knows no master named {:?}",
                    self.master
                )),
                Err(e) => why.push(format!("{host}:{port}: {}", e.message)),
            }
        }
        Err(StoreError::new(
            StoreErrorKind::Connection,
            self.endpoint(),
            format!(
                "no Sentinel named the master {:?}: {}",
                self.master,
                why.join("; ")
            ),
        ))
    }

    /// Asks one Sentinel.
    async fn ask(&self, via: &Connector, host: &str, port: u16) -> StoreResult<Option<Resolved>> {
        let endpoint = format!("{host}:{port}");
        let query = |mut conn: redis::aio::MultiplexedConnection| {
            let master = self.master.clone();
            async move {
                let addr = redis::cmd("SENTINEL")
                    .arg("GET-MASTER-ADDR-BY-NAME")
                    .arg(&master)
                    .query_async::<Option<(String, u16)>>(&mut conn)
                    .await?;
                let Some(addr) = addr else {
                    return Ok::<_, redis::RedisError>(None);
                };
                // Replicas up (not down, not disconnected): how many a write must reach.
                let replicas = redis::cmd("SENTINEL")
                    .arg("REPLICAS")
                    .arg(&master)
                    .query_async::<Value>(&mut conn)
                    .await
                    .map(|v| replicas_up(&v))
                    .unwrap_or(0);
                Ok(Some(Resolved { addr, replicas }))
            }
        };
        let anonymous = RedisConnectionInfo::default().set_skip_set_lib_name();
        let conn = via.raw(host, port, &anonymous).await?;
        match query(conn).await {
            Ok(addr) => Ok(addr),
            Err(e) if e.code() == Some("NOAUTH") => {
                let mut with = anonymous;
                if let Some(u) = via.username() {
                    with = with.set_username(u);
                }
                if let Some(p) = via.password() {
                    with = with.set_password(p);
                }
                let conn = via.raw(host, port, &with).await?;
                query(conn)
                    .await
                    .map_err(|e| super::map_error(&endpoint, &e))
            }
            Err(e) => Err(super::map_error(&endpoint, &e)),
        }
    }
}

/// Replicas in a `SENTINEL REPLICAS` reply whose flags say they are up and linked.
fn replicas_up(v: &Value) -> usize {
    let Value::Array(replicas) = v else { return 0 };
    replicas
        .iter()
        .filter(|r| {
            let fields: Vec<String> = match r {
                Value::Array(kv) => kv
                    .iter()
                    .map(|x| redis::from_redis_value_ref::<String>(x).unwrap_or_default())
                    .collect(),
                Value::Map(m) => m
                    .iter()
                    .flat_map(|(k, v)| [k, v])
                    .map(|x| redis::from_redis_value_ref::<String>(x).unwrap_or_default())
                    .collect(),
                _ => return false,
            };
            let get = |k: &str| {
                fields
                    .chunks_exact(2)
                    .find(|kv| kv[0] == k)
                    .map(|kv| kv[1].clone())
                    .unwrap_or_default()
            };
            let flags = get("flags");
            !flags.contains("down")
                && !flags.contains("disconnected")
                && get("master-link-status") == "ok"
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(flags: &str, link: &str) -> Value {
        Value::Array(
            [
                "name",
                "127.0.0.1:7001",
                "flags",
                flags,
                "master-link-status",
                link,
            ]
            .iter()
            .map(|s| Value::BulkString(s.as_bytes().to_vec()))
            .collect(),
        )
    }

    #[test]
    fn only_replicas_up_and_linked_count() {
        let v = Value::Array(vec![
            replica("slave", "ok"),
            replica("slave,s_down", "ok"),
            replica("slave,disconnected", "ok"),
            replica("slave", "err"),
        ]);
        assert_eq!(replicas_up(&v), 1);
        assert_eq!(replicas_up(&Value::Array(vec![])), 0);
        assert_eq!(replicas_up(&Value::Nil), 0);
    }
}
