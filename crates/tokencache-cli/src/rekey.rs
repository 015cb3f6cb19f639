//! `tokencache rekey`: re-encrypts every partition not on the current primary key
//! (older keys, or plaintext being migrated), safe while replicas keep serving.
//!
//! Keys come from `TOKENCACHE_KEYS` / `TOKENCACHE_KEYS_FILE` (the first is the
//! primary; the old keys must still be in the ring to be read); the store and prefix
//! from `--store` / `--prefix` or `TOKENCACHE_STORE` / `TOKENCACHE_PREFIX`, as for every
//! command. It never creates a store (a mistyped path is an error, not "rekeyed=0").
//! Keys are listed with `SCAN` pages, then each value is read and, unless it is
//! already on the primary, sealed again and written back with a compare-and-set of
//! the bytes that were read (`Store::compare_and_swap`): a replica's write in between is
//! never overwritten, it is reread instead. The TTL is kept. Resumable: a second run
//! finds the done entries current.
//!
//! What it leaves alone, counted as `skipped`: tokencache's own keys (revocation
//! stamps, link sets, sign-out index entries: `tc:` after the prefix, or anywhere in
//! the key when no prefix is given, so `app1:tc:revoked:{…}` is one without
//! `--prefix app1:`), and other applications' keys in a shared store (lists, sets,
//! hashes, values that are neither an envelope nor a partition). `unreadable` counts
//! only sealed entries it cannot open (a key id the ring lacks, wrong key bytes, a
//! damaged envelope). The last line is
//! `rekeyed=<n> already_current=<n> unreadable=<n> skipped=<n>`.

use crate::stores::is_wrong_type;
use clap::Args;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use tokencache::protect::{self, KeyRing, Malformed, ProtectError, Protection, Rekeyed};
use tokencache::store::SharedStore;

/// Arguments of `rekey`.
#[derive(Args, Debug)]
pub(crate) struct RekeyArgs {
    /// The store: `redis://…`, `redis+cluster://…`, `redb:///…` (default: the embedded
    /// store in the platform cache folder). Never created.
    #[arg(long, env = "TOKENCACHE_STORE", hide_env_values = true)]
    store: Option<String>,
    /// Only keys under this prefix (Redis "instance name").
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
    /// Entries rekeyed at once (1 to 1,024).
    #[arg(long, default_value_t = 16, allow_negative_numbers = true, value_parser = crate::args::count::<1, 1_024>)]
    concurrency: usize,
}

pub(crate) fn run(args: RekeyArgs) -> ExitCode {
    crate::block_on(crate::Runtime::MultiThread, rekey(args))
}

/// Tallies of a run.
#[derive(Default, Debug, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) rekeyed: u64,
    pub(crate) already_current: u64,
    pub(crate) unreadable: u64,
    pub(crate) contended: u64,
    /// tokencache's own keys, left as they are.
    pub(crate) skipped_own: u64,
    /// Other applications' keys (other types, values that are not partitions).
    pub(crate) skipped_other: u64,
    /// Why entries were unreadable: (error kind, key id) → count.
    pub(crate) why: BTreeMap<(String, String), u64>,
}

impl Tally {
    fn skipped(&self) -> u64 {
        self.skipped_own + self.skipped_other
    }

    fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Done(Rekeyed::Rekeyed) => self.rekeyed += 1,
            Outcome::Done(Rekeyed::AlreadyCurrent) => self.already_current += 1,
            // An envelope that does not open: a partition this ring cannot read.
            Outcome::Done(Rekeyed::Unreadable(e)) if sealed_by_tokencache(&e) => {
                self.unreadable += 1;
                let id = e.key_id().unwrap_or("-").to_string();
                *self.why.entry((e.kind().to_string(), id)).or_default() += 1;
            }
            // Neither an envelope nor JSON (another application's value), or JSON that
            // is not a partition holding credentials.
            Outcome::Done(Rekeyed::Unreadable(_) | Rekeyed::NotAPartition) | Outcome::Foreign => {
                self.skipped_other += 1
            }
            Outcome::Done(Rekeyed::OwnKey) | Outcome::Own => self.skipped_own += 1,
            Outcome::Done(Rekeyed::Contended) => self.contended += 1,
            // Gone meanwhile: nothing to rekey.
            Outcome::Done(_) => {}
        }
    }
}

