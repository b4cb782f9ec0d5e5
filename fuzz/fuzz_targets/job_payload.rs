//! Job payloads: `ncy_types::jobs::validate_payload` (and `parse_payload` under it), what
//! Enqueue, EnqueueBatch and UpsertSchedule run on a client's job type and payload JSON.
//!
//! Input: the first byte picks the job type (all nine, test-only ones included), the rest is the
//! payload text. Nothing may panic. Properties: an error
//! names a field under `payload`; an accepted payload's normal form is accepted again and is its
//! own normal form (what is stored on the job re-validates when a worker or a retry reads it), up
//! to float rounding (see `same`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ncy_types::jobs::{JobType, parse_payload, validate_payload};
use serde_json::Value;

/// Equal, except that a float may move by a few ulps: serde_json's default float parsing is not
/// correctly rounded (`33333326333333666666666` reads as 3.3333326333333666e22, whose text reads
/// as 3.333332633333366e22) — a known, reported finding (docs/fuzzing.md); integers are exact.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            x == y || (x - y).abs() <= x.abs().max(y.abs()) * 8.0 * f64::EPSILON
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let job_type = JobType::ALL[usize::from(pick) % JobType::ALL.len()];
    // Payloads arrive as proto strings, so they are UTF-8.
    let Ok(payload) = std::str::from_utf8(rest) else {
        return;
    };
    match validate_payload(job_type, payload) {
        Err(e) => {
            assert!(
                // `payload[…` too: `nested_under` adds no dot before an index, and so none before
                // an unknown key that starts with `[` either (`{"[x":1}` → `payload[x`).
                e.field == "payload"
                    || e.field.starts_with("payload.")
                    || e.field.starts_with("payload["),
                "error field {:?} is not under payload",
                e.field
            );
        }
        Ok(normal) => {
            let stored = normal.to_string();
            let again = validate_payload(job_type, &stored)
                .unwrap_or_else(|e| panic!("normal form {stored} refused: {e:?}"));
            assert!(
                same(&normal, &again),
                "normal form is not stable: {normal} then {again}"
            );
            let typed = parse_payload(job_type, &stored).expect("parsed above");
            assert_eq!(typed.job_type(), job_type);
        }
    }
});
