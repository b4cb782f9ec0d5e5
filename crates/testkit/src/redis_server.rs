//! A `redis-server` process of the test's own, for tests that stop, restart or cluster Redis.
//! Only the process started here is ever stopped, by its handle.
use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

/// A running (or stopped) Redis server owned by one test.
pub struct RedisServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    extra_args: Vec<String>,
}

impl RedisServer {
    /// Starts `redis-server` on a free port and waits until it answers PING.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(&[]).await
    }

    /// Like [`RedisServer::start`] with extra server arguments (e.g. `--cluster-enabled yes`).
    pub async fn start_with(extra_args: &[&str]) -> anyhow::Result<Self> {
        let mut server = Self {
            port: crate::free_port(),
            dir: tempfile::tempdir()?,
            child: None,
            extra_args: extra_args.iter().map(|s| (*s).to_owned()).collect(),
        };
        server.resume().await?;
        Ok(server)
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL: as abrupt as a crash); data is not kept.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and waits until it answers.
    pub async fn resume(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.child.is_none(),
            "redis-server on port {} is already running",
            self.port
        );
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start redis-server (is it installed?): {e}"))?;
        self.child = Some(child);
        let url = self.url();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(client) = redis::Client::open(url.as_str())
                && let Ok(mut conn) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok()
            {
                return Ok(());
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "redis-server on port {} did not start",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Redis Cluster of the test's own: `n` primaries (no replicas) on free ports, slots spread by
/// `redis-cli --cluster create`, ready when `CLUSTER INFO` says `cluster_state:ok`.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `n` (≥ 3) cluster-enabled servers and joins them.
    pub async fn start(n: usize) -> anyhow::Result<Self> {
        let mut nodes = Vec::with_capacity(n);
        for _ in 0..n {
            nodes.push(
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    "2000",
                ])
                .await?,
            );
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()?;
        anyhow::ensure!(
            created.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        let cluster = Self { nodes };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if cluster.all_ok().await {
                return Ok(cluster);
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the cluster did not reach cluster_state:ok"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every node says `cluster_state:ok`.
    async fn all_ok(&self) -> bool {
        for node in &self.nodes {
            let Ok(client) = redis::Client::open(node.url()) else {
                return false;
            };
            let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
                return false;
            };
            let info: String = redis::cmd("CLUSTER")
                .arg("INFO")
                .query_async(&mut conn)
                .await
                .unwrap_or_default();
            if !info.contains("cluster_state:ok") {
                return false;
            }
        }
        true
    }

    /// The `REDIS_URL` of the services: every node's URL, comma-separated.
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(RedisServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Keys stored on each node (`DBSIZE` per node), in node order.
    pub async fn key_counts(&self) -> anyhow::Result<Vec<i64>> {
        let mut out = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            let client = redis::Client::open(node.url())?;
            let mut conn = client.get_multiplexed_async_connection().await?;
            out.push(redis::cmd("DBSIZE").query_async(&mut conn).await?);
        }
        Ok(out)
    }
}