/// Whether a value that did not open is an envelope (a partition tokencache sealed),
/// not another application's bytes.
fn sealed_by_tokencache(e: &ProtectError) -> bool {
    !matches!(e, ProtectError::Malformed(Malformed::UnknownMagic))
}

/// What happened to one key.
enum Outcome {
    /// It was read and handled by `protect::rekey`.
    Done(Rekeyed),
    /// tokencache's own key, recognised by its name: not read.
    Own,
    /// Another type of key (a list, a set, a hash that is not a .NET cache entry).
    Foreign,
}

async fn rekey(args: RekeyArgs) -> Result<(), String> {
    let ring = KeyRing::from_env()
        .map_err(|e| format!("encryption keys (TOKENCACHE_KEYS / TOKENCACHE_KEYS_FILE): {e}"))?
        .ok_or("rekey needs the key ring: set TOKENCACHE_KEYS or TOKENCACHE_KEYS_FILE (the new primary first, then the old keys)")?;
    let protection = Protection::new(ring);
    let store = crate::stores::open(args.store.as_deref(), crate::stores::Create::Never).await?;
    let tally = run_rekey(
        &store,
        &protection,
        &args.prefix,
        args.page,
        args.concurrency,
    )
    .await?;
    for ((kind, id), n) in &tally.why {
        errln!("unreadable: {n} entries: {kind} (key id {id}); left as they are");
    }
    if tally.skipped() > 0 {
        errln!(
            "skipped: {} of tokencache's own keys (revocation stamps, link sets, sign-out index) and {} keys of other applications (other types, values that are not partitions); left as they are",
            tally.skipped_own,
            tally.skipped_other
        );
    }
    outln!(
        "rekeyed={} already_current={} unreadable={} skipped={}",
        tally.rekeyed,
        tally.already_current,
        tally.unreadable,
        tally.skipped()
    );
    if tally.contended > 0 {
        return Err(format!(
            "{} entries changed at every attempt (busy keys); run rekey again",
            tally.contended
        ));
    }
    Ok(())
}

/// Whether `full` (`bare` without the prefix given) is one of tokencache's own keys:
/// `tc:` right after the prefix, or, with no prefix given, a `:tc:` segment (a prefix
/// this run was not told about).
fn is_own(full: &str, bare: &str, prefix: &str) -> bool {
    bare.starts_with("tc:") || (prefix.is_empty() && full.contains(":tc:"))
}

