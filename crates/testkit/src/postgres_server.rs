//! A PostgreSQL server of the test's own (`initdb` into a temporary folder, `postgres` on a free
//! loopback port), for tests that stop and restart the database. Only the process started here is
//! ever stopped, by its PID.
//!
//! The server binaries are found in `NCY_TEST_PG_BINDIR`, else `pg_config --bindir`, else the
//! newest `/usr/lib/postgresql/<version>/bin` (Debian), else `PATH`. PostgreSQL refuses to run as
//! root, so when the tests run as root the server runs as the `postgres` user (its folder is
//! handed to that user).
use std::{
    os::unix::{fs::MetadataExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use sqlx::{Connection, PgConnection};

/// A running (or stopped) PostgreSQL owned by one test; its data survive [`PostgresServer::stop`].
pub struct PostgresServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
    owner: Option<(u32, u32)>,
    child: Option<Child>,
}

impl PostgresServer {
    /// Creates a cluster with `initdb` (trust authentication, superuser `postgres`) and starts it.
    pub async fn start() -> anyhow::Result<Self> {
        let bin = bin_dir()?;
        let dir = tempfile::tempdir()?;
        let owner = if std::fs::metadata("/proc/self")?.uid() == 0 {
            let (uid, gid) = user_ids("postgres")?;
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))?;
            Some((uid, gid))
        } else {
            None
        };
        let data = dir.path().join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        as_owner(&mut initdb, owner);
        let out = initdb.output()?;
        anyhow::ensure!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut server = Self {
            port: crate::free_port(),
            dir,
            bin,
            owner,
            child: None,
        };
        server.resume().await?;
        Ok(server)
    }

    /// `postgres://postgres@127.0.0.1:<port>/<database>`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates `database` with the platform schema applied; returns its URL.
    pub async fn migrated_database(&self, database: &str) -> anyhow::Result<String> {
        let mut admin = PgConnection::connect(&self.url("postgres")).await?;
        sqlx::query(&format!("CREATE DATABASE \"{database}\""))
            .execute(&mut admin)
            .await?;
        admin.close().await?;
        let url = self.url(database);
        let pool = sqlx::PgPool::connect(&url).await?;
        ncy_store::migrate(&pool).await?;
        pool.close().await;
        Ok(url)
    }

    /// Stops the server at once (immediate shutdown, SIGQUIT: every connection is cut as in a
    /// crash; the next start recovers from the WAL) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let signalled = Command::new("kill")
                .args(["-QUIT", &child.id().to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if !signalled {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and waits until it accepts connections.
    pub async fn resume(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.child.is_none(),
            "postgres on port {} is already running",
            self.port
        );
        let data = self.dir.path().join("data");
        let log = std::fs::File::create(self.dir.path().join("server.log"))?;
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(self.dir.path().join("server.log"), Some(uid), Some(gid))?;
        }
        let mut cmd = Command::new(self.bin.join("postgres"));
        cmd.arg("-D")
            .arg(&data)
            .args(["-p", &self.port.to_string()])
            .arg("-k")
            .arg(self.dir.path())
            // fsync off is safe here: a stop kills the server, not the machine, so what was
            // written reaches the files through the OS cache. synchronous_commit stays on: with it
            // off, a commit acknowledged just before an immediate stop is lost — what the outage
            // tests check never happens.
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        as_owner(&mut cmd, self.owner);
        self.child = Some(
            cmd.spawn()
                .map_err(|e| anyhow::anyhow!("cannot start postgres: {e}"))?,
        );
        let url = self.url("postgres");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut conn) = PgConnection::connect(&url).await
                && sqlx::query("SELECT 1").execute(&mut conn).await.is_ok()
            {
                let _ = conn.close().await;
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                let log =
                    std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
                anyhow::bail!("postgres exited ({status}): {log}");
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "postgres on port {} did not start",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn as_owner(cmd: &mut Command, owner: Option<(u32, u32)>) {
    if let Some((uid, gid)) = owner {
        cmd.gid(gid).uid(uid);
    }
}

/// The uid and gid of `user`, from `/etc/passwd`.
fn user_ids(user: &str) -> anyhow::Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&user))
        .and_then(|f| Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?)))
        .ok_or_else(|| {
            anyhow::anyhow!("running as root and there is no {user:?} user to run PostgreSQL as")
        })
}

/// Where `initdb` and `postgres` are.
fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("NCY_TEST_PG_BINDIR") {
        return Ok(PathBuf::from(dir));
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return Ok(dir);
        }
    }
    let debian = Path::new("/usr/lib/postgresql");
    if let Ok(entries) = std::fs::read_dir(debian) {
        let mut versions: Vec<(u32, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
                let bin = e.path().join("bin");
                bin.join("initdb").exists().then_some((v, bin))
            })
            .collect();
        versions.sort();
        if let Some((_, bin)) = versions.pop() {
            return Ok(bin);
        }
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path).find(|d| d.join("initdb").exists() && d.join("postgres").exists())
        })
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no PostgreSQL server binaries (initdb, postgres): install postgresql or set NCY_TEST_PG_BINDIR"
            )
        })
}
