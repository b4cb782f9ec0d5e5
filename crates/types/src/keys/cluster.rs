//! Redis Cluster's key-to-slot rule, so tests (and callers) can prove which keys share a slot.
//!
//! A key's slot is CRC16/XMODEM of its hash tag modulo 16384. The hash tag is the text between the
//! first `{` and the first `}` after it, if that text is non-empty; otherwise the whole key is hashed.

/// Number of hash slots in a Redis Cluster.
pub const SLOT_COUNT: u16 = 16384;

/// The part of `key` Redis Cluster hashes: the non-empty text inside the first `{…}`, if any.
pub fn hash_tag(key: &str) -> Option<&str> {
    let (_, after_open) = key.split_once('{')?;
    let (tag, _) = after_open.split_once('}')?;
    (!tag.is_empty()).then_some(tag)
}

/// The Redis Cluster slot (0..16384) that `key` belongs to.
pub fn hash_slot(key: &str) -> u16 {
    let hashed = hash_tag(key).unwrap_or(key);
    crc16_xmodem(hashed.as_bytes()) % SLOT_COUNT
}

/// CRC16/XMODEM (polynomial 0x1021, initial value 0), the variant Redis uses.
fn crc16_xmodem(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |crc, &byte| {
        let index = usize::from(((crc >> 8) ^ u16::from(byte)) & 0xff);
        (crc << 8) ^ CRC16_TABLE[index]
    })
}

const CRC16_TABLE: [u16; 256] = build_table();

const fn build_table() -> [u16; 256] {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_the_xmodem_check_value() {
        assert_eq!(crc16_xmodem(b"123456789"), 0x31c3);
    }

    #[test]
    fn slots_match_redis_cluster_keyslot() {
        // Values from `CLUSTER KEYSLOT` on a real Redis Cluster.
        assert_eq!(hash_slot("foo"), 12182);
        assert_eq!(hash_slot("bar"), 5061);
        assert_eq!(hash_slot("hello"), 866);
        assert_eq!(hash_slot("{user1000}.following"), hash_slot("user1000"));
        assert_eq!(
            hash_slot("{user1000}.following"),
            hash_slot("{user1000}.followers")
        );
    }

    #[test]
    fn hash_tag_follows_the_redis_rules() {
        assert_eq!(hash_tag("{a}b"), Some("a"));
        assert_eq!(hash_tag("x{a}{b}"), Some("a"));
        assert_eq!(hash_tag("{}a"), None);
        assert_eq!(hash_tag("{a"), None);
        assert_eq!(hash_tag("a}b{"), None);
        assert_eq!(hash_tag("{{a}}"), Some("{a"));
        assert_eq!(hash_slot("{}a"), crc16_xmodem(b"{}a") % SLOT_COUNT);
    }
}
