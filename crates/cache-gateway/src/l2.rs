//! L2: Redis through the runtime's pool, with a short per-call timeout and a circuit breaker.
//!
//! Why a breaker on top of the pool's own timeout: when Redis dies, every request would otherwise
//! wait the full timeout before falling back to L1 or the loader. After a few consecutive failures
//! the circuit opens and calls fail at once for a while; the first call after that window is a
//! trial that closes the circuit again when Redis answers.
//!
//! The breaker is shared by every caller of the instance, so only failures that say Redis is
//! unhealthy count ([`is_outage`], by `redis::ErrorKind`, never by message text). An error Redis
//! answers about one command — WRONGTYPE on a key holding a hash, a script error, a refused
//! argument — is caused by that caller's key, not by Redis: it fails that request alone and, being
//! an answer, proves Redis is up (it resets the failure count like a success). Otherwise a caller
//! reading a few keys of the wrong type would open the circuit for everyone.
//!
//! Single-key reads are coalesced: every GET that arrives while earlier reads are in flight joins
//! the next MGET (up to `MAX_GET_BATCH` keys, `GET_BATCHES_IN_FLIGHT` batches at once). A lone read
//! still goes out at once as a plain GET; under load one round trip and one pooled connection serve
//! many requests, where a GET per request queued on the pool.
use std::{
    future::Future,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicI64, AtomicU32, Ordering},
    },
    time::Duration,
};

use ncy_runtime::{RedisConn, RedisPool};
use redis::{Cmd, ErrorKind, FromRedisValue, Pipeline, Script, ServerErrorKind};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::{error::CacheError, now_ms};

/// Most keys in one coalesced MGET.
const MAX_GET_BATCH: usize = 128;
/// Coalesced reads in flight at once.
const GET_BATCHES_IN_FLIGHT: usize = 4;

type Reply = oneshot::Sender<Result<Option<Vec<u8>>, CacheError>>;
type Read = (String, Reply);

