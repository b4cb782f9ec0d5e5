//! L1: this instance's in-process copy of hot entries (moka, bounded by bytes).
//!
//! A copy lives at most min(entry TTL, `NCY_CACHE_L1_MAX_TTL_SECS`), so even a missed
//! invalidation heals by itself. The hit path is one concurrent-map lookup and an `Arc` clone: no
//! Redis, no lock held across an await.
use std::{sync::Arc, time::Duration, time::Instant};

use moka::{Expiry, future::Cache};

use crate::codec::Entry;

/// An L1 value: the entry plus how long this copy may live.
#[derive(Debug, Clone)]
pub struct Slot {
    /// The entry.
    pub entry: Arc<Entry>,
    life: Duration,
}

struct SlotExpiry;

impl Expiry<Arc<str>, Slot> for SlotExpiry {
    fn expire_after_create(&self, _: &Arc<str>, slot: &Slot, _: Instant) -> Option<Duration> {
        Some(slot.life)
    }

    fn expire_after_update(
        &self,
        _: &Arc<str>,
        slot: &Slot,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(slot.life)
    }
}

/// Keys are hashed with foldhash, not std's SipHash: every lookup and insert hashes the key, and
/// moka's table rehashes every key as it grows. Seeds are random per process; keys come from
/// authenticated internal services.
type Hasher = foldhash::fast::RandomState;

/// The L1 cache.
#[derive(Clone)]
pub struct L1 {
    cache: Cache<Arc<str>, Slot, Hasher>,
    max_life: Duration,
    capacity: u64,
}

impl L1 {
    /// An empty L1 of `capacity` bytes whose copies live at most `max_life`.
    pub fn new(capacity: u64, max_life: Duration) -> Self {
        let cache = Cache::builder()
            // Room for a full L1 of ~1 KiB entries (at most 256k slots, ~2 MB) from the start:
            // growing the table rehashes every key, which showed up as ~12% of the CPU of an
            // instance warming up under load.
            .initial_capacity(usize::try_from(capacity / 1024).unwrap_or(0).min(1 << 18))
            .max_capacity(capacity)
            .weigher(|k: &Arc<str>, s: &Slot| s.entry.weight(k))
            .expire_after(SlotExpiry)
            .build_with_hasher(Hasher::default());
        Self {
            cache,
            max_life,
            capacity,
        }
    }

    /// The copy of `key`, if any (expiry against tags and the clock is the caller's).
    pub async fn get(&self, key: &str) -> Option<Arc<Entry>> {
        self.cache.get(key).await.map(|s| s.entry)
    }

    /// Stores a copy living min(remaining TTL, max life); an already expired entry is not stored.
    pub async fn insert(&self, key: Arc<str>, entry: Arc<Entry>, now_ms: i64) {
        let remaining = entry.expires_ms - now_ms;
        if remaining <= 0 {
            return;
        }
        let life = Duration::from_millis(u64::try_from(remaining).unwrap_or(0)).min(self.max_life);
        self.cache.insert(key, Slot { entry, life }).await;
    }

    /// Drops `key`'s copy.
    pub async fn remove(&self, key: &str) {
        self.cache.invalidate(key).await;
    }

    /// Drops every copy (the backplane was lost: nothing here can be trusted).
    pub fn clear(&self) {
        self.cache.invalidate_all();
    }

    /// Entries currently held.
    pub fn entries(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Bytes currently weighed.
    pub fn bytes(&self) -> u64 {
        self.cache.weighted_size()
    }

    /// Configured capacity.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Runs moka's pending housekeeping so the counts above are current.
    pub async fn sync(&self) {
        self.cache.run_pending_tasks().await;
    }
}
