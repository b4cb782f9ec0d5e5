//! `backup-database`: `pg_dump --format=custom` of the worker's database, streamed into the
//! [`FileStore`] as `backups/ncy-<timestamp>.dump`, then only the newest N dumps are kept.
//!
//! The password never reaches the command line (other users of the machine can read it there):
//! it is removed from the URL given to `--dbname` and passed as `PGPASSWORD`, and it is masked in
//! any pg_dump message that becomes the job's error. The dump is committed to the store only when
//! pg_dump exits 0, so a failed or cancelled run leaves no partial backup.
//!
//! Outages (see [`crate::outages`]): the file store unreachable or not serving is an outage of the
//! object store ([`JobError::file_store`]). pg_dump exits 1 whatever went wrong and says why only
//! in text, so when it fails the database is asked directly, over a connection of our own
//! ([`database_unavailable`]): unreachable or not serving (`ncy_store::is_unavailable`), the
//! failure is an outage of PostgreSQL; answering, it is pg_dump's own (a version mismatch, a
//! permission) and uses an attempt. (A database that comes back between the two is counted as
//! pg_dump's failure: one attempt, rarely.)
use std::process::Stdio;
use std::time::Duration;

use chrono::Utc;
use ncy_runtime::{ConfigError, Env};
use ncy_types::jobs::payloads::KEEP_LAST;
use ncy_types::jobs::{BackupJobData, JobType};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tokio::io::AsyncReadExt;
use tokio::process::Command;

use super::{Dependency, JobContext, JobError, JobResult, Processor};
use crate::files::FileStore;

/// Folder of the dumps in the file store.
pub const BACKUP_PREFIX: &str = "backups";
/// Longest pg_dump message kept in a job error, in characters.
const MAX_STDERR_CHARS: usize = 2000;
/// How long the database has to answer [`database_unavailable`]'s connection.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Settings of the backup processor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSettings {
    /// `NCY_WORKER_PG_DUMP`: the pg_dump binary (default `pg_dump`, looked up on PATH).
    pub pg_dump: String,
    /// `NCY_WORKER_BACKUP_KEEP`: dumps kept when the job has no `keepLast` (default 7).
    pub keep: u32,
}

impl BackupSettings {
    /// Reads `NCY_WORKER_PG_DUMP` and `NCY_WORKER_BACKUP_KEEP`.
    pub fn load(env: &Env) -> Result<Self, ConfigError> {
        let keep: u32 = env.parse_or("NCY_WORKER_BACKUP_KEEP", 7, "a number 1–1000")?;
        if !(KEEP_LAST.0..=KEEP_LAST.1).contains(&keep) {
            return Err(ConfigError::new(
                "NCY_WORKER_BACKUP_KEEP",
                "must be between 1 and 1000",
            ));
        }
        Ok(Self {
            pg_dump: env
                .get("NCY_WORKER_PG_DUMP")
                .filter(|s| !s.trim().is_empty())
                .unwrap_or_else(|| "pg_dump".to_owned()),
            keep,
        })
    }
}

/// Runs `backup-database` jobs.
#[derive(Clone)]
pub struct BackupProcessor {
    pub settings: BackupSettings,
    pub files: FileStore,
    /// The worker's `DATABASE_URL`.
    pub database_url: Option<SecretString>,
}

impl Processor for BackupProcessor {
    const JOB_TYPE: JobType = JobType::BackupDatabase;
    type Payload = BackupJobData;

    async fn process(&self, ctx: JobContext, data: BackupJobData) -> JobResult {
        let keep = data.keep_last.unwrap_or(self.settings.keep);
        let url = self
            .database_url
            .as_ref()
            .ok_or_else(|| JobError::fatal("no database is configured (DATABASE_URL)"))?;
        let target = DumpTarget::parse(url.expose_secret())
            .map_err(|e| JobError::fatal(format!("DATABASE_URL: {e}")))?;

        ctx.progress(10, "dumping").await;
        let key = format!(
            "{BACKUP_PREFIX}/ncy-{}.dump",
            Utc::now().format("%Y%m%dT%H%M%S%3fZ")
        );
        let size = self.dump(&ctx, &target, &key).await?;

        ctx.progress(80, "removing old backups").await;
        let deleted = prune(&self.files, keep)
            .await
            .map_err(|e| JobError::file_store(&e))?;
        ctx.progress(100, "done").await;
        Ok(Some(json!({
            "key": key,
            "bytes": size,
            "keepLast": keep,
            "deleted": deleted,
        })))
    }
}