/// Redis with a timeout and a breaker.
#[derive(Clone)]
pub struct L2 {
    pool: RedisPool,
    timeout: Duration,
    breaker: Arc<Breaker>,
    /// The read coalescer, started on the first `get` (inside the runtime).
    reads: Arc<OnceLock<mpsc::UnboundedSender<Read>>>,
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
            reads: Arc::default(),
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
            return Err(CacheError::Unavailable("circuit open"));
        }
        let start = tokio::time::Instant::now();
        let conn = match tokio::time::timeout(self.timeout, self.pool.get()).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(CacheError::from(e)),
            // Every connection busy: this process is saturated, Redis is not at fault, so the
            // breaker does not count it.
            Err(_) if self.saturated() => {
                return Err(CacheError::Unavailable("no free connection in time"));
            }
            Err(_) => Err(CacheError::Unavailable("timed out connecting")),
        };
        let result = match conn {
            Ok(conn) => {
                let left = self.timeout.saturating_sub(start.elapsed());
                match tokio::time::timeout(left, f(conn)).await {
                    Ok(r) => r.map_err(CacheError::from),
                    Err(_) => Err(CacheError::Unavailable("timed out")),
                }
            }
            Err(e) => Err(e),
        };
        match &result {
            // Redis answered, even if with an error about this command (see `is_outage`).
            Ok(_) | Err(CacheError::RedisRefused(_)) => {
                self.breaker.failures.store(0, Ordering::Relaxed);
            }
            Err(CacheError::Redis(_) | CacheError::Pool(_) | CacheError::Unavailable(_)) => {
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

    /// GET of raw bytes, coalesced with the GETs of other requests (see the module docs).
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let reads = self.reads.get_or_init(|| self.start_reads());
        let (reply, answer) = oneshot::channel();
        reads
            .send((key.to_owned(), reply))
            .map_err(|_| CacheError::Unavailable("the L2 reader has stopped"))?;
        // Waiting for a batch slot counts against the same timeout as the read itself, so no
        // request waits on a slow Redis longer than a direct GET would.
        match tokio::time::timeout(self.timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(CacheError::Unavailable("the L2 reader dropped the read")),
            Err(_) => Err(CacheError::Unavailable("timed out")),
        }
    }

    /// Starts the task that turns queued reads into GETs and MGETs. It holds an L2 without a
    /// coalescer of its own, so it ends when the last handle of this one is dropped.
    fn start_reads(&self) -> mpsc::UnboundedSender<Read> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Read>();
        let l2 = L2 {
            pool: self.pool.clone(),
            timeout: self.timeout,
            breaker: self.breaker.clone(),
            reads: Arc::default(),
        };
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(GET_BATCHES_IN_FLIGHT));
            loop {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let mut batch = Vec::new();
                if rx.recv_many(&mut batch, MAX_GET_BATCH).await == 0 {
                    return;
                }
                let l2 = l2.clone();
                tokio::spawn(async move {
                    l2.read_batch(batch).await;
                    drop(slot);
                });
            }
        });
        tx
    }

    /// One GET (a lone read) or one MGET, and each read's answer.
    async fn read_batch(&self, batch: Vec<Read>) {
        let (keys, replies): (Vec<String>, Vec<_>) = batch.into_iter().unzip();
        let values = match &keys[..] {
            [key] => self
                .cmd(redis::cmd("GET").arg(key).to_owned())
                .await
                .map(|v| vec![v]),
            _ => self.mget(&keys).await,
        };
        let values = match values {
            Ok(values) if values.len() == keys.len() => values,
            Ok(values) => {
                let msg = format!(
                    "MGET answered {} values for {} keys",
                    values.len(),
                    keys.len()
                );
                return fail_all(replies, &CacheError::Internal(msg));
            }
            Err(e) => return fail_all(replies, &e),
        };
        for (reply, value) in replies.into_iter().zip(values) {
            let _ = reply.send(Ok(value));
        }
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

/// Whether `e` says Redis is unhealthy — it did not answer (I/O, no connection, a broken cluster
/// route) or it answered that it serves no one right now (LOADING, CLUSTERDOWN, MASTERDOWN,
/// TRYAGAIN, READONLY) — rather than that this one command was wrong for the data it touched
/// (WRONGTYPE, ERR, a script abort, NOSCRIPT, CROSSSLOT, NOPERM, a reply of an unexpected type).
/// Kinds not named here count, as every error did before.
///
/// redis-rs has no `ErrorKind` of its own for WRONGTYPE: it arrives as `ErrorKind::Extension` (a
/// reply code redis-rs does not name), like the other codes a command's data causes. Extension
/// codes that are server-wide (OOM, BUSY, MISCONF) are not counted either: they are immediate
/// answers, and the breaker is only there to spare requests a timeout on a Redis that does not
/// answer.
pub fn is_outage(e: &redis::RedisError) -> bool {
    !matches!(
        e.kind(),
        ErrorKind::Extension
            | ErrorKind::Parse
            | ErrorKind::UnexpectedReturnType
            | ErrorKind::Server(
                ServerErrorKind::ResponseError
                    | ServerErrorKind::ExecAbort
                    | ServerErrorKind::NoScript
                    | ServerErrorKind::CrossSlot
                    | ServerErrorKind::NoPerm
            )
    )
}

/// Answers every read of a failed batch with the same error (an outage or a refused command).
fn fail_all(replies: Vec<Reply>, e: &CacheError) {
    for reply in replies {
        let _ = reply.send(Err(e.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: &str) -> redis::RedisError {
        let reply = format!("-{code} detail\r\n");
        match redis::parse_redis_value(reply.as_bytes()) {
            Ok(redis::Value::ServerError(e)) => e.into(),
            other => panic!("not a server error: {other:?}"),
        }
    }

    #[test]
    fn only_errors_of_an_unhealthy_redis_are_outages() {
        for code in ["WRONGTYPE", "ERR", "NOSCRIPT", "CROSSSLOT", "OOM", "NOPERM"] {
            assert!(!is_outage(&server(code)), "{code}");
        }
        for code in [
            "LOADING",
            "CLUSTERDOWN",
            "MASTERDOWN",
            "TRYAGAIN",
            "READONLY",
        ] {
            assert!(is_outage(&server(code)), "{code}");
        }
        let io = redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(is_outage(&io));
    }
}
