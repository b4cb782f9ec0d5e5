//! Controlling jobs in flight: cancelling a running or waiting job, a delayed job running after
//! its delay, and a worker's shutdown finishing what it started.
use super::T;
use crate::support::jobs::{StackEnv, enqueue, get, job, wait_state};
use crate::support::stop;
use ncy_proto::jobs::v1::{self as pb, JobState};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_stops_a_running_job_and_delayed_jobs_run_after_their_delay() -> anyhow::Result<()> {
    let env = StackEnv::new(&[]).await?;
    let (mut c, sched) = env.scheduler().await?;
    let work = env.worker().await?;
    let long = enqueue(&mut c, job("notification", "sleep", r#"{"ms":60000}"#)).await?;
    wait_state(&c, &long, JobState::Active, T).await;
    // ACTIVE is what the worker's consumer group holds: listed and counted through the API.
    let active = c
        .list_jobs(pb::ListJobsRequest {
            queue: "notification".into(),
            state: JobState::Active as i32,
            page_size: 10,
            page_token: String::new(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let ids: Vec<&str> = active.jobs.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, vec![long.as_str()]);
    assert!(!active.jobs[0].worker_id.is_empty(), "{:?}", active.jobs[0]);
    let stats = c
        .queue_stats(pb::QueueStatsRequest {
            queue: "notification".into(),
        })
        .await?
        .into_inner();
    assert_eq!((stats.queues[0].active, stats.queues[0].waiting), (1, 0));
    let after = c
        .cancel_job(pb::CancelJobRequest {
            job_id: long.clone(),
            reason: "user left".into(),
        })
        .await?
        .into_inner()
        .job
        .expect("job");
    assert!(after.cancel_requested);
    wait_state(&c, &long, JobState::Cancelled, T).await;

    let mut req = job("notification", "noop", "{}");
    req.delay_ms = 300;
    let delayed = enqueue(&mut c, req).await?;
    wait_state(&c, &delayed, JobState::Completed, T).await;
    let d = get(&mut c, &delayed).await?;
    assert!(d.started_at_ms >= d.due_at_ms, "not before its due time");
    let err = c
        .cancel_job(pb::CancelJobRequest {
            job_id: delayed,
            reason: String::new(),
        })
        .await
        .expect_err("completed");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);

    // A waiting job cancelled before any worker reached it never runs, and is not counted as
    // waiting meanwhile; the job queued behind it does run.
    c.pause_queue(pb::PauseQueueRequest {
        queue: "notification".into(),
    })
    .await?;
    let dropped = enqueue(&mut c, job("notification", "noop", "{}")).await?;
    let kept = enqueue(&mut c, job("notification", "noop", "{}")).await?;
    c.cancel_job(pb::CancelJobRequest {
        job_id: dropped.clone(),
        reason: "not needed".into(),
    })
    .await?;
    let stats = c
        .queue_stats(pb::QueueStatsRequest {
            queue: "notification".into(),
        })
        .await?
        .into_inner();
    assert_eq!(stats.queues[0].waiting, 1, "{:?}", stats.queues[0]);
    c.resume_queue(pb::ResumeQueueRequest {
        queue: "notification".into(),
    })
    .await?;
    wait_state(&c, &kept, JobState::Completed, T).await;
    let d = get(&mut c, &dropped).await?;
    assert_eq!(d.state(), JobState::Cancelled);
    assert_eq!((d.started_at_ms, d.attempts_made), (0, 0), "{d:?}");
    stop(work).await?;
    stop(sched).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_stops_fetching_and_finishes_in_flight_jobs() -> anyhow::Result<()> {
    let env = StackEnv::new(&[]).await?;
    let (mut c, sched) = env.scheduler().await?;
    let work = env.worker().await?;
    let id = enqueue(&mut c, job("notification", "sleep", r#"{"ms":1000}"#)).await?;
    wait_state(&c, &id, JobState::Active, T).await;
    stop(work).await?;
    // The drain waited for the job.
    assert_eq!(get(&mut c, &id).await?.state(), JobState::Completed);
    stop(sched).await
}
