//! [`Engine`]: the handle both services hold — the Redis pool, the key space, the settings and the
//! scripts — with the producer/operator operations (enqueue, inspect, cancel, pause, dead letters).
//! The worker-side transitions are in `consumer.rs`, the promoter in `promoter.rs`, cron in `cron.rs`.
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use ncy_runtime::{RedisConn, RedisPool};
use ncy_types::KeySpace;
use ncy_types::QueueKeys;
use ncy_types::jobs::QueueName;

use crate::config::{EngineSettings, QueueSettings};
use crate::error::Result;
use crate::history::HistoryCounts;
use crate::scripts::Scripts;

/// Streams per queue: one per priority 0..=10.
pub const BANDS: u8 = 11;
/// The consumer group every worker joins.
pub const GROUP: &str = "workers";

/// The job engine handle (cheap to clone).
#[derive(Clone)]
pub struct Engine {
    pub(crate) pool: RedisPool,
    pub(crate) keys: KeySpace,
    pub(crate) settings: Arc<EngineSettings>,
    pub(crate) scripts: Arc<Scripts>,
    /// For dedicated connections (blocking reads, pub/sub) to a single server.
    pub(crate) client: Option<redis::Client>,
    /// On Redis Cluster: a seed URL whose credentials/TLS the per-node dedicated clients reuse.
    pub(crate) cluster_seed: Option<String>,
    /// The consumers (per queue) whose blocking read failed or was given up on: Redis may have
    /// delivered entries to them that they never saw. Their next fetch takes those first (see
    /// `consumer.rs`).
    pub(crate) lost_reads: Arc<Mutex<HashSet<(QueueName, String)>>>,
    /// Jobs finished per queue and minute, counted in memory until the next history flush (see
    /// `history.rs`).
    pub(crate) history: Arc<HistoryCounts>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("prefix", &self.keys.prefix())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine over `pool` under `keys`. `client` opens dedicated connections for blocking reads
    /// and pub/sub (a single server's URL); without it (and without a cluster seed) the worker waits
    /// with short sleeps instead.
    pub fn new(
        pool: RedisPool,
        keys: KeySpace,
        settings: EngineSettings,
        client: Option<redis::Client>,
    ) -> Self {
        Self {
            pool,
            keys,
            settings: Arc::new(settings),
            scripts: Arc::new(Scripts::new()),
            client,
            cluster_seed: None,
            lost_reads: Arc::default(),
            history: Arc::default(),
        }
    }

    /// An engine for a service: its pool, its Redis settings (prefix; a dedicated-connection client
    /// unless on Redis Cluster) and the engine settings.
    pub fn for_service(
        pool: RedisPool,
        redis: &ncy_runtime::settings::RedisSettings,
        settings: EngineSettings,
    ) -> Self {
        if redis.cluster {
            let mut engine = Self::new(pool, redis.keys.clone(), settings, None);
            engine.cluster_seed = redis.urls().first().cloned();
            return engine;
        }
        let client = redis.dedicated_client().ok();
        Self::new(pool, redis.keys.clone(), settings, client)
    }

    /// The settings in effect.
    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// The settings of one queue.
    pub fn queue_settings(&self, queue: QueueName) -> QueueSettings {
        self.settings.queue(queue)
    }

    /// The key builders of `queue`.
    pub fn queue_keys(&self, queue: QueueName) -> QueueKeys {
        self.keys.queue(queue.as_str())
    }

    /// The deployment's key space.
    pub fn keys(&self) -> &KeySpace {
        &self.keys
    }

    /// A pooled connection.
    pub(crate) async fn conn(&self) -> Result<RedisConn> {
        Ok(self.pool.get().await?)
    }

    /// A client for dedicated connections about `queue` (its blocking reads, its pub/sub channels):
    /// the server itself, or on Redis Cluster the primary that serves the queue's hash slot (every
    /// key of a queue shares one tag; pub/sub is cluster-wide, so that node hears every PUBLISH too).
    /// `None` when the engine has neither (tests). After a resharding the node answers MOVED: drop
    /// the connection and ask again.
    pub async fn dedicated_client(&self, queue: QueueName) -> Result<Option<redis::Client>> {
        if let Some(client) = &self.client {
            return Ok(Some(client.clone()));
        }
        let Some(seed) = &self.cluster_seed else {
            return Ok(None);
        };
        let mut conn = self.conn().await?;
        let Some(node) = conn.primary_for_key(self.queue_keys(queue).tag()).await? else {
            return Ok(None);
        };
        Ok(Some(ncy_runtime::redis::client_for_node(seed, &node)?))
    }

    /// Creates the consumer group on every band of `queue` (idempotent). Called at worker start and
    /// again when Redis answers `NOGROUP` (it restarted without persistence).
    pub async fn ensure_groups(&self, queue: QueueName) -> Result<()> {
        let q = self.queue_keys(queue);
        let mut conn = self.conn().await?;
        for band in 0..BANDS {
            let created: redis::RedisResult<()> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(q.ready(band))
                .arg(GROUP)
                .arg("0")
                .arg("MKSTREAM")
                .query_async(&mut conn)
                .await;
            if let Err(e) = created
                && e.code() != Some("BUSYGROUP")
            {
                return Err(e.into());
            }
        }
        Ok(())
    }
}
