//! PostgreSQL of the test's own stopped for 10 s while jobs that write rows keep arriving: cached
//! and stale reads are served, sockets join rooms whose membership is cached, and every job
//! completes once the database is back, none dead-lettered.
use std::time::Duration;

use super::{OUTAGE, SECRET, assert_ready_with, bounded, load, seed};
use crate::support::backbone::Backbone;
use crate::support::jobs::{dead_letters_of, enqueue, job, wait_state};
use crate::support::ws::{browser, next_event, next_of, send};
use ncy_proto::{
    jobs::v1::{self as jobs_pb, JobState},
    realtime::v1 as rt_pb,
};
use ncy_testkit::{PostgresServer, service_env, set_env, unique_prefix};
use serde_json::json;
use tonic::Code;
use uuid::Uuid;

fn notification(user: Uuid, n: usize) -> jobs_pb::EnqueueRequest {
    let payload = json!({"userId": user, "type": "OUTAGE", "message": format!("outage-{n}")});
    job("notification", "send-notification", &payload.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_down_10s_cache_and_sockets_stay_ready_and_no_job_is_lost() -> anyhow::Result<()> {
    let mut pg = PostgresServer::start().await?;
    let url = pg.migrated_database("ncy").await?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await?;
    let t = seed(&pool).await?;
    let mut env = service_env(&unique_prefix(), Some(&url));
    set_env(&mut env, "JWT_SECRET", SECRET);
    set_env(&mut env, "NCY_WS_ADDR", "127.0.0.1:0");
    set_env(&mut env, "NCY_CRON_INSTALL_DEFAULTS", "false");
    // Postponed jobs resume within 2 s of the database's return instead of up to 30 s.
    set_env(&mut env, "NCY_JOBS_OUTAGE_MAX_DELAY_MS", "2000");
    let stack = Backbone::start(&env).await?;
    let mut cache = stack.cache_client().await?;
    let mut jobs = stack.jobs_client().await?;
    let mut rt = stack.realtime_client().await?;

    // Before: a cached user, an organization cached for 1 s (stale during the outage), a socket in
    // the project room (its membership is now cached), and jobs flowing.
    let user = cache
        .get_or_load(load("user", t.user, None))
        .await?
        .into_inner();
    assert!(user.value_json.contains("Ada"));
    cache.get_or_load(load("org", t.org, Some(1))).await?;
    let mut tab = browser(stack.ws, SECRET, t.user, None).await?;
    send(
        &mut tab,
        json!({"type": "join_project", "projectId": t.project}),
    )
    .await?;
    let joined = next_of(&mut tab, &["joined", "error"]).await?;
    assert_eq!(joined["type"], "joined", "{joined}");
    let mut ids = Vec::new();
    for n in 0..20 {
        ids.push(enqueue(&mut jobs, notification(t.user, n)).await?);
    }

    pg.stop();
    let down_at = tokio::time::Instant::now();
    // Jobs keep arriving while the database is down.
    for n in 20..40 {
        ids.push(enqueue(&mut jobs, notification(t.user, n)).await?);
    }
    assert_ready_with(
        &stack,
        "postgres",
        &[stack.cache, stack.realtime, stack.worker],
    )
    .await;

    // Cache: cached reads served, an expired copy served stale, a never-cached key UNAVAILABLE.
    let cached = cache
        .get_or_load(load("user", t.user, None))
        .await?
        .into_inner();
    assert!(cached.value_json.contains("Ada"), "{cached:?}");
    assert!(!cached.stale);
    let org = cache
        .get_or_load(load("org", t.org, None))
        .await?
        .into_inner();
    assert!(org.value_json.contains("Acme"), "{org:?}");
    assert!(
        org.stale,
        "the org copy expired 1 s after it was loaded: {org:?}"
    );
    let never = cache
        .get_or_load(load("project", t.other_project, None))
        .await
        .expect_err("nothing cached and no database");
    assert_eq!(never.code(), Code::Unavailable, "{never:?}");

    // Realtime: a new socket authenticates (no database needed) and joins the project whose
    // membership is cached; a project never checked is refused with `unavailable`, to retry.
    let mut late = browser(stack.ws, SECRET, t.user, None).await?;
    send(
        &mut late,
        json!({"type": "join_project", "projectId": t.project}),
    )
    .await?;
    let f = next_of(&mut late, &["joined", "error"]).await?;
    assert_eq!(
        f["type"], "joined",
        "cached membership during the outage: {f}"
    );
    send(
        &mut late,
        json!({"type": "join_project", "projectId": t.other_project}),
    )
    .await?;
    let f = next_of(&mut late, &["joined", "error"]).await?;
    assert_eq!(f["type"], "error", "{f}");
    assert_eq!(f["code"], "unavailable", "{f}");
    // Delivery goes on: a message published to the project reaches both sockets.
    rt.send_to_project(bounded(rt_pb::SendToProjectRequest {
        project_id: t.project.to_string(),
        event: "during_outage".into(),
        data_json: "{}".into(),
        idempotency_key: String::new(),
    }))
    .await?;
    for ws in [&mut tab, &mut late] {
        next_event(ws, "during_outage").await?;
    }

    tokio::time::sleep_until(down_at + OUTAGE).await;
    stack.assert_none_restarted();
    pg.resume().await?;

    // Every job completes and wrote its row at least once; none was dead-lettered.
    for id in &ids {
        wait_state(&jobs, id, JobState::Completed, Duration::from_secs(120)).await;
    }
    let written: Vec<(String, i64)> = sqlx::query_as(
        "SELECT message, count(*) FROM notifications WHERE user_id = $1 GROUP BY message",
    )
    .bind(t.user)
    .fetch_all(&pool)
    .await?;
    for n in 0..40 {
        let message = format!("outage-{n}");
        assert!(
            written.iter().any(|(m, c)| *m == message && *c >= 1),
            "no row for {message}: {written:?}"
        );
    }
    let dead = dead_letters_of(&mut jobs, "notification").await?;
    assert!(dead.is_empty(), "dead-lettered by the outage: {dead:?}");
    // The never-cached key loads now.
    let back = cache
        .get_or_load(load("project", t.other_project, None))
        .await?
        .into_inner();
    assert!(!back.stale);
    stack.assert_none_restarted();
    pool.close().await;
    stack.stop().await
}
