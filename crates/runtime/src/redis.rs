//! The Redis pool every service uses: deadpool-redis over a single server or Redis Cluster
//! (`NCY_REDIS_CLUSTER`), with bounded waits so no request hangs on a dead Redis.
//!
//! Creating the pool does not connect; the first use does, so a service starts (and reports
//! not-ready) while Redis is still down instead of crash-looping.
use deadpool_redis::{Runtime, Timeouts};
use redis::{Cmd, Pipeline, RedisFuture, Value, aio::ConnectionLike};
use secrecy::ExposeSecret;

use crate::{error::RuntimeError, settings::RedisSettings};

/// A pool of connections to a single Redis or to a Redis Cluster.
#[derive(Clone)]
pub enum RedisPool {
    /// One server (or a proxy in front of several).
    Single(deadpool_redis::Pool),
    /// Redis Cluster, routed by key slot.
    Cluster(deadpool_redis::cluster::Pool),
}

impl std::fmt::Debug for RedisPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Single(p) => f.debug_tuple("Single").field(&p.status()).finish(),
            Self::Cluster(p) => f.debug_tuple("Cluster").field(&p.status()).finish(),
        }
    }
}

/// A pooled connection; returns to the pool when dropped.
pub enum RedisConn {
    /// From [`RedisPool::Single`].
    Single(deadpool_redis::Connection),
    /// From [`RedisPool::Cluster`].
    Cluster(deadpool_redis::cluster::Connection),
}

impl RedisPool {
    /// Builds the pool (no connection is made yet).
    pub fn new(settings: &RedisSettings) -> Result<Self, RuntimeError> {
        let timeouts = Timeouts {
            wait: Some(settings.timeout),
            create: Some(settings.timeout),
            recycle: Some(settings.timeout),
        };
        let pool_config = deadpool_redis::PoolConfig {
            max_size: settings.pool_size,
            timeouts,
            ..Default::default()
        };
        if settings.cluster {
            let mut config = deadpool_redis::cluster::Config::from_urls(settings.urls());
            config.pool = Some(pool_config);
            let pool = config
                .create_pool(Some(Runtime::Tokio1))
                .map_err(|e| RuntimeError::Redis(e.to_string()))?;
            Ok(Self::Cluster(pool))
        } else {
            let mut config = deadpool_redis::Config::from_url(settings.url.expose_secret());
            config.pool = Some(pool_config);
            let pool = config
                .create_pool(Some(Runtime::Tokio1))
                .map_err(|e| RuntimeError::Redis(e.to_string()))?;
            Ok(Self::Single(pool))
        }
    }

    /// A connection from the pool, waiting at most the configured timeout.
    pub async fn get(&self) -> Result<RedisConn, RuntimeError> {
        match self {
            Self::Single(p) => p.get().await.map(RedisConn::Single),
            Self::Cluster(p) => p.get().await.map(RedisConn::Cluster),
        }
        .map_err(|e| RuntimeError::Redis(e.to_string()))
    }

    /// `PING`, for readiness probes.
    pub async fn ping(&self) -> Result<(), RuntimeError> {
        let mut conn = self.get().await?;
        let pong: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(|e| RuntimeError::Redis(e.to_string()))?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(RuntimeError::Redis(format!(
                "unexpected PING reply {pong:?}"
            )))
        }
    }

    /// Whether this pool talks to Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}
