//! `tokencache check [--store URL] [--prefix P]`: what a Redis deployment and its user
//! allow, one requirement a line — connect, TLS, auth, server version, keys under the
//! prefix (write, read, TTL, delete), the Lua scripts, publish/subscribe on
//! `{prefix}tc:backplane`, cluster slot coverage — each `ok` or what is missing and the
//! fix (an ACL rule to add, a URL option, an upgrade). Exit 0 when every requirement
//! holds, 1 when one does not, 2 for bad input (a URL that does not parse, a store
//! other than Redis). Never prints a secret: the URL is shown without its password,
//! and the lines hold none (docs/design.md §16).

use clap::Args;
use std::process::ExitCode;
use tokencache::store::{redact_url, StoreUrl};

/// Arguments of `check`.
#[derive(Args, Debug)]
pub(crate) struct CheckArgs {
    /// The Redis store: `redis://`, `rediss://`, `redis+cluster://`, `redis+sentinel://`
    /// (with `?tls_ca_file=`, `tls_cert_file=`, `tls_key_file=`, `tls_server_name=`);
    /// the password may come from TOKENCACHE_REDIS_PASSWORD or
    /// TOKENCACHE_REDIS_PASSWORD_FILE instead of the URL.
    #[arg(long, env = "TOKENCACHE_STORE")]
    store: String,
    /// The key prefix (Redis "instance name") the applications use: the keys and the
    /// backplane channel checked are under it.
    #[arg(long, default_value = "", env = "TOKENCACHE_PREFIX")]
    prefix: String,
}

pub(crate) fn run(args: CheckArgs) -> ExitCode {
    let url = match StoreUrl::parse(&args.store) {
        Ok(u) => u,
        Err(e) => return crate::fail(e),
    };
    if !matches!(url, StoreUrl::Redis { .. }) {
        return crate::fail(format!(
            "check is for Redis stores (redis://, rediss://, redis+cluster://, redis+sentinel://); {} has no server to check",
            redact_url(&args.store)
        ));
    }
    let store = match url.open_redis() {
        Ok(s) => s,
        Err(e) => return crate::fail(e),
    };
    let prefix = args.prefix;
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return crate::fail(format!("cannot start the runtime: {e}")),
    };
    let report = rt.block_on(store.check(&prefix));
    println!(
        "tokencache check: {} (prefix {prefix:?})",
        redact_url(&args.store)
    );
    for line in &report.lines {
        println!("{line}");
    }
    if report.passed() {
        println!("all requirements hold");
        ExitCode::SUCCESS
    } else {
        println!(
            "{} requirement(s) missing",
            report.lines.len()
                - report
                    .lines
                    .iter()
                    .filter(|l| matches!(l.outcome, tokencache::store::redis::CheckOutcome::Ok(_)))
                    .count()
        );
        ExitCode::from(1)
    }
}
