//! A chaos wrapper around any store, for fault injection in tests and in
//! `tokencache load --chaos`.
//!
//! Every call first waits the configured delay, then fails with the configured error
//! class with the configured probability (0 = never, 1 = always), else goes to the
//! wrapped store. The settings can be changed while the store is in use ("L2 goes
//! down now"). Randomness is a seeded xorshift generator, so a run can be repeated.
//!
//! A timeout is produced as it happens in life: set a delay longer than the cache's
//! `l2_timeout` (the cache's timer fires), or inject the `Timeout` class directly.
//!
//! The spec string form (CLI): comma-separated `key=value` among `p` (error
//! probability, 0..=1), `fail` (`always` | `never`), `kind` (`connection`, `timeout`,
//! `server`, `bad_data`, `config`), `delay_ms`, `seed`; e.g. `p=0.2,kind=timeout,delay_ms=5`.

use super::{
    EntryExpiry, SharedStore, Store, StoreError, StoreErrorKind, StoreResult, StoreValue,
    ValueLayout,
};
use async_trait::async_trait;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the chaos store does to each call.
#[derive(Debug, Clone, PartialEq)]
pub struct ChaosConfig {
    /// Probability that a call fails, from 0 (never) to 1 (always).
    pub error_probability: f64,
    /// The class of the injected errors.
    pub kind: StoreErrorKind,
    /// Added before every call (failing or not).
    pub delay: Duration,
    /// Seed of the random generator.
    pub seed: u64,
}

impl Default for ChaosConfig {
    fn default() -> Self {
        Self {
            error_probability: 0.0,
            kind: StoreErrorKind::Connection,
            delay: Duration::ZERO,
            seed: 0x9E37_79B9_7F4A_7C15,
        }
    }
}

impl ChaosConfig {
    /// Parses the spec form (see the module docs).
    ///
    /// # Errors
    /// A message naming the part that is wrong.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut c = ChaosConfig::default();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("chaos setting `{part}` is not key=value"))?;
            match k.trim() {
                "p" => {
                    let p: f64 = v
                        .parse()
                        .map_err(|_| format!("chaos p=`{v}` is not a number"))?;
                    if !(0.0..=1.0).contains(&p) {
                        return Err(format!("chaos p={p} is not between 0 and 1"));
                    }
                    c.error_probability = p;
                }
                "fail" => {
                    c.error_probability = match v {
                        "always" => 1.0,
                        "never" => 0.0,
                        _ => return Err(format!("chaos fail=`{v}`: use always or never")),
                    }
                }
                "kind" => {
                    c.kind = match v {
                        "connection" => StoreErrorKind::Connection,
                        "timeout" => StoreErrorKind::Timeout,
                        "server" => StoreErrorKind::Server,
                        "bad_data" => StoreErrorKind::BadData,
                        "config" => StoreErrorKind::Config,
                        _ => {
                            return Err(format!(
                            "chaos kind=`{v}`: use connection, timeout, server, bad_data or config"
                        ))
                        }
                    }
                }
                "delay_ms" => {
                    let ms: u64 = v
                        .parse()
                        .map_err(|_| format!("chaos delay_ms=`{v}` is not a whole number"))?;
                    c.delay = Duration::from_millis(ms);
                }
                "seed" => {
                    c.seed = v
                        .parse()
                        .map_err(|_| format!("chaos seed=`{v}` is not a whole number"))?
                }
                other => {
                    return Err(format!(
                        "unknown chaos setting `{other}` (p, fail, kind, delay_ms, seed)"
                    ))
                }
            }
        }
        Ok(c)
    }
}

