//! `tokencache purge`: removing from a store what should not be there.
//!
//! `--user ID` is an administrative sign-out. Runs [`TokenCache::remove_account`]: the
//! user partition, every OBO partition linked to the user and the link set go from L2
//! (O(k) keys, no scan), and a revocation stamp makes replicas refuse tokens they cached
//! before now. The user is checked by the one rule the library applies to every
//! sign-out (serve's `POST /v1/sign-out` included): `tokencache::partition::check_key`
//! (`oid.tid` for Entra, the subject for other providers; never empty, never one of
//! tokencache's own keys). Finding nothing is an answer, not a success: when the store
//! holds neither the user partition nor a link set under the prefix, `purge` exits 1
//! with "no such user partition or link set" and writes nothing (`--force` writes the
//! revocation stamp anyway, e.g. for a user whose partition lives in another store).
//!
//! `--prefix P` without `--user` removes every key under `P`: what an interrupted
//! `load`, `bench` or `simulate` left (`tcload:<pid>:`, `tcbench:<pid>:`, `tcsim:`).
//! Without `--force` it only counts them. Only the flag names the prefix here, never
//! `TOKENCACHE_PREFIX` (an application's prefix in the environment must not turn into
//! "remove everything").
//!
//! It never creates a store: a missing embedded store file is an error. The last line
//! is machine-readable (`purge: …`).

use clap::Args;
use std::process::ExitCode;
use tokencache::store::SharedStore;
use tokencache::TokenCache;

/// Arguments of `purge`.
#[derive(Args, Debug)]
pub(crate) struct PurgeArgs {
    /// The user to sign out: their home account id, the user partition key (`oid.tid`
    /// for Entra ID, the subject for other providers).
    #[arg(long, required_unless_present = "prefix")]
    user: Option<String>,
    /// The store: `redis://…`, `redis+cluster://…`, `redb:///…` (default: the embedded
    /// store in the platform cache folder).
    #[arg(long, env = "TOKENCACHE_STORE", hide_env_values = true)]
    store: Option<String>,
    /// With --user: the key prefix (Redis "instance name") the applications use
    /// (default: TOKENCACHE_PREFIX). Without --user: remove every key under this prefix,
    /// e.g. what an interrupted `load` left (`tcload:4242:`); only with --force.
    #[arg(long)]
    prefix: Option<String>,
    /// --user: sign the user out (revocation stamp included) even when the store holds
    /// nothing of theirs. --prefix: remove the keys (without it, they are only counted).
    #[arg(long)]
    force: bool,
}

/// How a purge ended.
enum Outcome {
    /// Every step reached L2.
    Done,
    /// Nothing of the user's (or under the prefix) was found; nothing was written.
    NotFound,
    /// L2 missed a step.
    Incomplete,
}

pub(crate) fn run(args: PurgeArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return crate::fail(format!("cannot start the runtime: {e}")),
    };
    let outcome = match &args.user {
        Some(user) => {
            let user = user.trim();
            if let Err(e) = check_user(user) {
                return crate::fail(e);
            }
            rt.block_on(purge_user(user, &args))
        }
        None => rt.block_on(purge_prefix(&args)),
    };
    match outcome {
        Ok(Outcome::Done) => crate::finish(Ok(())),
        Ok(Outcome::NotFound) => {
            crate::out::flush();
            ExitCode::from(1)
        }
        Ok(Outcome::Incomplete) => {
            crate::out::flush();
            ExitCode::from(2)
        }
        Err(e) => crate::fail(e),
    }
}

/// The library's rule for a user partition key, and no whitespace (a pasted line).
fn check_user(user: &str) -> Result<(), String> {
    let problem = match tokencache::partition::check_key(user) {
        Err(e) => e.to_string(),
        Ok(()) if user.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            "it holds whitespace".to_string()
        }
        Ok(()) => return Ok(()),
    };
    Err(format!(
        "--user {user:?}: {problem} (a home account id: oid.tid for Entra ID, the subject for other providers)"
    ))
}

