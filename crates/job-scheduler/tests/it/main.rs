//! The job scheduler's gRPC tests, one binary (one link of the dependency tree) with a module per
//! area and the shared setup in `support`: schedulers started in this process on port 0, each test
//! under a Redis key prefix of its own. `cargo test -p job-scheduler --test it paging::` runs one
//! area.
mod api;
mod bulk;
mod clean;
mod filters;
mod history;
mod job_control;
mod paging;
mod schedule_control;
mod schedules;
mod search;
mod service;
mod support;
mod watch;
