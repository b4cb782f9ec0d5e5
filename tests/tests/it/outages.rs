//! Dependency outages end to end, through the public interfaces of all four services running
//! together: a PostgreSQL of the test's own stopped for 10 s while jobs write rows, and a Redis of
//! the test's own stopped for 10 s. What must hold (the table in `docs/operations.md`):
//!
//! - every instance stays **ready** (`/readyz` 200, gRPC health `""` SERVING): the outage is shared
//!   by every replica, so taking them all out of their Service would only turn a blip into a total
//!   outage; the dependency shows as down in `/readyz`'s body and the named services that cannot
//!   work without it report NOT_SERVING;
//! - what does not need the dependency goes on (cached and stale reads, sockets authenticating and
//!   joining rooms whose membership is cached, delivery of messages), what does answers
//!   `UNAVAILABLE` / an `unavailable` error frame at once rather than hanging;
//! - nothing is lost and nothing is dead-lettered because of the outage, and everything resumes
//!   when the dependency returns, without a restart.

use std::time::Duration;

use crate::support::backbone::Backbone;
use crate::support::jobs::{dead_letters_of, enqueue, job, wait_state};
use crate::support::ws::{browser, next_event, next_of, send};
use ncy_proto::{
    cache::v1 as cache_pb,
    jobs::v1::{self as jobs_pb, JobState},
    realtime::v1 as rt_pb,
};
use ncy_runtime::LocalAddrs;
use ncy_testkit::{
    PostgresServer, RedisServer, TestDatabase, assert_eventually, grpc_health, http_get,
    service_env, set_env, unique_prefix,
};
use serde_json::{Value, json};
use tonic::{Code, Request};
use tonic_health::pb::health_check_response::ServingStatus;
use uuid::Uuid;

const SECRET: &str = "outage-test-secret-0123456789abcdef";
const OUTAGE: Duration = Duration::from_secs(10);
const WAIT: Duration = Duration::from_secs(30);

/// Waits until every instance reports `dependency` down in `/readyz` while answering 200 (ready)
/// and gRPC health `""` SERVING. The worker and scheduler only probe what they use.
async fn assert_ready_with(stack: &Backbone, dependency: &str, instances: &[LocalAddrs]) {
    for addrs in instances {
        let admin = addrs.admin;
        assert_eventually(
            &format!("{admin} ready with {dependency} down"),
            WAIT,
            || async move {
                match http_get(admin, "/readyz").await {
                    Ok((200, body)) => {
                        let v: Value = serde_json::from_str(&body).unwrap_or_default();
                        v["checks"][dependency]["status"] == "down" && v["degraded"] == true
                    }
                    _ => false,
                }
            },
        )
        .await;
        assert_eq!(
            grpc_health(addrs.grpc, "").await.ok(),
            Some(ServingStatus::Serving),
            "{} overall health",
            addrs.grpc
        );
    }
    stack.assert_none_restarted();
}

fn bounded<T>(msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.set_timeout(Duration::from_secs(10));
    r
}

fn load(kind: &str, id: Uuid, ttl: Option<i64>) -> Request<cache_pb::GetOrLoadRequest> {
    bounded(cache_pb::GetOrLoadRequest {
        kind: kind.into(),
        id: id.to_string(),
        ttl_seconds: ttl,
        force_refresh: false,
    })
}

/// A user in an organization with two projects.
struct Tenant {
    user: Uuid,
    org: Uuid,
    project: Uuid,
    other_project: Uuid,
}

