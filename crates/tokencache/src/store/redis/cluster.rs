//! Redis Cluster: the connection (redis-rs's cluster client: it follows `MOVED`/`ASK`
//! and refreshes its own slot map) and the health of each master, so that one sick
//! shard degrades only its own keys (docs/design.md §16).
//!
//! Every call on one key (or one slot) goes to the master that holds the key's slot,
//! under [`RedisOptions::node_timeout`]. A master that failed
//! [`OPEN_AFTER`] calls in a row (no answer in time, or no connection) is *open*: calls
//! for its keys fail at once, without waiting, for 1 s (doubling to 10 s while it stays
//! sick), then one call goes through as a probe; its success closes it. While other
//! masters answer, these errors are marked [`StoreError::shard_scoped`], and the
//! cache's circuit breaker does not count them: reads of the other shards' keys keep
//! hitting L2. When every master fails, the errors are not shard-scoped: L2 is down as a
//! whole. A node's outage is logged once when it opens and once when it answers again
//! (redis-rs's own per-connection warnings are best filtered out: `redis=off`).
//!
//! The store keeps its own copy of the slot map (`CLUSTER SLOTS`, asked of a master that
//! answers): when connecting, when a master opens (a failover may have moved its slots),
//! and at most every [`MAP_MAX_AGE`] otherwise.

use std::collections::HashMap;
use std::future::Future;
use std::sync::RwLock;
use std::time::Instant;

use super::*;

/// Failures in a row that open a master.
pub(super) const OPEN_AFTER: u32 = 2;
/// How long an opened master is failed fast before the first probe.
const OPEN_FOR: Duration = Duration::from_secs(1);
/// The longest a master is failed fast between probes.
const MAX_OPEN_FOR: Duration = Duration::from_secs(10);
/// The slot map is asked again after this long.
const MAP_MAX_AGE: Duration = Duration::from_secs(10);

/// One slot range and the master serving it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SlotRange {
    pub(crate) start: u16,
    pub(crate) end: u16,
    /// `host:port` of its master.
    pub(crate) master: Arc<str>,
    /// `host:port` of its replicas.
    pub(crate) replicas: Vec<String>,
}

/// Reads a `CLUSTER SLOTS` reply.
pub(crate) fn parse_slots(reply: &Value) -> Option<Vec<SlotRange>> {
    let Value::Array(ranges) = reply else {
        return None;
    };
    let node = |v: &Value| -> Option<String> {
        let Value::Array(n) = v else { return None };
        let host: String = redis::from_redis_value_ref(n.first()?).ok()?;
        let port: u16 = redis::from_redis_value_ref(n.get(1)?).ok()?;
        Some(format!("{host}:{port}"))
    };
    let mut out = Vec::with_capacity(ranges.len());
    for r in ranges {
        let Value::Array(items) = r else { return None };
        let start: u16 = redis::from_redis_value_ref(items.first()?).ok()?;
        let end: u16 = redis::from_redis_value_ref(items.get(1)?).ok()?;
        let master = node(items.get(2)?)?;
        let replicas = items.iter().skip(3).filter_map(node).collect();
        out.push(SlotRange {
            start,
            end,
            master: Arc::from(master),
            replicas,
        });
    }
    out.sort_by_key(|r| r.start);
    Some(out)
}

/// Slots covered by `ranges` (16,384 when the cluster serves every key).
pub(crate) fn covered(ranges: &[SlotRange]) -> u32 {
    ranges
        .iter()
        .map(|r| u32::from(r.end.saturating_sub(r.start)) + 1)
        .sum()
}

#[derive(Debug)]
struct Health {
    failures: u32,
    open_until: Option<Instant>,
    open_for: Duration,
    probing: bool,
    since: Option<Instant>,
    failed_fast: u64,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            failures: 0,
            open_until: None,
            open_for: OPEN_FOR,
            probing: false,
            since: None,
            failed_fast: 0,
        }
    }
}

enum Admit {
    Pass,
    Probe,
    Reject(Duration),
}

/// A Cluster: its connection and the health of each master.
pub(crate) struct ClusterBackend {
    pub(super) lazy: Lazy<ClusterConnection>,
    pub(super) endpoint: String,
    node_timeout: Duration,
    map: RwLock<(Vec<SlotRange>, Option<Instant>)>,
    refreshing: std::sync::atomic::AtomicBool,
    nodes: Mutex<HashMap<Arc<str>, Health>>,
}

