//! What a queue's settings hold across workers: its rate limit across two replicas, priority
//! before order, retention of finished jobs, and the metrics of its jobs and sizes.
use std::time::Duration;

use super::T;
use crate::support::jobs::{StackEnv, enqueue, get, job, wait_state};
use crate::support::metrics::sample;
use crate::support::stop;
use ncy_proto::jobs::v1::{self as pb, JobState};

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
