//! Embedded store: one redb file, the default L2 on a single machine.
//!
//! Tokens survive process restarts with no server to run. Layout (all in one file):
//!
//! | table | key | value |
//! |---|---|---|
//! | `entries` | key | (deadline ms since epoch, 0 = none; value bytes) |
//! | `links` (multimap) | link-set key | member keys |
//! | `link_deadlines` | link-set key | deadline (0 = none): its longest-lived member's |
//! | `link_member_deadlines` | (link-set key, member) | the member's own deadline (0 = none) |
//! | `expiry` | (deadline, key) | () — index of every deadline, for the sweeper |
//!
//! Entries and link sets share one key space as in Redis: `set` replaces a link set of
//! the same key, and a link operation on an entry (or `get` on a link set) is a
//! `Server` error ("WRONGTYPE").
//!
//! Expired entries are never returned; a background sweeper (a tokio task that holds
//! only a `Weak` reference and stops with the store) deletes them every
//! [`EmbeddedOptions::sweep_interval`], using the `expiry` index (no full scan).
//! redb is synchronous: every call runs in [`tokio::task::spawn_blocking`], so the
//! runtime is never blocked. Every write transaction is committed durably.
//!
//! One process opens the file at a time: redb takes an exclusive lock on the file
//! (`flock`) for as long as a process has it open. A second process gets a `Config`
//! error naming the path and the lock; within one process, [`super::open`] shares
//! the open store instead.

use super::util::{deadline, wrong_type, ScanCursors};
use super::{Store, StoreError, StoreErrorKind, StoreResult, StoreValue};
use crate::backplane::{LocalBackplane, SharedBackplane};
use crate::clock::{SharedClock, SystemClock};
use async_trait::async_trait;
use redb::{
    Database, MultimapTableDefinition, ReadableDatabase, ReadableMultimapTable, ReadableTable,
    TableDefinition, WriteTransaction,
};
use std::collections::BTreeSet;
use std::fmt;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

const ENTRIES: TableDefinition<&str, (u64, &[u8])> = TableDefinition::new("entries");
const LINKS: MultimapTableDefinition<&str, &str> = MultimapTableDefinition::new("links");
const LINK_DEADLINES: TableDefinition<&str, u64> = TableDefinition::new("link_deadlines");
/// A member's own deadline. Members written before this table existed have no row:
/// they live as long as their set.
const LINK_MEMBER_DEADLINES: TableDefinition<(&str, &str), u64> =
    TableDefinition::new("link_member_deadlines");
const EXPIRY: TableDefinition<(u64, &str), ()> = TableDefinition::new("expiry");

/// Why a second process cannot open a store file, and what to do instead.
const LOCKED: &str = "the file is locked: another process has it open (redb keeps an \
exclusive flock on the file while a process has it open, so one process at a time can \
use an embedded store), probably the application that uses it; stop it first, give \
each process its own file, or share a Redis between the application and this process \
(redis://…, e.g. in TOKENCACHE_STORE)";

/// How many expired entries one sweep transaction removes at most.
const SWEEP_BATCH: usize = 10_000;

/// Options of an [`EmbeddedStore`].
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// The time source for deadlines.
    pub clock: SharedClock,
    /// How often the sweeper deletes expired entries; `None`: no sweeper (expired
    /// entries are still never returned, and are removed when written over).
    pub sweep_interval: Option<Duration>,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            sweep_interval: Some(Duration::from_secs(60)),
        }
    }
}

struct Shared {
    db: Database,
    path: PathBuf,
    clock: SharedClock,
    cursors: ScanCursors,
    /// Every cache on this file in this process shares it (one open store per file).
    backplane: Arc<LocalBackplane>,
}

/// An L2 store in a redb file. Cheap to share behind an `Arc`; safe for many tasks.
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    sweeper: Option<tokio::task::AbortHandle>,
}

impl fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.shared.path)
            .field("sweeper", &self.sweeper.is_some())
            .finish()
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        if let Some(h) = self.sweeper.take() {
            h.abort();
        }
    }
}

/// A redb error in the store's terms: I/O → `Connection`, corruption → `BadData`,
/// anything else → `Server`.
fn map_err(path: &Path, e: redb::Error) -> StoreError {
    let kind = match &e {
        redb::Error::Io(_) | redb::Error::PreviousIo => StoreErrorKind::Connection,
        redb::Error::Corrupted(_) => StoreErrorKind::BadData,
        _ => StoreErrorKind::Server,
    };
    StoreError::new(kind, path.display().to_string(), e.to_string())
}

