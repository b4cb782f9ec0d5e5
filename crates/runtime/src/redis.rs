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
    Single(SinglePool),
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
    Single(deadpool::managed::Object<CheapRecycle>),
    /// From [`RedisPool::Cluster`].
    Cluster(deadpool_redis::cluster::Connection),
}

/// The single-server pool.
pub type SinglePool = deadpool::managed::Pool<CheapRecycle>;

/// A checkout that was in use this recently is handed out again without a health check.
const FRESH: std::time::Duration = std::time::Duration::from_secs(1);

/// deadpool-redis's manager, minus its round trip per checkout: its `recycle` sends UNWATCH + PING
/// every time a connection leaves the pool, which doubled the round trips of every one-command
/// checkout (measured: three PINGs per job on the worker's hot path). Here a connection used within
/// [`FRESH`] is handed out as it is, unless the pool has seen a connection-level error since its
/// last check (then it is PINGed like an idle one); a connection that failed is dropped and
/// replaced. The price: after a Redis restart, the first command on each warm connection can fail
/// once (the caller sees UNAVAILABLE / retries) before the pool notices. (No WATCH is ever used on
/// pooled connections, so there is nothing to UNWATCH.)
pub struct CheapRecycle {
    inner: deadpool_redis::Manager,
    /// Bumped on every connection-level error: connections checked before it are checked again.
    failures: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for CheapRecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CheapRecycle")
    }
}

/// A pooled connection and whether it failed at the connection level while checked out.
pub struct Pooled {
    conn: redis::aio::MultiplexedConnection,
    broken: bool,
    /// The pool's failure count when this connection was last known good.
    checked_at: u64,
    failures: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Pooled {
    fn note(&mut self, e: &redis::RedisError) {
        if e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_timeout()
        {
            self.broken = true;
            self.failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl deadpool::managed::Manager for CheapRecycle {
    type Type = Pooled;
    type Error = redis::RedisError;

    async fn create(&self) -> Result<Pooled, redis::RedisError> {
        Ok(Pooled {
            conn: self.inner.create().await?,
            broken: false,
            checked_at: self.failures.load(std::sync::atomic::Ordering::Relaxed),
            failures: self.failures.clone(),
        })
    }

    async fn recycle(
        &self,
        obj: &mut Pooled,
        metrics: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<redis::RedisError> {
        if obj.broken {
            return Err(deadpool::managed::RecycleError::message(
                "the connection failed while in use",
            ));
        }
        let failures = self.failures.load(std::sync::atomic::Ordering::Relaxed);
        if metrics.last_used() < FRESH && obj.checked_at == failures {
            return Ok(());
        }
        self.inner.recycle(&mut obj.conn, metrics).await?;
        obj.checked_at = failures;
        Ok(())
    }
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
            let manager = deadpool_redis::Manager::new(settings.url.expose_secret())
                .map_err(|e| RuntimeError::Redis(e.to_string()))?;
            let manager = CheapRecycle {
                inner: manager,
                failures: std::sync::Arc::default(),
            };
            let pool = deadpool::managed::Pool::builder(manager)
                .config(pool_config)
                .runtime(Runtime::Tokio1)
                .build()
                .map_err(|e| RuntimeError::Redis(e.to_string()))?;
            Ok(Self::Single(pool))
        }
    }

    /// A connection from the pool, waiting at most the configured timeout.
    pub async fn get(&self) -> Result<RedisConn, RuntimeError> {
        Ok(match self {
            Self::Single(p) => p.get().await.map(RedisConn::Single)?,
            Self::Cluster(p) => p.get().await.map(RedisConn::Cluster)?,
        })
    }

    /// `PING`, for readiness probes.
    pub async fn ping(&self) -> Result<(), RuntimeError> {
        let mut conn = self.get().await?;
        let pong: String = redis::cmd("PING").query_async(&mut conn).await?;
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

/// `PING` over a new connection outside the pool, for readiness: when the pool fails and this
/// answers, the fault is this instance's pool, not Redis (see [`crate::readiness`]).
pub async fn ping_fresh(settings: &RedisSettings) -> Result<(), RuntimeError> {
    let fail = |e: redis::RedisError| RuntimeError::Redis(e.to_string());
    let pong: String = if settings.cluster {
        let client = redis::cluster::ClusterClient::new(settings.urls()).map_err(fail)?;
        let mut conn = client.get_async_connection().await.map_err(fail)?;
        redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(fail)?
    } else {
        let client = redis::Client::open(settings.url.expose_secret()).map_err(fail)?;
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(fail)?;
        redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(fail)?
    };
    if pong == "PONG" {
        Ok(())
    } else {
        Err(RuntimeError::Redis(format!(
            "unexpected PING reply {pong:?}"
        )))
    }
}

/// A primary node of a Redis Cluster (`host`, `port`), or the one server otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisNode {
    pub host: String,
    pub port: u16,
}

impl RedisConn {
    /// The nodes a whole-keyspace walk (SCAN) must visit: every primary of a cluster (from
    /// `CLUSTER NODES`, failed nodes skipped), or `None` for a single server (any command reaches
    /// the whole keyspace there).
    pub async fn primaries(&mut self) -> redis::RedisResult<Option<Vec<RedisNode>>> {
        let Self::Cluster(c) = self else {
            return Ok(None);
        };
        let text: String = redis::cmd("CLUSTER").arg("NODES").query_async(c).await?;
        Ok(Some(parse_cluster_nodes(&text)))
    }

    /// The primary serving `key`'s slot on a cluster (`CLUSTER KEYSLOT`, then
    /// `CLUSTER SLOTS`), or `None` for a single server. For the dedicated connections a blocking
    /// command needs (one key's node), which a cluster client cannot multiplex.
    pub async fn primary_for_key(&mut self, key: &str) -> redis::RedisResult<Option<RedisNode>> {
        let Self::Cluster(c) = self else {
            return Ok(None);
        };
        let slot: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(c)
            .await?;
        let ranges: Vec<Value> = redis::cmd("CLUSTER").arg("SLOTS").query_async(c).await?;
        for range in ranges {
            let Value::Array(items) = range else { continue };
            let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(primary))) =
                (items.first(), items.get(1), items.get(2))
            else {
                continue;
            };
            if !(*start..=*end).contains(&slot) {
                continue;
            }
            let host = match primary.first() {
                Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                Some(Value::SimpleString(s)) => s.clone(),
                _ => continue,
            };
            let Some(Value::Int(port)) = primary.get(1) else {
                continue;
            };
            return Ok(Some(RedisNode {
                host,
                port: u16::try_from(*port).unwrap_or(0),
            }));
        }
        Err(redis::RedisError::from((
            redis::ErrorKind::Client,
            "no primary serves the slot",
            format!("slot {slot} of {key}"),
        )))
    }

    /// Runs `cmd` on `node` (a cluster primary from [`RedisConn::primaries`]); on a single server,
    /// on that server.
    pub async fn query_on<T: redis::FromRedisValue>(
        &mut self,
        node: Option<&RedisNode>,
        cmd: &Cmd,
    ) -> redis::RedisResult<T> {
        match (self, node) {
            (Self::Cluster(c), Some(n)) => {
                use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: n.host.clone(),
                    port: n.port,
                });
                let v = c.route_command(cmd.clone(), routing).await?;
                redis::FromRedisValue::from_redis_value(v).map_err(Into::into)
            }
            (conn, _) => cmd.query_async(conn).await,
        }
    }
}

