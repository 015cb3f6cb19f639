//! `tokencache rekey`: re-encrypts every partition not on the current primary key
//! (older keys, or plaintext being migrated), safe while replicas keep serving.
//!
//! Keys come from `TOKENCACHE_KEYS` / `TOKENCACHE_KEYS_FILE` (the first is the
//! primary; the old keys must still be in the ring to be read). Keys are listed with
//! `SCAN` pages, then each value is read and, unless it is already on the primary,
//! sealed again and written back with a compare-and-set of the bytes that were read
//! (`Store::compare_and_swap`): a replica's write in between is never overwritten, it is
//! reread instead. The TTL is kept. tokencache's own `tc:` keys hold no credentials
//! and are left as they are. Resumable: a second run finds the done entries current.
//! The last line is `rekeyed=<n> already_current=<n> unreadable=<n>`.

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use tokencache::protect::{self, KeyRing, Protection, Rekeyed};
use tokencache::store::{self, SharedStore};

/// Arguments of `rekey`.
#[derive(Args, Debug)]
pub(crate) struct RekeyArgs {
    /// The store: `redis://…`, `redis+cluster://…`, `redb:///…` (default: the embedded
    /// store in the platform cache folder).
    #[arg(long)]
    store: Option<String>,
    /// Only keys under this prefix (Redis "instance name").
    #[arg(long, default_value = "")]
    prefix: String,
    /// Keys asked for per SCAN page.
    #[arg(long, default_value_t = 500)]
    page: usize,
    /// Entries rekeyed at once.
    #[arg(long, default_value_t = 16)]
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
    /// Why entries were unreadable: (error kind, key id) → count.
    pub(crate) why: BTreeMap<(String, String), u64>,
}

impl Tally {
    fn add(&mut self, outcome: Rekeyed) {
        match outcome {
            Rekeyed::Rekeyed => self.rekeyed += 1,
            Rekeyed::AlreadyCurrent => self.already_current += 1,
            Rekeyed::Unreadable(e) => {
                self.unreadable += 1;
                let id = e.key_id().unwrap_or("-").to_string();
                *self.why.entry((e.kind().to_string(), id)).or_default() += 1;
            }
            Rekeyed::NotAPartition => {
                self.unreadable += 1;
                *self
                    .why
                    .entry(("not_a_partition".into(), "-".into()))
                    .or_default() += 1;
            }
            Rekeyed::Contended => self.contended += 1,
            // Gone meanwhile, or tokencache's own keys: nothing to rekey.
            _ => {}
        }
    }
}

async fn rekey(args: RekeyArgs) -> Result<(), String> {
    let ring = KeyRing::from_env()
        .map_err(|e| format!("encryption keys: {e}"))?
        .ok_or("rekey needs the key ring: set TOKENCACHE_KEYS or TOKENCACHE_KEYS_FILE (the new primary first, then the old keys)")?;
    let protection = Protection::new(ring);
    let url = args.store.clone().unwrap_or_default();
    let store: SharedStore = store::open(&url).await.map_err(|e| e.to_string())?;
    store.health().await.map_err(|e| e.to_string())?;
    let tally = run_rekey(
        &store,
        &protection,
        &args.prefix,
        args.page,
        args.concurrency,
    )
    .await?;
    for ((kind, id), n) in &tally.why {
        eprintln!("unreadable: {n} entries: {kind} (key id {id}); left as they are");
    }
    println!(
        "rekeyed={} already_current={} unreadable={}",
        tally.rekeyed, tally.already_current, tally.unreadable
    );
    if tally.contended > 0 {
        return Err(format!(
            "{} entries changed at every attempt (busy keys); run rekey again",
            tally.contended
        ));
    }
    Ok(())
}

/// Lists the keys under `prefix`, then rekeys them `concurrency` at a time.
pub(crate) async fn run_rekey(
    store: &SharedStore,
    protection: &Protection,
    prefix: &str,
    page: usize,
    concurrency: usize,
) -> Result<Tally, String> {
    let spinner = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{spinner} scanning keys {pos} ({elapsed})") {
        spinner.set_style(style);
    }
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

    let bar = ProgressBar::with_draw_target(Some(keys.len() as u64), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} rekeying [{bar:40}] {pos}/{len} ({elapsed}, eta {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    let protection = Arc::new(protection.clone());
    let mut tally = Tally::default();
    for chunk in keys.chunks(concurrency.max(1)) {
        let mut set = tokio::task::JoinSet::new();
        for full in chunk {
            let (store, protection, full) = (store.clone(), protection.clone(), full.clone());
            let bare = full.strip_prefix(prefix).unwrap_or(&full).to_string();
            set.spawn(async move { protect::rekey(&*store, &protection, &full, &bare).await });
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
            (2, 1, 2, 0)
        );
        assert_eq!(t.why.get(&("not_a_partition".into(), "-".into())), Some(&1));
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
            (0, 3, 2)
        );
    }
}
