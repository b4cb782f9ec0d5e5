//! `send-notification` and `backup-database` jobs while PostgreSQL is unreachable,
//! driven through the queue (enqueued and inspected with `ncy-queue`, as the scheduler does)
//! against a worker in this process. The worker's `DATABASE_URL` points at a port of the test's
//! own: nothing listens there during the outage; then a plain TCP relay to the real PostgreSQL
//! opens on it, which is what the worker sees when the database comes back. The jobs are
//! postponed without using their attempts, and afterwards each notification has written its row
//! exactly once and the backup is a dump in the file store, nothing dead-lettered.
use crate::support::engine;
use std::net::SocketAddr;
use std::time::Duration;

use ncy_queue::{JobState, NewJob};
use ncy_testkit::{
    InProcess, TcpGate, TestDatabase, assert_eventually, env_of, service_env, set_env,
    unique_prefix,
};
use ncy_types::jobs::{Backoff, QueueName};
use serde_json::json;

const Q: QueueName = QueueName::Notification;
const T: Duration = Duration::from_secs(60);

/// A `send-notification` job for `user` with the default attempts (3) and backoff.
fn notification(user: uuid::Uuid, message: &str) -> NewJob {
    new_job(
        "send-notification",
        json!({"userId": user, "type": "OUTAGE_TEST", "message": message}),
    )
}

/// A job of `job_type` with the default attempts (3) and backoff.
fn new_job(job_type: &str, data: serde_json::Value) -> NewJob {
    NewJob {
        job_type: job_type.into(),
        data: data.to_string(),
        priority: 0,
        max_attempts: 3,
        backoff: Backoff::default(),
        delay_ms: 0,
        idempotency_key: String::new(),
        owner_user_id: String::new(),
        schedule_name: String::new(),
        trace: String::new(),
    }
}

/// `db`'s URL with its port replaced by a closed gate's, and the gate: nothing listens there until
/// the gate opens, then it relays to the real database.
fn gated(db: &TestDatabase) -> anyhow::Result<(url::Url, TcpGate)> {
    let mut gated = url::Url::parse(&db.url)?;
    let upstream = SocketAddr::new(
        gated
            .host_str()
            .unwrap_or("127.0.0.1")
            .parse()
            .unwrap_or([127, 0, 0, 1].into()),
        gated.port().unwrap_or(5432),
    );
    let gate = TcpGate::closed_to(upstream);
    gated
        .set_port(Some(gate.port))
        .map_err(|()| anyhow::anyhow!("cannot set the port of {}", db.url))?;
    Ok((gated, gate))
}

