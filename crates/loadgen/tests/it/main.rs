//! `loadgen`'s integration tests, one binary with a module per scenario, each running the
//! `loadgen` binary of this build through its command line (`support`).
//! `cargo test -p loadgen --test it jobfloor::` runs one scenario.
mod floor;
mod jobfloor;
mod support;