/// Whether a stored deadline (0 = none) has passed.
fn expired(deadline: u64, now: u64) -> bool {
    deadline != 0 && deadline <= now
}

fn encode_deadline(ttl: Option<Duration>, now: u64) -> u64 {
    ttl.map_or(0, |t| deadline(now, t))
}

impl EmbeddedStore {
    /// Opens (or creates) the store file at `path` on the system clock, with a sweeper
    /// every 60 s. The folder must exist. Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// `Config` (with the path) when the file cannot be opened: no permission, missing
    /// folder, locked by another process, or not a redb file.
    pub async fn open(path: impl AsRef<Path>) -> StoreResult<Self> {
        Self::open_with(path, EmbeddedOptions::default()).await
    }

    /// Like [`Self::open`], with another clock (tests).
    pub async fn open_with_clock(path: impl AsRef<Path>, clock: SharedClock) -> StoreResult<Self> {
        Self::open_with(
            path,
            EmbeddedOptions {
                clock,
                ..EmbeddedOptions::default()
            },
        )
        .await
    }

    /// Opens (or creates) the store file at `path` with the given options.
    ///
    /// # Errors
    /// As [`Self::open`].
    pub async fn open_with(path: impl AsRef<Path>, options: EmbeddedOptions) -> StoreResult<Self> {
        let path = path.as_ref().to_path_buf();
        let p = path.clone();
        let db = tokio::task::spawn_blocking(move || -> Result<Database, String> {
            let db = Database::create(&p).map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => LOCKED.to_string(),
                other => other.to_string(),
            })?;
            // Create the tables so that read transactions always find them.
            let tx = db.begin_write().map_err(|e| e.to_string())?;
            tx.open_table(ENTRIES).map_err(|e| e.to_string())?;
            tx.open_multimap_table(LINKS).map_err(|e| e.to_string())?;
            tx.open_table(LINK_DEADLINES).map_err(|e| e.to_string())?;
            tx.open_table(EXPIRY).map_err(|e| e.to_string())?;
            tx.commit().map_err(|e| e.to_string())?;
            Ok(db)
        })
        .await
        .map_err(|e| {
            StoreError::new(
                StoreErrorKind::Config,
                path.display().to_string(),
                format!("opening the store panicked: {e}"),
            )
        })?
        .map_err(|msg| {
            StoreError::new(
                StoreErrorKind::Config,
                path.display().to_string(),
                format!("cannot open embedded store file: {msg}"),
            )
        })?;
        let shared = Arc::new(Shared {
            db,
            path,
            clock: options.clock,
            cursors: ScanCursors::new(),
            backplane: Arc::new(LocalBackplane::new("embedded")),
        });
        let sweeper = match (
            options.sweep_interval,
            tokio::runtime::Handle::try_current(),
        ) {
            (Some(every), Ok(rt)) => {
                let weak = Arc::downgrade(&shared);
                Some(rt.spawn(sweep_loop(weak, every)).abort_handle())
            }
            _ => None,
        };
        Ok(Self { shared, sweeper })
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Deletes every expired entry and link set now; returns how many were deleted.
    /// The sweeper calls this periodically.
    pub async fn sweep(&self) -> StoreResult<u64> {
        sweep_once(self.shared.clone()).await
    }

    /// Runs `f` on the blocking pool with the database and "now".
    async fn run<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Database, u64) -> Result<T, redb::Error> + Send + 'static,
    {
        run_blocking(self.shared.clone(), f).await
    }
}

async fn run_blocking<T, F>(shared: Arc<Shared>, f: F) -> StoreResult<T>
where
    T: Send + 'static,
    F: FnOnce(&Database, u64) -> Result<T, redb::Error> + Send + 'static,
{
    let s = shared.clone();
    let res = tokio::task::spawn_blocking(move || {
        let now = s.clock.now_millis();
        f(&s.db, now)
    })
    .await;
    match res {
        Ok(r) => r.map_err(|e| map_err(&shared.path, e)),
        Err(e) => Err(StoreError::new(
            StoreErrorKind::Server,
            shared.path.display().to_string(),
            format!("store task failed: {e}"),
        )),
    }
}

