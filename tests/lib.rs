//! End-to-end tests live in one test binary, `tests/it/` next to this file (`it/main.rs`).
