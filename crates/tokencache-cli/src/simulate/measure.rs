//! Counting what L2 holds: every key under a policy's prefix is listed with `SCAN`
//! (through [`Store::scan`](tokencache::store::Store::scan)) and read, so the numbers
//! are the store's, not the simulation's bookkeeping. The world only says what each
//! key is and whether it can still be used.

use tokencache::store::{SharedStore, StoreValue};

use super::world::World;

/// What one policy's L2 held at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tally {
    /// Every key under the prefix (partitions and tokencache's own keys).
    pub keys: u64,
    /// Partitions that can still be used, per [`KeyKind`](super::world::KeyKind).
    pub live: [u64; 4],
    /// Partitions that can never be used again, per [`KeyKind`](super::world::KeyKind).
    pub orphaned: [u64; 4],
    /// Bytes (key + value) of live partitions.
    pub live_bytes: u64,
    /// Bytes (key + value) of orphaned partitions.
    pub orphaned_bytes: u64,
    /// tokencache's own keys (link sets, revocation stamps).
    pub own_keys: u64,
    /// Their bytes (key + members or value).
    pub own_bytes: u64,
    /// Keys the world never produced (should be none).
    pub unknown: u64,
}

impl Tally {
    /// Live partitions, all kinds.
    pub(crate) fn live_total(&self) -> u64 {
        self.live.iter().sum()
    }
    /// Orphaned partitions, all kinds.
    pub(crate) fn orphaned_total(&self) -> u64 {
        self.orphaned.iter().sum()
    }
}

/// Reads in flight at once while counting. A sample must be quick: on Redis virtual
/// time runs on while it counts, and every virtual minute a sample takes is a minute the
/// next events run late (32 reads in flight cut a 3 × 900-key sample from ~8 to under 1
/// virtual minute at the default pace).
const READS_IN_FLIGHT: usize = 32;

/// What reading one key gave.
enum Got {
    /// A link set's members (empty: gone).
    Links(Vec<String>),
    /// A value, or none (expired between SCAN and GET).
    Value(Option<StoreValue>),
}

/// Scans `prefix` in `store` and judges every partition at `now_ms`.
pub(crate) async fn tally(
    store: &SharedStore,
    prefix: &str,
    world: &World,
    now_ms: u64,
) -> Result<Tally, String> {
    let mut t = Tally::default();
    let mut cursor = 0u64;
    loop {
        let (next, page) = store
            .scan(prefix, cursor, 500)
            .await
            .map_err(|e| e.to_string())?;
        for chunk in page.chunks(READS_IN_FLIGHT) {
            let mut reads = tokio::task::JoinSet::new();
            for full in chunk {
                let (store, full) = (store.clone(), full.clone());
                let links = full
                    .strip_prefix(prefix)
                    .unwrap_or(&full)
                    .starts_with("tc:links:");
                reads.spawn(async move {
                    let got = if links {
                        store.link_members(&full).await.map(Got::Links)
                    } else {
                        store.get(&full).await.map(Got::Value)
                    };
                    (full, got)
                });
            }
            while let Some(done) = reads.join_next().await {
                let (full, got) = done.map_err(|e| format!("a read task failed: {e}"))?;
                let got = got.map_err(|e| e.to_string())?;
                count(&mut t, prefix, &full, got, world, now_ms);
            }
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    Ok(t)
}

/// Adds one key to the tally (sums only, so the order of reads does not matter).
fn count(t: &mut Tally, prefix: &str, full: &str, got: Got, world: &World, now_ms: u64) {
    let bare = full.strip_prefix(prefix).unwrap_or(full);
    let value = match got {
        Got::Links(members) if members.is_empty() => return, // gone between SCAN and read
        Got::Links(members) => {
            t.keys += 1;
            t.own_keys += 1;
            t.own_bytes += (full.len() + members.iter().map(String::len).sum::<usize>()) as u64;
            return;
        }
        Got::Value(None) => return, // expired between SCAN and GET
        Got::Value(Some(value)) => value,
    };
    let bytes = (full.len() + value.bytes.len()) as u64;
    t.keys += 1;
    // tokencache's own keys (session partitions live outside `tc:`, in `obo-session:`).
    if bare.starts_with("tc:") {
        t.own_keys += 1;
        t.own_bytes += bytes;
        return;
    }
    match world.judge(bare, now_ms) {
        Some((kind, true)) => {
            t.live[kind.index()] += 1;
            t.live_bytes += bytes;
        }
        Some((kind, false)) => {
            t.orphaned[kind.index()] += 1;
            t.orphaned_bytes += bytes;
        }
        None => {
            t.unknown += 1;
            t.orphaned_bytes += bytes;
        }
    }
}

/// Removes every key under `prefix` (the simulation's own keys only): lists them with
/// SCAN, then deletes them 500 at a time.
pub(crate) async fn clear(store: &SharedStore, prefix: &str) -> Result<u64, String> {
    let (mut cursor, mut keys) = (0u64, Vec::new());
    loop {
        let (next, page) = store
            .scan(prefix, cursor, 500)
            .await
            .map_err(|e| e.to_string())?;
        keys.extend(page);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let mut removed = 0;
    for chunk in keys.chunks(500) {
        removed += store.remove_many(chunk).await.map_err(|e| e.to_string())?;
    }
    Ok(removed)
}
