//! The L2 entry format: one Redis string per cache entry holding the value and the metadata a
//! reader needs (creation time for tag checks, logical expiry for refresh-ahead and fail-safe,
//! tags, negative flag).
//!
//! Layout: a format marker byte, then the body — plain (`0x01`) or lz4 with its size prepended
//! (`0x02`). Body: flags u8 (bit 0 = negative), created_ms i64 LE, expires_ms i64 LE, tag count
//! u16 LE, each tag as u16 LE length + UTF-8, then the JSON value bytes to the end. Values above the
//! threshold are compressed; readers accept either marker, so the threshold can change at any time
//! and instances with different settings read each other's entries. Decoding never panics on
//! corrupt bytes: it returns `None` and the entry is treated as a miss.
use std::sync::Arc;

use crate::error::CacheError;

const PLAIN: u8 = 0x01;
const LZ4: u8 = 0x02;
const NEGATIVE: u8 = 0x01;
/// Largest decompressed body accepted (guards against a corrupt size prefix).
const MAX_BODY: usize = 64 << 20;

/// A cache entry as both layers hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The JSON text (empty for a negative entry).
    pub value: Arc<str>,
    /// When it was written (Unix ms); tags invalidated at or after this time expire it.
    pub created_ms: i64,
    /// Logical expiry (Unix ms). L2 may keep the bytes longer for the fail-safe.
    pub expires_ms: i64,
    /// Tags for group invalidation.
    pub tags: Arc<[Arc<str>]>,
    /// True when it records that the row does not exist.
    pub negative: bool,
}

impl Entry {
    /// Approximate bytes held, for the L1 weigher.
    pub fn weight(&self, key: &str) -> u32 {
        let tags: usize = self.tags.iter().map(|t| t.len() + 16).sum();
        u32::try_from(key.len() + self.value.len() + tags + 96).unwrap_or(u32::MAX)
    }

    /// The entry's logical TTL in ms (jitter included).
    pub fn ttl_ms(&self) -> i64 {
        self.expires_ms - self.created_ms
    }
}

/// Values (or stored entries) of at least this many bytes are validated, encoded and decoded on a
/// blocking thread. The gateway runs on one thread by default, where parsing and compressing a
/// multi-MiB value (up to ~15 ms at the 4 MiB limit) would hold up every other request; below
/// this size the work is shorter than the hop to another thread.
pub const OFFLOAD_BYTES: usize = 64 * 1024;

/// Runs `f` on a blocking thread when `len` ≥ [`OFFLOAD_BYTES`], else here. Fails only if the
/// blocking thread could not finish it (a panic, or the runtime shutting down).
pub async fn offload<T, F>(len: usize, f: F) -> Result<T, CacheError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    if len < OFFLOAD_BYTES {
        return Ok(f());
    }
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CacheError::Internal(format!("value work on a blocking thread: {e}")))
}

/// [`encode`], on a blocking thread for a large value.
pub async fn encode_offloaded(entry: &Arc<Entry>, threshold: usize) -> Result<Vec<u8>, CacheError> {
    let entry = entry.clone();
    offload(entry.value.len(), move || encode(&entry, threshold)).await
}

/// [`decode`], on a blocking thread for large bytes; `None` as well if that thread failed.
pub async fn decode_offloaded(bytes: Vec<u8>) -> Option<Entry> {
    offload(bytes.len(), move || decode(&bytes))
        .await
        .ok()
        .flatten()
}

/// Encodes `entry`, compressing when the value is larger than `threshold` bytes.
pub fn encode(entry: &Entry, threshold: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(entry.value.len() + 32);
    body.push(if entry.negative { NEGATIVE } else { 0 });
    body.extend_from_slice(&entry.created_ms.to_le_bytes());
    body.extend_from_slice(&entry.expires_ms.to_le_bytes());
    let count = u16::try_from(entry.tags.len()).unwrap_or(u16::MAX);
    body.extend_from_slice(&count.to_le_bytes());
    for tag in entry.tags.iter().take(usize::from(count)) {
        let len = u16::try_from(tag.len()).unwrap_or(u16::MAX);
        body.extend_from_slice(&len.to_le_bytes());
        body.extend_from_slice(&tag.as_bytes()[..usize::from(len)]);
    }
    body.extend_from_slice(entry.value.as_bytes());
    if entry.value.len() > threshold {
        let mut out = vec![LZ4];
        out.extend_from_slice(&lz4_flex::compress_prepend_size(&body));
        out
    } else {
        let mut out = Vec::with_capacity(body.len() + 1);
        out.push(PLAIN);
        out.extend_from_slice(&body);
        out
    }
}

