//! `ncyctl`: the operator's command-line client for the NCY backbone.
//!
//! Exit codes: 0 success; 1 the thing asked about is unhealthy or the operation failed; 2 bad usage
//! (clap); 69 a service or database could not be reached (`EX_UNAVAILABLE`).
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod db;
mod health;

#[derive(Debug, Parser)]
#[command(
    name = "ncyctl",
    version,
    about = "Operate the NCY caching, job and realtime backbone"
)]
struct Cli {
    /// Print machine-readable JSON instead of human text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Database schema and demo data.
    Db {
        #[command(subcommand)]
        command: db::DbCommand,
    },
    /// Ask a service's gRPC health endpoint whether it is serving.
    Health(health::HealthArgs),
}

/// What a command reports back to `main`.
pub(crate) enum Outcome {
    /// Done.
    Ok,
    /// Ran, but the answer is "unhealthy" / "failed".
    Failed,
    /// Could not reach what it needed.
    Unavailable,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ncyctl: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Db { command } => db::run(command, cli.json).await,
            Command::Health(args) => health::run(args, cli.json).await,
        }
    });
    match outcome {
        Outcome::Ok => ExitCode::SUCCESS,
        Outcome::Failed => ExitCode::FAILURE,
        Outcome::Unavailable => ExitCode::from(69),
    }
}
