//! `tokencache-serve`: the same service as `tokencache serve`, as a binary of its own
//! (same arguments, same exit codes).

use clap::Parser;
use std::process::ExitCode;

/// Serve authorization headers over HTTP to apps in any language.
#[derive(Parser, Debug)]
#[command(name = "tokencache-serve", version, about)]
struct Cli {
    #[command(flatten)]
    args: tokencache_serve::ServeArgs,
}

fn main() -> ExitCode {
    tokencache_serve::logs::quiet_panics();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    tokencache_serve::logs::init(
        cli.args.log_format == tokencache_serve::LogFormat::Json,
        tokencache_serve::DEFAULT_LOG_FILTER,
    );
    tokencache_serve::run(cli.args)
}