async fn open(args: &PurgeArgs) -> Result<SharedStore, String> {
    // Never creates a store: a missing file is an error, not an empty success.
    crate::stores::open(args.store.as_deref(), crate::stores::Create::Never).await
}

async fn purge_user(user: &str, args: &PurgeArgs) -> Result<Outcome, String> {
    let prefix = args
        .prefix
        .clone()
        .or_else(|| std::env::var("TOKENCACHE_PREFIX").ok())
        .unwrap_or_default();
    let store = open(args).await?;
    let cache = TokenCache::builder()
        .store(store.clone())
        .key_prefix(&prefix)
        .disable_l1()
        // a one-shot command: nothing of its own written (`tokencache check` probes)
        .probe_l2_at_start(false)
        .build()
        .await
        .map_err(|e| e.to_string())?;
    if !args.force {
        let keys = cache.two_level().keys();
        let partition = keys.partition_str(user);
        let has_partition = store
            .get(&partition)
            .await
            .map_err(|e| format!("cannot read {partition}: {e}"))?
            .is_some();
        let links = keys.link_set(user);
        let has_links = !store
            .link_members(&links)
            .await
            .map_err(|e| format!("cannot read {links}: {e}"))?
            .is_empty();
        if !has_partition && !has_links {
            errln!(
                "no such user partition or link set: {partition:?} (prefix {prefix:?}) is not in {}; nothing removed, no revocation stamp written (--force writes one anyway)",
                store.endpoint()
            );
            return Ok(Outcome::NotFound);
        }
    }
    let out = cache
        .remove_account(user)
        .await
        .map_err(|e| e.to_string())?;
    outln!(
        "signed out {user}: {} keys removed from L2 (user partition, {} linked OBO partitions, link set); revocation stamp written",
        out.l2_keys_removed, out.obo_partitions
    );
    if !out.l2_complete {
        errln!("error: L2 did not take every step of the sign-out; run purge again");
    }
    outln!(
        "purge: user={user} obo-partitions={} l2-keys-removed={} complete={}",
        out.obo_partitions,
        out.l2_keys_removed,
        out.l2_complete
    );
    Ok(if out.l2_complete {
        Outcome::Done
    } else {
        Outcome::Incomplete
    })
}

/// Keys listed per SCAN page, and removed per call.
const PAGE: usize = 500;

async fn purge_prefix(args: &PurgeArgs) -> Result<Outcome, String> {
    let prefix = args.prefix.as_deref().unwrap_or_default();
    if prefix.is_empty() {
        return Err(
            "--prefix is empty: it would name every key of the store; give the prefix of a run (e.g. tcload:4242:)".into(),
        );
    }
    let store = open(args).await?;
    let (mut cursor, mut keys) = (0u64, Vec::new());
    loop {
        let (next, page) = store
            .scan(prefix, cursor, PAGE)
            .await
            .map_err(|e| e.to_string())?;
        keys.extend(page);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    keys.sort();
    keys.dedup(); // SCAN may return a key twice
    if keys.is_empty() {
        errln!(
            "no key under prefix {prefix:?} in {}; nothing removed",
            store.endpoint()
        );
        return Ok(Outcome::NotFound);
    }
    if !args.force {
        outln!(
            "{} keys under prefix {prefix:?} in {} (e.g. {}); nothing removed: add --force to remove them",
            keys.len(),
            store.endpoint(),
            keys.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
        );
        outln!("purge: prefix={prefix} keys={} removed=0", keys.len());
        return Ok(Outcome::Done);
    }
    let mut removed = 0;
    for chunk in keys.chunks(PAGE) {
        removed += store
            .remove_many(chunk)
            .await
            .map_err(|e| format!("cannot remove the keys under {prefix:?}: {e}"))?;
    }
    outln!(
        "removed {removed} keys under prefix {prefix:?} from {}",
        store.endpoint()
    );
    outln!(
        "purge: prefix={prefix} keys={} removed={removed}",
        keys.len()
    );
    Ok(Outcome::Done)
}
