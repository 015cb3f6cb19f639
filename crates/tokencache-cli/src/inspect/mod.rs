//! `tokencache inspect`: what a live cache holds, without showing any secret.
//!
//! Lists every key under the prefix with `SCAN` pages (through
//! [`Store::scan`](tokencache::store::Store::scan); never `KEYS`, so Redis is never
//! blocked), reads each value once (`GET` + `PTTL`) to size it and see its TTL, and
//! reports: partitions by kind (user `oid.tid`, app `…_AppTokenCache`, OBO = 43-char
//! base64url assertion hash, long-running OBO sessions = `obo-session:…` or other
//! keys named in a link set), bytes, entries without expiry, the TTL distribution,
//! tokencache's link sets and revocation stamps, OBO partitions that no link set names
//! (orphans: a sign-out cannot reach them), link-set members whose partition is gone,
//! and what the values are: plaintext MSAL JSON (a JSON object with MSAL's sections that
//! parses as a partition; another application's `{"a":1}` is not one), encrypted
//! (with their key ids and counts, naming those the configured ring, `TOKENCACHE_KEYS`,
//! does not hold), encrypted by .NET Data Protection, or neither. Encrypted entries are
//! not taken on their key id's word: a sample of them (every one with `--verify`) is
//! opened with the ring, and authentication failures (a key under the right id with
//! other bytes, a tampered value) are counted per key id. Partitions are read in either layout (a Redis
//! string, or the hash .NET's `RedisCache` writes for Microsoft.Identity.Web) and
//! counted per layout; values encrypted by .NET Data Protection are counted as such.
//! Keys of any other type (a list, or a set that is not a link set) are counted as
//! "other", never an error.
//! Without `--prefix`, the key prefixes in the store are found from the keys' shapes
//! ([`keys::find_prefixes`]), each key is classified without its prefix, and the
//! report has a line per prefix. Values are never printed; keys are account ids and
//! hashes, not secrets. It never creates a store. The last line is machine-readable
//! (`inspect: key=value …`).

mod keys;

use clap::Args;
use std::collections::{BTreeMap, HashSet};
use std::process::ExitCode;
use std::time::Duration;
use tokencache::protect::{ProtectError, Protection};
use tokencache::store::{dotnet, SharedStore, StoreError, StoreValue, ValueLayout};

use keys::{classify, Kind, KINDS};

/// Arguments of `inspect`.
#[derive(Args, Debug)]
pub(crate) struct InspectArgs {
    /// The store: `redis://…`, `redis+cluster://…`, `redb:///…` (default: the embedded
    /// store in the platform cache folder).
    #[arg(long, env = "TOKENCACHE_STORE", hide_env_values = true)]
    store: Option<String>,
    /// Only keys under this prefix (Redis "instance name"); it is stripped before classifying.
    #[arg(
        long,
        default_value = "",
        env = "TOKENCACHE_PREFIX",
        hide_env_values = true
    )]
    prefix: String,
    /// Keys asked for per SCAN page (1 to 100,000).
    #[arg(long, default_value_t = 500, allow_negative_numbers = true, value_parser = crate::args::count::<1, 100_000>)]
    page: usize,
    /// How many orphan keys to list as examples (0 to 10,000).
    #[arg(long, default_value_t = 10, allow_negative_numbers = true, value_parser = crate::args::count::<0, 10_000>)]
    examples: usize,
    /// Open every encrypted entry with the key ring (default: a sample of
    /// 100 spread over the keys).
    #[arg(long)]
    verify: bool,
}

/// Encrypted entries opened without `--verify`.
const SAMPLE: usize = 100;

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

use crate::stores::is_wrong_type;

