//! `tokencache`: the command-line tool over the tokencache library.
//!
//! A thin clap layer: each subcommand lives in its own module and uses only the
//! library's public API. Exit codes: 0 success, 1 "not found" answers, 2 bad input or
//! failure (one line on stderr, never a backtrace).
//!
//! Environment ([`ENVIRONMENT`]): `TOKENCACHE_STORE` is the default `--store` of every
//! command that takes one; `TOKENCACHE_PREFIX` the default `--prefix` of `partition
//! --key`, `inspect`, `purge --user`, `load`, `rekey` and `token`; `TOKENCACHE_KEYS` /
//! `TOKENCACHE_KEYS_FILE` the key ring; `TOKENCACHE_REDIS_PASSWORD` (or
//! `TOKENCACHE_REDIS_PASSWORD_FILE`) the Redis password of a URL without one;
//! `TOKENCACHE_CLIENT_SECRET` the client secret of
//! `token` commands; `TOKENCACHE_LOG` is a `tracing` filter for the logs on stderr
//! (default `warn`; `serve` adds its own start and stop lines at `info`; e.g.
//! `TOKENCACHE_LOG=tokencache=debug`). Logs carry ANSI colours only when stderr is a
//! terminal; `serve --log-format json` writes JSON lines. Environment values are never
//! shown in `--help` (a store URL may hold a password).
//!
//! Output goes through [`out`] (a closed pipe ends a command quietly, never a panic);
//! `load`, `simulate` and `bench` clean up on Ctrl-C ([`cancel`]) and write nothing
//! that outlives the run by more than a margin ([`capped`]).

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::process::ExitCode;

/// A line on stdout (never a panic: see [`out`]).
macro_rules! outln {
    () => {
        $crate::out::write_out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::out::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Text on stdout without a line end (never a panic: see [`out`]).
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::out::write_out(format_args!($($arg)*))
    };
}

/// A line on stderr (never a panic: see [`out`]).
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::out::write_err(format_args!("{}\n", format_args!($($arg)*)))
    };
}

mod args;
mod bench;
mod cancel;
mod capped;
mod check;
mod inspect;
mod keys;
mod load;
mod out;
mod partition_cmd;
mod progress;
mod purge;
mod rekey;
mod simulate;
mod stores;
mod token_cmd;

/// The `tokencache` command line.
#[derive(Parser, Debug)]
#[command(
    name = "tokencache",
    version,
    about = ABOUT,
    after_help = ENVIRONMENT
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// What `tokencache --help` opens with: what the tool is for.
const ABOUT: &str = "Look after a shared OAuth 2.0 / OpenID Connect token cache (tokens kept in process and in Redis or an embedded file): read its entries without showing a secret, see what piles up and why, sign users out, rotate its encryption keys, measure and load-test it, and serve tokens to apps in any language over HTTP.";

/// The environment, after every command's list.
const ENVIRONMENT: &str = "Environment: TOKENCACHE_STORE is the default --store of every command that takes one; TOKENCACHE_PREFIX the default --prefix of partition --key, inspect, purge --user, load, rekey and token (and serve's key_prefix); TOKENCACHE_KEYS or TOKENCACHE_KEYS_FILE the encryption key ring; TOKENCACHE_CLIENT_SECRET the client secret of token; TOKENCACHE_LOG filters the logs on stderr (default: warn).";

#[derive(Subcommand, Debug)]
enum Command {
    /// Look inside a partition blob (MSAL V3 JSON) without showing any secret.
    #[command(subcommand)]
    Partition(partition_cmd::PartitionCommand),
    /// Measure L1 and L2 hits side by side with their raw baselines.
    Bench(bench::BenchArgs),
    /// Check what a Redis deployment and its user allow, one requirement a line (connect,
    /// TLS, auth, version, keys, scripts, pub/sub, cluster slots), with the fix of each
    /// that is missing; exit 0 when all hold, 1 otherwise.
    Check(check::CheckArgs),
    /// Drive the cache like a web app (lookups, saves, sign-outs) for a bounded time, on
    /// one or several replicas (`--replicas`), optionally with injected L2 faults; check
    /// every read against what was acknowledged, and report whether L2 caught up.
    Load(load::LoadArgs),
    /// Replay the seed scenario on a virtual clock under Microsoft.Identity.Web's policies
    /// and tokencache's, and count live and orphaned partitions in L2.
    Simulate(simulate::SimulateArgs),
    /// Report what a live cache holds: partitions by kind, bytes, TTLs, link sets, orphans.
    Inspect(inspect::InspectArgs),
    /// Sign a user out administratively: the user partition and every linked OBO partition.
    Purge(purge::PurgeArgs),
    /// Encryption keys: `keys generate` prints a new one for TOKENCACHE_KEYS.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Re-encrypt every entry not on the current primary key (TOKENCACHE_KEYS' first),
    /// safe while replicas serve; resumable.
    Rekey(rekey::RekeyArgs),
    /// Acquire a token through the cache (client credentials, on-behalf-of), to check a
    /// deployment's credentials; prints a secret-free summary, or the token with --raw.
    #[command(subcommand)]
    Token(token_cmd::TokenCommand),
    /// Serve authorization headers over HTTP to apps in any language: from the cache,
    /// else from the provider; sign-out, health, readiness, Prometheus metrics.
    Serve(tokencache_serve::ServeArgs),
}