async fn seed(pool: &sqlx::PgPool) -> anyhow::Result<Tenant> {
    let t = Tenant {
        user: Uuid::new_v4(),
        org: Uuid::new_v4(),
        project: Uuid::new_v4(),
        other_project: Uuid::new_v4(),
    };
    sqlx::query("INSERT INTO users (id, email, name) VALUES ($1, $2, 'Ada')")
        .bind(t.user)
        .bind(format!("{}@example.com", t.user.simple()))
        .execute(pool)
        .await?;
    sqlx::query("INSERT INTO organizations (id, name, slug) VALUES ($1, 'Acme', $2)")
        .bind(t.org)
        .bind(format!("acme-{}", &t.org.simple().to_string()[..12]))
        .execute(pool)
        .await?;
    sqlx::query("INSERT INTO organization_members (organization_id, user_id) VALUES ($1, $2)")
        .bind(t.org)
        .bind(t.user)
        .execute(pool)
        .await?;
    for p in [t.project, t.other_project] {
        sqlx::query("INSERT INTO projects (id, organization_id, name) VALUES ($1, $2, 'P')")
            .bind(p)
            .bind(t.org)
            .execute(pool)
            .await?;
    }
    Ok(t)
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_down_10s_every_service_stays_ready_fails_fast_and_resumes() -> anyhow::Result<()> {
    let mut redis = RedisServer::start().await?;
    let db = TestDatabase::migrated().await?;
    let pool = db.pool().await?;
    let t = seed(&pool).await?;
    let mut env = service_env(&unique_prefix(), Some(&db.url));
    set_env(&mut env, "REDIS_URL", &redis.url());
    set_env(&mut env, "JWT_SECRET", SECRET);
    set_env(&mut env, "NCY_WS_ADDR", "127.0.0.1:0");
    set_env(&mut env, "NCY_JOBS_TEST_JOB_TYPES", "true");
    set_env(&mut env, "NCY_CRON_INSTALL_DEFAULTS", "false");
    let stack = Backbone::start(&env).await?;
    let mut cache = stack.cache_client().await?;
    let mut jobs = stack.jobs_client().await?;
    let mut rt = stack.realtime_client().await?;

    cache.get_or_load(load("user", t.user, None)).await?;
    let mut tab = browser(stack.ws, SECRET, t.user, None).await?;
    send(
        &mut tab,
        json!({"type": "join_project", "projectId": t.project}),
    )
    .await?;
    assert_eq!(
        next_of(&mut tab, &["joined", "error"]).await?["type"],
        "joined"
    );

    redis.stop();
    let down_at = tokio::time::Instant::now();
    assert_ready_with(&stack, "redis", &stack.all()).await;
    // What cannot work without Redis says so in its health entry; the cache can (L1).
    for (addrs, service, want) in [
        (
            stack.jobs,
            "ncy.jobs.v1.JobService",
            ServingStatus::NotServing,
        ),
        (
            stack.realtime,
            "ncy.realtime.v1.RealtimeService",
            ServingStatus::NotServing,
        ),
        (
            stack.cache,
            "ncy.cache.v1.CacheService",
            ServingStatus::Serving,
        ),
        (
            stack.jobs,
            "ncy.dependency.redis",
            ServingStatus::NotServing,
        ),
    ] {
        assert_eq!(
            grpc_health(addrs.grpc, service).await.ok(),
            Some(want),
            "{service}"
        );
    }

    // The cache answers, and from L1 on the second read (the first may reload: L1 is emptied once
    // when the invalidation backplane is lost, since evictions may have been missed).
    let hit = cache
        .get_or_load(load("user", t.user, None))
        .await?
        .into_inner();
    assert!(hit.value_json.contains("Ada"), "{hit:?}");
    let again = cache
        .get_or_load(load("user", t.user, None))
        .await?
        .into_inner();
    assert_eq!(again.layer(), cache_pb::CacheLayer::L1, "{again:?}");
    // Enqueue and publish fail fast with UNAVAILABLE (a call hanging to its 10 s deadline would
    // be DEADLINE_EXCEEDED instead).
    let err = jobs
        .enqueue(bounded(job("report", "noop", "{}")))
        .await
        .expect_err("no Redis, no queue");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    // A client with a retry policy is told to wait before trying again.
    assert_eq!(
        err.metadata()
            .get("grpc-retry-pushback-ms")
            .and_then(|v| v.to_str().ok()),
        Some(ncy_runtime::limits::RETRY_PUSHBACK_MS),
        "{err:?}"
    );
    let err = rt
        .send_to_project(bounded(rt_pb::SendToProjectRequest {
            project_id: t.project.to_string(),
            event: "lost".into(),
            data_json: "{}".into(),
            idempotency_key: String::new(),
        }))
        .await
        .expect_err("no Redis, no room bus");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");

    tokio::time::sleep_until(down_at + OUTAGE).await;
    stack.assert_none_restarted();
    redis.resume().await?;

    // Everything resumes by itself: a job runs, a message reaches the socket, health is back.
    let deadline = tokio::time::Instant::now() + WAIT;
    let id = loop {
        match jobs.enqueue(bounded(job("report", "noop", "{}"))).await {
            Ok(r) => break r.into_inner().job_id,
            Err(e) if tokio::time::Instant::now() < deadline => {
                pause(&e).await;
            }
            Err(e) => anyhow::bail!("enqueue does not work again after Redis returned: {e:?}"),
        }
    };
    wait_state(&jobs, &id, JobState::Completed, WAIT).await;
    assert_eventually("health entries back", WAIT, || async {
        grpc_health(stack.jobs.grpc, "ncy.jobs.v1.JobService")
            .await
            .ok()
            == Some(ServingStatus::Serving)
            && grpc_health(stack.realtime.grpc, "ncy.realtime.v1.RealtimeService")
                .await
                .ok()
                == Some(ServingStatus::Serving)
    })
    .await;
    assert_eventually("publish works again", WAIT, || {
        let mut rt = rt.clone();
        let project = t.project.to_string();
        async move {
            rt.send_to_project(bounded(rt_pb::SendToProjectRequest {
                project_id: project,
                event: "after_outage".into(),
                data_json: "{}".into(),
                idempotency_key: String::new(),
            }))
            .await
            .is_ok()
        }
    })
    .await;
    next_event(&mut tab, "after_outage").await?;
    stack.assert_none_restarted();
    stack.stop().await
}

/// Between two polls of something that is expected to recover.
async fn pause(_last: &tonic::Status) {
    tokio::time::sleep(Duration::from_millis(200)).await;
}
