//! The store's integration tests, one binary (one link of the dependency tree) with a module per
//! area, each test in a fresh PostgreSQL database of its own. `cargo test -p ncy-store --test it
//! reports::` runs one area.
mod notifications;
mod reports;
mod schema;
mod unavailable;
