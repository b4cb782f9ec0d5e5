//! The cache core shared by every RPC: reads through L1 then L2, writes to L2 then L1, and
//! publishes evictions so other instances' L1 stays coherent. GetOrLoad's miss path lives in
//! `stampede.rs`.
use std::{sync::Arc, time::Instant};

use dashmap::DashMap;
use futures_util::future::{BoxFuture, Shared};
use ncy_types::KeySpace;
use rand::Rng;
use sqlx::PgPool;

use crate::{
    backplane::{Backplane, Message},
    codec::{self, Entry},
    entities::Invalidation,
    error::CacheError,
    l1::L1,
    l2::L2,
    loaders::Loaders,
    metrics::{Layer, Metrics},
    now_ms,
    settings::CacheSettings,
    tags::{TagCheck, Tags},
};

/// The outcome of a shared load, cloned to every waiter.
pub type LoadResult = Result<Arc<Entry>, LoadFailure>;

/// Why a shared load failed (cloneable, unlike [`CacheError`]).
#[derive(Debug, Clone)]
pub struct LoadFailure {
    /// The loader kind.
    pub kind: String,
    /// The error text.
    pub message: String,
}

/// A read's answer.
#[derive(Debug, Clone)]
pub struct Hit {
    /// The entry.
    pub entry: Arc<Entry>,
    /// Which layer answered.
    pub layer: Layer,
    /// Served in fail-safe mode.
    pub stale: bool,
}

/// Everything an RPC needs.
pub struct Core {
    /// Key builders.
    pub keys: KeySpace,
    /// Settings.
    pub settings: CacheSettings,
    /// In-process layer.
    pub l1: L1,
    /// Redis layer.
    pub l2: L2,
    /// Tag timestamps.
    pub tags: Tags,
    /// Invalidation backplane.
    pub backplane: Arc<Backplane>,
    /// Loaders.
    pub loaders: Loaders,
    /// PostgreSQL.
    pub pg: PgPool,
    /// Metrics and counters.
    pub metrics: Metrics,
    /// In-flight loads by full key (singleflight).
    pub inflight: DashMap<Arc<str>, Shared<BoxFuture<'static, LoadResult>>>,
    /// When this instance started (Unix ms).
    pub started_ms: i64,
}

impl Core {
    /// `ttl_ms` plus a random jitter of up to the configured percentage.
    pub fn jittered(&self, ttl_ms: i64) -> i64 {
        let max = ttl_ms * i64::from(self.settings.ttl_jitter_percent) / 100;
        if max <= 0 {
            return ttl_ms;
        }
        ttl_ms + rand::rng().random_range(0..=max)
    }

    /// Reads `key` from L1 (a valid, unexpired copy) — no Redis unless a tag timestamp is unknown.
    pub async fn l1_get(&self, key: &str, now: i64) -> Option<Hit> {
        let entry = self.l1.get(key).await?;
        if entry.expires_ms <= now {
            return None;
        }
        let check = if entry.tags.is_empty() {
            TagCheck::Valid
        } else {
            self.tags.check(&entry).await
        };
        match check {
            TagCheck::Invalidated => {
                self.l1.remove(key).await;
                None
            }
            c => Some(Hit {
                entry,
                layer: Layer::L1,
                stale: c == TagCheck::Unknown || !self.backplane.connected(),
            }),
        }
    }

    /// Reads and decodes `key` from L2; the entry may be expired (the caller decides).
    pub async fn l2_read(&self, key: &str) -> Result<Option<Arc<Entry>>, CacheError> {
        Ok(match self.l2.get(key).await? {
            Some(bytes) => codec::decode_offloaded(bytes).await.map(Arc::new),
            None => None,
        })
    }

    /// Whether an L2 entry is fresh now (unexpired, tags valid).
    pub async fn fresh(&self, entry: &Entry, now: i64) -> Option<TagCheck> {
        if entry.expires_ms <= now {
            return None;
        }
        match self.tags.check(entry).await {
            TagCheck::Invalidated => None,
            c => Some(c),
        }
    }

    /// Puts an entry read from L2 into L1 unless an eviction arrived since `epoch`.
    pub async fn promote(&self, key: &str, entry: Arc<Entry>, epoch: u64) {
        if self.backplane.epoch() == epoch {
            self.l1.insert(Arc::from(key), entry, now_ms()).await;
        }
    }

    /// Get: L1, then L2. Redis errors read as a miss (Get never fails on a dead Redis).
    pub async fn get(&self, key: &str) -> Option<Hit> {
        let start = Instant::now();
        let pattern = self.metrics.series(key);
        let now = now_ms();
        if let Some(hit) = self.l1_get(key, now).await
            && !hit.entry.negative
        {
            self.metrics.hit(Layer::L1, pattern);
            self.metrics.timed("get", Some(Layer::L1), start);
            return Some(hit);
        }
        self.metrics.miss(Layer::L1, pattern);
        let epoch = self.backplane.epoch();
        let found = match self.l2_read(key).await {
            Ok(Some(entry)) if !entry.negative => match self.fresh(&entry, now).await {
                Some(check) => {
                    self.promote(key, entry.clone(), epoch).await;
                    Some(Hit {
                        entry,
                        layer: Layer::L2,
                        stale: check == TagCheck::Unknown,
                    })
                }
                None => None,
            },
            _ => None,
        };
        match &found {
            Some(_) => self.metrics.hit(Layer::L2, pattern),
            None => self.metrics.miss(Layer::L2, pattern),
        }
        self.metrics
            .timed("get", found.as_ref().map(|h| h.layer), start);
        found
    }

