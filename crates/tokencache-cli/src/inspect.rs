//! `tokencache inspect`: what a live cache holds, without showing any secret.
//!
//! Lists every key under the prefix with `SCAN` pages (through
//! [`Store::scan`](tokencache::store::Store::scan); never `KEYS`, so Redis is never
//! blocked), reads each value once (`GET` + `PTTL`) to size it and see its TTL, and
//! reports: partitions by kind (user `oid.tid`, app `…_AppTokenCache`, OBO = 43-char
//! base64url assertion hash, long-running OBO sessions = other keys named in a link
//! set), bytes, entries without expiry, the TTL distribution, tokencache's link sets and
//! revocation stamps, OBO partitions that no link set names (orphans: a sign-out cannot
//! reach them), link-set members whose partition is gone, and plaintext vs opaque
//! values, and the key ids of encrypted ones with their counts (naming those the
//! configured ring, `TOKENCACHE_KEYS`, does not hold). Values are never printed; keys
//! are account ids and hashes, not secrets.
//! The last line is machine-readable (`inspect: key=value …`).

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::{BTreeMap, HashSet};
use std::process::ExitCode;
use std::time::Duration;
use tokencache::store::{self, SharedStore};

/// Arguments of `inspect`.
#[derive(Args, Debug)]
pub(crate) struct InspectArgs {
    /// The store: `redis://…`, `redis+cluster://…`, `redb:///…` (default: the embedded
    /// store in the platform cache folder).
    #[arg(long)]
    store: Option<String>,
    /// Only keys under this prefix (Redis "instance name"); it is stripped before classifying.
    #[arg(long, default_value = "")]
    prefix: String,
    /// Keys asked for per SCAN page.
    #[arg(long, default_value_t = 500)]
    page: usize,
    /// How many orphan keys to list as examples.
    #[arg(long, default_value_t = 10)]
    examples: usize,
}

/// Partition kinds as seen from key shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    User,
    App,
    Obo,
    Session,
    Other,
}

const KINDS: [(Kind, &str); 5] = [
    (Kind::User, "user"),
    (Kind::App, "app"),
    (Kind::Obo, "obo"),
    (Kind::Session, "obo-session"),
    (Kind::Other, "other"),
];

/// Whether `key` looks like an OBO partition key: base64url (no padding) of SHA-256.
fn is_assertion_hash(key: &str) -> bool {
    key.len() == 43
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `key` looks like an MSAL home account id (`oid.tid` / `uid.utid`).
fn is_home_account_id(key: &str) -> bool {
    match key.split_once('.') {
        Some((a, b)) => {
            let ok = |s: &str| {
                !s.is_empty()
                    && s.bytes()
                        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
            };
            ok(a) && ok(b)
        }
        None => false,
    }
}

fn classify(bare: &str, full: &str, linked: &HashSet<String>) -> Kind {
    if bare.ends_with("_AppTokenCache") {
        Kind::App
    } else if is_assertion_hash(bare) {
        Kind::Obo
    } else if linked.contains(full) {
        Kind::Session
    } else if is_home_account_id(bare) {
        Kind::User
    } else {
        Kind::Other
    }
}

/// TTL buckets: none, < 1 min, < 1 h, < 1 d, < 7 d, < 30 d, ≥ 30 d.
const BUCKETS: [(&str, u64); 6] = [
    ("<1m", 60),
    ("<1h", 3600),
    ("<1d", 86_400),
    ("<7d", 7 * 86_400),
    ("<30d", 30 * 86_400),
    (">=30d", u64::MAX),
];

fn bucket(ttl: Option<Duration>) -> usize {
    match ttl {
        None => 0,
        Some(t) => {
            1 + BUCKETS
                .iter()
                .position(|(_, s)| t.as_secs() < *s)
                .unwrap_or(BUCKETS.len() - 1)
        }
    }
}

pub(crate) fn run(args: InspectArgs) -> ExitCode {
    crate::block_on(crate::Runtime::MultiThread, inspect(args))
}

fn spinner(what: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {pos} ({elapsed})") {
        bar.set_style(style);
    }
    bar.set_message(what.to_string());
    bar
}

#[derive(Default)]
struct Counts {
    count: u64,
    bytes: u64,
    no_expiry: u64,
}

