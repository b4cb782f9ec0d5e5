//! The worker under failure, driven through the queue itself (the worker's interface is the job
//! engine in Redis; jobs are enqueued and inspected with `ncy-queue`, as the scheduler does):
//! SIGKILL of a worker process mid-job, a job that keeps killing its worker, Redis restarts.
use crate::support::engine;
use std::collections::HashMap;
use std::time::Duration;

use ncy_queue::{Engine, JobState, NewJob};
use ncy_testkit::{
    ChildService, InProcess, RedisServer, TestDatabase, assert_eventually, env_of, service_env,
    set_env, unique_prefix,
};
use ncy_types::jobs::{Backoff, QueueName};

const Q: QueueName = QueueName::Notification;
const T: Duration = Duration::from_secs(30);

async fn env_for(
    redis_url: &str,
    extra: &[(&str, &str)],
) -> anyhow::Result<(Vec<(String, String)>, TestDatabase)> {
    let db = TestDatabase::migrated().await?;
    let mut env = service_env(&unique_prefix(), Some(&db.url));
    set_env(&mut env, "REDIS_URL", redis_url);
    set_env(&mut env, "NCY_JOBS_TEST_JOB_TYPES", "true");
    set_env(&mut env, "NCY_WORKER_QUEUES", "notification");
    for (k, v) in extra {
        set_env(&mut env, k, v);
    }
    Ok((env, db))
}

