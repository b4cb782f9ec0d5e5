//! `loadgen fanout-floor` through its command line: every message reaches every socket and the
//! figures line says so.
use crate::support;

#[test]
fn fanout_floor_delivers_every_message_to_every_socket() {
    let v = support::figures(&[
        "fanout-floor",
        "--clients",
        "40",
        "--messages",
        "6",
        "--rate",
        "200",
        "--writers",
        "3",
        "--bytes",
        "100",
    ]);
    assert_eq!(v["bench"], "fanout-floor");
    assert_eq!(v["expected_deliveries"], 240);
    assert_eq!(v["delivered"], 240, "{v}");
    assert_eq!(v["writers"], 3);
    assert!(
        v["p99_ms"]
            .as_f64()
            .is_some_and(|p| p >= v["p50_ms"].as_f64().unwrap_or(0.0))
    );
    assert!(v["cpu_us_per_delivery"]["reader"].is_number());
}

#[test]
fn fanout_floor_refuses_a_non_numeric_count() {
    let out = support::loadgen(&["fanout-floor", "--clients", "many"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--clients"));
}
