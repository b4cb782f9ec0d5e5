//! The job engine end to end: job-scheduler (gRPC) and workers in this process on the real Redis
//! and PostgreSQL. One test per behaviour of the job engine that needs a worker.

use std::time::Duration;

use crate::support::jobs::{
    StackEnv, dead_letters, dead_letters_of, enqueue, get, job, redis, retried, wait_state,
};
use crate::support::metrics::sample;
use crate::support::stop;
use futures_util::StreamExt;
use ncy_proto::jobs::v1::{self as pb, JobState};

const T: Duration = Duration::from_secs(20);

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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failures_retry_with_backoff_then_dead_letter_alert_and_retry_dead_letter()
-> anyhow::Result<()> {
    let mut env = StackEnv::new(&[]).await?;
    let admin = env.alert_recipient().await?;
    let pg = env.db.pool().await?;
    let (mut c, sched) = env.scheduler().await?;
    let work = env.worker().await?;

    let req = retried(
        job("notification", "fail", r#"{"message":"smtp down"}"#),
        3,
        100,
    );
    let id = enqueue(&mut c, req).await?;
    wait_state(&c, &id, JobState::Dead, T).await;
    let dead = get(&mut c, &id).await?;
    assert_eq!(dead.attempts_made, 3, "every attempt ran");
    assert_eq!(dead.last_error, "smtp down");
    let letters = dead_letters_of(&mut c, "notification").await?;
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.id, dead.dead_letter_id);
    assert_eq!(
        (letter.queue.as_str(), letter.job_type.as_str()),
        ("notification", "fail")
    );
    assert_eq!(letter.payload_json, r#"{"message":"smtp down"}"#);
    assert_eq!(letter.error, "smtp down");
    assert_eq!(letter.attempts_made, 3);
    assert!(letter.failed_at_ms > 0 && !letter.non_retryable);
    ncy_testkit::assert_eventually("alert notification row", T, || {
        let pg = pg.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM notifications WHERE user_id = $1 AND type = 'job_dead_letter'",
            )
            .bind(admin)
            .fetch_one(&pg)
            .await
            .map(|n| n == 1)
            .unwrap_or(false)
        }
    })
    .await;
    // The alert also went to the recipient's realtime room (its history is what a browser recovers).
    let entries = env.room_history(admin).await?;
    assert_eq!(
        entries.len(),
        1,
        "one job_dead_letter message in {entries:?}"
    );
    assert!(
        format!("{entries:?}").contains("job_dead_letter"),
        "{entries:?}"
    );

    let retried = c
        .retry_dead_letter(pb::RetryDeadLetterRequest {
            dead_letter_id: letter.id.clone(),
        })
        .await?
        .into_inner()
        .job_id;
    wait_state(&c, &retried, JobState::Dead, T).await;
    let again = get(&mut c, &retried).await?;
    assert_eq!(
        (again.priority, again.max_attempts, again.attempts_made),
        (10, 1, 1)
    );
    assert_eq!(again.retried_from_dead_letter_id, letter.id);
    let err = c
        .retry_dead_letter(pb::RetryDeadLetterRequest {
            dead_letter_id: letter.id.clone(),
        })
        .await
        .expect_err("already retried");
    assert_eq!(err.code(), tonic::Code::NotFound);
    let newest = dead_letters(&mut c).await?;
    assert_eq!(newest.len(), 1);
    c.delete_dead_letter(pb::DeleteDeadLetterRequest {
        dead_letter_id: newest[0].id.clone(),
    })
    .await?;
    stop(work).await?;
    stop(sched).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn non_retryable_failures_and_types_without_a_processor_go_straight_to_dead_letters()
