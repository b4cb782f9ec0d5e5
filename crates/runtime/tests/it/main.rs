//! The runtime's integration tests that can share a process, one binary with a module per area:
//! services built on `ServiceRuntime` in this process on port 0, against the real Redis and
//! PostgreSQL or servers of a test's own. `cargo test -p ncy-runtime --test it dependencies::` runs
//! one area.
//!
//! `tests/tracing.rs` and `tests/metrics_upkeep.rs` stay binaries of their own: one installs the
//! process-global tracing subscriber, the other measures the process's memory (see their headers).
mod dependencies;
mod instances;
