//! End-to-end tests live in `tests/*.rs` next to this file.
