//! Shared helpers for the two-level and cache tests.
#![allow(dead_code)]

use async_trait::async_trait;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokencache::store::{SharedStore, Store, StoreError, StoreErrorKind, StoreResult, StoreValue};

/// Wraps a store: counts calls, can add a delay and fail on demand.
#[derive(Debug)]
pub struct Counting {
    pub inner: SharedStore,
    pub gets: AtomicU64,
    pub sets: AtomicU64,
    pub touches: AtomicU64,
    pub removes: AtomicU64,
    pub delay: Duration,
    pub failing: AtomicBool,
    /// Fail only reads (`get`, `get_and_touch`), as a timed-out `GET` would.
    pub failing_gets: AtomicBool,
    /// Holds the next compare-and-swap until released (see [`Counting::hold_next_cas`]).
    pub cas_hold: Mutex<Option<(Arc<tokio::sync::Notify>, Arc<tokio::sync::Notify>)>>,
}

impl Counting {
    pub fn new(inner: SharedStore, delay: Duration) -> Arc<Self> {
        Arc::new(Self {
            inner,
            gets: AtomicU64::new(0),
            sets: AtomicU64::new(0),
            touches: AtomicU64::new(0),
            removes: AtomicU64::new(0),
            delay,
            failing: AtomicBool::new(false),
            failing_gets: AtomicBool::new(false),
            cas_hold: Mutex::new(None),
        })
    }

    /// Holds the next compare-and-swap before it reaches the store: the first `Notify`
    /// is notified when it got there, the second lets it go on.
    pub fn hold_next_cas(&self) -> (Arc<tokio::sync::Notify>, Arc<tokio::sync::Notify>) {
        let reached = Arc::new(tokio::sync::Notify::new());
        let release = Arc::new(tokio::sync::Notify::new());
        *self.cas_hold.lock().unwrap() = Some((reached.clone(), release.clone()));
        (reached, release)
    }

    pub fn fail(&self, on: bool) {
        self.failing.store(on, Ordering::SeqCst);
    }

    async fn pre(&self) -> StoreResult<()> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::new(
                StoreErrorKind::Connection,
                "test",
                "connection refused",
            ));
        }
        Ok(())
    }

    pub fn fail_gets(&self, on: bool) {
        self.failing_gets.store(on, Ordering::SeqCst);
    }

    fn get_fails(&self) -> StoreResult<()> {
        if self.failing_gets.load(Ordering::SeqCst) {
            return Err(StoreError::new(
                StoreErrorKind::Timeout,
                "test",
                "no answer within 250ms",
            ));
        }
        Ok(())
    }

    pub fn n(c: &AtomicU64) -> u64 {
        c.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Store for Counting {
    async fn get(&self, key: &str) -> StoreResult<Option<StoreValue>> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.pre().await?;
        self.get_fails()?;
        self.inner.get(key).await
    }
    async fn get_and_touch(&self, key: &str, ttl: Duration) -> StoreResult<Option<StoreValue>> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.touches.fetch_add(1, Ordering::SeqCst);
        self.pre().await?;
        self.get_fails()?;
        self.inner.get_and_touch(key, ttl).await
    }
    /// One read on the wire (the partition and its owner's stamp): counted as one get.
    async fn get_along(
        &self,
        key: &str,
        touch: Option<Duration>,
        also: &str,
    ) -> StoreResult<(Option<StoreValue>, Option<Vec<u8>>)> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        if touch.is_some() {
            self.touches.fetch_add(1, Ordering::SeqCst);
        }
        self.pre().await?;
        self.get_fails()?;
        self.inner.get_along(key, touch, also).await
    }
    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> StoreResult<()> {
        self.sets.fetch_add(1, Ordering::SeqCst);
        self.pre().await?;
        self.inner.set(key, value, ttl).await
    }
    async fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> StoreResult<bool> {
        self.sets.fetch_add(1, Ordering::SeqCst);
        self.pre().await?;
        self.inner.set_if_absent(key, value, ttl).await
    }
    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        expiry: tokencache::store::EntryExpiry,
    ) -> StoreResult<bool> {
        self.sets.fetch_add(1, Ordering::SeqCst);
        self.pre().await?;
        let hold = self.cas_hold.lock().unwrap().take();
        if let Some((reached, release)) = hold {
            reached.notify_one();
            release.notified().await;
        }
        self.inner
            .compare_and_swap(key, expected, new, expiry)
            .await
    }
    async fn touch(&self, key: &str, ttl: Duration) -> StoreResult<bool> {
        self.touches.fetch_add(1, Ordering::SeqCst);
        self.pre().await?;
        self.inner.touch(key, ttl).await
    }
    async fn remove(&self, key: &str) -> StoreResult<bool> {
        self.removes.fetch_add(1, Ordering::SeqCst);
        self.pre().await?;
        self.inner.remove(key).await
    }
    async fn remove_many(&self, keys: &[String]) -> StoreResult<u64> {
        self.pre().await?;
        self.inner.remove_many(keys).await
    }
    async fn link_add(
        &self,
        set_key: &str,
        member: &str,
        ttl: Option<Duration>,
    ) -> StoreResult<()> {
        self.pre().await?;
        self.inner.link_add(set_key, member, ttl).await
    }
    async fn link_members(&self, set_key: &str) -> StoreResult<Vec<String>> {
        self.pre().await?;
        self.inner.link_members(set_key).await
    }
    async fn link_remove(&self, set_key: &str, members: &[String]) -> StoreResult<()> {
        self.pre().await?;
        self.inner.link_remove(set_key, members).await
    }
    async fn health(&self) -> StoreResult<()> {
        self.pre().await?;
        self.inner.health().await
    }
    async fn scan(
        &self,
        prefix: &str,
        cursor: u64,
        count: usize,
    ) -> StoreResult<(u64, Vec<String>)> {
        self.pre().await?;
        self.inner.scan(prefix, cursor, count).await
    }
    fn endpoint(&self) -> String {
        format!("counting({})", self.inner.endpoint())
    }
    fn backplane(&self) -> Option<tokencache::backplane::SharedBackplane> {
        self.inner.backplane()
    }
}

/// Collects what the cache logs, for the tests that read it.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    pub fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .map(str::to_string)
            .collect()
    }
    pub fn errors(&self) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|l| l.contains("ERROR"))
            .collect()
    }
}

pub fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}