-> anyhow::Result<()> {
    let mut env = StackEnv::new(&[]).await?;
    let (mut c, sched) = env.scheduler().await?;
    // Every domain type has a processor, so the missing one is `sleep`: this worker has the test
    // types off and only `fail` added, while the scheduler accepts both.
    env.set("NCY_JOBS_TEST_JOB_TYPES", "false");
    let mut app =
        worker::Application::build(worker::Settings::load(&ncy_testkit::env_of(&env.env))?).await?;
    app.register(worker::processors::FailProcessor);
    let work = ncy_testkit::InProcess::spawn(|stop| app.run_until_stopped(stop));
    let mut req = job(
        "report",
        "fail",
        r#"{"retryable":false,"message":"bad template"}"#,
    );
    req.attempts = 5;
    let fatal = enqueue(&mut c, req).await?;
    let mut req = job("email", "sleep", r#"{"ms":1}"#);
    req.attempts = 5;
    let missing = enqueue(&mut c, req).await?;
    wait_state(&c, &fatal, JobState::Dead, T).await;
    assert_eq!(get(&mut c, &fatal).await?.attempts_made, 1);
    wait_state(&c, &missing, JobState::Dead, T).await;
    let e = get(&mut c, &missing).await?;
    assert_eq!(e.attempts_made, 1);
    assert!(
        e.last_error.contains("no processor for job type \"sleep\""),
        "{}",
        e.last_error
    );
    let letters = dead_letters(&mut c).await?;
    assert_eq!(letters.len(), 2);
    assert!(letters.iter().all(|l| l.non_retryable));
    stop(work).await?;
    stop(sched).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_panicking_processor_fails_the_job_per_policy_and_the_worker_goes_on()
-> anyhow::Result<()> {
    let env = StackEnv::new(&[]).await?;
    let (mut c, sched) = env.scheduler().await?;
    let work = env.worker().await?;
    let req = retried(
        job(
            "notification",
            "fail",
            r#"{"panic":true,"message":"kaboom"}"#,
        ),
        2,
        50,
    );
    let id = enqueue(&mut c, req).await?;
    wait_state(&c, &id, JobState::Dead, T).await;
    let j = get(&mut c, &id).await?;
    assert_eq!(j.attempts_made, 2, "retried per policy");
    assert_eq!(j.last_error, "processor panicked: kaboom");
    // The same worker keeps running jobs.
    let after = enqueue(&mut c, job("notification", "noop", "{}")).await?;
    wait_state(&c, &after, JobState::Completed, T).await;
    stop(work).await?;
    stop(sched).await
}

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
async fn the_rate_limit_holds_across_two_worker_replicas() -> anyhow::Result<()> {
    let (max, window) = (3usize, 1000i64);
    let env = StackEnv::new(&[("NCY_QUEUE_EMAIL_RATE_LIMIT", "3/1000")]).await?;
    let (mut c, sched) = env.scheduler().await?;
    let w1 = env.worker().await?;
    let w2 = env.worker().await?;
    let jobs = (0..10).map(|_| job("email", "noop", "{}")).collect();
    let ids: Vec<String> = c
        .enqueue_bulk(pb::EnqueueBulkRequest { jobs })
        .await?
        .into_inner()
        .results
        .into_iter()
        .map(|r| r.job_id)
        .collect();
    for id in &ids {
        wait_state(&c, id, JobState::Completed, Duration::from_secs(30)).await;
    }
    let mut starts = Vec::new();
    for id in &ids {
        starts.push(get(&mut c, id).await?.started_at_ms);
    }
    starts.sort_unstable();
    for (i, t) in starts.iter().enumerate() {
        let in_window = starts[i..].iter().take_while(|s| **s < t + window).count();
        assert!(
            in_window <= max,
            "{in_window} starts within {window} ms from {t}: {starts:?}"
        );
    }
    stop(w1).await?;
    stop(w2).await?;
    stop(sched).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_priority_10_job_starts_before_10000_priority_0_jobs_enqueued_earlier()
-> anyhow::Result<()> {
    let env = StackEnv::new(&[
        ("NCY_QUEUE_NOTIFICATION_CONCURRENCY", "1"),
        ("NCY_QUEUE_NOTIFICATION_KEEP_COMPLETED", "20000"),
    ])
    .await?;
    let (mut c, sched) = env.scheduler().await?;
    let mut first_low = String::new();
    for _ in 0..10 {
        let jobs = (0..1000)
            .map(|_| job("notification", "noop", "{}"))
            .collect();
        let r = c
            .enqueue_bulk(pb::EnqueueBulkRequest { jobs })
            .await?
            .into_inner()
            .results;
        if first_low.is_empty() {
            first_low = r[0].job_id.clone();
        }
    }
    let mut high = job("notification", "noop", "{}");
    high.priority = 10;
    let high = enqueue(&mut c, high).await?;
    let work = env.worker().await?;
    wait_state(&c, &high, JobState::Completed, T).await;
    let h = get(&mut c, &high).await?;
    let l = get(&mut c, &first_low).await?;
    assert!(
        l.started_at_ms == 0 || l.started_at_ms >= h.started_at_ms,
        "first priority-0 job started at {} before the priority-10 job at {}",
        l.started_at_ms,
        h.started_at_ms
    );
    stop(work).await?;
    stop(sched).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retention_keeps_finished_jobs_bounded() -> anyhow::Result<()> {
    let env = StackEnv::new(&[("NCY_QUEUE_CLEANUP_KEEP_COMPLETED", "5")]).await?;
    let (mut c, sched) = env.scheduler().await?;
    let work = env.worker().await?;
    let jobs = (0..30).map(|_| job("cleanup", "noop", "{}")).collect();
    let ids: Vec<String> = c
        .enqueue_bulk(pb::EnqueueBulkRequest { jobs })
        .await?
        .into_inner()
        .results
        .into_iter()
        .map(|r| r.job_id)
        .collect();
    let last = ids.last().cloned().unwrap_or_default();
    wait_state(&c, &last, JobState::Completed, T).await;
    ncy_testkit::assert_eventually("all 30 processed", T, || {
        let mut c = c.clone();
        async move {
            c.queue_stats(pb::QueueStatsRequest {
                queue: "cleanup".into(),
            })
            .await
            .map(|s| {
                let q = &s.into_inner().queues[0];
                q.waiting == 0 && q.active == 0
            })
            .unwrap_or(false)
        }
    })
    .await;
    let stats = c
        .queue_stats(pb::QueueStatsRequest {
            queue: "cleanup".into(),
        })
        .await?
        .into_inner();
    assert!(stats.queues[0].completed <= 5, "{:?}", stats.queues[0]);
    let err = c
        .get_job(pb::GetJobRequest {
            job_id: ids[0].clone(),
        })
        .await
        .expect_err("trimmed");
    assert_eq!(err.code(), tonic::Code::NotFound);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_count_jobs_by_outcome_and_gauge_queue_sizes() -> anyhow::Result<()> {
    let env = StackEnv::new(&[("NCY_JOBS_MAINTENANCE_SECS", "1")]).await?;
    let (mut c, sched, sched_admin) = env.scheduler_with_admin().await?;
    let (work, work_admin) = env.worker_with_admin().await?;
    // The recorder is the process's and other tests complete `cleanup` jobs too, but none runs
    // `sleep` on it: that outcome counter is this test's alone, so it is read exactly; the queue's
    // batch-size histogram is read as a delta from before this job.
    let batches_before = sample(
        work_admin,
        "queue_complete_batch_size_sum",
        &[("queue", "cleanup")],
    )
    .await;
    let ok = enqueue(&mut c, job("cleanup", "sleep", r#"{"ms":10}"#)).await?;
    let mut bad = job("cleanup", "sleep", r#"{"ms":10}"#);
    bad.delay_ms = 3_600_000;
    enqueue(&mut c, bad).await?;
    wait_state(&c, &ok, JobState::Completed, T).await;
    ncy_testkit::assert_eventually("worker metrics", T, || async move {
        let completed = [
            ("queue", "cleanup"),
            ("job_type", "sleep"),
            ("status", "completed"),
        ];
        sample(work_admin, "queue_jobs_total", &completed).await == 1.0
            && sample(
                work_admin,
                "queue_job_duration_seconds_bucket",
                &[completed[0], completed[1], ("le", "+Inf")],
            )
            .await
                == 1.0
            // The job's outcome went through a complete batch of its queue.
            && sample(
                work_admin,
                "queue_complete_batch_size_sum",
                &[("queue", "cleanup")],
            )
            .await
                >= batches_before + 1.0
    })
    .await;
    // Every scheduler of the process sets `queue_size` for its own prefix (the last one wins):
    // the others have no delayed `cleanup` job and write 0 every 5 s, this one writes its 1 every
    // second, so the gauge reads 1 most of the time and only through this scheduler.
    ncy_testkit::assert_eventually("scheduler gauges", T, || async move {
        let delayed = [("queue", "cleanup"), ("state", "delayed")];
        sample(sched_admin, "queue_size", &delayed).await == 1.0
            && ncy_testkit::http_get(sched_admin, "/metrics")
                .await
                .is_ok_and(|(_, body)| body.contains("queue_dead_letters{"))
    })
    .await;
    stop(work).await?;
    stop(sched).await
}
