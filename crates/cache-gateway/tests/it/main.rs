//! The cache gateway's integration tests, one binary (one link of the dependency tree) with a
//! module per area and the shared harness in `support`: gateways started in this process on port 0
//! against the real Redis and a fresh PostgreSQL database per test, each under a Redis key prefix
//! of its own. `cargo test -p cache-gateway --test it load::` runs one area.
//!
//! Every test shares this process's metrics recorder: a test reads a counter of `/metrics` exactly
//! only under a label no other test touches (the `gadget` loader kind), and reads the dependency
//! gauges (which `resilience` takes down) only for presence; per-instance numbers come from the
//! `Stats` RPC and `/readyz`.
#![allow(clippy::unwrap_used)]

mod cluster;
mod entries;
mod families;
mod instances;
mod invalidation;
mod limits_sessions;
mod load;
mod resilience;
mod service;
mod support;
