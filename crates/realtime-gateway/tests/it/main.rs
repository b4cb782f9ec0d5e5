//! The realtime gateway's integration tests, one binary (one link of the dependency tree) with a
//! module per area and the shared harness in `support`: gateways started in this process on port 0
//! against the real Redis and a fresh PostgreSQL database per test, each under a Redis key prefix
//! of its own, driven over WebSocket and gRPC. `cargo test -p realtime-gateway --test it access::`
//! runs one area. `browser_client` drives a headless Chromium (`ncy_testkit::chromium`); `fixtures/`
//! holds the page it loads and the Node driver of `js_client`.
//!
//! Every test shares this process's metrics recorder: per-instance numbers come from the `Stats`
//! RPC and `/readyz`; a counter of `/metrics` is read as a growth across the test (other tests can
//! only add to it), and the dependency gauges (which the Redis restarts here take down) only for
//! presence.
#![allow(clippy::unwrap_used)]

mod access;
mod auth;
mod browser_client;
mod bus_failures;
mod control;
mod delivery;
mod heartbeat;
mod instances;
mod js_client;
mod presence;
mod protocol;
mod service;
mod support;