/// Decodes bytes written by [`encode`]; `None` for anything malformed.
pub fn decode(bytes: &[u8]) -> Option<Entry> {
    let (&marker, rest) = bytes.split_first()?;
    match marker {
        PLAIN => decode_body(rest),
        LZ4 => {
            let size = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
            if size > MAX_BODY {
                return None;
            }
            let body = lz4_flex::decompress_size_prepended(rest).ok()?;
            decode_body(&body)
        }
        _ => None,
    }
}

fn decode_body(body: &[u8]) -> Option<Entry> {
    let mut r = Reader(body);
    let flags = r.take(1)?[0];
    let created_ms = i64::from_le_bytes(r.take(8)?.try_into().ok()?);
    let expires_ms = i64::from_le_bytes(r.take(8)?.try_into().ok()?);
    let count = u16::from_le_bytes(r.take(2)?.try_into().ok()?);
    let mut tags = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let len = u16::from_le_bytes(r.take(2)?.try_into().ok()?);
        let tag = std::str::from_utf8(r.take(usize::from(len))?).ok()?;
        tags.push(Arc::<str>::from(tag));
    }
    let value = std::str::from_utf8(r.0).ok()?;
    Some(Entry {
        value: Arc::from(value),
        created_ms,
        expires_ms,
        tags: tags.into(),
        negative: flags & NEGATIVE != 0,
    })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Large values are encoded and decoded on another thread (the single-threaded runtime's own
    /// thread stays free), small ones where they are, with the same bytes either way.
    #[tokio::test(flavor = "current_thread")]
    async fn large_values_go_to_a_blocking_thread() {
        let here = std::thread::current().id();
        let thread_for = |len: usize| offload(len, || std::thread::current().id());
        assert_eq!(thread_for(OFFLOAD_BYTES - 1).await.ok(), Some(here));
        assert_ne!(thread_for(OFFLOAD_BYTES).await.ok(), Some(here));

        for len in [100, OFFLOAD_BYTES * 4] {
            let e = Arc::new(entry(&format!("\"{}\"", "ab".repeat(len / 2))));
            let bytes = encode_offloaded(&e, 1024).await.expect("encoded");
            assert_eq!(bytes, encode(&e, 1024));
            assert_eq!(decode_offloaded(bytes).await.as_ref(), Some(&*e));
        }
    }

    fn entry(value: &str) -> Entry {
        Entry {
            value: Arc::from(value),
            created_ms: 1_700_000_000_000,
            expires_ms: 1_700_000_060_000,
            tags: vec![Arc::<str>::from("user:1"), Arc::from("org:2")].into(),
            negative: false,
        }
    }

    #[test]
    fn round_trips_plain_and_compressed() {
        let small = entry(r#"{"a":1}"#);
        let bytes = encode(&small, 1024);
        assert_eq!(bytes[0], PLAIN);
        assert_eq!(decode(&bytes), Some(small));

        let big_value = format!(r#"{{"text":"{}"}}"#, "x".repeat(10_000));
        let big = entry(&big_value);
        let bytes = encode(&big, 1024);
        assert_eq!(bytes[0], LZ4);
        assert!(bytes.len() < 1000, "compressed");
        assert_eq!(decode(&bytes), Some(big));
    }

    #[test]
    fn corrupt_bytes_are_none_never_a_panic() {
        assert_eq!(decode(&[]), None);
        assert_eq!(decode(&[9, 1, 2]), None);
        assert_eq!(decode(&[PLAIN, 0, 1]), None);
        assert_eq!(decode(&[LZ4, 255, 255, 255, 255, 1]), None);
        let mut bytes = encode(&entry("{}"), 1024);
        bytes.truncate(12);
        assert_eq!(decode(&bytes), None);
    }
}
