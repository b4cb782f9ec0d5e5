//! ListJobs page tokens: `job_scheduler::page_token::{decode, encode}`, what ListJobs runs on the
//! `page_token` a client sends before any Redis work.
//!
//! Input: the first byte picks the queue and the state the listing is for, the rest is the token.
//! Nothing may panic. Properties: a token that decodes is one this build could have written — it
//! re-encodes to itself (up to leading zeros in its numbers, a known and reported leniency, see
//! docs/fuzzing.md) and the cursor passes `Cursor::check` for the state; the empty token is
//! the first page. Also, from the fuzz bytes, a cursor is built and encoded: every cursor that
//! passes `check` must decode back to itself, and never for another queue or state.
#![no_main]

use job_scheduler::page_token::{decode, encode};
use libfuzzer_sys::fuzz_target;
use ncy_queue::{Cursor, JobState, StreamId};
use ncy_types::jobs::QueueName;

const STATES: [JobState; 7] = [
    JobState::Waiting,
    JobState::Delayed,
    JobState::Active,
    JobState::Completed,
    JobState::Failed,
    JobState::Dead,
    JobState::Cancelled,
];

fn listing(pick: u8) -> (QueueName, JobState) {
    let q = QueueName::ALL[usize::from(pick) % QueueName::ALL.len()];
    let s = STATES[usize::from(pick / 4) % STATES.len()];
    (q, s)
}

fn unhex(token: &str) -> String {
    let bytes: Vec<u8> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&token[i..i + 2], 16).expect("a decoded token is hex"))
        .collect();
    String::from_utf8(bytes).expect("a decoded token is UTF-8")
}

/// `text` with every run of digits written without leading zeros.
fn without_leading_zeros(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    for c in text.chars().chain(std::iter::once('|')) {
        if c.is_ascii_digit() {
            run.push(c);
            continue;
        }
        if !run.is_empty() {
            let trimmed = run.trim_start_matches('0');
            out.push_str(if trimmed.is_empty() { "0" } else { trimmed });
            run.clear();
        }
        out.push(c);
    }
    out.pop();
    out
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    for (i, slot) in b.iter_mut().enumerate() {
        *slot = bytes.get(at + i).copied().unwrap_or(0);
    }
    u64::from_le_bytes(b)
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let (queue, state) = listing(pick);

    // A token as a client may send it (a proto string: UTF-8).
    if let Ok(token) = std::str::from_utf8(rest) {
        match decode(token, queue, state) {
            Ok(None) => assert!(
                token.is_empty(),
                "a non-empty token decoded to the first page"
            ),
            Ok(Some(cursor)) => {
                assert!(
                    cursor.check(state).is_ok(),
                    "{token:?} decoded out of bounds"
                );
                // Known, reported: numbers with leading zeros are accepted (`w|00|67-2` reads as
                // `w|0|67-2`), so equal up to those; anything else must re-encode exactly.
                let again = encode(queue, state, cursor);
                assert_eq!(
                    without_leading_zeros(&unhex(&again)),
                    without_leading_zeros(&unhex(token)),
                    "{token:?} does not re-encode (got {again:?})"
                );
            }
            Err(e) => assert_eq!(e.field, "page_token"),
        }
    }

    // A cursor the server may write: it must read back, only for its own listing.
    let cursor = if rest.first().is_some_and(|b| b & 1 == 0) {
        Cursor::Stream {
            band: rest.get(1).copied().unwrap_or(0),
            after: StreamId {
                ms: u64_at(rest, 2),
                seq: u64_at(rest, 10),
            },
        }
    } else {
        Cursor::Offset(u64_at(rest, 1))
    };
    if cursor.check(state).is_ok() {
        let token = encode(queue, state, cursor);
        assert_eq!(decode(&token, queue, state), Ok(Some(cursor)), "{token}");
        let (other_q, other_s) = listing(pick.wrapping_add(1));
        if (other_q, other_s) != (queue, state) {
            assert!(
                decode(&token, other_q, other_s).is_err(),
                "{token} read by another listing"
            );
        }
    }
});
