//! Runs the `loadgen` binary of this build for the tests.
use std::process::{Command, Output};

/// Runs `loadgen` with `args` and returns its output (the caller checks the status).
pub fn loadgen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .output()
        .expect("run loadgen")
}

/// Runs `loadgen` with `args`, requires success and parses its one JSON line of figures.
pub fn figures(args: &[&str]) -> serde_json::Value {
    let out = loadgen(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(line.trim()).expect("one JSON line")
}
