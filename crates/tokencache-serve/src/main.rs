//! `tokencache-serve`: the same service as `tokencache serve`, as a binary of its own
//! (same arguments, same exit codes).

use clap::Parser;
use std::io::IsTerminal;
use std::process::ExitCode;

/// Serve authorization headers over HTTP to apps in any language.
#[derive(Parser, Debug)]
#[command(name = "tokencache-serve", version, about)]
struct Cli {
    #[command(flatten)]
    args: tokencache_serve::ServeArgs,
}

fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("error: internal error: {info}");
    }));
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
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("TOKENCACHE_LOG").unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(tokencache_serve::DEFAULT_LOG_FILTER)
        });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.args.log_format == tokencache_serve::LogFormat::Json {
        builder.json().init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
    tokencache_serve::run(cli.args)
}