/// Whether `bytes` are plaintext MSAL JSON: a JSON object with at least one of MSAL's
/// sections, that parses as a partition.
fn is_msal_json(bytes: &[u8]) -> bool {
    const SECTIONS: [&str; 5] = [
        "AccessToken",
        "RefreshToken",
        "IdToken",
        "Account",
        "AppMetadata",
    ];
    let Ok(serde_json::Value::Object(top)) = serde_json::from_slice::<serde_json::Value>(bytes)
    else {
        return false;
    };
    SECTIONS
        .iter()
        .any(|s| top.get(*s).is_some_and(serde_json::Value::is_object))
        && tokencache::Partition::parse(bytes).is_ok()
}

/// What opening the sampled encrypted entries of one key id gave.
#[derive(Default)]
struct Opened {
    tried: u64,
    ok: u64,
    auth_failed: u64,
    other: u64,
}

/// What one key turned out to hold.
enum Read {
    /// A value (a partition blob, a stamp, an index entry) and its layout.
    Value(StoreValue, ValueLayout),
    /// A link set and its members.
    LinkSet(Vec<String>),
    /// Not a value and not a link set by name: a list, set, sorted set or stream.
    NotString,
    /// Gone between the scan and the read (expired or removed).
    Gone,
}

/// Reads one key by what its name says it is, falling back on the other reads when the
/// store says the type differs; only a failing store is an error.
async fn read_key(store: &SharedStore, key: &str, bare: &str) -> Result<Read, StoreError> {
    // (a link set under a prefix not stripped: still ours by its name)
    let is_link_set = bare.starts_with("tc:links:") || key.contains(":tc:links:");
    if is_link_set {
        match store.link_members(key).await {
            Ok(m) if m.is_empty() => return Ok(Read::Gone),
            Ok(m) => return Ok(Read::LinkSet(m)),
            Err(e) if is_wrong_type(&e) => {}
            Err(e) => return Err(e),
        }
    }
    match store.get_with_layout(key).await {
        Ok(Some((v, layout))) => return Ok(Read::Value(v, layout)),
        Ok(None) => return Ok(Read::Gone),
        Err(e) if is_wrong_type(&e) => {}
        Err(e) => return Err(e),
    }
    // Not a string and not named as a link set: another application's key. Never
    // read it as a link set (link-set reads prune members past their deadline).
    Ok(Read::NotString)
}

#[derive(Default)]
struct Counts {
    count: u64,
    bytes: u64,
    no_expiry: u64,
}

/// Keys of one prefix, by kind.
#[derive(Default)]
struct PrefixTally {
    keys: u64,
    kinds: [u64; KINDS.len()],
    own: u64,
}

