//! A real S3-compatible server of the test's own (moto, from the pinned test venv, see
//! [`moto_server_bin`]) on a free loopback port, for tests of the worker's file store. An S3
//! outage is [`MotoServer::stop`] then [`MotoServer::restart`]: the server comes back on the same
//! port, so a client configured with its URL reaches it again. moto keeps everything in memory, so
//! a restarted server is empty: the buckets given to [`MotoServer::start`] are created again, and
//! objects stored before the outage are gone.
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::moto_server_bin;

/// First start may create the venv.
const START_TIMEOUT: Duration = Duration::from_secs(180);

/// A running moto server owned by one test; killed (by its handle) when dropped.
pub struct MotoServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    buckets: Vec<String>,
    bin: PathBuf,
    child: Option<Child>,
}

impl MotoServer {
    /// Starts moto on a free port with `buckets` created, once it answers.
    pub async fn start(buckets: &[&str]) -> anyhow::Result<Self> {
        let mut server = Self {
            port: crate::free_port(),
            buckets: buckets.iter().map(|b| (*b).to_owned()).collect(),
            bin: moto_server_bin()?,
            child: None,
        };
        server.spawn().await?;
        Ok(server)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGKILL, by its handle): connections to its port are refused.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts the server again on its port (stopping it first if it runs), empty but for its
    /// buckets, once it answers. Fails if another process took the port meanwhile.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await;
        self.spawn().await
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let mut child = Command::new(&self.bin)
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let url = self.url();
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        let mut wait = Duration::from_millis(20);
        // Polls until it answers; a server that exited (the port taken) fails at once.
        while http.get(&url).send().await.is_err() {
            if let Some(status) = child.try_wait()? {
                anyhow::bail!("moto_server exited ({status}) before answering on {url}");
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "moto_server did not answer on {url} within {START_TIMEOUT:?}"
            );
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_millis(200));
        }
        self.child = Some(child);
        for bucket in &self.buckets {
            let created = http.put(format!("{url}/{bucket}")).send().await?;
            anyhow::ensure!(
                created.status().is_success(),
                "create bucket {bucket}: {}",
                created.status()
            );
        }
        Ok(())
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}