async fn sweep_loop(weak: Weak<Shared>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate
    loop {
        tick.tick().await;
        let Some(shared) = weak.upgrade() else {
            return;
        };
        if let Err(e) = sweep_once(shared).await {
            tracing::warn!(error = %e, "embedded store sweep failed");
        }
    }
}

async fn sweep_once(shared: Arc<Shared>) -> StoreResult<u64> {
    let mut total = 0;
    loop {
        let n = run_blocking(shared.clone(), |db, now| {
            let tx = db.begin_write()?;
            let n = sweep_tx(&tx, now)?;
            tx.commit()?;
            Ok(n)
        })
        .await?;
        total += n;
        if n < SWEEP_BATCH as u64 {
            return Ok(total);
        }
    }
}

/// Removes up to [`SWEEP_BATCH`] expired entries and link sets found in the index.
fn sweep_tx(tx: &WriteTransaction, now: u64) -> Result<u64, redb::Error> {
    let mut expiry = tx.open_table(EXPIRY)?;
    let mut due: Vec<(u64, String)> = Vec::new();
    for item in expiry.range::<(u64, &str)>(..(now.saturating_add(1), ""))? {
        let (k, _) = item?;
        let (d, key) = k.value();
        if d > now {
            break;
        }
        due.push((d, key.to_owned()));
        if due.len() >= SWEEP_BATCH {
            break;
        }
    }
    let mut entries = tx.open_table(ENTRIES)?;
    let mut links = tx.open_multimap_table(LINKS)?;
    let mut link_deadlines = tx.open_table(LINK_DEADLINES)?;
    let mut member_deadlines = tx.open_table(LINK_MEMBER_DEADLINES)?;
    let mut removed = 0;
    for (d, key) in &due {
        expiry.remove((*d, key.as_str()))?;
        let entry_due = entries
            .get(key.as_str())?
            .is_some_and(|v| v.value().0 == *d);
        if entry_due {
            entries.remove(key.as_str())?;
            removed += 1;
        }
        let set_due = link_deadlines
            .get(key.as_str())?
            .is_some_and(|v| v.value() == *d);
        if set_due {
            link_deadlines.remove(key.as_str())?;
            for m in links.remove_all(key.as_str())? {
                member_deadlines.remove((key.as_str(), m?.value()))?;
            }
            removed += 1;
        }
    }
    Ok(removed)
}

/// The tables of one write transaction, with the operations that keep the index right.
struct Tables<'t> {
    entries: redb::Table<'t, &'static str, (u64, &'static [u8])>,
    links: redb::MultimapTable<'t, &'static str, &'static str>,
    link_deadlines: redb::Table<'t, &'static str, u64>,
    member_deadlines: redb::Table<'t, (&'static str, &'static str), u64>,
    expiry: redb::Table<'t, (u64, &'static str), ()>,
}

impl<'t> Tables<'t> {
    fn open(tx: &'t WriteTransaction) -> Result<Self, redb::Error> {
        Ok(Self {
            entries: tx.open_table(ENTRIES)?,
            links: tx.open_multimap_table(LINKS)?,
            link_deadlines: tx.open_table(LINK_DEADLINES)?,
            member_deadlines: tx.open_table(LINK_MEMBER_DEADLINES)?,
            expiry: tx.open_table(EXPIRY)?,
        })
    }

    /// Moves `key` in the expiry index from `old` to `new` (0 = not indexed).
    fn reindex(&mut self, key: &str, old: u64, new: u64) -> Result<(), redb::Error> {
        if old == new {
            return Ok(());
        }
        if old != 0 {
            self.expiry.remove((old, key))?;
        }
        if new != 0 {
            self.expiry.insert((new, key), ())?;
        }
        Ok(())
    }

    /// The entry's (deadline, bytes), whether live or not.
    fn entry(&self, key: &str) -> Result<Option<(u64, Vec<u8>)>, redb::Error> {
        Ok(self.entries.get(key)?.map(|v| {
            let (d, b) = v.value();
            (d, b.to_vec())
        }))
    }

    /// The link set's deadline, whether live or not.
    fn set_deadline(&self, key: &str) -> Result<Option<u64>, redb::Error> {
        Ok(self.link_deadlines.get(key)?.map(|v| v.value()))
    }