fn main() -> ExitCode {
    // Keep panics (which would be bugs) to one line: no backtrace for users.
    tokencache_serve::logs::quiet_panics();
    let cli = match parse() {
        Ok(cli) => cli,
        Err(e) => {
            init_logs(false, DEFAULT_LOG_FILTER);
            return usage_error(e);
        }
    };
    match &cli.command {
        // the service logs its start and stop
        Command::Serve(a) => init_logs(
            a.log_format == tokencache_serve::LogFormat::Json,
            tokencache_serve::DEFAULT_LOG_FILTER,
        ),
        _ => init_logs(false, DEFAULT_LOG_FILTER),
    }
    match cli.command {
        Command::Partition(cmd) => partition_cmd::run(cmd),
        Command::Bench(args) => bench::run(args),
        Command::Check(args) => check::run(args),
        Command::Load(args) => load::run(args),
        Command::Simulate(args) => simulate::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Purge(args) => purge::run(args),
        Command::Keys(cmd) => keys::run(cmd),
        Command::Rekey(args) => rekey::run(args),
        Command::Token(cmd) => token_cmd::run(cmd),
        Command::Serve(args) => tokencache_serve::run(args),
    }
}

/// The log filter when `TOKENCACHE_LOG` is not set: warnings, without redis-rs's own
/// per-connection warnings (the store logs each outage once, with what it means).
const DEFAULT_LOG_FILTER: &str = "warn,redis=off";

/// Parses the command line, with the values of environment variables never shown in
/// `--help` (`TOKENCACHE_STORE` may hold a Redis URL with its password).
fn parse() -> Result<Cli, clap::Error> {
    fn hide(cmd: clap::Command) -> clap::Command {
        cmd.mut_args(|a| a.hide_env_values(true))
            .mut_subcommands(hide)
    }
    let matches = hide(Cli::command()).try_get_matches()?;
    Cli::from_arg_matches(&matches)
}

/// Logs on stderr, filtered by `TOKENCACHE_LOG` (else `default`); JSON lines or text
/// (ANSI colours only when stderr is a terminal). A closed stderr never stops the
/// process: the writer swallows its errors (`tokencache_serve::logs`, shared with
/// serve's own binary).
fn init_logs(json: bool, default: &str) {
    tokencache_serve::logs::init(json, default);
}

/// Which Tokio runtime a command runs on.
#[derive(Clone, Copy)]
pub(crate) enum Runtime {
    /// One thread: measurements (no hand-off between threads).
    CurrentThread,
    /// Worker threads: concurrent traffic, scans.
    MultiThread,
}

/// Runs an async command to completion; its error becomes one line and exit code 2.
pub(crate) fn block_on(
    kind: Runtime,
    command: impl std::future::Future<Output = Result<(), String>>,
) -> ExitCode {
    let built = match kind {
        Runtime::CurrentThread => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Runtime::MultiThread => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build(),
    };
    let rt = match built {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the runtime: {e}")),
    };
    let result = rt.block_on(command);
    finish(result)
}

/// The exit code of a command that ended with `result`: a reader that closed stdout
/// ends it quietly (0), a signal with its code (130, 143) after the command cleaned
/// up; otherwise 0, or 2 with one line.
pub(crate) fn finish(result: Result<(), String>) -> ExitCode {
    out::flush();
    match out::stdout_closed() {
        Some(true) => return ExitCode::SUCCESS,
        Some(false) => return fail("cannot write to stdout"),
        None => {}
    }
    match (result, cancel::signal_exit_code()) {
        (Err(e), _) => fail(e),
        (Ok(()), Some(code)) => ExitCode::from(code),
        (Ok(()), None) => ExitCode::SUCCESS,
    }
}

/// Help and version go to stdout (exit 0); a bad command line is one line on stderr
/// (clap's first line, without the usage block) and exit code 2.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }
    // clap's message without its usage block, joined into one line.
    let text = e.render().to_string();
    let line = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        // clap's "tip: to pass '-5' as a value, use '-- -5'" is no use here: numbers
        // take negative values as values (and refuse them by their range)
        .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
        .collect::<Vec<_>>()
        .join(" ");
    let line = if line.is_empty() {
        "error: bad command line".to_string()
    } else {
        line
    };
    errln!("{line} (see --help)");
    ExitCode::from(2)
}

/// Prints a one-line error and returns exit code 2. A multi-line cause is joined into
/// one line.
pub(crate) fn fail(message: impl std::fmt::Display) -> ExitCode {
    errln!("error: {}", one_line(&message.to_string()));
    ExitCode::from(2)
}

/// `text` with its lines joined by "; " (blank lines dropped).
pub(crate) fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}
