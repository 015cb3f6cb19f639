//! `tokencache`: the command-line tool over the tokencache library.
//!
//! A thin clap layer: each subcommand lives in its own module and uses only the
//! library's public API. Exit codes: 0 success, 1 "not found" answers, 2 bad input or
//! failure (one line on stderr, never a backtrace).

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod bench;
mod inspect;
mod keys;
mod load;
mod partition_cmd;
mod purge;
mod rekey;
mod simulate;

/// Cache OAuth 2.0 / OpenID Connect tokens in process and in a shared store.
#[derive(Parser, Debug)]
#[command(name = "tokencache", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Look inside a partition blob (MSAL V3 JSON) without showing any secret.
    #[command(subcommand)]
    Partition(partition_cmd::PartitionCommand),
    /// Measure L1 and L2 hits side by side with their raw baselines.
    Bench(bench::BenchArgs),
    /// Drive the cache like a web app (lookups, saves, sign-outs) for a bounded time,
    /// optionally with injected L2 faults, and report whether L2 caught up.
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
}

fn main() -> ExitCode {
    // Keep panics (which would be bugs) to one line: no backtrace for users.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("error: internal error: {info}");
    }));
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TOKENCACHE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Partition(cmd) => partition_cmd::run(cmd),
        Command::Bench(args) => bench::run(args),
        Command::Load(args) => load::run(args),
        Command::Simulate(args) => simulate::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Purge(args) => purge::run(args),
        Command::Keys(cmd) => keys::run(cmd),
        Command::Rekey(args) => rekey::run(args),
    }
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
    match rt.block_on(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

/// Prints a one-line error and returns exit code 2.
pub(crate) fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}
