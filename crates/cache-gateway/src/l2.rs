//! L2: Redis through the runtime's pool, with a short per-call timeout and a circuit breaker.
//!
//! Why a breaker on top of the pool's own timeout: when Redis dies, every request would otherwise
//! wait the full timeout before falling back to L1 or the loader. After a few consecutive failures
//! the circuit opens and calls fail at once for a while; the first call after that window is a
//! trial that closes the circuit again when Redis answers.
use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicI64, AtomicU32, Ordering},
    },
    time::Duration,
};

use ncy_runtime::{RedisConn, RedisPool};
use redis::{Cmd, FromRedisValue, Pipeline, Script};

use crate::{error::CacheError, now_ms};

/// Redis with a timeout and a breaker.
#[derive(Clone)]
pub struct L2 {
    pool: RedisPool,
    timeout: Duration,
    breaker: Arc<Breaker>,
}

struct Breaker {
    failures: AtomicU32,
    open_until_ms: AtomicI64,
    threshold: u32,
    open_ms: i64,
}

impl L2 {
    /// Wraps `pool`.
    pub fn new(pool: RedisPool, timeout: Duration, threshold: u32, open: Duration) -> Self {
        Self {
            pool,
            timeout,
            breaker: Arc::new(Breaker {
                failures: AtomicU32::new(0),
                open_until_ms: AtomicI64::new(0),
                threshold: threshold.max(1),
                open_ms: i64::try_from(open.as_millis()).unwrap_or(i64::MAX),
            }),
        }
    }

    /// Whether calls are currently let through (the circuit is closed or half-open).
    pub fn available(&self) -> bool {
        self.breaker.open_until_ms.load(Ordering::Relaxed) <= now_ms()
    }

    /// Whether every pooled connection is in use.
    fn saturated(&self) -> bool {
        let status = match &self.pool {
            RedisPool::Single(p) => p.status(),
            RedisPool::Cluster(p) => p.status(),
        };
        status.available == 0 && status.size >= status.max_size
    }

    /// Runs `f` on a pooled connection within the timeout, through the breaker.
    pub async fn with<T, F, Fut>(&self, f: F) -> Result<T, CacheError>
    where
        F: FnOnce(RedisConn) -> Fut,
        Fut: Future<Output = Result<T, redis::RedisError>>,
    {
        if !self.available() {
            return Err(CacheError::Redis("circuit open".into()));
        }
        let start = tokio::time::Instant::now();
        let conn = match tokio::time::timeout(self.timeout, self.pool.get()).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(CacheError::Redis(e.to_string())),
            // Every connection busy: this process is saturated, Redis is not at fault, so the
            // breaker does not count it.
            Err(_) if self.saturated() => {
                return Err(CacheError::Redis("no free connection in time".into()));
            }
            Err(_) => Err(CacheError::Redis("timed out connecting".into())),
        };
        let result = match conn {
            Ok(conn) => {
                let left = self.timeout.saturating_sub(start.elapsed());
                match tokio::time::timeout(left, f(conn)).await {
                    Ok(r) => r.map_err(CacheError::from),
                    Err(_) => Err(CacheError::Redis("timed out".into())),
                }
            }
            Err(e) => Err(e),
        };
        match &result {
            Ok(_) => self.breaker.failures.store(0, Ordering::Relaxed),
            Err(CacheError::Redis(_)) => {
                let n = self.breaker.failures.fetch_add(1, Ordering::Relaxed) + 1;
                if n >= self.breaker.threshold {
                    self.breaker
                        .open_until_ms
                        .store(now_ms() + self.breaker.open_ms, Ordering::Relaxed);
                    self.breaker.failures.store(0, Ordering::Relaxed);
                }
            }
            Err(_) => {}
        }
        result
    }

    /// One command.
    pub async fn cmd<T: FromRedisValue + Send>(&self, cmd: Cmd) -> Result<T, CacheError> {
        self.with(|mut conn| async move { cmd.query_async(&mut conn).await })
            .await
    }

    /// A pipeline (single-slot or single-node use only).
    pub async fn pipe<T: FromRedisValue + Send>(&self, pipe: Pipeline) -> Result<T, CacheError> {
        self.with(|mut conn| async move { pipe.query_async(&mut conn).await })
            .await
    }

    /// A Lua script called by SHA (loaded on first use by redis-rs).
    pub async fn script<T: FromRedisValue + Send>(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[&[u8]],
    ) -> Result<T, CacheError> {
        let mut inv = script.prepare_invoke();
        for k in keys {
            inv.key(*k);
        }
        for a in args {
            inv.arg(*a);
        }
        self.with(|mut conn| async move { inv.invoke_async(&mut conn).await })
            .await
    }

    /// GET of raw bytes.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        self.cmd(redis::cmd("GET").arg(key).to_owned()).await
    }

    /// GET of many keys in one MGET. On Redis Cluster the cluster client splits it by slot, sends
    /// one MGET per node concurrently and reassembles the replies in key order.
    pub async fn mget(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, CacheError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.cmd(redis::cmd("MGET").arg(keys).to_owned()).await
    }

    /// SET with a PX expiry.
    pub async fn set_px(&self, key: &str, bytes: &[u8], px: i64) -> Result<(), CacheError> {
        self.cmd(
            redis::cmd("SET")
                .arg(key)
                .arg(bytes)
                .arg("PX")
                .arg(px.max(1))
                .to_owned(),
        )
        .await
    }

    /// DEL (UNLINK), returning whether the key existed.
    pub async fn del(&self, key: &str) -> Result<bool, CacheError> {
        let n: i64 = self.cmd(redis::cmd("UNLINK").arg(key).to_owned()).await?;
        Ok(n > 0)
    }
}