/// The sum of `queue_jobs_postponed_total{queue=<queue>,dependency="postgres"}`.
async fn postponed(admin: SocketAddr, queue: QueueName) -> f64 {
    let Ok((_, body)) = ncy_testkit::http_get(admin, "/metrics").await else {
        return 0.0;
    };
    let queue = format!(r#"queue="{}""#, queue.as_str());
    body.lines()
        .filter(|l| {
            l.starts_with("queue_jobs_postponed_total{")
                && l.contains(&queue)
                && l.contains(r#"dependency="postgres""#)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn notification_jobs_wait_out_an_unreachable_database_and_each_writes_its_row_once()
-> anyhow::Result<()> {
    let db = TestDatabase::migrated().await?;
    let pg = db.pool().await?;
    let user = uuid::Uuid::new_v4();
    sqlx::query("INSERT INTO users (id, email, name) VALUES ($1, 'o@example.com', 'O')")
        .bind(user)
        .execute(&pg)
        .await?;
    // The worker's database is behind a port of ours that nothing listens on yet.
    let (gated, mut gate) = gated(&db)?;
    let mut env = service_env(&unique_prefix(), Some(gated.as_str()));
    set_env(&mut env, "NCY_WORKER_QUEUES", "notification");
    let e = engine(&env)?;
    e.ensure_groups(Q).await?;

    let messages: Vec<String> = (0..4).map(|i| format!("outage {i}")).collect();
    let jobs: Vec<NewJob> = messages.iter().map(|m| notification(user, m)).collect();
    let ids: Vec<String> = e
        .enqueue(Q, &jobs)
        .await?
        .into_iter()
        .map(|r| r.job_id)
        .collect();
    let app = worker::Application::build(worker::Settings::load(&env_of(&env))?).await?;
    let admin = app.local_addrs().admin;
    let work = InProcess::spawn(|stop| app.run_until_stopped(stop));

    // Each job fails against the unreachable database and waits, its attempt given back.
    for id in &ids {
        assert_eventually(&format!("job {id} postponed"), T, || async {
            e.get_job(id).await.is_ok_and(|j| {
                j.state().ok() == Some(JobState::Failed)
                    && j.num("attempts") == 0
                    && j.get("error").starts_with("cannot write the notification")
            })
        })
        .await;
    }
    // The outage lasts until the jobs have failed more often than they have attempts (3 each):
    // without postponing they would all be dead letters by now.
    assert_eventually("more failures than attempts", T, || async {
        postponed(admin, Q).await >= (3 * ids.len()) as f64
    })
    .await;
    for id in &ids {
        let j = e.get_job(id).await?;
        assert_ne!(j.state()?, JobState::Dead, "{id}");
        assert!(j.num("attempts") <= 1, "{id}: {:?}", j.fields);
    }
    assert!(e.dead_letters(Q, None, 10).await?.is_empty());

    // The database is back.
    gate.open().await?;
    for id in &ids {
        assert_eventually(&format!("job {id} completed"), T, || async {
            e.get_job(id)
                .await
                .is_ok_and(|j| j.state().ok() == Some(JobState::Completed))
        })
        .await;
        assert_eq!(e.get_job(id).await?.num("attempts"), 1, "{id}");
    }
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT message, count(*) FROM notifications WHERE user_id = $1 GROUP BY message
         ORDER BY message",
    )
    .bind(user)
    .fetch_all(&pg)
    .await?;
    let expected: Vec<(String, i64)> = messages.iter().map(|m| (m.clone(), 1)).collect();
    assert_eq!(rows, expected, "each job wrote its row exactly once");
    assert!(
        e.dead_letters(Q, None, 10).await?.is_empty(),
        "nothing lost"
    );

    work.stop(Duration::from_secs(15))
        .await
        .map_err(anyhow::Error::msg)?;
    gate.close();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_waits_out_an_unreachable_database_and_then_dumps_it() -> anyhow::Result<()> {
    const CLEANUP: QueueName = QueueName::Cleanup;
    let db = TestDatabase::migrated().await?;
    let files = tempfile::tempdir()?;
    let (gated, mut gate) = gated(&db)?;
    let mut env = service_env(&unique_prefix(), Some(gated.as_str()));
    set_env(&mut env, "NCY_WORKER_QUEUES", "cleanup");
    set_env(
        &mut env,
        "NCY_WORKER_FILE_STORE",
        &files.path().display().to_string(),
    );
    set_env(&mut env, "NCY_JOBS_OUTAGE_MAX_DELAY_MS", "2000");
    let e = engine(&env)?;
    e.ensure_groups(CLEANUP).await?;
    let id = e
        .enqueue(
            CLEANUP,
            &[new_job("backup-database", json!({"keepLast": 1}))],
        )
        .await?
        .remove(0)
        .job_id;
    let app = worker::Application::build(worker::Settings::load(&env_of(&env))?).await?;
    let admin = app.local_addrs().admin;
    let work = InProcess::spawn(|stop| app.run_until_stopped(stop));

    // pg_dump fails (exit 1, whatever the cause); the worker's own connection is refused too, so
    // it is an outage of the database: the job waits, its attempt given back.
    assert_eventually("backup postponed", T, || async {
        e.get_job(&id).await.is_ok_and(|j| {
            j.state().ok() == Some(JobState::Failed)
                && j.num("attempts") == 0
                && j.get("error").starts_with("pg_dump failed")
        })
    })
    .await;
    assert_eventually("more failures than attempts", T, || async {
        postponed(admin, CLEANUP).await >= 3.0
    })
    .await;
    assert_ne!(e.get_job(&id).await?.state()?, JobState::Dead);
    assert!(e.dead_letters(CLEANUP, None, 10).await?.is_empty());

    gate.open().await?;
    assert_eventually("backup completed", T, || async {
        e.get_job(&id)
            .await
            .is_ok_and(|j| j.state().ok() == Some(JobState::Completed))
    })
    .await;
    assert_eq!(e.get_job(&id).await?.num("attempts"), 1);
    let dumps: Vec<_> = std::fs::read_dir(files.path().join("backups"))?
        .filter_map(|f| f.ok().map(|f| f.path()))
        .collect();
    assert_eq!(dumps.len(), 1, "{dumps:?}");
    assert!(std::fs::read(&dumps[0])?.starts_with(b"PGDMP"), "a dump");
    assert!(e.dead_letters(CLEANUP, None, 10).await?.is_empty());

    work.stop(Duration::from_secs(15))
        .await
        .map_err(anyhow::Error::msg)?;
    gate.close();
    Ok(())
}