impl ClusterBackend {
    pub(super) fn new(
        lazy: Lazy<ClusterConnection>,
        endpoint: String,
        node_timeout: Duration,
    ) -> Self {
        Self {
            lazy,
            endpoint,
            node_timeout,
            map: RwLock::new((Vec::new(), None)),
            refreshing: std::sync::atomic::AtomicBool::new(false),
            nodes: Mutex::new(HashMap::new()),
        }
    }

    fn nodes(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Health>> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The slot map as last read.
    pub(crate) fn slot_map(&self) -> Vec<SlotRange> {
        self.map.read().unwrap_or_else(|p| p.into_inner()).0.clone()
    }

    /// Every node the slot map names (masters first), for the backplane.
    pub(crate) fn known_nodes(&self) -> Vec<String> {
        let map = self.slot_map();
        let mut out: Vec<String> = Vec::new();
        for r in &map {
            if !out.iter().any(|n| **n == *r.master) {
                out.push(r.master.to_string());
            }
        }
        for r in &map {
            for rep in &r.replicas {
                if !out.contains(rep) {
                    out.push(rep.clone());
                }
            }
        }
        out
    }

    fn master_of(&self, slot: u16) -> Option<Arc<str>> {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        map.0
            .iter()
            .find(|r| r.start <= slot && slot <= r.end)
            .map(|r| r.master.clone())
    }

    fn map_is_stale(&self) -> bool {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        map.1.is_none_or(|at| at.elapsed() > MAP_MAX_AGE)
    }

    /// Reads the slot map from a master that answers (healthy ones first).
    pub(super) async fn refresh_map(
        &self,
        conn: &mut ClusterConnection,
    ) -> StoreResult<Vec<SlotRange>> {
        let mut candidates: Vec<String> = self.known_nodes();
        {
            let nodes = self.nodes();
            candidates.sort_by_key(|n| {
                nodes
                    .get(n.as_str())
                    .is_some_and(|h| h.open_until.is_some())
            });
        }
        let mut routes: Vec<RoutingInfo> = candidates
            .iter()
            .filter_map(|n| {
                let (host, port) = n.rsplit_once(':')?;
                Some(RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: host.to_string(),
                    port: port.parse().ok()?,
                }))
            })
            .collect();
        routes.push(RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random));
        let mut last = None;
        for route in routes {
            let asked = tokio::time::timeout(
                self.node_timeout.max(Duration::from_millis(500)),
                conn.route_command(redis::cmd("CLUSTER").arg("SLOTS").clone(), route),
            )
            .await;
            match asked {
                Ok(Ok(reply)) => {
                    let Some(ranges) = parse_slots(&reply) else {
                        return Err(StoreError::new(
                            StoreErrorKind::BadData,
                            &self.endpoint,
                            "unexpected CLUSTER SLOTS reply",
                        ));
                    };
                    *self.map.write().unwrap_or_else(|p| p.into_inner()) =
                        (ranges.clone(), Some(Instant::now()));
                    return Ok(ranges);
                }
                Ok(Err(e)) => last = Some(map_error(&self.endpoint, &e)),
                Err(_) => {
                    last = Some(StoreError::new(
                        StoreErrorKind::Timeout,
                        &self.endpoint,
                        "no node answered CLUSTER SLOTS in time",
                    ))
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            StoreError::new(
                StoreErrorKind::Connection,
                &self.endpoint,
                "no cluster node to ask",
            )
        }))
    }

    /// Refreshes the slot map in the background (one refresh at a time).
    fn refresh_soon(self: &Arc<Self>) {
        if self
            .refreshing
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            self.refreshing
                .store(false, std::sync::atomic::Ordering::Release);
            return;
        };
        let me = Arc::downgrade(self);
        handle.spawn(async move {
            let Some(me) = me.upgrade() else { return };
            if let Ok((mut conn, _)) = me.lazy.get().await {
                let _ = me.refresh_map(&mut conn).await;
            }
            me.refreshing
                .store(false, std::sync::atomic::Ordering::Release);
        });
    }

    /// After redis-rs connected: the slot map, and each master's requirements check
    /// (Redis or Valkey 6.2 or later, in cluster mode); a master that does not answer
    /// now is not checked (it is when it answers `tokencache check`).
    pub(super) async fn after_connect(&self, conn: &mut ClusterConnection) -> StoreResult<()> {
        let ranges = self.refresh_map(conn).await?;
        let mut masters: Vec<Arc<str>> = ranges.iter().map(|r| r.master.clone()).collect();
        masters.sort();
        masters.dedup();
        for m in masters {
            let Some((host, port)) = m.rsplit_once(':') else {
                continue;
            };
            let Ok(port) = port.parse::<u16>() else {
                continue;
            };
            let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                host: host.to_string(),
                port,
            });
            let asked = tokio::time::timeout(
                self.node_timeout.max(Duration::from_millis(500)),
                conn.route_command(redis::cmd("HELLO").clone(), route),
            )
            .await;
            if let Ok(Ok(reply)) = asked {
                if let Some(info) = super::server::ServerInfo::from_hello(&reply) {
                    super::server::require(&info, super::server::Expect::Cluster, &m)?;
                }
            }
        }
        Ok(())
    }

    /// `PING` to the masters, healthy ones first: Ok when one answers.
    pub(super) async fn ping_any(
        self: &Arc<Self>,
        conn: &mut ClusterConnection,
    ) -> StoreResult<()> {
        let mut masters: Vec<Arc<str>> = self.slot_map().iter().map(|r| r.master.clone()).collect();
        masters.sort();
        masters.dedup();
        {
            let nodes = self.nodes();
            masters.sort_by_key(|n| nodes.get(n).is_some_and(|h| h.open_until.is_some()));
        }
        let mut last = None;
        for m in &masters {
            let Some((host, port)) = m.rsplit_once(':') else {
                continue;
            };
            let Ok(port) = port.parse::<u16>() else {
                continue;
            };
            let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                host: host.to_string(),
                port,
            });
            match tokio::time::timeout(
                self.node_timeout,
                conn.route_command(redis::cmd("PING").clone(), route),
            )
            .await
            {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(e)) => last = Some(map_error(m, &e)),
                Err(_) => {
                    last = Some(StoreError::new(
                        StoreErrorKind::Timeout,
                        &**m,
                        format!("no answer to PING within {:?}", self.node_timeout),
                    ))
                }
            }
        }
        if masters.is_empty() {
            let pong: RedisResult<Value> = redis::cmd("PING").query_async(conn).await;
            return pong.map(|_| ()).map_err(|e| map_error(&self.endpoint, &e));
        }
        Err(last.unwrap_or_else(|| {
            StoreError::new(
                StoreErrorKind::Connection,
                &self.endpoint,
                "no master answered",
            )
        }))
    }

    fn admit(&self, node: &Arc<str>) -> Admit {
        let mut nodes = self.nodes();
        let h = nodes.entry(node.clone()).or_default();
        match h.open_until {
            None => Admit::Pass,
            Some(until) => {
                let now = Instant::now();
                if now >= until && !h.probing {
                    h.probing = true;
                    Admit::Probe
                } else {
                    h.failed_fast += 1;
                    Admit::Reject(until.saturating_duration_since(now))
                }
            }
        }
    }

    /// Whether any master other than `node` is not failing now.
    fn others_answer(&self, node: &str) -> bool {
        let nodes = self.nodes();
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        map.0.iter().any(|r| {
            *r.master != *node
                && nodes
                    .get(&r.master)
                    .is_none_or(|h| h.open_until.is_none() && h.failures == 0)
        })
    }

    fn succeeded(&self, node: &Arc<str>) {
        let mut nodes = self.nodes();
        let h = nodes.entry(node.clone()).or_default();
        if h.open_until.is_some() {
            let secs = h.since.map_or(0.0, |s| s.elapsed().as_secs_f64());
            tracing::warn!(
                node = %node,
                outage_secs = secs,
                failed_fast = h.failed_fast,
                "Redis Cluster node {node} answers again after {secs:.1} s ({} calls for its keys failed fast meanwhile)",
                h.failed_fast
            );
        }
        *h = Health::default();
    }

    /// Records a failure of `node` (of its probe, when `probe`); true when it just opened.
    fn failed(self: &Arc<Self>, node: &Arc<str>, e: &StoreError, probe: bool) -> bool {
        let opened = {
            let mut nodes = self.nodes();
            let h = nodes.entry(node.clone()).or_default();
            h.failures += 1;
            let was_open = h.open_until.is_some();
            if was_open && !probe {
                // a call let through before it opened
                false
            } else if was_open {
                // a probe failed: wait twice as long
                h.open_for = (h.open_for * 2).min(MAX_OPEN_FOR);
                h.open_until = Some(Instant::now() + h.open_for);
                h.probing = false;
                false
            } else if h.failures >= OPEN_AFTER {
                h.open_until = Some(Instant::now() + h.open_for);
                h.since.get_or_insert_with(Instant::now);
                true
            } else {
                false
            }
        };
        if opened {
            let slots: Vec<String> = self
                .slot_map()
                .iter()
                .filter(|r| *r.master == **node)
                .map(|r| format!("{}-{}", r.start, r.end))
                .collect();
            let what = match e.kind {
                StoreErrorKind::Timeout => "is not answering",
                _ => "is unreachable",
            };
            tracing::error!(
                node = %node,
                slots = %slots.join(","),
                cause = %e.message,
                "Redis Cluster node {node} (slots {}) {what} ({}): calls for its keys fail fast (reads are misses, writes are queued) while the other nodes serve theirs; probing it every {:?} or more",
                slots.join(","),
                e.message,
                OPEN_FOR,
            );
            self.refresh_soon();
        }
        opened
    }

    /// Runs `call` (one command for keys of `slot`) on the master of the slot, under
    /// the node timeout and the node's health (see the module docs).
    pub(super) async fn on_slot<T>(
        self: &Arc<Self>,
        slot: u16,
        call: impl Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        if self.map_is_stale() {
            self.refresh_soon();
        }
        let Some(node) = self.master_of(slot) else {
            return call.await;
        };
        let probe = match self.admit(&node) {
            Admit::Reject(left) => {
                let mut e = StoreError::new(
                    StoreErrorKind::Connection,
                    &*node,
                    format!(
                        "not called: Redis Cluster node {node} is failing; its keys fail fast (next probe in {} ms)",
                        left.as_millis()
                    ),
                );
                e.shard_scoped = self.others_answer(&node);
                return Err(e);
            }
            Admit::Probe => true,
            Admit::Pass => false,
        };
        let result = match tokio::time::timeout(self.node_timeout, call).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::new(
                StoreErrorKind::Timeout,
                &*node,
                format!(
                    "Redis Cluster node {node} gave no answer within {:?}",
                    self.node_timeout
                ),
            )),
        };
        match result {
            Ok(v) => {
                self.succeeded(&node);
                Ok(v)
            }
            Err(mut e)
                if matches!(e.kind, StoreErrorKind::Connection | StoreErrorKind::Timeout) =>
            {
                e.endpoint = node.to_string();
                self.failed(&node, &e, probe);
                e.shard_scoped = self.others_answer(&node);
                Err(e)
            }
            Err(e) => {
                if probe {
                    // it answered, if with an error of its own
                    self.succeeded(&node);
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(host: &str, port: i64) -> Value {
        Value::Array(vec![
            Value::BulkString(host.as_bytes().to_vec()),
            Value::Int(port),
            Value::BulkString(b"id".to_vec()),
        ])
    }

    #[test]
    fn slot_maps_are_read_and_coverage_counted() {
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::Int(5461),
                Value::Int(10922),
                node("127.0.0.1", 7001),
                node("127.0.0.1", 7004),
            ]),
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                node("127.0.0.1", 7000),
            ]),
            Value::Array(vec![
                Value::Int(10923),
                Value::Int(16383),
                node("127.0.0.1", 7002),
            ]),
        ]);
        let map = parse_slots(&reply).unwrap();
        assert_eq!(map[0].start, 0);
        assert_eq!(&*map[1].master, "127.0.0.1:7001");
        assert_eq!(map[1].replicas, vec!["127.0.0.1:7004".to_string()]);
        assert_eq!(covered(&map), 16384);
        assert_eq!(covered(&map[..2]), 10923);
        assert!(parse_slots(&Value::Nil).is_none());
        assert!(parse_slots(&Value::Array(vec![Value::Int(1)])).is_none());
    }
}