impl BackupProcessor {
    /// Runs pg_dump into `key`; returns the dump's size.
    async fn dump(
        &self,
        ctx: &JobContext,
        target: &DumpTarget,
        key: &str,
    ) -> Result<u64, JobError> {
        let bin = &self.settings.pg_dump;
        let mut cmd = Command::new(bin);
        cmd.arg("--format=custom")
            .arg("--no-password")
            .arg("--dbname")
            .arg(&target.url)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(pw) = &target.password {
            cmd.env("PGPASSWORD", pw);
        }
        let mut child = cmd.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                JobError::retryable(format!("pg_dump not found (NCY_WORKER_PG_DUMP={bin})"))
            } else {
                JobError::retryable(format!(
                    "cannot run pg_dump (NCY_WORKER_PG_DUMP={bin}): {e}"
                ))
            }
        })?;
        let (Some(mut stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take())
        else {
            return Err(JobError::retryable("pg_dump's output is not piped"));
        };
        let errors = tokio::spawn(async move {
            let mut buf = Vec::new();
            let _ = (&mut stderr).take(64 * 1024).read_to_end(&mut buf).await;
            String::from_utf8_lossy(&buf).into_owned()
        });
        let mut upload = match self.files.upload(key).await {
            Ok(u) => u,
            Err(e) => {
                let _ = child.kill().await;
                return Err(JobError::file_store(&e));
            }
        };
        let copied = tokio::select! {
            r = upload.copy_from(&mut stdout) => Some(r),
            () = ctx.cancel.cancelled() => None,
        };
        match copied {
            None => {
                let _ = child.kill().await;
                upload.abort().await;
                return Err(JobError::fatal("cancelled"));
            }
            Some(Err(e)) => {
                let _ = child.kill().await;
                upload.abort().await;
                return Err(JobError::file_store(&e));
            }
            Some(Ok(_)) => {}
        }
        let status = child
            .wait()
            .await
            .map_err(|e| JobError::retryable(format!("cannot wait for pg_dump: {e}")))?;
        if !status.success() {
            upload.abort().await;
            let stderr = target.mask(&errors.await.unwrap_or_default());
            let down = match &self.database_url {
                Some(url) => database_unavailable(url.expose_secret()).await,
                None => false,
            };
            return Err(if down {
                JobError::unavailable(
                    Dependency::Postgres,
                    format!("pg_dump failed ({status}) and the database is unavailable: {stderr}"),
                )
            } else {
                JobError::retryable(format!("pg_dump failed ({status}): {stderr}"))
            });
        }
        upload.commit().await.map_err(|e| JobError::file_store(&e))
    }
}

/// Whether the database at `url` is unreachable or not serving right now: a new connection (not
/// the pool's, which may hold one that still works), classified by `ncy_store::is_unavailable`; no
/// answer within [`PROBE_TIMEOUT`] counts as unavailable.
async fn database_unavailable(url: &str) -> bool {
    let Ok(options) = url.parse::<PgConnectOptions>() else {
        return false;
    };
    match tokio::time::timeout(PROBE_TIMEOUT, PgConnection::connect_with(&options)).await {
        Err(_elapsed) => true,
        Ok(Err(e)) => ncy_store::is_unavailable(&e),
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            false
        }
    }
}

/// Keeps the newest `keep` dumps; returns the keys deleted.
async fn prune(files: &FileStore, keep: u32) -> Result<Vec<String>, crate::files::FileStoreError> {
    let mut dumps: Vec<String> = files
        .list(BACKUP_PREFIX)
        .await?
        .into_iter()
        .map(|f| f.key)
        .filter(|k| k.starts_with(&format!("{BACKUP_PREFIX}/ncy-")) && k.ends_with(".dump"))
        .collect();
    // The timestamp in the name sorts as text; newest first.
    dumps.sort_unstable_by(|a, b| b.cmp(a));
    let old: Vec<String> = dumps
        .into_iter()
        .skip(usize::try_from(keep).unwrap_or(usize::MAX))
        .collect();
    for key in &old {
        files.delete(key).await?;
    }
    Ok(old)
}

/// What pg_dump connects to: the URL without its password, and the password.
struct DumpTarget {
    url: String,
    password: Option<String>,
}

impl DumpTarget {
    fn parse(raw: &str) -> Result<Self, String> {
        let mut url = url::Url::parse(raw).map_err(|e| format!("not a URL: {e}"))?;
        let mut password = url.password().map(|p| {
            percent_encoding::percent_decode_str(p)
                .decode_utf8_lossy()
                .into_owned()
        });
        url.set_password(None)
            .map_err(|()| "cannot remove the password".to_owned())?;
        // libpq also takes `?password=`: move it to PGPASSWORD as well.
        if url.query_pairs().any(|(k, _)| k == "password") {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            url.query_pairs_mut().clear();
            for (k, v) in pairs {
                if k == "password" {
                    password = Some(v);
                } else {
                    url.query_pairs_mut().append_pair(&k, &v);
                }
            }
            if url.query() == Some("") {
                url.set_query(None);
            }
        }
        Ok(Self {
            url: url.to_string(),
            password: password.filter(|p| !p.is_empty()),
        })
    }

    /// `text` trimmed, cut, and with the password masked.
    fn mask(&self, text: &str) -> String {
        let mut out: String = text.trim().chars().take(MAX_STDERR_CHARS).collect();
        if let Some(pw) = &self.password {
            out = out.replace(pw.as_str(), "***");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_leaves_the_url_for_pgpassword_and_is_masked() {
        let t = DumpTarget::parse("postgres://app:s%40cret@db:5432/ncy?sslmode=disable")
            .expect("parse");
        assert_eq!(t.url, "postgres://app@db:5432/ncy?sslmode=disable");
        assert_eq!(t.password.as_deref(), Some("s@cret"));
        assert_eq!(t.mask("  bad s@cret here \n"), "bad *** here");
        let q = DumpTarget::parse("postgres://db/ncy?password=pw&sslmode=require").expect("parse");
        assert_eq!(q.url, "postgres://db/ncy?sslmode=require");
        assert_eq!(q.password.as_deref(), Some("pw"));
        let none = DumpTarget::parse("postgres://postgres@127.0.0.1/x").expect("parse");
        assert_eq!(none.password, None);
        assert!(DumpTarget::parse("not a url").is_err());
    }
}
