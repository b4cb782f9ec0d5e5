//! GetOrLoad: L1 → L2 → loader, with stampede protection, negative caching, refresh-ahead and
//! the fail-safe.
//!
//! Stampede protection has two levels (Facebook memcache leases, groupcache's singleflight):
//! - in-process, concurrent misses for one key share one load future (a `DashMap` of `Shared`
//!   futures); the load runs in its own task, so a caller that goes away does not cancel it for
//!   the others;
//! - across instances, the loading task first takes a short lease, `SET <p>:cache:lease:{key}
//!   <token> NX PX`. The winner loads and fills L2; losers poll L2 with a growing backoff until it
//!   is filled, and take the lease themselves if it disappears unfilled (holder died). With Redis
//!   down there is no lease: each instance loads once (still singleflighted in-process).
//!
//! Refresh-ahead: a hit in the last `NCY_CACHE_REFRESH_AHEAD_PERCENT` of the entry's TTL starts
//! one background load (the same singleflight, so at most one per key per instance).
//! Fail-safe: L2 keeps a loaded entry `NCY_CACHE_MAX_STALE_SECS` past its logical expiry; when the
//! loader fails, that copy is served with `stale = true`.
use std::{sync::Arc, time::Duration};

use futures_util::FutureExt;
use ncy_types::keys::entry_key;
use redis::Script;

use crate::{
    backplane::Message,
    cache::{Core, Hit, LoadFailure, LoadResult},
    codec::{self, Entry},
    error::CacheError,
    loaders::Loader,
    metrics::{Layer, Metrics},
    now_ms,
    tags::TagCheck,
};

/// Deletes the lease only if it still holds our token.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0";

/// Removes a key from the in-flight map when dropped.
struct InflightGuard<'a>(&'a Core, &'a Arc<str>);

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        self.0.inflight.remove(self.1);
    }
}

/// What GetOrLoad asks for.
pub struct LoadRequest {
    /// The loader.
    pub loader: Arc<Loader>,
    /// The normalised id.
    pub id: String,
    /// TTL override in seconds.
    pub ttl_secs: Option<i64>,
    /// Skip the cached copies.
    pub force: bool,
}

impl Core {
    /// GetOrLoad. `Err(NotFound)` for a missing row (possibly from the negative cache).
    pub async fn get_or_load(self: &Arc<Self>, req: LoadRequest) -> Result<Hit, CacheError> {
        let start = std::time::Instant::now();
        let logical = entry_key(&req.loader.kind, &req.id);
        let key: Arc<str> = Arc::from(self.keys.cache_key(&logical));
        let pattern = self.metrics.series(&key);
        let now = now_ms();
        let mut stale_copy = None;
        if !req.force {
            if let Some(hit) = self.l1_get(&key, now).await {
                self.metrics.hit(Layer::L1, pattern);
                self.metrics.timed("get_or_load", Some(Layer::L1), start);
                return self.answer(hit, &key, &req, now, &logical);
            }
            self.metrics.miss(Layer::L1, pattern);
            let epoch = self.backplane.epoch();
            if let Ok(Some(entry)) = self.l2_read(&key).await {
                if let Some(check) = self.fresh(&entry, now).await {
                    self.metrics.hit(Layer::L2, pattern);
                    self.promote(&key, entry.clone(), epoch).await;
                    let hit = Hit {
                        entry,
                        layer: Layer::L2,
                        stale: check == TagCheck::Unknown,
                    };
                    self.metrics.timed("get_or_load", Some(Layer::L2), start);
                    return self.answer(hit, &key, &req, now, &logical);
                }
                if !entry.negative {
                    stale_copy = Some(entry);
                }
            }
            self.metrics.miss(Layer::L2, pattern);
        }
        let result = self.load_shared(key.clone(), &req).await;
        self.metrics.timed("get_or_load", Some(Layer::L3), start);
        match result {
            Ok(entry) => {
                if entry.negative {
                    self.metrics.miss(Layer::L3, pattern);
                } else {
                    self.metrics.hit(Layer::L3, pattern);
                }
                let hit = Hit {
                    entry,
                    layer: Layer::L3,
                    stale: false,
                };
                self.answer(hit, &key, &req, now_ms(), &logical)
            }
            Err(failure) => {
                let max_stale = i64::try_from(self.settings.max_stale.as_millis()).unwrap_or(0);
                match stale_copy {
                    Some(entry) if entry.expires_ms + max_stale > now_ms() => {
                        Metrics::bump(&self.metrics.stale_served);
                        Ok(Hit {
                            entry,
                            layer: Layer::L2,
                            stale: true,
                        })
                    }
                    _ => Err(CacheError::Loader {
                        kind: failure.kind,
                        message: failure.message,
                    }),
                }
            }
        }
    }