    /// Removes an entry; returns whether it was live.
    fn remove_entry(&mut self, key: &str, now: u64) -> Result<bool, redb::Error> {
        let old = self.entries.remove(key)?.map(|v| v.value().0);
        match old {
            Some(d) => {
                self.reindex(key, d, 0)?;
                Ok(!expired(d, now))
            }
            None => Ok(false),
        }
    }

    /// Removes a link set; returns whether it was live.
    fn remove_set(&mut self, key: &str, now: u64) -> Result<bool, redb::Error> {
        let old = self.link_deadlines.remove(key)?.map(|v| v.value());
        match old {
            Some(d) => {
                for m in self.links.remove_all(key)? {
                    self.member_deadlines.remove((key, m?.value()))?;
                }
                self.reindex(key, d, 0)?;
                Ok(!expired(d, now))
            }
            None => Ok(false),
        }
    }

    /// Drops the members of live set `key` past their own deadline and sets the set's
    /// deadline to its longest-lived member's (removing the set when none is left);
    /// returns the members left.
    fn prune_set(
        &mut self,
        key: &str,
        set_deadline: u64,
        now: u64,
    ) -> Result<Vec<String>, redb::Error> {
        let mut members = Vec::new();
        for m in self.links.get(key)? {
            members.push(m?.value().to_owned());
        }
        let mut live = Vec::with_capacity(members.len());
        let mut latest = Some(0u64); // None: a member without expiry
        for m in members {
            // no row: written before members had deadlines, lives with its set
            let d = match self.member_deadlines.get((key, m.as_str()))? {
                Some(v) => v.value(),
                None => set_deadline,
            };
            if expired(d, now) {
                self.links.remove(key, m.as_str())?;
                self.member_deadlines.remove((key, m.as_str()))?;
                continue;
            }
            latest = match (latest, d) {
                (None, _) | (_, 0) => None,
                (Some(a), d) => Some(a.max(d)),
            };
            live.push(m);
        }
        if live.is_empty() {
            self.remove_set(key, now)?;
            return Ok(live);
        }
        let new = latest.unwrap_or(0);
        if new != set_deadline {
            self.link_deadlines.insert(key, new)?;
            self.reindex(key, set_deadline, new)?;
        }
        Ok(live)
    }

    fn put_entry(
        &mut self,
        key: &str,
        bytes: &[u8],
        d: u64,
        old: Option<u64>,
    ) -> Result<(), redb::Error> {
        self.entries.insert(key, (d, bytes))?;
        self.reindex(key, old.unwrap_or(0), d)
    }
}

