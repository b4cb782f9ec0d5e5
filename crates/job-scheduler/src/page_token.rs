//! ListJobs page tokens: opaque to clients, checked in full before any Redis work.
//!
//! A token is the lowercase hex encoding of `v1|<queue>|<state>|<position>`: the format version,
//! the queue and state of the listing it continues, and where the next page starts —
//! `w|<band>|<ms>-<seq>` (WAITING: after that stream entry of that band) or `o|<offset>` (the
//! other states). Clients pass it back untouched; one crafted or edited, from another version, or
//! from a listing of another queue or state is refused with INVALID_ARGUMENT naming `page_token`,
//! before Redis is asked anything. Hex keeps the token free of characters that need quoting in a
//! URL or a shell; it is a few lines, so no dependency is added for it.
//!
//! ListJobs' filters (`job_type`, `owner_user_id`) are not in the token: a position in a state's
//! structure is the same whatever is filtered, so a client passes the same filters with each page
//! (a changed filter simply continues from that position).
use ncy_queue::{Cursor, JobState, StreamId};
use ncy_types::ValidationError;
use ncy_types::jobs::QueueName;

/// The token format this build writes and reads.
const VERSION: &str = "v1";
/// Longest token accepted (a real one is at most about 140 characters).
const MAX_TOKEN: usize = 256;

/// The token that continues the listing of `queue` in `state` at `cursor`.
pub fn encode(queue: QueueName, state: JobState, cursor: Cursor) -> String {
    let position = match cursor {
        Cursor::Stream { band, after } => format!("w|{band}|{after}"),
        Cursor::Offset(offset) => format!("o|{offset}"),
    };
    hex(&format!(
        "{VERSION}|{}|{}|{position}",
        queue.as_str(),
        state.as_str()
    ))
}

/// `text` as lowercase hex: the form of every token the scheduler hands out (page tokens here,
/// bulk runs' in `run_token.rs`), opaque and safe in any transport.
pub(crate) fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

/// Where a listing of `queue` in `state` continues: `None` for the empty token (first page).
pub fn decode(
    token: &str,
    queue: QueueName,
    state: JobState,
) -> Result<Option<Cursor>, ValidationError> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || {
        ValidationError::new(
            "page_token",
            "is not a token from a previous call with the same queue and state",
        )
    };
    if token.len() > MAX_TOKEN {
        return Err(bad());
    }
    let text = unhex(token).ok_or_else(bad)?;
    let parts: Vec<&str> = text.split('|').collect();
    let cursor = match parts[..] {
        [v, q, s, "w", band, entry]
            if v == VERSION && q == queue.as_str() && s == state.as_str() =>
        {
            Cursor::Stream {
                band: number(band).ok_or_else(bad)?,
                after: StreamId::parse(entry).ok_or_else(bad)?,
            }
        }
        [v, q, s, "o", offset] if v == VERSION && q == queue.as_str() && s == state.as_str() => {
            Cursor::Offset(number(offset).ok_or_else(bad)?)
        }
        _ => return Err(bad()),
    };
    cursor.check(state).map_err(|_| bad())?;
    Ok(Some(cursor))
}

/// A decimal number in plain digits (no sign, no spaces) that fits `T`.
/// Canonical decimal only (no sign, no leading zero), so one position has exactly one token.
pub(crate) fn number<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

/// The UTF-8 text of lowercase hex, or `None`.
pub(crate) fn unhex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let bytes = s
        .as_bytes()
        .chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forged(text: &str) -> String {
        text.bytes().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn tokens_round_trip_within_their_listing() {
        let at = Cursor::Stream {
            band: 10,
            after: StreamId { ms: 17, seq: 2 },
        };
        let t = encode(QueueName::Email, JobState::Waiting, at);
        assert_eq!(
            decode(&t, QueueName::Email, JobState::Waiting),
            Ok(Some(at))
        );
        assert!(decode(&t, QueueName::Report, JobState::Waiting).is_err());
        assert!(decode(&t, QueueName::Email, JobState::Active).is_err());
        let t = encode(QueueName::Email, JobState::Failed, Cursor::Offset(7));
        assert_eq!(
            decode(&t, QueueName::Email, JobState::Failed),
            Ok(Some(Cursor::Offset(7)))
        );
        assert!(decode(&t, QueueName::Email, JobState::Delayed).is_err());
        assert_eq!(decode("", QueueName::Email, JobState::Dead), Ok(None));
    }

    #[test]
    fn crafted_tokens_are_refused_naming_page_token() {
        let q = QueueName::Report;
        for (token, state) in [
            ("w:2147483647:0-0".to_owned(), JobState::Waiting),
            ("w:10:abc".to_owned(), JobState::Waiting),
            ("o:-5".to_owned(), JobState::Delayed),
            ("zz".to_owned(), JobState::Delayed),
            ("ab".repeat(200), JobState::Delayed),
            (forged("v1|report|waiting|w|99|0-0"), JobState::Waiting),
            (forged("v1|report|waiting|w|256|0-0"), JobState::Waiting),
            (forged("v1|report|waiting|w|3|1-"), JobState::Waiting),
            (forged("v1|report|waiting|w|3|0-0|1"), JobState::Waiting),
            (forged("v1|report|waiting|w|+3|0-0"), JobState::Waiting),
            // Found by the page_token fuzz target: one position, one token.
            (forged("v1|report|waiting|w|03|0-0"), JobState::Waiting),
            (forged("v1|report|waiting|w|3|00-0"), JobState::Waiting),
            (forged("v1|report|delayed|o|07"), JobState::Delayed),
            (forged("v1|report|delayed|o|-5"), JobState::Delayed),
            (
                forged("v1|report|completed|o|99999999999"),
                JobState::Completed,
            ),
            (forged("v2|report|completed|o|1"), JobState::Completed),
            (forged("v1|email|completed|o|1"), JobState::Completed),
            (
                forged("v1|report|completed|o|1").to_uppercase(),
                JobState::Completed,
            ),
            ("0".to_owned(), JobState::Completed),
            ("ffff".to_owned(), JobState::Completed),
        ] {
            let err = decode(&token, q, state).expect_err(&token);
            assert_eq!(err.field, "page_token", "{token}");
        }
    }
}
