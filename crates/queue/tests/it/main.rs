//! The job engine's tests against the real Redis, one binary (one link of the dependency tree) with
//! a module per area and the shared setup in `support`: each test's engine under a Redis key prefix
//! of its own. `cargo test -p ncy-queue --test it postpone::` runs one area.
mod control;
mod engine;
mod history;
mod lost_reads;
mod postpone;
mod support;
mod trace;