fn sleep_job(ms: u64) -> NewJob {
    NewJob {
        job_type: "sleep".into(),
        data: format!(r#"{{"ms":{ms}}}"#),
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

fn noop() -> NewJob {
    NewJob {
        job_type: "noop".into(),
        data: "{}".into(),
        ..sleep_job(0)
    }
}

async fn state_of(e: &Engine, id: &str) -> Option<JobState> {
    e.get_job(id).await.ok().and_then(|j| j.state().ok())
}

async fn wait_all(e: &Engine, ids: &[String], state: JobState) {
    assert_eventually(&format!("{} jobs {state:?}", ids.len()), T, || async {
        for id in ids {
            if state_of(e, id).await != Some(state) {
                return false;
            }
        }
        true
    })
    .await;
}

async fn worker(env: &[(String, String)]) -> anyhow::Result<InProcess> {
    let app = worker::Application::build(worker::Settings::load(&env_of(env))?).await?;
    Ok(InProcess::spawn(|stop| app.run_until_stopped(stop)))
}

/// Completion events per job id, from the queue's events stream.
async fn completions(e: &Engine, redis_url: &str) -> anyhow::Result<HashMap<String, usize>> {
    let mut conn = redis::Client::open(redis_url)?
        .get_multiplexed_async_connection()
        .await?;
    let entries: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg(e.queue_keys(Q).events())
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await?;
    let mut out = HashMap::new();
    for (_, fields) in entries {
        let ev: ncy_queue::JobEventMessage =
            serde_json::from_str(fields.get("e").map(String::as_str).unwrap_or("{}"))?;
        if ev.state == "completed" {
            *out.entry(ev.job_id).or_insert(0) += 1;
        }
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_job_loses_nothing_and_completes_each_job_once() -> anyhow::Result<()> {
    let url = ncy_testkit::redis_url();
    let (mut env, _db) = env_for(
        &url,
        &[
            ("NCY_JOBS_VISIBILITY_TIMEOUT_MS", "1500"),
            ("NCY_WORKER_HEARTBEAT_MS", "200"),
        ],
    )
    .await?;
    let e = engine(&env)?;
    e.ensure_groups(Q).await?;
    let ids: Vec<String> = e
        .enqueue(Q, &(0..4).map(|_| sleep_job(2_000)).collect::<Vec<_>>())
        .await?
        .into_iter()
        .map(|r| r.job_id)
        .collect();
    set_env(&mut env, "NCY_WORKER_ID", "doomed");
    let doomed = ChildService::start(env!("CARGO_BIN_EXE_worker"), &env)?;
    assert_eventually("the doomed worker runs all four", T, || async {
        for id in &ids {
            match e.get_job(id).await {
                Ok(j) if j.get("state") == "active" && j.get("worker").starts_with("doomed") => {}
                _ => return false,
            }
        }
        true
    })
    .await;
    doomed.kill()?;
    set_env(&mut env, "NCY_WORKER_ID", "survivor");
    let survivor = worker(&env).await?;
    wait_all(&e, &ids, JobState::Completed).await;
    for id in &ids {
        let j = e.get_job(id).await?;
        assert_eq!(j.get("attempts"), "2", "run again after the kill");
        assert_eq!(j.get("reclaims"), "1");
    }
    let done = completions(&e, &url).await?;
    for id in &ids {
        assert_eq!(done.get(id), Some(&1), "{id} completed exactly once");
    }
    survivor.stop(T).await.map_err(anyhow::Error::msg)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_that_keeps_killing_its_worker_is_failed_after_max_reclaims() -> anyhow::Result<()> {
    let url = ncy_testkit::redis_url();
    let (env, _db) = env_for(
        &url,
        &[
            ("NCY_JOBS_VISIBILITY_TIMEOUT_MS", "300"),
            ("NCY_WORKER_HEARTBEAT_MS", "100"),
            ("NCY_JOBS_MAX_RECLAIMS", "1"),
        ],
    )
    .await?;
    let e = engine(&env)?;
    e.ensure_groups(Q).await?;
    let id = e.enqueue(Q, &[sleep_job(60_000)]).await?[0].job_id.clone();
    // Two workers take it and "die" (never finish, never heartbeat).
    match e.fetch(Q, "ghost-1", 1, &[]).await? {
        ncy_queue::Fetched::Jobs(j) => assert_eq!(j.len(), 1),
        other => anyhow::bail!("{other:?}"),
    }
    assert_eventually("ghost-2 reclaims it", T, || async {
        e.reclaim(Q, "ghost-2", 1)
            .await
            .map(|j| j.len() == 1)
            .unwrap_or(false)
    })
    .await;
    // The real worker reclaims it a second time: over the limit, it is dead, not run again.
    let w = worker(&env).await?;
    assert_eventually("dead after max reclaims", T, || async {
        state_of(&e, &id).await == Some(JobState::Dead)
    })
    .await;
    let j = e.get_job(&id).await?;
    assert!(
        j.get("error").contains("exceeded max reclaims"),
        "{}",
        j.get("error")
    );
    assert_eq!(e.dead_letters(Q, None, 10).await?.len(), 1);
    w.stop(T).await.map_err(anyhow::Error::msg)?;
    Ok(())
}

/// Enqueues as a client does after a Redis restart: the first command on a connection that died
/// with the old server can fail (UNAVAILABLE to a gRPC caller); a client retries.
async fn enqueue_retrying(e: &Engine, jobs: &[NewJob]) -> anyhow::Result<Vec<ncy_queue::Enqueued>> {
    let mut last = None;
    for _ in 0..3 {
        match e.enqueue(Q, jobs).await {
            Ok(r) => return Ok(r),
            Err(err) => last = Some(err),
        }
    }
    Err(last.map_or_else(|| anyhow::anyhow!("no attempt"), anyhow::Error::from))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_restart_during_processing_does_not_kill_the_worker() -> anyhow::Result<()> {
    let mut redis =
        RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]).await?;
    let (env, _db) = env_for(&redis.url(), &[]).await?;
    let e = engine(&env)?;
    e.ensure_groups(Q).await?;
    let w = worker(&env).await?;
    let first: Vec<String> = e
        .enqueue(Q, &(0..3).map(|_| sleep_job(800)).collect::<Vec<_>>())
        .await?
        .into_iter()
        .map(|r| r.job_id)
        .collect();
    assert_eventually("jobs running", T, || async {
        state_of(&e, &first[0]).await == Some(JobState::Active)
    })
    .await;
    redis.stop();
    redis.resume().await?;
    let second: Vec<String> = enqueue_retrying(&e, &(0..3).map(|_| noop()).collect::<Vec<_>>())
        .await?
        .into_iter()
        .map(|r| r.job_id)
        .collect();
    wait_all(&e, &first, JobState::Completed).await;
    wait_all(&e, &second, JobState::Completed).await;

    // A restart that loses everything (no persistence): groups are re-created and work goes on.
    let mut bare = RedisServer::start().await?;
    let (env2, _db2) = env_for(&bare.url(), &[]).await?;
    let e2 = engine(&env2)?;
    let w2 = worker(&env2).await?;
    let before = e2.enqueue(Q, &[noop()]).await?[0].job_id.clone();
    wait_all(&e2, std::slice::from_ref(&before), JobState::Completed).await;
    bare.stop();
    bare.resume().await?;
    let after = enqueue_retrying(&e2, &[noop()]).await?[0].job_id.clone();
    wait_all(&e2, std::slice::from_ref(&after), JobState::Completed).await;
    w.stop(T).await.map_err(anyhow::Error::msg)?;
    w2.stop(T).await.map_err(anyhow::Error::msg)?;
    Ok(())
}