/// Lists the keys under `prefix`, then rekeys them `concurrency` at a time.
pub(crate) async fn run_rekey(
    store: &SharedStore,
    protection: &Protection,
    prefix: &str,
    page: usize,
    concurrency: usize,
) -> Result<Tally, String> {
    let spinner = crate::progress::spinner("scanning keys");
    let (mut cursor, mut keys) = (0u64, Vec::new());
    loop {
        let (next, found) = store
            .scan(prefix, cursor, page.max(1))
            .await
            .map_err(|e| e.to_string())?;
        keys.extend(found);
        spinner.set_position(keys.len() as u64);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    spinner.finish_and_clear();
    keys.sort();
    keys.dedup(); // SCAN may return a key twice

    let bar = crate::progress::bar("rekeying", keys.len() as u64);
    let protection = Arc::new(protection.clone());
    let mut tally = Tally::default();
    for chunk in keys.chunks(concurrency.max(1)) {
        let mut set = tokio::task::JoinSet::new();
        for full in chunk {
            let (store, protection, full) = (store.clone(), protection.clone(), full.clone());
            let bare = full.strip_prefix(prefix).unwrap_or(&full).to_string();
            let own = is_own(&full, &bare, prefix);
            set.spawn(async move {
                if own {
                    return Ok(Outcome::Own);
                }
                match protect::rekey(&*store, &protection, &full, &bare).await {
                    Ok(r) => Ok(Outcome::Done(r)),
                    Err(e) if is_wrong_type(&e) => Ok(Outcome::Foreign),
                    Err(e) => Err(e),
                }
            });
        }
        while let Some(done) = set.join_next().await {
            let outcome = done
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            tally.add(outcome);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokencache::protect::{Key, KeyId};
    use tokencache::store::MemoryStore;

    fn ring(ids: &[(&str, u8)]) -> KeyRing {
        let mut it = ids
            .iter()
            .map(|(id, b)| Key::new(KeyId::new(id).unwrap(), &[*b; 32]));
        let mut r = KeyRing::new(it.next().unwrap());
        for k in it {
            r = r.with_decrypt_only(k).unwrap();
        }
        r
    }

    #[tokio::test]
    async fn rekeys_old_and_plaintext_leaves_current_own_and_unknown() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let (partition, _) = tokencache::sample::user_partition("o1", "t", 1_700_000_000).unwrap();
        let json = partition.to_vec();
        let old = Protection::new(ring(&[("k1", 1)]));
        let new = Protection::new(ring(&[("k2", 2), ("k1", 1)]));
        let lost = Protection::new(ring(&[("k0", 7)]));
        store
            .set("p:a.t", &old.seal("p:a.t", &json), None)
            .await
            .unwrap();
        store
            .set("p:b.t", &new.seal("p:b.t", &json), None)
            .await
            .unwrap();
        store.set("p:c.t", &json, None).await.unwrap();
        store
            .set("p:d.t", &lost.seal("p:d.t", &json), None)
            .await
            .unwrap();
        store
            .set("p:tc:revoked:{a.t}", b"1700000000", None)
            .await
            .unwrap();
        store.set("other:x.t", &json, None).await.unwrap();
        store
            .set("p:config", br#"{"feature":"on"}"#, None)
            .await
            .unwrap();

        let t = run_rekey(&store, &new, "p:", 2, 3).await.unwrap();
        assert_eq!(
            (t.rekeyed, t.already_current, t.unreadable, t.contended),
            (2, 1, 1, 0)
        );
        assert_eq!(
            (t.skipped_own, t.skipped_other),
            (1, 1),
            "the stamp, p:config"
        );
        let config = store.get("p:config").await.unwrap().unwrap().bytes;
        assert_eq!(config, br#"{"feature":"on"}"#, "foreign JSON is not sealed");
        assert_eq!(t.why.get(&("unknown_key_id".into(), "k0".into())), Some(&1));
        for k in ["p:a.t", "p:b.t", "p:c.t"] {
            let v = store.get(k).await.unwrap().unwrap().bytes;
            assert_eq!(
                protect::stored(&v),
                protect::Stored::Sealed { key_id: "k2" },
                "{k}"
            );
        }
        let stamp = store
            .get("p:tc:revoked:{a.t}")
            .await
            .unwrap()
            .unwrap()
            .bytes;
        assert_eq!(stamp, b"1700000000");
        let outside = store.get("other:x.t").await.unwrap().unwrap().bytes;
        assert_eq!(outside, json, "outside the prefix: untouched");

        // Resumable: a second run finds everything current.
        let again = run_rekey(&store, &new, "p:", 2, 3).await.unwrap();
        assert_eq!(
            (again.rekeyed, again.already_current, again.unreadable),
            (0, 3, 1)
        );
        assert_eq!(again.skipped(), 2);

        // Without the prefix: the prefixed stamp is still known as tokencache's own, and
        // the value outside the prefix (a partition) is rekeyed too.
        let all = run_rekey(&store, &new, "", 100, 3).await.unwrap();
        assert_eq!(
            (all.rekeyed, all.already_current, all.unreadable),
            (1, 3, 1)
        );
        assert_eq!((all.skipped_own, all.skipped_other), (1, 1));
    }
}
