//! `ncyctl`: the operator's command-line client for the NCY backbone.
//!
//! Exit codes: 0 success; 1 the thing asked about is unhealthy or the operation failed; 2 bad usage
//! (clap); 69 a service or database could not be reached (`EX_UNAVAILABLE`). `health` exits 0 for a
//! ready server even when a dependency is down (degraded: still ready, serving what does not need it).
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cache;
mod cache_sessions;
mod db;
mod dead_letters;
mod health;
mod jobs;
mod jobs_bulk;
mod jobs_clean;
mod jobs_control;
mod jobs_history;
mod jobs_watch;
mod realtime;
mod rpc;
mod schedules;

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
    /// Whether a server is ready, which of its services work and which dependencies answer.
    Health(health::HealthArgs),
    /// Queue statistics (a table), history per minute, pause and resume (job-scheduler,
    /// NCY_SCHEDULER_ADDR).
    Queues(jobs::QueuesArgs),
    /// Enqueue, list, inspect, cancel, retry, promote, delete, watch and clean jobs (job-scheduler).
    Jobs(jobs::JobsArgs),
    /// The dead-letter queue: list, retry, delete; retry-all and purge by selection (job-scheduler).
    #[command(visible_alias = "dead-letters")]
    Dlq(dead_letters::DlqArgs),
    /// Recurring (cron) jobs: list, set, delete, trigger, pause, resume (job-scheduler).
    Schedules(schedules::SchedulesArgs),
    /// Cache entries, invalidation, rate limits, sessions and stats (cache-gateway, NCY_CACHE_ADDR).
    Cache(cache::CacheArgs),
    /// Send to rooms, presence, stats and domain events (realtime-gateway, NCY_REALTIME_ADDR).
    Realtime(realtime::RealtimeArgs),
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
            Command::Queues(args) => jobs::queues(args, cli.json).await,
            Command::Jobs(args) => jobs::jobs(args, cli.json).await,
            Command::Dlq(args) => dead_letters::dlq(args, cli.json).await,
            Command::Schedules(args) => schedules::schedules(args, cli.json).await,
            Command::Cache(args) => cache::run(args, cli.json).await,
            Command::Realtime(args) => realtime::run(args, cli.json).await,
        }
    });
    // Without waiting for blocking tasks: `cache get-stream`'s stdin reader may still be blocked on
    // a terminal when the call has already failed.
    runtime.shutdown_background();
    match outcome {
        Outcome::Ok => ExitCode::SUCCESS,
        Outcome::Failed => ExitCode::FAILURE,
        Outcome::Unavailable => ExitCode::from(69),
    }
}
