//! Stream entry ids (`<ms>-<seq>`) as listings, cursors and tokens hold them: parsed strictly (the
//! canonical decimal Redis writes, both parts within 64 bits), so one position has one spelling
//! and an id taken from a client never makes Redis refuse a command.
use std::fmt;

/// A stream entry id, `<ms>-<seq>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    /// The largest id: nothing follows it.
    pub const MAX: StreamId = StreamId {
        ms: u64::MAX,
        seq: u64::MAX,
    };

    /// Parses `<ms>-<seq>`, both decimal numbers that fit 64 bits (what Redis accepts), or `None`.
    pub fn parse(s: &str) -> Option<StreamId> {
        let (ms, seq) = s.split_once('-')?;
        // Canonical decimal only, as Redis writes ids: `00-1` is not `0-1`'s other spelling.
        let num = |p: &str| -> Option<u64> {
            if p.is_empty()
                || !p.bytes().all(|b| b.is_ascii_digit())
                || (p.len() > 1 && p.starts_with('0'))
            {
                return None;
            }
            p.parse().ok()
        };
        Some(StreamId {
            ms: num(ms)?,
            seq: num(seq)?,
        })
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_are_two_64_bit_numbers() {
        assert_eq!(
            StreamId::parse("1700000000000-3"),
            Some(StreamId {
                ms: 1_700_000_000_000,
                seq: 3
            })
        );
        assert_eq!(
            StreamId::parse("18446744073709551615-0").map(|s| s.ms),
            Some(u64::MAX)
        );
        for bad in [
            "",
            "abc",
            "1-",
            "-1",
            "1",
            "1-2-3",
            "+1-2",
            "1- 2",
            "18446744073709551616-0",
            "0x1-0",
            "01-0",
            "1-00",
        ] {
            assert_eq!(StreamId::parse(bad), None, "{bad}");
        }
        assert_eq!(StreamId { ms: 5, seq: 0 }.to_string(), "5-0");
    }
}
