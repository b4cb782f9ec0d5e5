//! backup-database end to end: enqueued through the job-scheduler's gRPC API, run by a worker
//! with the real pg_dump against the test's own database, into a temporary file-store directory;
//! the dumps are checked with the real `pg_restore --list`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::jobs::{
    Client, StackEnv, dead_letters, enqueue, get, job, retried, wait_state,
};
use crate::support::stop;
use ncy_proto::jobs::v1::{self as pb, JobState};
use serde_json::Value;

const T: Duration = Duration::from_secs(60);

async fn stack(files: &Path, pg_dump: Option<&Path>) -> anyhow::Result<StackEnv> {
    let mut env = StackEnv::new(&[("NCY_WORKER_FILE_STORE", &files.display().to_string())]).await?;
    if let Some(bin) = pg_dump {
        env.set("NCY_WORKER_PG_DUMP", &bin.display().to_string());
    }
    Ok(env)
}

fn backup(payload: &str, attempts: i32) -> pb::EnqueueRequest {
    retried(job("cleanup", "backup-database", payload), attempts, 100)
}

/// The dump files in the store, sorted.
fn dumps(files: &Path) -> anyhow::Result<Vec<String>> {
    let dir = files.join("backups");
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    names.sort();
    Ok(names)
}

/// A shell script standing in for pg_dump.
fn script(dir: &Path, name: &str, body: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n"))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

async fn run(c: &mut Client, payload: &str) -> anyhow::Result<Value> {
    let id = enqueue(c, backup(payload, 1)).await?;
    wait_state(c, &id, JobState::Completed, T).await;
    Ok(serde_json::from_str(&get(c, &id).await?.result_json)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backups_are_dumps_pg_restore_reads_and_only_the_last_n_are_kept() -> anyhow::Result<()> {
    let files = tempfile::tempdir()?;
    let bin = tempfile::tempdir()?;
    // Records how pg_dump was called, then runs the real one.
    let log = bin.path().join("calls.log");
    let wrapper = script(
        bin.path(),
        "pg_dump",
        &format!(
            "echo \"args: $*\" >> {log}\necho \"env: $PGPASSWORD\" >> {log}\nexec pg_dump \"$@\"",
            log = log.display()
        ),
    )?;
    let mut env = stack(files.path(), Some(&wrapper)).await?;
    // Trust authentication ignores the password, so the URL may carry one: it must stay off argv.
    let url = env
        .db
        .url
        .replacen("postgres://postgres@", "postgres://postgres:hunter2@", 1);
    assert_ne!(url, env.db.url, "the test URL has the expected shape");
    env.set("DATABASE_URL", &url);
    sqlx::query("INSERT INTO users (email, name) VALUES ('dump@example.com', 'Dumped')")
        .execute(&env.db.pool().await?)
        .await?;
    let (mut c, sched) = env.scheduler().await?;
    let work = env.worker().await?;

    let first = run(&mut c, r#"{"keepLast":2}"#).await?;
    let key = first["key"].as_str().expect("key");
    assert!(
        key.starts_with("backups/ncy-") && key.ends_with(".dump"),
        "{first}"
    );
    let path = files.path().join(key);
    assert_eq!(first["bytes"], std::fs::metadata(&path)?.len(), "{first}");
    let listed = std::process::Command::new("pg_restore")
        .arg("--list")
        .arg(&path)
        .output()?;
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let toc = String::from_utf8_lossy(&listed.stdout);
    assert!(
        toc.contains("TABLE public tasks") && toc.contains("TABLE DATA public users"),
        "{toc}"
    );
    let calls = std::fs::read_to_string(&log)?;
    assert!(calls.contains("args: --format=custom"), "{calls}");
    assert!(
        !calls
            .lines()
            .filter(|l| l.starts_with("args:"))
            .any(|l| l.contains("hunter2")),
        "{calls}"
    );
    assert!(calls.contains("env: hunter2"), "{calls}");

    let second = run(&mut c, r#"{"keepLast":2}"#).await?;
    let third = run(&mut c, r#"{"keepLast":2}"#).await?;
    assert_eq!(third["deleted"], serde_json::json!([key]), "{third}");
    let mut expected: Vec<String> = [&second, &third]
        .iter()
        .map(|r| {
            r["key"]
                .as_str()
                .expect("key")
                .trim_start_matches("backups/")
                .to_owned()
        })
        .collect();
    expected.sort();
    assert_eq!(dumps(files.path())?, expected);
    stop(work).await?;
    stop(sched).await
}

/// Runs a backup that must fail; returns the dead job.
async fn dead_backup(env: &StackEnv) -> anyhow::Result<pb::Job> {
    let (mut c, sched) = env.scheduler().await?;
    let work = env.worker().await?;
    let id = enqueue(&mut c, backup("{}", 2)).await?;
    wait_state(&c, &id, JobState::Dead, T).await;
    let dead = get(&mut c, &id).await?;
    assert_eq!(dead.attempts_made, 2, "retried per its policy");
    let letters = dead_letters(&mut c).await?;
    assert!(
        letters
            .iter()
            .any(|l| l.job_id == id && l.error == dead.last_error),
        "{letters:?}"
    );
    stop(work).await?;
    stop(sched).await?;
    Ok(dead)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_pg_dump_is_retried_then_dead_lettered_naming_it() -> anyhow::Result<()> {
    let files = tempfile::tempdir()?;
    let env = stack(files.path(), Some(Path::new("/nonexistent/pg_dump"))).await?;
    let dead = dead_backup(&env).await?;
    assert_eq!(
        dead.last_error,
        "pg_dump not found (NCY_WORKER_PG_DUMP=/nonexistent/pg_dump)"
    );
    assert_eq!(dumps(files.path())?, Vec::<String>::new());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_pg_dump_is_dead_lettered_with_its_message_and_leaves_no_file()
-> anyhow::Result<()> {
    let files = tempfile::tempdir()?;
    let bin = tempfile::tempdir()?;
    // Writes part of a dump, then fails the way pg_dump does.
    let failing = script(
        bin.path(),
        "pg_dump",
        "printf 'PGDMP partial'\necho '  pg_dump: error: query failed: out of memory  ' >&2\nexit 1",
    )?;
    let env = stack(files.path(), Some(&failing)).await?;
    let dead = dead_backup(&env).await?;
    assert_eq!(
        dead.last_error,
        "pg_dump failed (exit status: 1): pg_dump: error: query failed: out of memory"
    );
    assert_eq!(
        dumps(files.path())?,
        Vec::<String>::new(),
        "no partial dump is kept"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelling_a_backup_kills_pg_dump_and_keeps_no_file() -> anyhow::Result<()> {
    let files = tempfile::tempdir()?;
    let bin = tempfile::tempdir()?;
    let pid_file = bin.path().join("pid");
    // A pg_dump that never finishes: it writes a little, then waits.
    let slow = script(
        bin.path(),
        "pg_dump",
        &format!(
            "printf 'PGDMP'\necho $$ > {}\nexec sleep 120",
            pid_file.display()
        ),
    )?;
    let env = stack(files.path(), Some(&slow)).await?;
    let (mut c, sched) = env.scheduler().await?;
    let work = env.worker().await?;
    let id = enqueue(&mut c, backup("{}", 3)).await?;
    wait_state(&c, &id, JobState::Active, T).await;
    ncy_testkit::assert_eventually("pg_dump started", T, || {
        let p = pid_file.clone();
        async move { std::fs::read_to_string(p).is_ok_and(|s| s.ends_with('\n')) }
    })
    .await;
    let pid = std::fs::read_to_string(&pid_file)?.trim().to_owned();
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "pg_dump {pid} runs"
    );
    c.cancel_job(pb::CancelJobRequest {
        job_id: id.clone(),
        reason: "operator".into(),
    })
    .await?;
    wait_state(&c, &id, JobState::Cancelled, T).await;
    ncy_testkit::assert_eventually("pg_dump was killed", T, || {
        let proc = format!("/proc/{pid}");
        async move { !Path::new(&proc).exists() }
    })
    .await;
    assert_eq!(
        dumps(files.path())?,
        Vec::<String>::new(),
        "no partial dump is kept"
    );
    stop(work).await?;
    stop(sched).await
}
