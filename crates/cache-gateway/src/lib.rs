//! cache-gateway: the multi-layer read-through cache (L1 in-process, L2 Redis, L3 PostgreSQL
//! loaders), rate limiter and session store behind `ncy.cache.v1.CacheService`.
//!
//! Module map: `api` (gRPC, thin) → `cache` (reads and writes through L1/L2, invalidation) and
//! `stampede` (GetOrLoad: singleflight, leases, negative cache, refresh-ahead, fail-safe) over
//! `l1` (moka), `l2` (Redis with breaker), `codec` (L2 format, lz4), `tags` (tag timestamps),
//! `loaders` (kind → SQL); `entities` (what an entity change invalidates: InvalidateEntity and
//! `db_notify`); `backplane` (pub/sub L1 coherence) and `db_notify` (LISTEN) run in the
//! background; `rate_limit` (GCRA script) and `sessions` stand beside the cache; `stats` answers
//! for this instance and, through ncy-runtime's instance registry it reports to, for every live one.
//!
//! One caller cannot break another service through the gateway (`validate` has the rules): keys of
//! families other services or the gateway's own RPCs own (ncy-types' `KEY_FAMILIES`: `realtime:`,
//! `bus:`, `rate_limit:`, `session:`, `user_sessions:`, `cache:`, `instances:`) are refused by every RPC that
//! names a key or pattern and skipped by broad patterns; loader-backed families (every loader
//! kind: `user:`, `org:`, …) are read and deleted by key but written only by loads, never by Set;
//! and only errors of an unhealthy Redis count toward the L2 breaker every caller shares (`l2`).
use std::{future::Future, sync::Arc};

use ncy_proto::cache::v1::cache_service_server::CacheServiceServer;
use ncy_runtime::{LocalAddrs, RuntimeError, ServiceRuntime};
use tonic::server::NamedService;

mod api;
mod backplane;
mod cache;
pub mod codec;
mod db_notify;
mod entities;
pub mod error;
mod l1;
mod l2;
pub mod loaders;
mod metrics;
mod pattern;
mod rate_limit;
mod sessions;
pub mod settings;
mod stampede;
mod stats;
mod tags;
mod validate;

pub use settings::{CacheSettings, Settings};

/// Service name in logs, traces and metrics.
pub const SERVICE: &str = "cache-gateway";

/// Largest gRPC message accepted: the 4 MiB maximum value plus headroom for MGet/Set envelopes.
const MAX_MESSAGE_BYTES: usize = 8 << 20;

/// Now as Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A built, not yet running, cache gateway.
pub struct Application {
    runtime: ServiceRuntime,
    core: Arc<cache::Core>,
    redis_client: redis::Client,
}

impl Application {
    /// Binds the listeners and prepares the pools; does not wait for Redis or PostgreSQL.
    pub async fn build(settings: Settings) -> Result<Self, RuntimeError> {
        let runtime = ServiceRuntime::build(settings.common.clone()).await?;
        let cache = settings.cache;
        let keys = settings.common.redis.keys.clone();
        let pg = runtime
            .postgres()
            .cloned()
            .ok_or_else(|| RuntimeError::Postgres("DATABASE_URL is required".into()))?;
        let redis_client = settings.common.redis.dedicated_client()?;
        let l2 = l2::L2::new(
            runtime.redis().clone(),
            cache.l2_timeout,
            cache.breaker_failures,
            cache.breaker_open,
        );
        let l1 = l1::L1::new(cache.l1_capacity_bytes, cache.l1_max_ttl);
        let tags = tags::Tags::new(
            keys.clone(),
            l2.clone(),
            cache.l1_max_ttl,
            cache.max_ttl + cache.max_stale,
        );
        let instance_id = uuid::Uuid::new_v4().simple().to_string();
        let backplane = Arc::new(backplane::Backplane::new(
            instance_id,
            keys.cache_invalidation_channel(),
        ));
        let metrics = metrics::Metrics::new(keys.clone(), &cache.loaders);
        let core = Arc::new(cache::Core {
            keys,
            loaders: cache.loaders.clone(),
            settings: cache,
            l1,
            l2,
            tags,
            backplane,
            pg,
            metrics,
            inflight: dashmap::DashMap::new(),
            started_ms: now_ms(),
        });
        Ok(Self {
            runtime,
            core,
            redis_client,
        })
    }

    /// Where this instance listens.
    pub fn local_addrs(&self) -> LocalAddrs {
        self.runtime.local_addrs()
    }

    /// Serves until `shutdown` completes, then drains within the grace period.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), RuntimeError> {
        let Self {
            runtime,
            core,
            redis_client,
        } = self;
        let cancel = runtime.shutdown_token();
        runtime.spawn(backplane::run(
            core.backplane.clone(),
            redis_client,
            core.l1.clone(),
            core.tags.clone(),
            core.settings.backplane_heartbeat,
            cancel.clone(),
        ));
        if core.settings.db_notify {
            runtime.spawn(db_notify::run(
                core.clone(),
                core.settings.db_notify_channel.clone(),
                cancel.clone(),
            ));
        }
        runtime.report_instance(core.backplane.instance_id.clone(), {
            let core = core.clone();
            move || {
                let core = core.clone();
                async move { stats::report(&core).await }
            }
        });
        let api = CacheServiceServer::new(api::CacheApi::new(core, cancel, runtime.instances()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let routes = tonic::service::Routes::new(api);
        runtime
            .serve(
                routes,
                &[CacheServiceServer::<api::CacheApi>::NAME],
                shutdown,
            )
            .await
    }
}
