//! `tokencache partition show|find`: secret-free views of a blob (`find --raw` prints
//! the token itself, for scripts, and only then).

use clap::{Args, Subcommand};
use serde_json::json;
use std::io::Read;
use std::process::ExitCode;
use tokencache::schema::{AccessToken, AccessTokenQuery, Partition};

/// Largest blob read (a 7 KB partition is typical; anything near this is not a cache).
const MAX_INPUT: u64 = 16 * 1024 * 1024;

/// `partition` subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum PartitionCommand {
    /// Print a JSON summary of every record (secrets replaced by a SHA-256 prefix).
    Show {
        /// The blob file, or `-` for standard input.
        file: String,
    },
    /// Print the access token a lookup would return, without its secret (exit 1 when
    /// none matches); `--raw` prints the token itself.
    Find(FindArgs),
}

/// Arguments of `partition find`.
#[derive(Args, Debug)]
pub(crate) struct FindArgs {
    /// The blob file, or `-` for standard input.
    file: String,
    /// The client id that acquired the token.
    #[arg(long)]
    client_id: String,
    /// Space-separated scopes, all of which must be in the token's target.
    #[arg(long)]
    scopes: String,
    /// The tenant (realm); any when omitted.
    #[arg(long)]
    tenant: Option<String>,
    /// The home account id; when omitted, app tokens and then every account in the blob.
    #[arg(long)]
    account: Option<String>,
    /// Unix seconds to judge expiry at (default: now).
    #[arg(long)]
    now: Option<i64>,
    /// Expiry skew in seconds: a token expiring sooner is not returned (0 to 86,400).
    #[arg(long, default_value_t = 300, value_parser = crate::args::int::<0, 86_400>)]
    skew: u64,
    /// Print only the access token itself (the secret), for scripts. Without it the
    /// output never holds a secret.
    #[arg(long)]
    raw: bool,
}

pub(crate) fn run(cmd: PartitionCommand) -> ExitCode {
    match cmd {
        PartitionCommand::Show { file } => match load(&file) {
            Ok(p) => {
                println!("{}", pretty(&p.summary()));
                ExitCode::SUCCESS
            }
            Err(e) => crate::fail(e),
        },
        PartitionCommand::Find(args) => find(args),
    }
}

fn find(args: FindArgs) -> ExitCode {
    let partition = match load(&args.file) {
        Ok(p) => p,
        Err(e) => return crate::fail(e),
    };
    let scopes: Vec<&str> = args.scopes.split_whitespace().collect();
    if scopes.is_empty() {
        return crate::fail("--scopes needs at least one scope");
    }
    // Which accounts to try: the one asked for, else app tokens then each account.
    let mut accounts: Vec<Option<&str>> = match args.account.as_deref() {
        Some(a) => vec![Some(a)],
        None => std::iter::once(None)
            .chain(
                partition
                    .access_tokens()
                    .map(|at| Some(at.home_account_id.as_str())),
            )
            .collect(),
    };
    accounts.dedup();
    let now = args.now.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    });
    let found = accounts.into_iter().find_map(|account| {
        let mut query = AccessTokenQuery::new(&args.client_id, &scopes);
        query.realm = args.tenant.as_deref();
        query.home_account_id = account.filter(|a| !a.is_empty());
        query.skew_secs = args.skew as i64;
        partition.find_access_token(&query, now)
    });
    match found {
        Some(at) if args.raw => {
            println!("{}", at.secret.expose());
            ExitCode::SUCCESS
        }
        Some(at) => {
            println!("{}", pretty(&access_token_summary(at, now)));
            ExitCode::SUCCESS
        }
        None => {
            eprintln!("no valid access token");
            ExitCode::from(1)
        }
    }
}

fn access_token_summary(at: &AccessToken, now: i64) -> serde_json::Value {
    json!({
        "kind": "AccessToken",
        "home_account_id": at.home_account_id,
        "environment": at.environment,
        "client_id": at.client_id,
        "realm": at.realm,
        "target": at.target,
        "token_type": at.token_type.as_deref().unwrap_or("Bearer"),
        "cached_at": at.cached_at,
        "expires_on": at.expires_on,
        "expires_in": at.expires_on - now,
        "refresh_on": at.refresh_on,
        "secret": at.secret.fingerprint(),
    })
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// Reads and parses a blob, bounded in size; errors are one clear line.
fn load(file: &str) -> Result<Partition, String> {
    let mut bytes = Vec::new();
    let read = if file == "-" {
        std::io::stdin().take(MAX_INPUT + 1).read_to_end(&mut bytes)
    } else {
        std::fs::File::open(file).and_then(|f| f.take(MAX_INPUT + 1).read_to_end(&mut bytes))
    };
    read.map_err(|e| format!("cannot read {file}: {e}"))?;
    if bytes.len() as u64 > MAX_INPUT {
        return Err(format!(
            "{file}: input larger than {MAX_INPUT} bytes; not a token cache blob"
        ));
    }
    // An empty file or stdin is a mistake (a wrong path, a failed pipe), not a cache; an
    // empty cache is written `{}`.
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(format!(
            "{file}: empty input; not a token cache blob (an empty cache is {{}})"
        ));
    }
    Partition::parse(&bytes).map_err(|e| format!("{file}: {e}"))
}