    /// Turns a hit into the answer: NOT_FOUND for a negative entry; starts refresh-ahead.
    fn answer(
        self: &Arc<Self>,
        hit: Hit,
        key: &Arc<str>,
        req: &LoadRequest,
        now: i64,
        logical: &str,
    ) -> Result<Hit, CacheError> {
        if hit.entry.negative {
            return Err(CacheError::NotFound(format!("{logical} not found")));
        }
        let percent = i64::from(self.settings.refresh_ahead_percent);
        let remaining = hit.entry.expires_ms - now;
        if hit.layer != Layer::L3
            && percent > 0
            && remaining * 100 < hit.entry.ttl_ms() * percent
            && !self.inflight.contains_key(key)
        {
            Metrics::bump(&self.metrics.refresh_ahead);
            let core = self.clone();
            let key = key.clone();
            let bg = LoadRequest {
                loader: req.loader.clone(),
                id: req.id.clone(),
                ttl_secs: req.ttl_secs,
                force: true,
            };
            tokio::spawn(async move {
                let _ = core.load_shared(key, &bg).await;
            });
        }
        Ok(hit)
    }

    /// Joins the in-flight load of `key` or starts one.
    async fn load_shared(self: &Arc<Self>, key: Arc<str>, req: &LoadRequest) -> LoadResult {
        let fut = match self.inflight.entry(key.clone()) {
            dashmap::Entry::Occupied(e) => {
                Metrics::bump(&self.metrics.coalesced);
                e.get().clone()
            }
            dashmap::Entry::Vacant(v) => {
                let core = self.clone();
                let loader = req.loader.clone();
                let (id, ttl, force) = (req.id.clone(), req.ttl_secs, req.force);
                let task_key = key.clone();
                let handle = tokio::spawn(async move {
                    // Removed however the task ends (even by a panic), so a failed load is never
                    // joined by later callers.
                    let _done = InflightGuard(&core, &task_key);
                    core.load_leased(&task_key, &loader, &id, ttl, force).await
                });
                let kind = req.loader.kind.clone();
                let fut = async move {
                    handle.await.unwrap_or_else(|e| {
                        Err(LoadFailure {
                            kind,
                            message: e.to_string(),
                        })
                    })
                }
                .boxed()
                .shared();
                v.insert(fut.clone());
                fut
            }
        };
        fut.await
    }

    /// The cross-instance part: take the lease and load, or wait for the holder's fill.
    async fn load_leased(
        &self,
        key: &str,
        loader: &Loader,
        id: &str,
        ttl: Option<i64>,
        force: bool,
    ) -> LoadResult {
        let lease_key = self.keys.cache_lease(key);
        let token = uuid::Uuid::new_v4().to_string();
        let lease_ms = i64::try_from(self.settings.lease.as_millis()).unwrap_or(5000);
        let started = now_ms();
        // A load that finished just before this one was started leaves its entry in L1: a
        // caller that missed L1 moments ago must not load again.
        if !force
            && let Some(entry) = self.l1.get(key).await
            && entry.expires_ms > started
        {
            return Ok(entry);
        }
        let deadline = started + 2 * lease_ms;
        let mut counted = false;
        loop {
            let acquire = redis::cmd("SET")
                .arg(&lease_key)
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(lease_ms)
                .to_owned();
            match self.l2.cmd::<Option<String>>(acquire).await {
                Ok(None) if now_ms() < deadline => {
                    if !counted {
                        Metrics::bump(&self.metrics.coalesced);
                        counted = true;
                    }
                    if let Some(entry) = self.wait_for_fill(key, &lease_key, started, force).await {
                        return Ok(entry);
                    }
                }
                Ok(Some(_)) => {
                    // Double-check under the lease: another instance may have filled L2 and
                    // released its lease since this caller's own L2 read.
                    let filled = match force {
                        true => None,
                        false => self.l2_read(key).await.ok().flatten(),
                    };
                    let fresh = match &filled {
                        Some(entry) => self.fresh(entry, now_ms()).await.is_some(),
                        None => false,
                    };
                    let result = match filled {
                        Some(entry) if fresh => {
                            self.l1
                                .insert(Arc::from(key), entry.clone(), now_ms())
                                .await;
                            Ok(entry)
                        }
                        _ => self.load_and_fill(key, loader, id, ttl, force).await,
                    };
                    let release = Script::new(RELEASE);
                    let _ = self
                        .l2
                        .script::<i64>(&release, &[&lease_key], &[token.as_bytes()])
                        .await;
                    return result;
                }
                // Redis down, or the holder took too long: load ourselves.
                _ => return self.load_and_fill(key, loader, id, ttl, force).await,
            }
        }
    }

