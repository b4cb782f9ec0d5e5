//! Redis of the test's own stopped for 10 s: every service stays ready, what needs Redis fails
//! fast with UNAVAILABLE (and says so in its health entry), the cache answers from L1, and jobs,
//! publishing and health all resume by themselves.
use std::time::Duration;

use super::{OUTAGE, SECRET, WAIT, assert_ready_with, bounded, load, seed};
use crate::support::backbone::Backbone;
use crate::support::jobs::{job, wait_state};
use crate::support::ws::{browser, next_event, next_of, send};
use ncy_proto::{cache::v1 as cache_pb, jobs::v1::JobState, realtime::v1 as rt_pb};
use ncy_testkit::{
    RedisServer, TestDatabase, assert_eventually, grpc_health, service_env, set_env, unique_prefix,
};
use serde_json::json;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

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