/// A store that delays and fails calls to another store on purpose.
pub struct ChaosStore {
    inner: SharedStore,
    config: Mutex<ChaosConfig>,
    rng: AtomicU64,
    calls: AtomicU64,
    injected: AtomicU64,
    /// Backplane publishes still to fail (see [`fail_next_publishes`](Self::fail_next_publishes)).
    publish_failures: Arc<AtomicU64>,
    /// Per operation: calls received, and a delay of its own (see
    /// [`set_delay_of`](Self::set_delay_of)).
    per_operation: Mutex<std::collections::HashMap<String, (u64, Duration)>>,
}

impl fmt::Debug for ChaosStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChaosStore")
            .field("inner", &self.inner)
            .field("config", &self.config())
            .finish()
    }
}

impl ChaosStore {
    /// Wraps `inner` with `config`.
    pub fn new(inner: SharedStore, config: ChaosConfig) -> Self {
        let seed = config.seed.max(1);
        Self {
            inner,
            config: Mutex::new(config),
            rng: AtomicU64::new(seed),
            calls: AtomicU64::new(0),
            injected: AtomicU64::new(0),
            publish_failures: Arc::new(AtomicU64::new(0)),
            per_operation: Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// The next `n` publishes on the wrapped store's backplane fail (with a
    /// `Connection` error; subscriptions are not affected). The other chaos settings
    /// never touch the backplane.
    pub fn fail_next_publishes(&self, n: u64) {
        self.publish_failures.store(n, Ordering::Relaxed);
    }

    /// Wraps `inner` with no chaos yet (every call passes).
    pub fn passthrough(inner: SharedStore) -> Self {
        Self::new(inner, ChaosConfig::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ChaosConfig> {
        self.config.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The settings now.
    pub fn config(&self) -> ChaosConfig {
        self.lock().clone()
    }

    /// Replaces the settings.
    pub fn set_config(&self, config: ChaosConfig) {
        *self.lock() = config;
    }

    /// Every call fails with `kind` from now on.
    pub fn fail_always(&self, kind: StoreErrorKind) {
        let mut c = self.lock();
        c.error_probability = 1.0;
        c.kind = kind;
    }

    /// No call fails from now on (the delay stays).
    pub fn fail_never(&self) {
        self.lock().error_probability = 0.0;
    }

    /// Calls fail with `kind` with probability `p` (clamped to 0..=1).
    pub fn fail_with_probability(&self, p: f64, kind: StoreErrorKind) {
        let mut c = self.lock();
        c.error_probability = p.clamp(0.0, 1.0);
        c.kind = kind;
    }

    /// Adds `delay` before every call.
    pub fn set_delay(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    /// Adds `delay` before every call of `operation` only (`get`, `set`,
    /// `compare_and_swap`, `set_if_absent`, `remove`, ... as the [`Store`] methods are
    /// named; `get_along` counts as `get`), on top of the delay of every call: to hold
    /// one step of a write, e.g. its commit.
    pub fn set_delay_of(&self, operation: &str, delay: Duration) {
        self.per_operation
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(operation.to_string())
            .or_default()
            .1 = delay;
    }

    /// Calls of `operation` received (named as for [`set_delay_of`](Self::set_delay_of)).
    pub fn calls_of(&self, operation: &str) -> u64 {
        self.per_operation
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(operation)
            .map_or(0, |(n, _)| *n)
    }

    /// Calls received.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Calls failed on purpose.
    pub fn injected_failures(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    /// The wrapped store.
    pub fn inner(&self) -> &SharedStore {
        &self.inner
    }

    /// A uniform number in [0, 1) (xorshift64*).
    fn next_unit(&self) -> f64 {
        let mut x = self.rng.load(Ordering::Relaxed);
        loop {
            let mut y = x;
            y ^= y >> 12;
            y ^= y << 25;
            y ^= y >> 27;
            match self
                .rng
                .compare_exchange_weak(x, y, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    return (y.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64
                        / (1u64 << 53) as f64
                }
                Err(now) => x = now,
            }
        }
    }

    /// Delay, then maybe fail.
    async fn chaos(&self, operation: &str) -> StoreResult<()> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let own_delay = {
            let mut ops = self.per_operation.lock().unwrap_or_else(|p| p.into_inner());
            let entry = ops.entry(operation.to_string()).or_default();
            entry.0 += 1;
            entry.1
        };
        let (delay, p, kind) = {
            let c = self.lock();
            (c.delay + own_delay, c.error_probability, c.kind)
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let fail = p >= 1.0 || (p > 0.0 && self.next_unit() < p);
        if fail {
            self.injected.fetch_add(1, Ordering::Relaxed);
            let message = match kind {
                StoreErrorKind::Connection => "connection refused (chaos)",
                StoreErrorKind::Timeout => "timed out (chaos)",
                StoreErrorKind::Server => "ERR server error (chaos)",
                StoreErrorKind::BadData => "unparsable reply (chaos)",
                StoreErrorKind::Config => "misconfigured (chaos)",
            };
            return Err(StoreError::new(
                kind,
                self.endpoint(),
                format!("{operation}: {message}"),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl Store for ChaosStore {
    async fn get(&self, key: &str) -> StoreResult<Option<StoreValue>> {
        self.chaos("get").await?;
        self.inner.get(key).await
    }

    async fn get_with_layout(&self, key: &str) -> StoreResult<Option<(StoreValue, ValueLayout)>> {
        self.chaos("get").await?;
        self.inner.get_with_layout(key).await
    }

    async fn set_with_expiry(
        &self,
        key: &str,
        value: &[u8],
        expiry: EntryExpiry,
    ) -> StoreResult<()> {
        self.chaos("set").await?;
        self.inner.set_with_expiry(key, value, expiry).await
    }

    async fn get_and_touch(&self, key: &str, ttl: Duration) -> StoreResult<Option<StoreValue>> {
        self.chaos("get_and_touch").await?;
        self.inner.get_and_touch(key, ttl).await
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> StoreResult<()> {
        self.chaos("set").await?;
        self.inner.set(key, value, ttl).await
    }

    async fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> StoreResult<bool> {
        self.chaos("set_if_absent").await?;
        self.inner.set_if_absent(key, value, ttl).await
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        expiry: super::EntryExpiry,
    ) -> StoreResult<bool> {
        self.chaos("compare_and_swap").await?;
        self.inner
            .compare_and_swap(key, expected, new, expiry)
            .await
    }

    async fn touch(&self, key: &str, ttl: Duration) -> StoreResult<bool> {
        self.chaos("touch").await?;
        self.inner.touch(key, ttl).await
    }

    async fn remove(&self, key: &str) -> StoreResult<bool> {
        self.chaos("remove").await?;
        self.inner.remove(key).await
    }

    async fn remove_many(&self, keys: &[String]) -> StoreResult<u64> {
        self.chaos("remove_many").await?;
        self.inner.remove_many(keys).await
    }

    async fn link_add(
        &self,
        set_key: &str,
        member: &str,
        ttl: Option<Duration>,
    ) -> StoreResult<()> {
        self.chaos("link_add").await?;
        self.inner.link_add(set_key, member, ttl).await
    }

    async fn link_members(&self, set_key: &str) -> StoreResult<Vec<String>> {
        self.chaos("link_members").await?;
        self.inner.link_members(set_key).await
    }

    async fn link_remove(&self, set_key: &str, members: &[String]) -> StoreResult<()> {
        self.chaos("link_remove").await?;
        self.inner.link_remove(set_key, members).await
    }

    async fn health(&self) -> StoreResult<()> {
        self.chaos("health").await?;
        self.inner.health().await
    }

    async fn scan(
        &self,
        prefix: &str,
        cursor: u64,
        count: usize,
    ) -> StoreResult<(u64, Vec<String>)> {
        self.chaos("scan").await?;
        self.inner.scan(prefix, cursor, count).await
    }

    async fn get_along(
        &self,
        key: &str,
        touch: Option<Duration>,
        also: &str,
    ) -> StoreResult<(Option<StoreValue>, Option<Vec<u8>>)> {
        self.chaos("get_along").await?;
        self.inner.get_along(key, touch, also).await
    }

    async fn digest(&self, key: &str) -> StoreResult<Option<super::ValueDigest>> {
        self.chaos("digest").await?;
        self.inner.digest(key).await
    }

    async fn time_ms(&self) -> StoreResult<Option<u64>> {
        self.chaos("time").await?;
        self.inner.time_ms().await
    }

    async fn write_stamp(
        &self,
        key: &str,
        at: super::StampAt,
        ttl: Option<Duration>,
    ) -> StoreResult<i64> {
        self.chaos("write_stamp").await?;
        self.inner.write_stamp(key, at, ttl).await
    }

    fn endpoint(&self) -> String {
        format!("chaos({})", self.inner.endpoint())
    }

    fn backplane(&self) -> Option<crate::backplane::SharedBackplane> {
        let inner = self.inner.backplane()?;
        Some(Arc::new(ChaosBackplane {
            inner,
            failures: self.publish_failures.clone(),
        }))
    }
}

/// The wrapped store's backplane, failing publishes on demand.
#[derive(Debug)]
struct ChaosBackplane {
    inner: crate::backplane::SharedBackplane,
    failures: Arc<AtomicU64>,
}

#[async_trait]
impl crate::backplane::Backplane for ChaosBackplane {
    async fn publish(&self, channel: &str, payload: &[u8]) -> StoreResult<()> {
        let failed = self
            .failures
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok();
        if failed {
            return Err(StoreError::new(
                StoreErrorKind::Connection,
                self.inner.endpoint(),
                "publish refused (chaos)",
            ));
        }
        self.inner.publish(channel, payload).await
    }

    async fn subscribe(&self, channel: &str) -> StoreResult<crate::backplane::Subscription> {
        self.inner.subscribe(channel).await
    }

    fn endpoint(&self) -> String {
        format!("chaos({})", self.inner.endpoint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use std::sync::Arc;

    #[test]
    fn parses_specs() {
        let c = ChaosConfig::parse("p=0.25,kind=timeout,delay_ms=7,seed=3").unwrap();
        assert_eq!(c.error_probability, 0.25);
        assert_eq!(c.kind, StoreErrorKind::Timeout);
        assert_eq!(c.delay, Duration::from_millis(7));
        assert_eq!(c.seed, 3);
        assert_eq!(
            ChaosConfig::parse("fail=always").unwrap().error_probability,
            1.0
        );
        assert_eq!(ChaosConfig::parse("").unwrap(), ChaosConfig::default());
        assert!(ChaosConfig::parse("p=2").is_err());
        assert!(ChaosConfig::parse("kind=nope").is_err());
        assert!(ChaosConfig::parse("bogus=1").is_err());
        assert!(ChaosConfig::parse("p").is_err());
    }

    #[tokio::test]
    async fn fails_as_configured() {
        let chaos = ChaosStore::passthrough(Arc::new(MemoryStore::new()));
        chaos.set("k", b"v", None).await.unwrap();
        chaos.fail_always(StoreErrorKind::Server);
        let e = chaos.get("k").await.unwrap_err();
        assert_eq!(e.kind, StoreErrorKind::Server);
        chaos.fail_never();
        assert!(chaos.get("k").await.unwrap().is_some());
        chaos.fail_with_probability(0.5, StoreErrorKind::Connection);
        let mut failed = 0;
        for _ in 0..1000 {
            if chaos.health().await.is_err() {
                failed += 1;
            }
        }
        assert!(
            (350..650).contains(&failed),
            "about half of 1000 calls fail, got {failed}"
        );
        assert_eq!(chaos.injected_failures(), 1 + failed);
        assert_eq!(chaos.calls(), 1 + 1 + 1 + 1000);
    }
}