/// A client for `node` with the credentials and TLS settings of `seed` (one of the cluster's URLs).
pub fn client_for_node(seed: &str, node: &RedisNode) -> redis::RedisResult<redis::Client> {
    use redis::{ConnectionAddr, IntoConnectionInfo};
    let info = seed.into_connection_info()?;
    let addr = match info.addr().clone() {
        ConnectionAddr::TcpTls {
            insecure,
            tls_params,
            ..
        } => ConnectionAddr::TcpTls {
            host: node.host.clone(),
            port: node.port,
            insecure,
            tls_params,
        },
        _ => ConnectionAddr::Tcp(node.host.clone(), node.port),
    };
    redis::Client::open(info.set_addr(addr))
}

/// The healthy primaries of a `CLUSTER NODES` reply (`<id> <ip:port@cport[,hostname]> <flags> …`).
fn parse_cluster_nodes(text: &str) -> Vec<RedisNode> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (_id, addr, flags) = (f.next()?, f.next()?, f.next()?);
            let flags: Vec<&str> = flags.split(',').collect();
            if !flags.contains(&"master") || flags.iter().any(|x| x.starts_with("fail")) {
                return None;
            }
            let hostport = addr.split(['@', ',']).next()?;
            let (host, port) = hostport.rsplit_once(':')?;
            Some(RedisNode {
                host: host.trim_matches(['[', ']']).to_owned(),
                port: port.parse().ok()?,
            })
        })
        .collect()
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => Box::pin(async move {
                let r = c.conn.req_packed_command(cmd).await;
                if let Err(e) = &r {
                    c.note(e);
                }
                r
            }),
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
            Self::Single(c) => Box::pin(async move {
                let r = c.conn.req_packed_commands(cmd, offset, count).await;
                if let Err(e) = &r {
                    c.note(e);
                }
                r
            }),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.conn.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_nodes_keeps_healthy_primaries_only() {
        let text = "a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7002@17002,node-b master - 0 1 2 connected 5461-10922
c3 127.0.0.1:7003@17003 master,fail - 0 1 3 disconnected
d4 127.0.0.1:7004@17004 slave a1 0 1 1 connected
e5 [::1]:7005@17005 master - 0 1 5 connected 10923-16383
";
        let nodes = parse_cluster_nodes(text);
        let got: Vec<(String, u16)> = nodes.into_iter().map(|n| (n.host, n.port)).collect();
        assert_eq!(
            got,
            vec![
                ("127.0.0.1".to_owned(), 7001),
                ("127.0.0.1".to_owned(), 7002),
                ("::1".to_owned(), 7005)
            ]
        );
    }
}
