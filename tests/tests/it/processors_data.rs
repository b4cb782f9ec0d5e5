//! `send-notification` and `cleanup-old-data` end to end: enqueued through the job-scheduler's gRPC
//! API, run by a worker in this process, their effects read from PostgreSQL and Redis as the app
//! (and a reconnecting browser) would see them.

use std::time::Duration;

use crate::support::jobs::{
    StackEnv, dead_letters_of, enqueue, get, job, redis, retried, wait_state,
};
use crate::support::stop;
use ncy_proto::jobs::v1::{self as pb, JobState};
use serde_json::{Value, json};
use uuid::Uuid;

const T: Duration = Duration::from_secs(30);
const DAY_MS: i64 = 86_400_000;

async fn insert_user(pg: &sqlx::PgPool, email: &str) -> anyhow::Result<Uuid> {
    let id = Uuid::new_v4();
    sqlx::query("INSERT INTO users (id, email, name) VALUES ($1, $2, 'Test user')")
        .bind(id)
        .bind(email)
        .execute(pg)
        .await?;
    Ok(id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn send_notification_inserts_the_row_and_publishes_to_the_users_room() -> anyhow::Result<()> {
    let env = StackEnv::new(&[]).await?;
    let pg = env.db.pool().await?;
    let user = insert_user(&pg, "n@example.com").await?;
    let (mut c, sched) = env.scheduler().await?;
    let work = env.worker().await?;

    let payload = json!({"userId": user, "type": "TASK_ASSIGNED", "message": "You have a task",
        "metadata": {"taskId": "t-42"}});
    let id = enqueue(
        &mut c,
        job("notification", "send-notification", &payload.to_string()),
    )
    .await?;
    wait_state(&c, &id, JobState::Completed, T).await;
    let result: Value = serde_json::from_str(&get(&mut c, &id).await?.result_json)?;
    let notification_id: Uuid = result["notificationId"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no notificationId in {result}"))?
        .parse()?;
    let (owner, kind, message, metadata, unread): (Uuid, String, String, Value, bool) =
        sqlx::query_as(
            "SELECT user_id, type, message, metadata, read_at IS NULL FROM notifications WHERE id = $1",
        )
    .bind(notification_id)
    .fetch_one(&pg)
    .await?;
    assert_eq!(
        (owner, kind.as_str(), message.as_str()),
        (user, "TASK_ASSIGNED", "You have a task")
    );
    assert_eq!(metadata, json!({"taskId": "t-42"}));
    assert!(unread);

    // The realtime message is in the user's room history (what a browser recovers on reconnect).
    let history = env.keys()?.room(&format!("user:{user}")).history();
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(&history)
        .arg("-")
        .arg("+")
        .query_async(&mut redis().await?)
        .await?;
    assert_eq!(entries.len(), 1, "one message in {history}");
    let text = format!("{:?}", entries[0].1);
    assert!(text.contains("notification"), "{text}");
    assert!(text.contains(&notification_id.to_string()), "{text}");
    assert!(text.contains("You have a task"), "{text}");

    // A user that does not exist: dead letter at once, nothing written.
    let ghost = Uuid::new_v4();
    let payload = json!({"userId": ghost, "type": "T", "message": "hello?"});
    let mut req = job("notification", "send-notification", &payload.to_string());
    req.attempts = 3;
    let id = enqueue(&mut c, req).await?;
    wait_state(&c, &id, JobState::Dead, T).await;
    let dead = get(&mut c, &id).await?;
    assert_eq!(dead.attempts_made, 1, "no retry for an unknown user");
    assert_eq!(dead.last_error, format!("user {ghost} does not exist"));
    let letters = dead_letters_of(&mut c, "notification").await?;
    assert!(letters.iter().any(|d| d.job_id == id && d.non_retryable));
    let ghost_rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM notifications WHERE user_id = $1")
            .bind(ghost)
            .fetch_one(&pg)
            .await?;
    assert_eq!(ghost_rows, 0);
    stop(work).await?;
    stop(sched).await
}

/// Inserts a notification created `created_days` ago, read `read_days` ago (or unread).
async fn notification_aged(
    pg: &sqlx::PgPool,
    user: Uuid,
    message: &str,
    created_days: i32,
    read_days: Option<i32>,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO notifications (user_id, type, message, created_at, read_at)
         VALUES ($1, 'T', $2, now() - make_interval(days => $3), now() - make_interval(days => $4))",
    )
    .bind(user)
    .bind(message)
    .bind(created_days)
    .bind(read_days)
    .execute(pg)
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cleanup_deletes_old_read_notifications_and_old_finished_jobs_only() -> anyhow::Result<()> {
    // The engine's own retention trim must not get there first: keep finished jobs a year.
    let mut env = StackEnv::new(&[("NCY_WORKER_NOTIFICATIONS_RETENTION_DAYS", "3")]).await?;
    for q in ["EMAIL", "NOTIFICATION", "REPORT", "CLEANUP"] {
        env.set(&format!("NCY_QUEUE_{q}_KEEP_SECS"), "31536000");
    }
    let pg = env.db.pool().await?;
    let user = insert_user(&pg, "c@example.com").await?;
    for (message, created, read) in [
        ("old read", 40, Some(35)),
        ("old read 2", 31, Some(2)),
        ("old unread", 90, None),
        ("recent read", 5, Some(4)),
        ("recent unread", 1, None),
    ] {
        notification_aged(&pg, user, message, created, read).await?;
    }
    let k = env.keys()?.queue("notification");
    let mut redis = redis().await?;
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis(),
    )?;
    // An old dead letter (its stream id is its time), before the recent one made below.
    let _: String = redis::cmd("XADD")
        .arg(k.dead())
        .arg(format!("{}-0", now - 10 * DAY_MS))
        .arg("jobId")
        .arg("old-dead")
        .query_async(&mut redis)
        .await?;
    let (mut c, sched) = env.scheduler().await?;
    let work = env.worker().await?;

    // Finished jobs: three completed and one dead, then two completed ones and the dead one aged.
    let mut done = Vec::new();
    for _ in 0..3 {
        done.push(enqueue(&mut c, job("notification", "noop", "{}")).await?);
    }
    let mut failing = job("notification", "fail", r#"{"retryable":false}"#);
    failing.attempts = 1;
    let dead = enqueue(&mut c, failing).await?;
    for id in &done {
        wait_state(&c, id, JobState::Completed, T).await;
    }
    wait_state(&c, &dead, JobState::Dead, T).await;
    for (set, id) in [
        (k.done(), &done[0]),
        (k.done(), &done[1]),
        (k.failed(), &dead),
    ] {
        let _: i64 = redis::cmd("ZADD")
            .arg(set)
            .arg("XX")
            .arg(now - 10 * DAY_MS)
            .arg(id)
            .query_async(&mut redis)
            .await?;
    }

    let payload = json!({"notificationsOlderThanDays": 30, "jobsOlderThanDays": 7});
    let id = enqueue(
        &mut c,
        job("cleanup", "cleanup-old-data", &payload.to_string()),
    )
    .await?;
    wait_state(&c, &id, JobState::Completed, T).await;
    let finished = get(&mut c, &id).await?;
    assert_eq!(finished.progress, 100);
    let result: Value = serde_json::from_str(&finished.result_json)?;
    assert_eq!(
        result,
        json!({"notificationsDeleted": 2, "jobsDeleted": 3, "deadLettersDeleted": 1})
    );
    let mut left: Vec<String> =
        sqlx::query_scalar("SELECT message FROM notifications WHERE user_id = $1")
            .bind(user)
            .fetch_all(&pg)
            .await?;
    left.sort();
    assert_eq!(
        left,
        ["old unread", "recent read", "recent unread"],
        "read notifications past 30 days are gone; unread and recent ones stay"
    );
    for purged in [&done[0], &done[1], &dead] {
        let err = c
            .get_job(pb::GetJobRequest {
                job_id: purged.clone(),
            })
            .await
            .expect_err("purged");
        assert_eq!(err.code(), tonic::Code::NotFound, "{purged}: {err:?}");
    }
    assert_eq!(get(&mut c, &done[2]).await?.state(), JobState::Completed);
    let letters = dead_letters_of(&mut c, "notification").await?;
    let ids: Vec<&str> = letters.iter().map(|d| d.job_id.as_str()).collect();
    assert_eq!(ids, [dead.as_str()], "the recent dead letter stays");

    // Without payload fields the worker's settings apply: read notifications past 3 days go.
    let id = enqueue(&mut c, job("cleanup", "cleanup-old-data", "{}")).await?;
    wait_state(&c, &id, JobState::Completed, T).await;
    let result: Value = serde_json::from_str(&get(&mut c, &id).await?.result_json)?;
    assert_eq!(result["notificationsDeleted"], 1, "{result}");
    stop(work).await?;
    stop(sched).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn send_notification_with_the_database_down_is_retried_then_dead_lettered()
-> anyhow::Result<()> {
    let mut env = StackEnv::new(&[]).await?;
    // A PostgreSQL nobody listens for.
    let down = format!(
        "postgres://postgres@127.0.0.1:{}/ncy",
        ncy_testkit::free_port()
    );
    env.set("DATABASE_URL", &down);
    // An unreachable database is an outage, which the worker waits out without using attempts
    // for NCY_JOBS_OUTAGE_GRACE_SECS (crates/worker/tests/it/database_outage.rs tests that). With
    // the grace 0 (postponing off) this is the path every outage takes once its grace is over:
    // each attempt fails and counts, then the dead letter.
    env.set("NCY_JOBS_OUTAGE_GRACE_SECS", "0");
    let (mut c, sched) = env.scheduler().await?;
    let work = env.worker().await?;

    let payload = json!({"userId": Uuid::new_v4(), "type": "T", "message": "hello"});
    let req = retried(
        job("notification", "send-notification", &payload.to_string()),
        2,
        100,
    );
    let id = enqueue(&mut c, req).await?;
    wait_state(&c, &id, JobState::Dead, T).await;
    let dead = get(&mut c, &id).await?;
    assert_eq!(dead.attempts_made, 2, "a database error is retried");
    assert!(
        dead.last_error.starts_with("cannot write the notification"),
        "{}",
        dead.last_error
    );
    stop(work).await?;
    stop(sched).await
}
