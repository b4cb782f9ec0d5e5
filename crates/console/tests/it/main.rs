//! The console's integration tests, one binary with a module per area and the shared setup in
//! `support`: a job-scheduler (and a worker where a job must run) in this process on the real
//! Redis under a key prefix of each test's own, and the console on port 0 in front of it.
//! `cargo test -p console --test it access::` runs one area.
#![allow(clippy::unwrap_used)]

mod access;
mod actions;
mod binary;
mod browser;
mod bulk;
mod cache_page;
mod filters;
mod history;
mod live;
mod live_gateways;
mod login_limit;
mod pages;
mod realtime_page;
mod schedule_form;
mod schedules;
mod support;
mod upstream;