async fn inspect(args: InspectArgs) -> Result<(), String> {
    // The ring only names the key ids it knows (nothing is decrypted here).
    let ring = tokencache::KeyRing::from_env().map_err(|e| format!("encryption keys: {e}"))?;
    let url = args.store.clone().unwrap_or_default();
    let store: SharedStore = store::open(&url).await.map_err(|e| e.to_string())?;
    store.health().await.map_err(|e| e.to_string())?;
    let prefix = args.prefix.as_str();

    // 1. SCAN, a page at a time.
    let bar = spinner("scanning keys");
    let (mut cursor, mut keys) = (0u64, Vec::new());
    loop {
        let (next, page) = store
            .scan(prefix, cursor, args.page.max(1))
            .await
            .map_err(|e| e.to_string())?;
        keys.extend(page);
        bar.set_position(keys.len() as u64);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    bar.finish_and_clear();
    keys.sort();
    keys.dedup(); // SCAN may return a key twice
    let present: HashSet<&str> = keys.iter().map(String::as_str).collect();

    // 2. Link sets first: they name the OBO partitions a sign-out can reach.
    let bare = |k: &str| k.strip_prefix(prefix).unwrap_or(k).to_string();
    let (mut link_sets, mut link_members, mut stamps, mut own_other, mut own_bytes) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut linked: HashSet<String> = HashSet::new();
    let mut dangling = Vec::new();
    let mut values = Vec::new();
    for k in &keys {
        let b = bare(k);
        if b.starts_with("tc:links:") {
            let members = store.link_members(k).await.map_err(|e| e.to_string())?;
            if members.is_empty() {
                continue;
            }
            link_sets += 1;
            link_members += members.len() as u64;
            own_bytes += (k.len() + members.iter().map(String::len).sum::<usize>()) as u64;
            for m in members {
                if !present.contains(m.as_str()) {
                    dangling.push(m.clone());
                }
                linked.insert(m);
            }
        } else {
            values.push(k.clone());
        }
    }

    // 3. Read every other value once (a few at a time), to size it and see its TTL.
    let bar =
        ProgressBar::with_draw_target(Some(values.len() as u64), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} reading [{bar:40}] {pos}/{len} ({elapsed})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    let mut read = Vec::with_capacity(values.len());
    for chunk in values.chunks(32) {
        let mut set = tokio::task::JoinSet::new();
        for (i, k) in chunk.iter().enumerate() {
            let (store, k) = (store.clone(), k.clone());
            set.spawn(async move { (i, store.get(&k).await) });
        }
        let mut got = vec![None; chunk.len()];
        while let Some(done) = set.join_next().await {
            let (i, r) = done.map_err(|e| e.to_string())?;
            got[i] = r.map_err(|e| e.to_string())?;
        }
        for (k, v) in chunk.iter().zip(got) {
            if let Some(v) = v {
                read.push((k.clone(), v));
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();

    let mut per_kind: Vec<Counts> = KINDS.iter().map(|_| Counts::default()).collect();
    let mut ttl_hist = [0u64; 1 + BUCKETS.len()];
    let (mut plaintext, mut opaque) = (0u64, 0u64);
    let mut key_ids: BTreeMap<String, u64> = BTreeMap::new();
    let mut orphans = Vec::new();
    for (k, v) in &read {
        let b = bare(k);
        let size = (k.len() + v.bytes.len()) as u64;
        if b.starts_with("tc:") {
            if b.starts_with("tc:revoked:") {
                stamps += 1;
            } else {
                own_other += 1;
            }
            own_bytes += size;
            continue;
        }
        let kind = classify(&b, k, &linked);
        let c = &mut per_kind[KINDS.iter().position(|(x, _)| *x == kind).unwrap_or(4)];
        c.count += 1;
        c.bytes += size;
        c.no_expiry += u64::from(v.ttl.is_none());
        ttl_hist[bucket(v.ttl)] += 1;
        match tokencache::protect::stored(&v.bytes) {
            tokencache::protect::Stored::Plaintext => plaintext += 1,
            tokencache::protect::Stored::Sealed { key_id } => {
                opaque += 1;
                *key_ids.entry(key_id.to_string()).or_default() += 1;
            }
            tokencache::protect::Stored::Malformed(_) => opaque += 1,
        }
        if kind == Kind::Obo && !linked.contains(k) {
            orphans.push((b, v.ttl));
        }
    }

    // 4. Report.
    let partitions: u64 = per_kind.iter().map(|c| c.count).sum();
    let bytes: u64 = per_kind.iter().map(|c| c.bytes).sum::<u64>() + own_bytes;
    let no_expiry: u64 = per_kind.iter().map(|c| c.no_expiry).sum();
    println!("store: {} (prefix {:?})", store.endpoint(), prefix);
    println!(
        "keys: {} ({} partitions, {} tokencache keys)",
        keys.len(),
        partitions,
        keys.len() as u64 - partitions
    );
    println!();
    println!(
        "{:<14} {:>8} {:>12} {:>10}",
        "partitions", "count", "bytes", "no expiry"
    );
    for ((_, name), c) in KINDS.iter().zip(&per_kind) {
        println!(
            "{:<14} {:>8} {:>12} {:>10}",
            name, c.count, c.bytes, c.no_expiry
        );
    }
    println!();
    let hist = std::iter::once("none")
        .chain(BUCKETS.iter().map(|(n, _)| *n))
        .zip(ttl_hist)
        .map(|(n, c)| format!("{n} {c}"))
        .collect::<Vec<_>>()
        .join(" | ");
    println!("TTL of partitions: {hist}");
    println!(
        "tokencache keys: {link_sets} link sets ({link_members} members, {} gone), {stamps} revocation stamps, {own_other} other; {own_bytes} bytes",
        dangling.len()
    );
    let encrypted: u64 = key_ids.values().sum();
    println!(
        "values: {plaintext} plaintext MSAL JSON, {encrypted} encrypted, {} neither (foreign or malformed)",
        opaque - encrypted
    );
    let known = |id: &str| ring.as_ref().is_some_and(|r| r.get(id).is_some());
    let list = |unknown: bool| {
        key_ids
            .iter()
            .filter(|(id, _)| known(id) != unknown)
            .map(|(id, n)| format!("{id}:{n}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let (key_ids_known, key_ids_unknown) = (list(false), list(true));
    if !key_ids.is_empty() {
        let primary = ring.as_ref().map(|r| r.primary().id().to_string());
        for (id, n) in &key_ids {
            let role = match (&primary, known(id)) {
                (Some(p), _) if p == id => "primary",
                (_, true) => "decrypt-only",
                (None, _) => "unknown: no TOKENCACHE_KEYS configured",
                _ => "UNKNOWN to this key ring: these entries cannot be read",
            };
            println!("key id {id}: {n} entries ({role})");
        }
    }
    println!(
        "orphans: {} OBO partitions are in no link set (a sign-out cannot reach them; they end only with their TTL)",
        orphans.len()
    );
    for (k, ttl) in orphans.iter().take(args.examples) {
        let ttl = ttl.map_or("no expiry".to_string(), |t| {
            format!("ttl {} s", t.as_secs())
        });
        println!("  {k} ({ttl})");
    }
    if !dangling.is_empty() {
        println!(
            "link-set members whose partition is gone: {} (harmless; removed at sign-out)",
            dangling.len()
        );
    }
    let n = |k: Kind| per_kind[KINDS.iter().position(|(x, _)| *x == k).unwrap_or(4)].count;
    println!(
        "inspect: keys={} user={} app={} obo={} obo-session={} other={} link-sets={} stamps={} bytes={} no-expiry={} orphan-obo={} dangling-links={} plaintext={} not-json={} encrypted={} key-ids={} unknown-key-ids={}",
        keys.len(),
        n(Kind::User),
        n(Kind::App),
        n(Kind::Obo),
        n(Kind::Session),
        n(Kind::Other),
        link_sets,
        stamps,
        bytes,
        no_expiry,
        orphans.len(),
        dangling.len(),
        plaintext,
        opaque,
        encrypted,
        key_ids_known,
        key_ids_unknown,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_shapes() {
        let linked: HashSet<String> = ["p:lro-1".to_string()].into();
        assert_eq!(
            classify("cid_tid_AppTokenCache", "cid_tid_AppTokenCache", &linked),
            Kind::App
        );
        assert_eq!(
            classify("ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0", "x", &linked),
            Kind::Obo
        );
        assert_eq!(classify("lro-1", "p:lro-1", &linked), Kind::Session);
        assert_eq!(
            classify(
                "a11ce000-0000-0000-0000-000000000001.72f988bf-86f1-41af-91ab-2d7cd011db47",
                "x",
                &linked
            ),
            Kind::User
        );
        assert_eq!(classify("something else", "x", &linked), Kind::Other);
    }

    #[test]
    fn ttl_buckets() {
        assert_eq!(bucket(None), 0);
        assert_eq!(bucket(Some(Duration::from_secs(5))), 1);
        assert_eq!(bucket(Some(Duration::from_secs(600))), 2);
        assert_eq!(bucket(Some(Duration::from_secs(90 * 86_400))), 6);
    }
}
