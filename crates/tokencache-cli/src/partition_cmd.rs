//! `tokencache partition show|find`: secret-free views of a blob (`find --raw` prints
//! the token itself, for scripts, and only then).
//!
//! The blob is a file (or `-`, standard input), or one partition read from a live
//! store: `--store URL [--prefix P] --key KEY` reads `P + KEY` once, whichever layout
//! it is in (a Redis string, or the hash .NET's `RedisCache` writes for
//! Microsoft.Identity.Web), and never writes. Output and exit codes are the file
//! form's; a line on standard error says where the partition was read from and in
//! which layout. An entry sealed by tokencache is opened with the key ring of
//! `TOKENCACHE_KEYS` / `TOKENCACHE_KEYS_FILE`, as every reader opens it (a ring that is
//! not one is refused; a key id the ring lacks is named). A missing key, one of
//! tokencache's own keys (a revocation stamp, a link set: named as such) and a value
//! encrypted by .NET Data Protection are errors (exit 2) saying so.

use clap::{Args, Subcommand};
use serde_json::json;
use std::io::Read;
use std::process::ExitCode;
use tokencache::protect::{is_envelope, Envelope, Protection};
use tokencache::schema::{AccessToken, AccessTokenQuery, Partition};
use tokencache::store::{dotnet, ValueLayout};
use tokencache::KeyRing;

/// Largest blob read (a 7 KB partition is typical; anything near this is not a cache).
const MAX_INPUT: u64 = 16 * 1024 * 1024;

/// `partition` subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum PartitionCommand {
    /// Print a JSON summary of every record (secrets replaced by a SHA-256 prefix).
    Show {
        /// The blob file, or `-` for standard input (or read it from a store: --key).
        file: Option<String>,
        /// Where the partition is, when read from a live store.
        #[command(flatten)]
        from: StoreSource,
    },
    /// Print the access token a lookup would return, without its secret (exit 1 when
    /// none matches); `--raw` prints the token itself.
    Find(FindArgs),
}

/// Arguments of `partition find`.
#[derive(Args, Debug)]
pub(crate) struct FindArgs {
    /// The blob file, or `-` for standard input (or read it from a store: --key).
    file: Option<String>,
    /// Where the partition is, when read from a live store.
    #[command(flatten)]
    from: StoreSource,
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
    /// Unix seconds to judge expiry at (0 to 253,402,300,799, the end of year 9999;
    /// default: now).
    #[arg(long, allow_negative_numbers = true, value_parser = crate::args::int::<0, 253_402_300_799>)]
    now: Option<u64>,
    /// Expiry skew in seconds: a token expiring sooner is not returned (0 to 86,400).
    #[arg(long, default_value_t = 300, allow_negative_numbers = true, value_parser = crate::args::int::<0, 86_400>)]
    skew: u64,
    /// Print only the access token itself (the secret), for scripts. Without it the
    /// output never holds a secret.
    #[arg(long)]
    raw: bool,
}

/// A partition in a live store, instead of a file.
#[derive(Args, Debug)]
pub(crate) struct StoreSource {
    /// The store to read the partition from: `redis://…`, `redis+cluster://…`,
    /// `redb:///…` (default: the embedded store in the platform cache folder). Only
    /// with --key.
    #[arg(long, env = "TOKENCACHE_STORE", hide_env_values = true)]
    store: Option<String>,
    /// The key prefix (Redis "instance name", e.g. Microsoft.Identity.Web's
    /// `InstanceName`) in front of --key.
    #[arg(
        long,
        default_value = "",
        env = "TOKENCACHE_PREFIX",
        hide_env_values = true
    )]
    prefix: String,
    /// The partition key, without the prefix (`oid.tid`, `{client}_AppTokenCache`, an
    /// OBO assertion hash...): read it from the store instead of a file.
    #[arg(long)]
    key: Option<String>,
}

pub(crate) fn run(cmd: PartitionCommand) -> ExitCode {
    match cmd {
        PartitionCommand::Show { file, from } => match source(file.as_deref(), &from) {
            Ok(p) => {
                outln!("{}", pretty(&p.summary()));
                crate::finish(Ok(()))
            }
            Err(e) => crate::fail(e),
        },
        PartitionCommand::Find(args) => find(args),
    }
}

