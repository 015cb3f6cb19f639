//! `tokencache purge --user OID.TID`: an administrative sign-out. Runs
//! [`TokenCache::remove_account`]: the user partition, every OBO partition linked to the
//! user and the link set go from L2 (O(k) keys, no scan), and a revocation stamp makes
//! replicas refuse tokens they cached before now. The last line is machine-readable.
//!
//! Finding nothing is an answer, not a success: when the store holds neither the
//! user partition nor a link set under the prefix, `purge` exits 1 with "no such user
//! partition or link set" and writes nothing (`--force` writes the revocation stamp
//! anyway, e.g. for a user whose partition lives in another store). It never creates
//! a store: a missing embedded store file is an error.

use clap::Args;
use std::process::ExitCode;
use tokencache::TokenCache;

/// Arguments of `purge`.
#[derive(Args, Debug)]
pub(crate) struct PurgeArgs {
    /// The user's home account id, `oid.tid` (the user partition key).
    #[arg(long)]
    user: String,
    /// The store: `redis://…`, `redis+cluster://…`, `redb:///…` (default: the embedded
    /// store in the platform cache folder).
    #[arg(long, env = "TOKENCACHE_STORE")]
    store: Option<String>,
    /// The key prefix (Redis "instance name") the applications use.
    #[arg(long, default_value = "", env = "TOKENCACHE_PREFIX")]
    prefix: String,
    /// Sign the user out (revocation stamp included) even when the store holds nothing
    /// of theirs.
    #[arg(long)]
    force: bool,
}

/// How a purge ended.
enum Outcome {
    /// Every step reached L2.
    Done,
    /// Nothing of the user's was found; nothing was written.
    NotFound,
    /// L2 missed a step.
    Incomplete,
}

pub(crate) fn run(args: PurgeArgs) -> ExitCode {
    let user = args.user.trim();
    match user.split_once('.') {
        Some((oid, tid))
            if !oid.is_empty() && !tid.is_empty() && !user.contains(char::is_whitespace) => {}
        _ => {
            return crate::fail(format!(
                "--user must be a home account id OID.TID, got {user:?}"
            ))
        }
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return crate::fail(format!("cannot start the runtime: {e}")),
    };
    match rt.block_on(purge(user, &args)) {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::NotFound) => ExitCode::from(1),
        Ok(Outcome::Incomplete) => ExitCode::from(2),
        Err(e) => crate::fail(e),
    }
}

async fn purge(user: &str, args: &PurgeArgs) -> Result<Outcome, String> {
    // Never creates a store: a missing file is an error, not an empty success.
    let store = crate::existing::open(args.store.as_deref()).await?;
    store
        .health()
        .await
        .map_err(|e| format!("the store does not answer: {e}"))?;
    let cache = TokenCache::builder()
        .store(store.clone())
        .key_prefix(&args.prefix)
        .disable_l1()
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
            eprintln!(
                "no such user partition or link set: {partition:?} (prefix {:?}) is not in {}; nothing removed, no revocation stamp written (--force writes one anyway)",
                args.prefix,
                store.endpoint()
            );
            return Ok(Outcome::NotFound);
        }
    }
    let out = cache
        .remove_account(user)
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "signed out {user}: {} keys removed from L2 (user partition, {} linked OBO partitions, link set); revocation stamp written",
        out.l2_keys_removed, out.obo_partitions
    );
    if !out.l2_complete {
        eprintln!("error: L2 did not take every step of the sign-out; run purge again");
    }
    println!(
        "purge: user={user} obo-partitions={} l2-keys-removed={} complete={}",
        out.obo_partitions, out.l2_keys_removed, out.l2_complete
    );
    Ok(if out.l2_complete {
        Outcome::Done
    } else {
        Outcome::Incomplete
    })
}
