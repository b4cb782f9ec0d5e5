//! Following a job: it runs to completion while WatchJob streams its progress to the end, and the
//! watchers of one queue share one Redis subscription.
use super::T;
use crate::support::jobs::{StackEnv, enqueue, get, job, redis, wait_state};
use crate::support::stop;
use futures_util::StreamExt;
use ncy_proto::jobs::v1::{self as pb, JobState};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_run_to_completion_and_watch_streams_progress_to_the_end() -> anyhow::Result<()> {
    let env = StackEnv::new(&[]).await?;
    let (mut c, sched) = env.scheduler().await?;
    let work = env.worker().await?;
    let noop = enqueue(&mut c, job("notification", "noop", "{}")).await?;
    wait_state(&c, &noop, JobState::Completed, T).await;
    let done = get(&mut c, &noop).await?;
    assert_eq!(done.attempts_made, 1);
    assert!(done.started_at_ms >= done.created_at_ms && done.finished_at_ms >= done.started_at_ms);
    assert_eq!(done.worker_id, "", "the worker is shown only while ACTIVE");

    let mut req = job("report", "sleep", r#"{"ms":400}"#);
    req.owner_user_id = "123e4567-e89b-12d3-a456-426614174000".into();
    let id = enqueue(&mut c, req).await?;
    let mut events = c
        .watch_job(pb::WatchJobRequest { job_id: id.clone() })
        .await?
        .into_inner();
    let mut seen = Vec::new();
    while let Some(ev) = tokio::time::timeout(T, events.next()).await? {
        seen.push(ev?);
    }
    assert_eq!(seen[0].r#type(), pb::JobEventType::Snapshot);
    let states: Vec<JobState> = seen
        .iter()
        .filter(|e| e.r#type() == pb::JobEventType::StateChanged)
        .map(|e| e.state())
        .collect();
    assert!(
        seen[0].state() == JobState::Active || states.contains(&JobState::Active),
        "the start is streamed: {seen:?}"
    );
    let last = seen.last().expect("events");
    assert_eq!(last.state(), JobState::Completed, "{seen:?}");
    assert_eq!(last.result_json, r#"{"sleptMs":400}"#);
    let progress: Vec<i32> = seen
        .iter()
        .filter(|e| e.r#type() == pb::JobEventType::Progress)
        .map(|e| e.progress)
        .collect();
    assert!(
        !progress.is_empty() && progress.windows(2).all(|w| w[0] <= w[1]),
        "{progress:?}"
    );
    assert!(
        seen.iter()
            .all(|e| e.owner_user_id == "123e4567-e89b-12d3-a456-426614174000")
    );
    assert_eq!(get(&mut c, &id).await?.progress, 100);
    // A terminal job's watch ends right after the snapshot.
    let after: Vec<_> = c
        .watch_job(pb::WatchJobRequest { job_id: id })
        .await?
        .into_inner()
        .collect()
        .await;
    assert_eq!(after.len(), 1);
    stop(work).await?;
    stop(sched).await
}

/// Subscribers of `queue`'s live job-event channel on the test Redis.
async fn live_subscribers(env: &StackEnv, queue: &str) -> anyhow::Result<i64> {
    let channel = env.keys()?.queue(queue).events_channel();
    let (_, n): (String, i64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(&channel)
        .query_async(&mut redis().await?)
        .await?;
    Ok(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watchers_of_a_queue_share_one_subscription_that_ends_with_the_last_watch()
-> anyhow::Result<()> {
    let env = StackEnv::new(&[]).await?;
    let (mut c, sched) = env.scheduler().await?;
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(enqueue(&mut c, job("notification", "sleep", r#"{"ms":20}"#)).await?);
    }
    assert_eq!(live_subscribers(&env, "notification").await?, 0);
    let mut streams = Vec::new();
    for id in &ids {
        let s = c
            .watch_job(pb::WatchJobRequest { job_id: id.clone() })
            .await?
            .into_inner();
        streams.push(s);
    }
    assert_eq!(
        live_subscribers(&env, "notification").await?,
        1,
        "20 watchers of one queue, one Redis subscription"
    );
    let work = env.worker().await?;
    for (id, mut s) in ids.iter().zip(streams) {
        let mut last = None;
        while let Some(ev) = tokio::time::timeout(T, s.next()).await? {
            let ev = ev?;
            assert_eq!(&ev.job_id, id, "a watcher sees only its own job");
            last = Some(ev.state());
        }
        assert_eq!(last, Some(JobState::Completed), "{id}");
    }
    ncy_testkit::assert_eventually("the subscription ends with the last watch", T, || async {
        live_subscribers(&env, "notification").await.ok() == Some(0)
    })
    .await;
    stop(work).await?;
    stop(sched).await
}
