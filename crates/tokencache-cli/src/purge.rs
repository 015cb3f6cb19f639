//! `tokencache purge --user OID.TID`: an administrative sign-out. Runs
//! [`TokenCache::remove_account`]: the user partition, every OBO partition linked to the
//! user and the link set go from L2 (O(k) keys, no scan), and a revocation stamp makes
//! replicas refuse tokens they cached before now. The last line is machine-readable.

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
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => crate::fail(e),
    }
}

async fn purge(user: &str, args: &PurgeArgs) -> Result<bool, String> {
    let mut builder = TokenCache::builder().key_prefix(&args.prefix).disable_l1();
    if let Some(url) = &args.store {
        builder = builder.store_url(url);
    }
    let cache = builder.build().await.map_err(|e| e.to_string())?;
    cache
        .two_level()
        .store()
        .health()
        .await
        .map_err(|e| format!("the store does not answer: {e}"))?;
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
    Ok(out.l2_complete)
}
