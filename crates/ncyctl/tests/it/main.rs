//! `ncyctl` run as a child process against real services started in this process on port 0, one
//! binary (one link of the dependency tree) with a module per command group and the shared harness
//! in `support`. `cargo test -p ncyctl --test it health_cli::` runs one area.
mod auth_cli;
mod bulk_cli;
mod cache_cli;
mod cli;
mod errors_cli;
mod health_cli;
mod history_cli;
mod jobs_cli;
mod jobs_control_cli;
mod realtime_cli;
mod support;