fn find(args: FindArgs) -> ExitCode {
    let partition = match source(args.file.as_deref(), &args.from) {
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
    let now = args.now.map_or_else(
        || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0)
        },
        |n| n as i64,
    );
    let found = accounts.into_iter().find_map(|account| {
        let mut query = AccessTokenQuery::new(&args.client_id, &scopes);
        query.realm = args.tenant.as_deref();
        query.home_account_id = account.filter(|a| !a.is_empty());
        query.skew_secs = args.skew as i64;
        partition.find_access_token(&query, now)
    });
    match found {
        Some(at) if args.raw => {
            outln!("{}", at.secret.expose());
            crate::finish(Ok(()))
        }
        Some(at) => {
            outln!("{}", pretty(&access_token_summary(at, now)));
            crate::finish(Ok(()))
        }
        None => {
            errln!("no valid access token");
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

/// The partition named on the command line: a file, or a key in a store.
fn source(file: Option<&str>, from: &StoreSource) -> Result<Partition, String> {
    match (file, from.key.as_deref()) {
        (Some(f), None) => load(f),
        (None, Some(key)) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the runtime: {e}"))?
            .block_on(from_store(from, key)),
        (Some(_), Some(_)) => Err("give either a blob file or --key (with --store), not both".into()),
        (None, None) => Err(
            "give a blob file (or - for standard input), or --store URL --key KEY to read one partition from a store".into(),
        ),
    }
}

/// Reads one partition from a store, in either layout, opening it when sealed; never
/// writes.
async fn from_store(from: &StoreSource, key: &str) -> Result<Partition, String> {
    if key.trim().is_empty() {
        return Err("--key must name a partition key".into());
    }
    let full = format!("{}{key}", from.prefix);
    if let Some(problem) = own_key(key, &full) {
        return Err(problem);
    }
    // A ring that is not one is an error even before it is needed.
    let ring = KeyRing::from_env()
        .map_err(|e| format!("encryption keys (TOKENCACHE_KEYS / TOKENCACHE_KEYS_FILE): {e}"))?;
    let store = crate::stores::open(from.store.as_deref(), crate::stores::Create::Never).await?;
    let read = store
        .get_with_layout(&full)
        .await
        .map_err(|e| format!("cannot read {full:?}: {e}"))?;
    let Some((value, layout)) = read else {
        return Err(format!(
            "no entry under {full:?} in {} (prefix {:?}); nothing to show",
            store.endpoint(),
            from.prefix
        ));
    };
    let ttl = value.ttl.map_or("no expiry".to_string(), |t| {
        format!("ttl {} s", t.as_secs())
    });
    let layout_text = match layout {
        ValueLayout::String => "string layout".to_string(),
        ValueLayout::DotNet { sliding, .. } => match sliding {
            Some(s) => format!(".NET IDistributedCache layout, sliding {} s", s.as_secs()),
            None => ".NET IDistributedCache layout".to_string(),
        },
    };
    let sealed = Envelope::parse(&value.bytes)
        .ok()
        .map(|e| format!(", sealed with key id {}", e.key_id()))
        .unwrap_or_default();
    // Said once the partition is read (an error is the one line of its own).
    let said = || {
        errln!(
            "read {full:?} from {} ({layout_text}, {ttl}, {} bytes{sealed})",
            store.endpoint(),
            value.bytes.len()
        )
    };
    if dotnet::is_data_protected(&value.bytes) {
        return Err(format!(
            "{full:?} is encrypted by .NET Data Protection (Microsoft.Identity.Web's Encrypt option); tokencache cannot read it"
        ));
    }
    if !is_envelope(&value.bytes) {
        let partition = parse_blob(&full, &value.bytes)?;
        said();
        return Ok(partition);
    }
    let envelope = Envelope::parse(&value.bytes).map_err(|e| format!("{full:?}: {e}"))?;
    let id = envelope.key_id();
    let Some(ring) = ring else {
        return Err(format!(
            "{full:?} is sealed with key id {id}; set TOKENCACHE_KEYS (or TOKENCACHE_KEYS_FILE) to a key ring holding it"
        ));
    };
    if ring.get(id).is_none() {
        let ids: Vec<&str> = ring.ids().map(|k| k.as_str()).collect();
        return Err(format!(
            "{full:?} is sealed with key id {id}, not in this key ring (it holds {})",
            ids.join(", ")
        ));
    }
    let (plain, _) = Protection::new(ring)
        .open(&full, &value.bytes)
        .map_err(|e| format!("{full:?}: {e}"))?;
    let partition = parse_blob(&full, &plain)?;
    said();
    Ok(partition)
}

/// Why `key` (`full` with its prefix) names one of tokencache's own keys, which hold
/// no partition; `None` when it does not.
fn own_key(key: &str, full: &str) -> Option<String> {
    let own = key
        .strip_prefix("tc:")
        .or_else(|| full.find(":tc:").map(|i| &full[i + 4..]))?;
    let user = |rest: &str| {
        let id = rest.trim_start_matches('{').trim_end_matches('}');
        if id.is_empty() {
            String::new()
        } else {
            format!("; the user's partition is --key {id}")
        }
    };
    let (what, hint) = if let Some(rest) = own.strip_prefix("revoked:") {
        (
            "a revocation stamp (the time of the user's last sign-out, in milliseconds)",
            user(rest),
        )
    } else if let Some(rest) = own.strip_prefix("links:") {
        (
            "a link set (the OBO partitions the user's sign-out removes; `tokencache inspect` counts them)",
            user(rest),
        )
    } else if own.starts_with("sid:") || own.starts_with("sub:") {
        (
            "a sign-out index entry (which account a provider session or subject signed in as)",
            String::new(),
        )
    } else if own.starts_with("jti:") {
        (
            "a back-channel logout marker (a logout token already accepted)",
            String::new(),
        )
    } else {
        ("one of tokencache's own keys", String::new())
    };
    Some(format!(
        "{full:?} is {what}: tokencache's own key, not a partition{hint}"
    ))
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
    parse_blob(file, &bytes)
}

/// Parses a blob read from `from` (a file name or a key).
fn parse_blob(from: &str, bytes: &[u8]) -> Result<Partition, String> {
    // An empty file or stdin is a mistake (a wrong path, a failed pipe), not a cache; an
    // empty cache is written `{}`.
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(format!(
            "{from}: empty input; not a token cache blob (an empty cache is {{}})"
        ));
    }
    Partition::parse(bytes).map_err(|e| format!("{from}: {e}"))
}