    /// MGet: L1 for each key, then one batched L2 read for the rest.
    pub async fn mget(&self, keys: &[String]) -> Vec<Option<Hit>> {
        let start = Instant::now();
        let now = now_ms();
        let mut out: Vec<Option<Hit>> = Vec::with_capacity(keys.len());
        let mut missing = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let pattern = self.metrics.series(key);
            match self.l1_get(key, now).await.filter(|h| !h.entry.negative) {
                Some(hit) => {
                    self.metrics.hit(Layer::L1, pattern);
                    out.push(Some(hit));
                }
                None => {
                    self.metrics.miss(Layer::L1, pattern);
                    out.push(None);
                    missing.push(i);
                }
            }
        }
        if !missing.is_empty() {
            let epoch = self.backplane.epoch();
            let wanted: Vec<String> = missing.iter().map(|&i| keys[i].clone()).collect();
            let mut values = self.l2.mget(&wanted).await.unwrap_or_default().into_iter();
            for &i in &missing {
                let pattern = self.metrics.series(&keys[i]);
                let entry = match values.next().flatten() {
                    Some(bytes) => codec::decode_offloaded(bytes)
                        .await
                        .filter(|e| !e.negative)
                        .map(Arc::new),
                    None => None,
                };
                let mut hit = None;
                if let Some(entry) = entry
                    && let Some(check) = self.fresh(&entry, now).await
                {
                    self.promote(&keys[i], entry.clone(), epoch).await;
                    hit = Some(Hit {
                        entry,
                        layer: Layer::L2,
                        stale: check == TagCheck::Unknown,
                    });
                }
                match hit {
                    Some(_) => self.metrics.hit(Layer::L2, pattern),
                    None => self.metrics.miss(Layer::L2, pattern),
                }
                out[i] = hit;
            }
        }
        self.metrics.timed("mget", None, start);
        out
    }

    /// Set: L2 first (the write is acknowledged only once Redis has it), then L1, then the
    /// backplane. Returns the expiry (Unix ms).
    pub async fn set(
        &self,
        key: &str,
        value: &str,
        ttl_secs: i64,
        tags: Vec<String>,
    ) -> Result<i64, CacheError> {
        let start = Instant::now();
        let now = now_ms();
        let ttl_ms = self.jittered(ttl_secs.saturating_mul(1000));
        let entry = Arc::new(Entry {
            value: Arc::from(value),
            created_ms: now,
            expires_ms: now + ttl_ms,
            tags: tags.into_iter().map(Arc::<str>::from).collect(),
            negative: false,
        });
        let bytes = codec::encode_offloaded(&entry, self.settings.compress_threshold_bytes).await?;
        self.l2.set_px(key, &bytes, ttl_ms).await?;
        let expires = entry.expires_ms;
        self.l1.insert(Arc::from(key), entry, now).await;
        self.evict_elsewhere(vec![key.to_owned()], Vec::new()).await;
        self.metrics.timed("set", Some(Layer::L2), start);
        Ok(expires)
    }

    /// Delete: L2, L1, then the backplane. Returns whether the key existed in L2.
    pub async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        let start = Instant::now();
        let existed = self.l2.del(key).await?;
        self.l1.remove(key).await;
        self.evict_elsewhere(vec![key.to_owned()], Vec::new()).await;
        self.metrics.timed("delete", Some(Layer::L2), start);
        Ok(existed)
    }

    /// Tells the other instances to drop `keys` and learn `tags`' new timestamps.
    pub async fn evict_elsewhere(&self, keys: Vec<String>, tags: Vec<(String, i64)>) {
        let msg = Message {
            k: keys,
            t: tags,
            ..Message::default()
        };
        self.backplane.publish(&self.l2, msg).await;
    }

    /// Invalidates `tag` everywhere; returns its timestamp.
    pub async fn invalidate_tag(&self, tag: &str) -> Result<i64, CacheError> {
        let ts = self.tags.invalidate(tag).await?;
        self.evict_elsewhere(Vec::new(), vec![(tag.to_owned(), ts)])
            .await;
        Ok(ts)
    }

    /// Deletes the keys of `what` and invalidates its tag, with one backplane message.
    pub async fn invalidate(&self, what: &Invalidation) -> Result<(), CacheError> {
        let full: Vec<String> = what.keys.iter().map(|k| self.keys.cache_key(k)).collect();
        for key in &full {
            self.l2.del(key).await?;
            self.l1.remove(key).await;
        }
        let mut tags = Vec::new();
        if let Some(tag) = &what.tag {
            tags.push((tag.clone(), self.tags.invalidate(tag).await?));
        }
        self.evict_elsewhere(full, tags).await;
        Ok(())
    }
}
