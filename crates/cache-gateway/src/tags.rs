//! Tag timestamps (docs/architecture.md#cache-gateway, "Invalidation without KEYS"): invalidating a
//! tag is one write, `<p>:cache:tag:<tag>` = the Unix ms of the invalidation; an entry remembers
//! its tags and creation time and is expired when a tag is at least as new as the entry.
//!
//! Why timestamps rather than member sets: invalidation is O(1) whatever the number of tagged
//! entries, nothing has to be kept in sync at write time, and no key scan is ever needed.
//! Timestamps are cached here (per instance, bounded life) and updated by the backplane, so an L1
//! hit on a tagged entry needs no Redis round trip.
use std::{sync::Arc, time::Duration};

use moka::future::Cache;
use ncy_types::KeySpace;

use crate::{codec::Entry, error::CacheError, l2::L2, now_ms};

/// The verdict on an entry's tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagCheck {
    /// No tag was invalidated after the entry was written.
    Valid,
    /// A tag was invalidated at or after the entry's creation.
    Invalidated,
    /// A timestamp could not be read (Redis down): treated as valid, served as stale.
    Unknown,
}

/// Cached tag timestamps.
#[derive(Clone)]
pub struct Tags {
    cache: Cache<Arc<str>, i64>,
    keys: KeySpace,
    l2: L2,
    /// How long the tag key lives in Redis: longer than any entry carrying it can.
    retention_secs: u64,
}

impl Tags {
    /// A tag cache whose copies live at most `life`.
    pub fn new(keys: KeySpace, l2: L2, life: Duration, retention: Duration) -> Self {
        Self {
            cache: Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(life)
                .build(),
            keys,
            l2,
            retention_secs: retention.as_secs().max(1),
        }
    }

    /// The last invalidation time of `tag` (0 = never).
    async fn timestamp(&self, tag: &Arc<str>) -> Result<i64, CacheError> {
        if let Some(ts) = self.cache.get(tag).await {
            return Ok(ts);
        }
        let raw: Option<String> = self
            .l2
            .cmd(redis::cmd("GET").arg(self.keys.cache_tag(tag)).to_owned())
            .await?;
        let ts = raw.and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
        self.cache.insert(tag.clone(), ts).await;
        Ok(ts)
    }

    /// Checks `entry` against its tags' timestamps.
    pub async fn check(&self, entry: &Entry) -> TagCheck {
        let mut verdict = TagCheck::Valid;
        for tag in entry.tags.iter() {
            match self.timestamp(tag).await {
                Ok(ts) if ts >= entry.created_ms => return TagCheck::Invalidated,
                Ok(_) => {}
                Err(_) => verdict = TagCheck::Unknown,
            }
        }
        verdict
    }

    /// Invalidates `tag` now (one Redis write); returns the timestamp.
    pub async fn invalidate(&self, tag: &str) -> Result<i64, CacheError> {
        let ts = now_ms();
        self.l2
            .cmd::<()>(
                redis::cmd("SET")
                    .arg(self.keys.cache_tag(tag))
                    .arg(ts)
                    .arg("EX")
                    .arg(self.retention_secs)
                    .to_owned(),
            )
            .await?;
        self.apply(tag, ts).await;
        Ok(ts)
    }

    /// Records a timestamp learnt from the backplane (never moves a tag back in time).
    pub async fn apply(&self, tag: &str, ts: i64) {
        let key: Arc<str> = Arc::from(tag);
        let current = self.cache.get(&key).await.unwrap_or(0);
        self.cache.insert(key, current.max(ts)).await;
    }

    /// Forgets every cached timestamp (the backplane was lost).
    pub fn clear(&self) {
        self.cache.invalidate_all();
    }
}