async fn inspect(args: InspectArgs) -> Result<(), String> {
    // The ring opens a sample of the encrypted entries.
    let ring = tokencache::KeyRing::from_env()
        .map_err(|e| format!("encryption keys (TOKENCACHE_KEYS / TOKENCACHE_KEYS_FILE): {e}"))?;
    // Never creates a store: a missing file is an error, not "keys: 0".
    let store: SharedStore =
        crate::stores::open(args.store.as_deref(), crate::stores::Create::Never).await?;
    let given = args.prefix.as_str();

    // 1. SCAN, a page at a time.
    let bar = crate::progress::spinner("scanning keys");
    let (mut cursor, mut keys) = (0u64, Vec::new());
    loop {
        let (next, page) = store
            .scan(given, cursor, args.page)
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

    // 2. Which prefixes: the one given, or those the keys' shapes show.
    let prefixes: Vec<String> = if given.is_empty() {
        keys::find_prefixes(&keys)
    } else {
        vec![given.to_string()]
    };
    let prefix_of = |k: &str| -> String { keys::prefix_of(k, &prefixes).to_string() };
    let bare = |k: &str| -> String { k[keys::prefix_of(k, &prefixes).len()..].to_string() };

    // 3. Read every key once (a few at a time), by the type its name suggests.
    let bar = crate::progress::bar("reading", keys.len() as u64);
    let mut read: Vec<(String, Read)> = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(32) {
        let mut set = tokio::task::JoinSet::new();
        for (i, k) in chunk.iter().enumerate() {
            let (store, k, b) = (store.clone(), k.clone(), bare(k));
            set.spawn(async move { (i, read_key(&store, &k, &b).await) });
        }
        let mut got: Vec<Option<Read>> = chunk.iter().map(|_| None).collect();
        while let Some(done) = set.join_next().await {
            let (i, r) = done.map_err(|e| e.to_string())?;
            got[i] = Some(r.map_err(|e| e.to_string())?);
        }
        for (k, r) in chunk.iter().zip(got) {
            if let Some(r) = r {
                read.push((k.clone(), r));
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();

    // 4. Link sets first: they name the OBO partitions a sign-out can reach.
    let (mut link_sets, mut link_members, mut stamps, mut own_other, mut own_bytes) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut linked: HashSet<String> = HashSet::new();
    let mut dangling = Vec::new();
    for (k, r) in &read {
        if let Read::LinkSet(members) = r {
            link_sets += 1;
            link_members += members.len() as u64;
            own_bytes += (k.len() + members.iter().map(String::len).sum::<usize>()) as u64;
            for m in members {
                if !present.contains(m.as_str()) {
                    dangling.push(m.clone());
                }
                linked.insert(m.clone());
            }
        }
    }

    // 5. Classify the rest.
    let mut per_kind: Vec<Counts> = KINDS.iter().map(|_| Counts::default()).collect();
    let mut per_prefix: BTreeMap<String, PrefixTally> = BTreeMap::new();
    let mut ttl_hist = [0u64; 1 + BUCKETS.len()];
    let (mut plaintext, mut neither, mut not_strings, mut gone) = (0u64, 0u64, 0u64, 0u64);
    // Encrypted entries: (full key, bytes, key id), in key order.
    let mut sealed: Vec<(&str, &[u8], String)> = Vec::new();
    let mut key_ids: BTreeMap<String, u64> = BTreeMap::new();
    let (mut string_layout, mut dotnet_layout, mut protected) = (0u64, 0u64, 0u64);
    let mut orphans = Vec::new();
    for (k, r) in &read {
        let b = bare(k);
        let tally = per_prefix.entry(prefix_of(k)).or_default();
        tally.keys += 1;
        let v = match r {
            Read::Gone => {
                gone += 1;
                continue;
            }
            Read::LinkSet(_) => {
                tally.own += 1;
                continue;
            }
            Read::NotString => {
                not_strings += 1;
                tally.kinds[Kind::Other.index()] += 1;
                per_kind[Kind::Other.index()].count += 1;
                per_kind[Kind::Other.index()].bytes += k.len() as u64;
                continue;
            }
            Read::Value(v, layout) => (v, layout),
        };
        let (v, layout) = v;
        let size = (k.len() + v.bytes.len()) as u64;
        if b.starts_with(keys::OWN) && !b.starts_with(keys::SESSION) {
            if b.starts_with("tc:revoked:") {
                stamps += 1;
            } else {
                own_other += 1;
            }
            own_bytes += size;
            tally.own += 1;
            continue;
        }
        match layout {
            ValueLayout::String => string_layout += 1,
            ValueLayout::DotNet { .. } => dotnet_layout += 1,
        }
        let kind = classify(&b, k, &linked);
        tally.kinds[kind.index()] += 1;
        let c = &mut per_kind[kind.index()];
        c.count += 1;
        c.bytes += size;
        c.no_expiry += u64::from(v.ttl.is_none());
        ttl_hist[bucket(v.ttl)] += 1;
        if dotnet::is_data_protected(&v.bytes) {
            protected += 1;
        } else {
            match tokencache::protect::stored(&v.bytes) {
                tokencache::protect::Stored::Plaintext if is_msal_json(&v.bytes) => plaintext += 1,
                tokencache::protect::Stored::Sealed { key_id } => {
                    *key_ids.entry(key_id.to_string()).or_default() += 1;
                    sealed.push((k.as_str(), v.bytes.as_slice(), key_id.to_string()));
                }
                _ => neither += 1,
            }
        }
        if kind == Kind::Obo && !linked.contains(k) {
            orphans.push((b, v.ttl));
        }
    }

    // 6. Open a sample of the encrypted entries (all with --verify), spread over the keys.
    let mut opened: BTreeMap<String, Opened> = BTreeMap::new();
    if let Some(ring) = &ring {
        let protection = Protection::new(ring.clone());
        let step = if args.verify {
            1
        } else {
            sealed.len().div_ceil(SAMPLE).max(1)
        };
        for (full, bytes, id) in sealed.iter().step_by(step) {
            let o = opened.entry(id.clone()).or_default();
            o.tried += 1;
            match protection.open(full, bytes) {
                Ok(_) => o.ok += 1,
                Err(ProtectError::AuthenticationFailed { .. }) => o.auth_failed += 1,
                Err(_) => o.other += 1,
            }
        }
    }
    let sampled: u64 = opened.values().map(|o| o.tried).sum();
    let opened_ok: u64 = opened.values().map(|o| o.ok).sum();
    let auth_failed: u64 = opened.values().map(|o| o.auth_failed).sum();

    // 7. Report.
    let partitions: u64 = per_kind.iter().map(|c| c.count).sum();
    let bytes: u64 = per_kind.iter().map(|c| c.bytes).sum::<u64>() + own_bytes;
    let no_expiry: u64 = per_kind.iter().map(|c| c.no_expiry).sum();
    let n = |k: Kind| per_kind[k.index()].count;
    let counted = keys.len() as u64 - gone;
    outln!("store: {} (prefix {:?})", store.endpoint(), given);
    outln!(
        "keys: {} ({} partitions or other keys, {} tokencache keys{})",
        counted,
        partitions,
        counted - partitions,
        if gone > 0 {
            format!("; {gone} more expired while reading")
        } else {
            String::new()
        }
    );
    if given.is_empty() && !prefixes.is_empty() {
        outln!();
        outln!("prefixes found (from the keys' shapes; --prefix P inspects one of them):");
        outln!(
            "  {:<28} {:>7} {:>7} {:>6} {:>7} {:>11} {:>7} {:>9}",
            "prefix",
            "keys",
            "user",
            "app",
            "obo",
            "obo-session",
            "other",
            "tc keys"
        );
        for (p, t) in &per_prefix {
            let k = |kind: Kind| t.kinds[kind.index()];
            outln!(
                "  {:<28} {:>7} {:>7} {:>6} {:>7} {:>11} {:>7} {:>9}",
                format!("{p:?}"),
                t.keys,
                k(Kind::User),
                k(Kind::App),
                k(Kind::Obo),
                k(Kind::Session),
                k(Kind::Other),
                t.own
            );
        }
    }
    outln!();
    outln!(
        "{:<14} {:>8} {:>12} {:>10}",
        "partitions",
        "count",
        "bytes",
        "no expiry"
    );
    for ((_, name), c) in KINDS.iter().zip(&per_kind) {
        outln!(
            "{:<14} {:>8} {:>12} {:>10}",
            name,
            c.count,
            c.bytes,
            c.no_expiry
        );
    }
    if not_strings > 0 {
        outln!(
            "  of the other keys, {not_strings} are neither values nor link sets (hashes that are not .NET cache entries, lists, sets, streams); their bytes are not counted"
        );
    }
    outln!();
    let hist = std::iter::once("none")
        .chain(BUCKETS.iter().map(|(n, _)| *n))
        .zip(ttl_hist)
        .map(|(n, c)| format!("{n} {c}"))
        .collect::<Vec<_>>()
        .join(" | ");
    outln!("TTL of partitions: {hist}");
    outln!(
        "tokencache keys: {link_sets} link sets ({link_members} members, {} gone), {stamps} revocation stamps, {own_other} other; {own_bytes} bytes",
        dangling.len()
    );
    outln!(
        "layouts: {string_layout} Redis strings (tokencache, msal-node, MSAL Python), {dotnet_layout} .NET IDistributedCache hashes (Microsoft.Identity.Web)"
    );
    let encrypted: u64 = key_ids.values().sum();
    outln!(
        "values: {plaintext} plaintext MSAL JSON, {encrypted} encrypted, {protected} encrypted by .NET Data Protection (unreadable here, never overwritten), {neither} neither (other applications' values, malformed)"
    );
    if encrypted > 0 {
        match &ring {
            Some(_) => outln!(
                "encrypted entries opened with the key ring: {sampled} of {encrypted}{}: {opened_ok} opened, {auth_failed} authentication failures, {} with a key id the ring lacks or a damaged envelope",
                if args.verify { "" } else { " (a sample; --verify opens all)" },
                sampled - opened_ok - auth_failed
            ),
            None => outln!(
                "encrypted entries opened: none (no TOKENCACHE_KEYS configured)"
            ),
        }
    }
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
            let check = match opened.get(id) {
                Some(o) if o.auth_failed > 0 => format!(
                    "; AUTHENTICATION FAILED for {} of {} opened: the key under this id is not the one that sealed them (or they were tampered with)",
                    o.auth_failed, o.tried
                ),
                Some(o) if known(id) => format!("; {} of {} opened", o.ok, o.tried),
                _ => String::new(),
            };
            outln!("key id {id}: {n} entries ({role}{check})");
        }
    }
    outln!(
        "orphans: {} OBO partitions are in no link set (a sign-out cannot reach them; they end only with their TTL)",
        orphans.len()
    );
    for (k, ttl) in orphans.iter().take(args.examples) {
        let ttl = ttl.map_or("no expiry".to_string(), |t| {
            format!("ttl {} s", t.as_secs())
        });
        outln!("  {k} ({ttl})");
    }
    if !dangling.is_empty() {
        outln!(
            "link-set members whose partition is gone: {} (harmless; removed at sign-out)",
            dangling.len()
        );
    }
    outln!(
        "inspect: keys={} user={} app={} obo={} obo-session={} other={} not-strings={} link-sets={} stamps={} bytes={} no-expiry={} orphan-obo={} dangling-links={} plaintext={} neither={} prefixes={} string-layout={} dotnet-layout={} data-protected={} encrypted={} sampled={} opened={} auth-failed={} key-ids={} unknown-key-ids={}",
        counted,
        n(Kind::User),
        n(Kind::App),
        n(Kind::Obo),
        n(Kind::Session),
        n(Kind::Other),
        not_strings,
        link_sets,
        stamps,
        bytes,
        no_expiry,
        orphans.len(),
        dangling.len(),
        plaintext,
        neither,
        per_prefix.len(),
        string_layout,
        dotnet_layout,
        protected,
        encrypted,
        sampled,
        opened_ok,
        auth_failed,
        key_ids_known,
        key_ids_unknown
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msal_json_is_a_partition_with_msal_sections() {
        assert!(is_msal_json(br#"{"AccessToken":{},"RefreshToken":{}}"#));
        assert!(!is_msal_json(br#"{"a":1}"#), "another application's JSON");
        assert!(!is_msal_json(br#"{"AccessToken":5}"#));
        assert!(!is_msal_json(b"[1]"));
        let (p, _) = tokencache::sample::user_partition("o", "t", 1_700_000_000).unwrap();
        assert!(is_msal_json(&p.to_vec()));
    }

    #[test]
    fn ttl_buckets() {
        assert_eq!(bucket(None), 0);
        assert_eq!(bucket(Some(Duration::from_secs(5))), 1);
        assert_eq!(bucket(Some(Duration::from_secs(600))), 2);
        assert_eq!(bucket(Some(Duration::from_secs(90 * 86_400))), 6);
    }
}