/// Runs `f` in a write transaction and commits it.
fn write<T>(
    db: &Database,
    f: impl FnOnce(&mut Tables<'_>) -> Result<T, redb::Error>,
) -> Result<T, redb::Error> {
    let tx = db.begin_write()?;
    let out = {
        let mut t = Tables::open(&tx)?;
        f(&mut t)?
    };
    tx.commit()?;
    Ok(out)
}

/// Values as `get` reads them, in one read transaction (each table opened once: redb
/// checks a table's definition on every open).
fn read_in<const N: usize>(
    tx: &redb::ReadTransaction,
    keys: [&str; N],
    now: u64,
) -> Result<[Outcome<Option<StoreValue>>; N], redb::Error> {
    let entries = tx.open_table(ENTRIES)?;
    let mut out = [const { Outcome::Done(None) }; N];
    let mut missing = false;
    for (key, slot) in keys.iter().zip(out.iter_mut()) {
        match entries.get(*key)? {
            Some(v) if !expired(v.value().0, now) => {
                let (d, b) = v.value();
                *slot = Outcome::Done(Some(StoreValue {
                    bytes: b.to_vec(),
                    ttl: (d != 0).then(|| Duration::from_millis(d - now)),
                }));
            }
            _ => missing = true,
        }
    }
    if missing {
        let sets = tx.open_table(LINK_DEADLINES)?;
        for (key, slot) in keys.iter().zip(out.iter_mut()) {
            if matches!(slot, Outcome::Done(None)) {
                if let Some(d) = sets.get(*key)? {
                    if !expired(d.value(), now) {
                        *slot = Outcome::WrongType;
                    }
                }
            }
        }
    }
    Ok(out)
}

/// A value as `get_and_touch` reads it (and gives it `ttl`) in a write transaction.
fn touch_in(
    t: &mut Tables<'_>,
    key: &str,
    ttl: Duration,
    now: u64,
) -> Result<Outcome<Option<StoreValue>>, redb::Error> {
    if t.set_deadline(key)?.is_some_and(|d| !expired(d, now)) {
        return Ok(Outcome::WrongType);
    }
    match t.entry(key)? {
        Some((d, _)) if expired(d, now) => {
            t.remove_entry(key, now)?;
            Ok(Outcome::Done(None))
        }
        Some((d, bytes)) => {
            let nd = deadline(now, ttl);
            t.put_entry(key, &bytes, nd, Some(d))?;
            Ok(Outcome::Done(Some(StoreValue {
                bytes,
                ttl: Some(Duration::from_millis(nd - now)),
            })))
        }
        None => Ok(Outcome::Done(None)),
    }
}

/// An error value carried out of a transaction closure that is not a redb failure.
enum Outcome<T> {
    Done(T),
    WrongType,
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &str) -> StoreResult<Option<StoreValue>> {
        let k = key.to_owned();
        let out = self
            .run(move |db, now| read_in(&db.begin_read()?, [k.as_str()], now))
            .await?;
        let [out] = out;
        self.done(out, key)
    }

    async fn get_and_touch(&self, key: &str, ttl: Duration) -> StoreResult<Option<StoreValue>> {
        let k = key.to_owned();
        let out = self
            .run(move |db, now| write(db, |t| touch_in(t, &k, ttl, now)))
            .await?;
        self.done(out, key)
    }

    /// Both reads in one transaction, in one blocking call (the default would make two).
    async fn get_along(
        &self,
        key: &str,
        touch: Option<Duration>,
        also: &str,
    ) -> StoreResult<(Option<StoreValue>, Option<Vec<u8>>)> {
        let (k, a) = (key.to_owned(), also.to_owned());
        let (value, other) = self
            .run(move |db, now| match touch {
                None => {
                    let [value, other] = read_in(&db.begin_read()?, [k.as_str(), a.as_str()], now)?;
                    Ok((value, other))
                }
                Some(ttl) => write(db, |t| {
                    let value = touch_in(t, &k, ttl, now)?;
                    let other = match t.set_deadline(&a)? {
                        Some(d) if !expired(d, now) => Outcome::WrongType,
                        _ => Outcome::Done(t.entry(&a)?.filter(|(d, _)| !expired(*d, now)).map(
                            |(d, bytes)| StoreValue {
                                bytes,
                                ttl: (d != 0).then(|| Duration::from_millis(d - now)),
                            },
                        )),
                    };
                    Ok((value, other))
                }),
            })
            .await?;
        let value = self.done(value, key)?;
        let other = self.done(other, also)?;
        Ok((value, other.map(|v| v.bytes)))
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> StoreResult<()> {
        let k = key.to_owned();
        let v = value.to_vec();
        self.run(move |db, now| {
            write(db, |t| {
                t.remove_set(&k, now)?;
                let old = t.entries.get(k.as_str())?.map(|g| g.value().0);
                t.put_entry(&k, &v, encode_deadline(ttl, now), old)
            })
        })
        .await
    }

    async fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> StoreResult<bool> {
        let k = key.to_owned();
        let v = value.to_vec();
        self.run(move |db, now| {
            // One write transaction: redb serializes writers, so check-and-set is atomic.
            write(db, |t| {
                let old = match t.entry(&k)? {
                    Some((d, _)) if !expired(d, now) => return Ok(false),
                    Some((d, _)) => Some(d),
                    None => None,
                };
                match t.set_deadline(&k)? {
                    Some(d) if !expired(d, now) => return Ok(false),
                    Some(_) => {
                        t.remove_set(&k, now)?;
                    }
                    None => {}
                }
                t.put_entry(&k, &v, encode_deadline(ttl, now), old)?;
                Ok(true)
            })
        })
        .await
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        expiry: super::EntryExpiry,
    ) -> StoreResult<bool> {
        let ttl = expiry.ttl();
        let k = key.to_owned();
        let expected = expected.map(<[u8]>::to_vec);
        let new = new.map(<[u8]>::to_vec);
        let out = self
            .run(move |db, now| {
                // One write transaction: redb serializes writers, so compare-and-swap is
                // atomic.
                write(db, |t| {
                    if t.set_deadline(&k)?.is_some_and(|d| !expired(d, now)) {
                        return Ok(Outcome::WrongType);
                    }
                    let (old, current) = match t.entry(&k)? {
                        Some((d, b)) if !expired(d, now) => (Some(d), Some(b)),
                        Some((d, _)) => (Some(d), None),
                        None => (None, None),
                    };
                    if current != expected {
                        return Ok(Outcome::Done(false));
                    }
                    match &new {
                        Some(v) => t.put_entry(&k, v, encode_deadline(ttl, now), old)?,
                        None => {
                            t.remove_entry(&k, now)?;
                        }
                    }
                    Ok(Outcome::Done(true))
                })
            })
            .await?;
        self.done(out, key)
    }

    async fn touch(&self, key: &str, ttl: Duration) -> StoreResult<bool> {
        let k = key.to_owned();
        self.run(move |db, now| {
            write(db, |t| {
                let nd = deadline(now, ttl);
                if let Some((d, bytes)) = t.entry(&k)? {
                    if expired(d, now) {
                        t.remove_entry(&k, now)?;
                    } else {
                        t.put_entry(&k, &bytes, nd, Some(d))?;
                        return Ok(true);
                    }
                }
                if let Some(d) = t.set_deadline(&k)? {
                    if expired(d, now) {
                        t.remove_set(&k, now)?;
                    } else {
                        t.link_deadlines.insert(k.as_str(), nd)?;
                        t.reindex(&k, d, nd)?;
                        return Ok(true);
                    }
                }
                Ok(false)
            })
        })
        .await
    }

    async fn remove(&self, key: &str) -> StoreResult<bool> {
        let k = key.to_owned();
        self.run(move |db, now| {
            write(db, |t| {
                let a = t.remove_entry(&k, now)?;
                let b = t.remove_set(&k, now)?;
                Ok(a || b)
            })
        })
        .await
    }

    async fn remove_many(&self, keys: &[String]) -> StoreResult<u64> {
        if keys.is_empty() {
            return Ok(0);
        }
        let keys = keys.to_vec();
        self.run(move |db, now| {
            write(db, |t| {
                let mut n = 0;
                for k in &keys {
                    let a = t.remove_entry(k, now)?;
                    let b = t.remove_set(k, now)?;
                    n += u64::from(a || b);
                }
                Ok(n)
            })
        })
        .await
    }

    async fn link_add(
        &self,
        set_key: &str,
        member: &str,
        ttl: Option<Duration>,
    ) -> StoreResult<()> {
        let k = set_key.to_owned();
        let m = member.to_owned();
        let out = self
            .run(move |db, now| {
                write(db, |t| {
                    match t.entry(&k)? {
                        Some((d, _)) if expired(d, now) => {
                            t.remove_entry(&k, now)?;
                        }
                        Some(_) => return Ok(Outcome::WrongType),
                        None => {}
                    }
                    let want = encode_deadline(ttl, now);
                    let old = match t.set_deadline(&k)? {
                        Some(d) if expired(d, now) => {
                            t.remove_set(&k, now)?;
                            None
                        }
                        d => d,
                    };
                    // A member's deadline is never shortened: no expiry (0) beats any.
                    let mine = match t.member_deadlines.get((k.as_str(), m.as_str()))? {
                        Some(d) if d.value() == 0 || want == 0 => 0,
                        Some(d) => d.value().max(want),
                        None => want,
                    };
                    t.links.insert(k.as_str(), m.as_str())?;
                    t.member_deadlines.insert((k.as_str(), m.as_str()), mine)?;
                    // The set lives at least as long as this member until pruned.
                    let set_d = match old {
                        Some(d) if d == 0 || mine == 0 => 0,
                        Some(d) => d.max(mine),
                        None => mine,
                    };
                    t.link_deadlines.insert(k.as_str(), set_d)?;
                    t.reindex(&k, old.unwrap_or(0), set_d)?;
                    t.prune_set(&k, set_d, now)?;
                    Ok(Outcome::Done(()))
                })
            })
            .await?;
        self.done(out, set_key)
    }

    async fn link_members(&self, set_key: &str) -> StoreResult<Vec<String>> {
        let k = set_key.to_owned();
        let out = self
            .run(move |db, now| {
                // A write transaction: members past their deadline are pruned as read.
                write(db, |t| match t.set_deadline(&k)? {
                    Some(d) if !expired(d, now) => Ok(Outcome::Done(t.prune_set(&k, d, now)?)),
                    _ => {
                        let is_entry = t.entry(&k)?.is_some_and(|(d, _)| !expired(d, now));
                        Ok(if is_entry {
                            Outcome::WrongType
                        } else {
                            Outcome::Done(Vec::new())
                        })
                    }
                })
            })
            .await?;
        self.done(out, set_key)
    }

    async fn link_remove(&self, set_key: &str, members: &[String]) -> StoreResult<()> {
        let k = set_key.to_owned();
        let members = members.to_vec();
        let out = self
            .run(move |db, now| {
                write(db, |t| {
                    match t.set_deadline(&k)? {
                        None => {}
                        Some(d) if expired(d, now) => {
                            t.remove_set(&k, now)?;
                        }
                        Some(d) => {
                            for m in &members {
                                t.links.remove(k.as_str(), m.as_str())?;
                                t.member_deadlines.remove((k.as_str(), m.as_str()))?;
                            }
                            t.prune_set(&k, d, now)?;
                            return Ok(Outcome::Done(()));
                        }
                    }
                    let is_entry = t.entry(&k)?.is_some_and(|(d, _)| !expired(d, now));
                    Ok(if is_entry {
                        Outcome::WrongType
                    } else {
                        Outcome::Done(())
                    })
                })
            })
            .await?;
        self.done(out, set_key)
    }

    async fn health(&self) -> StoreResult<()> {
        self.run(|db, _| {
            let tx = db.begin_read()?;
            tx.open_table(ENTRIES)?;
            Ok(())
        })
        .await
    }

    async fn scan(
        &self,
        prefix: &str,
        cursor: u64,
        count: usize,
    ) -> StoreResult<(u64, Vec<String>)> {
        let endpoint = self.endpoint();
        let after = self.shared.cursors.resume(&endpoint, cursor)?;
        let prefix = prefix.to_owned();
        let count = count.max(1);
        let mut keys = self
            .run(move |db, now| {
                let tx = db.begin_read()?;
                let start = match &after {
                    Some(k) => Bound::Excluded(k.as_str()),
                    None => Bound::Included(prefix.as_str()),
                };
                // The count+1 smallest live keys of each table; merged, the first
                // count+1 of the union are right.
                let mut found = BTreeSet::new();
                let entries = tx.open_table(ENTRIES)?;
                for item in entries.range::<&str>((start, Bound::Unbounded))? {
                    let (k, v) = item?;
                    let k = k.value();
                    if !k.starts_with(prefix.as_str()) {
                        break;
                    }
                    if !expired(v.value().0, now) {
                        found.insert(k.to_owned());
                        if found.len() > count {
                            break;
                        }
                    }
                }
                let sets = tx.open_table(LINK_DEADLINES)?;
                let mut from_sets = 0;
                for item in sets.range::<&str>((start, Bound::Unbounded))? {
                    let (k, v) = item?;
                    let k = k.value();
                    if !k.starts_with(prefix.as_str()) {
                        break;
                    }
                    if !expired(v.value(), now) {
                        found.insert(k.to_owned());
                        from_sets += 1;
                        if from_sets > count {
                            break;
                        }
                    }
                }
                Ok(found.into_iter().take(count + 1).collect::<Vec<_>>())
            })
            .await?;
        let next = if keys.len() > count {
            keys.truncate(count);
            self.shared.cursors.save(keys[count - 1].clone())
        } else {
            0
        };
        Ok((next, keys))
    }

    fn endpoint(&self) -> String {
        self.shared.path.display().to_string()
    }

    fn backplane(&self) -> Option<SharedBackplane> {
        Some(self.shared.backplane.clone())
    }
}

impl EmbeddedStore {
    fn done<T>(&self, out: Outcome<T>, key: &str) -> StoreResult<T> {
        match out {
            Outcome::Done(v) => Ok(v),
            Outcome::WrongType => Err(wrong_type(&self.endpoint(), key)),
        }
    }
}