    /// Polls L2 until the lease holder fills `key` (Some) or the lease disappears unfilled (None).
    async fn wait_for_fill(
        &self,
        key: &str,
        lease_key: &str,
        started: i64,
        force: bool,
    ) -> Option<Arc<Entry>> {
        let mut backoff = Duration::from_millis(2);
        loop {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(50));
            let mut pipe = redis::pipe();
            pipe.cmd("GET").arg(key).cmd("EXISTS").arg(lease_key);
            let (bytes, lease): (Option<Vec<u8>>, bool) = self.l2.pipe(pipe).await.ok()?;
            let entry = match bytes {
                Some(bytes) => codec::decode_offloaded(bytes).await,
                None => None,
            };
            if let Some(entry) = entry {
                let now = now_ms();
                if entry.expires_ms > now && (!force || entry.created_ms >= started) {
                    let entry = Arc::new(entry);
                    self.l1.insert(Arc::from(key), entry.clone(), now).await;
                    return Some(entry);
                }
            }
            if !lease {
                return None;
            }
        }
    }

    /// Runs the loader and fills L2 and L1 (negative entries too).
    async fn load_and_fill(
        &self,
        key: &str,
        loader: &Loader,
        id: &str,
        ttl: Option<i64>,
        replace: bool,
    ) -> LoadResult {
        Metrics::bump(&self.metrics.loads);
        let loaded = loader.run(&self.pg, id).await.map_err(|e| {
            Metrics::bump(&self.metrics.load_errors);
            LoadFailure {
                kind: loader.kind.clone(),
                message: e.to_string(),
            }
        })?;
        let now = now_ms();
        let (entry, keep_ms) = match loaded {
            Some(l) => {
                let ttl_ms = ttl.map_or_else(
                    || i64::try_from(loader.ttl.as_millis()).unwrap_or(i64::MAX),
                    |s| s.saturating_mul(1000),
                );
                let ttl_ms = self.jittered(ttl_ms);
                let stale_ms = i64::try_from(self.settings.max_stale.as_millis()).unwrap_or(0);
                let entry = Entry {
                    value: Arc::from(l.value),
                    created_ms: now,
                    expires_ms: now + ttl_ms,
                    tags: l.tags.into_iter().map(Arc::<str>::from).collect(),
                    negative: false,
                };
                (entry, ttl_ms + stale_ms)
            }
            None => {
                let ttl_ms =
                    i64::try_from(self.settings.negative_ttl.as_millis()).unwrap_or(30_000);
                let entry = Entry {
                    value: Arc::from(""),
                    created_ms: now,
                    expires_ms: now + ttl_ms,
                    tags: Arc::from([]),
                    negative: true,
                };
                (entry, ttl_ms)
            }
        };
        let entry = Arc::new(entry);
        let filled =
            match codec::encode_offloaded(&entry, self.settings.compress_threshold_bytes).await {
                Ok(bytes) => self.l2.set_px(key, &bytes, keep_ms).await,
                Err(e) => Err(e),
            };
        if let Err(e) = filled {
            tracing::debug!(error = %e, "L2 fill failed; serving from the loader");
        }
        self.l1.insert(Arc::from(key), entry.clone(), now).await;
        if replace {
            let msg = Message {
                k: vec![key.to_owned()],
                ..Message::default()
            };
            self.backplane.publish(&self.l2, msg).await;
        }
        Ok(entry)
    }
}
