//! JobService through gRPC against the real Redis, scheduler only (no worker): enqueue, idempotency,
//! bad input, delays, listing, cancel, pause/resume, schedules (defaults, validation, two replicas
//! firing a cron tick once), dead-letter RPCs' errors.
use std::collections::HashSet;
use std::time::Duration;

use ncy_proto::jobs::v1 as pb;
use ncy_testkit::{assert_eventually, unique_prefix};

use crate::support::{Client, start};

fn noop(queue: &str) -> pb::EnqueueRequest {
    pb::EnqueueRequest {
        queue: queue.into(),
        job_type: "noop".into(),
        payload_json: "{}".into(),
        ..Default::default()
    }
}

async fn waiting(client: &mut Client, queue: &str) -> anyhow::Result<u64> {
    let s = client
        .queue_stats(pb::QueueStatsRequest {
            queue: queue.into(),
        })
        .await?
        .into_inner();
    Ok(s.queues[0].waiting + s.queues[0].delayed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_stores_the_job_and_idempotency_returns_the_first_id() -> anyhow::Result<()> {
    let (mut c, running) = start(&unique_prefix(), &[]).await?;
    let mut req = pb::EnqueueRequest {
        queue: "email".into(),
        job_type: "send-email".into(),
        payload_json: r#"{"to":"a@example.com","subject":"Hi","template":"welcome"}"#.into(),
        priority: 4,
        attempts: 5,
        idempotency_key: "signup-42".into(),
        owner_user_id: "123e4567-e89b-12d3-a456-426614174000".into(),
        ..Default::default()
    };
    let first = c.enqueue(req.clone()).await?.into_inner();
    assert!(!first.deduplicated);
    assert_eq!(first.state(), pb::JobState::Waiting);
    req.payload_json = r#"{"to":"b@example.com","subject":"Other","template":"x"}"#.into();
    let again = c.enqueue(req).await?.into_inner();
    assert!(again.deduplicated);
    assert_eq!(again.job_id, first.job_id);
    let job = c
        .get_job(pb::GetJobRequest {
            job_id: first.job_id.clone(),
        })
        .await?
        .into_inner()
        .job
        .expect("job");
    assert_eq!(job.queue, "email");
    assert_eq!(job.job_type, "send-email");
    assert_eq!(job.priority, 4);
    assert_eq!(job.max_attempts, 5);
    assert_eq!(job.attempts_made, 0);
    assert_eq!(job.idempotency_key, "signup-42");
    assert!(job.payload_json.contains("a@example.com"));
    assert_eq!(job.backoff.expect("backoff").delay_ms, 2000);
    assert_eq!(waiting(&mut c, "email").await?, 1, "one job, not two");

    // Bulk: in order, with a duplicate inside the batch.
    let mut a = noop("notification");
    a.idempotency_key = "k1".into();
    let bulk = c
        .enqueue_bulk(pb::EnqueueBulkRequest {
            jobs: vec![a.clone(), noop("report"), a],
        })
        .await?
        .into_inner()
        .results;
    assert_eq!(bulk.len(), 3);
    assert!(bulk[1].job_id.starts_with("report."));
    assert_eq!(bulk[2].job_id, bulk[0].job_id);
    assert!(bulk[2].deduplicated && !bulk[0].deduplicated);
    running
        .stop(Duration::from_secs(10))
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_invalid_argument_naming_the_field_and_enqueues_nothing() -> anyhow::Result<()>
{
    let (mut c, running) = start(&unique_prefix(), &[]).await?;
    let email = |payload: &str| pb::EnqueueRequest {
        queue: "email".into(),
        job_type: "send-email".into(),
        payload_json: payload.into(),
        ..Default::default()
    };
    let typed = |queue: &str, job_type: &str, payload: &str| pb::EnqueueRequest {
        queue: queue.into(),
        job_type: job_type.into(),
        payload_json: payload.into(),
        ..Default::default()
    };
    let big = format!(r#"{{"x":"{}"}}"#, "a".repeat(1 << 20));
    let cases: Vec<(pb::EnqueueRequest, &str)> = vec![
        (
            pb::EnqueueRequest {
                queue: "nope".into(),
                ..noop("x")
            },
            "queue",
        ),
        (
            pb::EnqueueRequest {
                job_type: "mine-bitcoin".into(),
                ..noop("email")
            },
            "job_type",
        ),
        (
            pb::EnqueueRequest {
                job_type: "generate-report".into(),
                ..noop("email")
            },
            "job_type",
        ),
        (
            email(r#"{"to":"not-an-email","subject":"s","template":"t"}"#),
            "payload_json.to",
        ),
        (email("{"), "payload_json"),
        (
            email(r#"{"to":"a@example.com","subject":"s","template":"../etc/passwd"}"#),
            "payload_json.template",
        ),
        (
            typed(
                "email",
                "send-welcome-email",
                r#"{"userId":"123e4567-e89b-12d3-a456-426614174000","email":"nope","name":"A"}"#,
            ),
            "payload_json.email",
        ),
        (
            typed(
                "notification",
                "send-notification",
                r#"{"userId":"bob","type":"T","message":"m"}"#,
            ),
            "payload_json.userId",
        ),
        (
            typed("cleanup", "cleanup-old-data", r#"{"jobsOlderThanDays":0}"#),
            "payload_json.jobsOlderThanDays",
        ),
        (
            pb::EnqueueRequest {
                payload_json: big,
                ..noop("email")
            },
            "payload_json",
        ),
        (
            pb::EnqueueRequest {
                priority: 11,
                ..noop("email")
            },
            "priority",
        ),
        (
            pb::EnqueueRequest {
                priority: -1,
                ..noop("email")
            },
            "priority",
        ),
        (
            pb::EnqueueRequest {
                attempts: 26,
                ..noop("email")
            },
            "attempts",
        ),
        (
            pb::EnqueueRequest {
                delay_ms: -5,
                ..noop("email")
            },
            "delay_ms",
        ),
        (
            pb::EnqueueRequest {
                delay_ms: 31_536_000_001,
                ..noop("email")
            },
            "delay_ms",
        ),
        (
            pb::EnqueueRequest {
                idempotency_key: "k".repeat(257),
                ..noop("email")
            },
            "idempotency_key",
        ),
        (
            pb::EnqueueRequest {
                owner_user_id: "bob".into(),
                ..noop("email")
            },
            "owner_user_id",
        ),
        (
            pb::EnqueueRequest {
                backoff: Some(pb::Backoff {
                    r#type: 1,
                    delay_ms: -1,
                }),
                ..noop("email")
            },
            "backoff.delay_ms",
        ),
    ];
    for (req, field) in cases {
        let err = c.enqueue(req).await.expect_err(field);
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{field}: {err:?}");
        assert!(
            err.message().starts_with(&format!("{field}:")),
            "{field}: {}",
            err.message()
        );
    }
    // Bulk is all-or-nothing and names the job.
    let err = c
        .enqueue_bulk(pb::EnqueueBulkRequest {
            jobs: vec![
                noop("email"),
                pb::EnqueueRequest {
                    priority: 99,
                    ..noop("email")
                },
            ],
        })
        .await
        .expect_err("bulk");
    assert!(
        err.message().starts_with("jobs[1].priority:"),
        "{}",
        err.message()
    );
    let err = c
        .enqueue_bulk(pb::EnqueueBulkRequest { jobs: vec![] })
        .await
        .expect_err("empty");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(waiting(&mut c, "email").await?, 0, "nothing was enqueued");

    for (req, field) in [
        (
            pb::UpsertScheduleRequest {
                cron: "61 * * * *".into(),
                ..schedule("s1")
            },
            "cron",
        ),
        (
            pb::UpsertScheduleRequest {
                cron: "* * *".into(),
                ..schedule("s1")
            },
            "cron",
        ),
        (
            pb::UpsertScheduleRequest {
                time_zone: "Mars/Base".into(),
                ..schedule("s1")
            },
            "time_zone",
        ),
        (
            pb::UpsertScheduleRequest {
                name: "Bad Name".into(),
                ..schedule("s1")
            },
            "name",
        ),
    ] {
        let err = c.upsert_schedule(req).await.expect_err(field);
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(
            err.message().starts_with(&format!("{field}:")),
            "{}",
            err.message()
        );
    }
    for bad in [
        "",
        "email",
        "email.zz",
        "x.0123456789abcdef0123456789abcdef",
    ] {
        let err = c
            .get_job(pb::GetJobRequest { job_id: bad.into() })
            .await
            .expect_err(bad);
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{bad}");
    }
    let missing = "email.0123456789abcdef0123456789abcdef";
    let err = c
        .get_job(pb::GetJobRequest {
            job_id: missing.into(),
        })
        .await
        .expect_err("missing");
    assert_eq!(err.code(), tonic::Code::NotFound);
    let err = c
        .retry_dead_letter(pb::RetryDeadLetterRequest {
            dead_letter_id: "email.1-0".into(),
        })
        .await
        .expect_err("no dead letter");
    assert_eq!(err.code(), tonic::Code::NotFound);
    let err = c
        .list_jobs(pb::ListJobsRequest {
            queue: "email".into(),
            ..Default::default()
        })
        .await
        .expect_err("state unspecified");
    assert!(err.message().starts_with("state:"));
    running
        .stop(Duration::from_secs(10))
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(())
}

fn schedule(name: &str) -> pb::UpsertScheduleRequest {
    pb::UpsertScheduleRequest {
        name: name.into(),
        cron: "*/1 * * * * *".into(),
        queue: "notification".into(),
        job_type: "noop".into(),
        payload_json: "{}".into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_jobs_become_waiting_when_due_and_cancel_pause_list_work() -> anyhow::Result<()> {
    let (mut c, running) = start(&unique_prefix(), &[]).await?;
    let delayed = c
        .enqueue(pb::EnqueueRequest {
            delay_ms: 300,
            ..noop("report")
        })
        .await?
        .into_inner();
    assert_eq!(delayed.state(), pb::JobState::Delayed);
    let listed = c
        .list_jobs(pb::ListJobsRequest {
            queue: "report".into(),
            state: pb::JobState::Delayed as i32,
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(listed.jobs.len(), 1);
    let id = delayed.job_id.clone();
    let mut cc = c.clone();
    assert_eventually(
        "the delayed job is promoted",
        Duration::from_secs(10),
        || {
            let id = id.clone();
            let mut c = cc.clone();
            async move {
                c.get_job(pb::GetJobRequest { job_id: id })
                    .await
                    .ok()
                    .and_then(|r| r.into_inner().job)
                    .map(|j| j.state)
                    == Some(pb::JobState::Waiting as i32)
            }
        },
    )
    .await;
    let job = cc
        .get_job(pb::GetJobRequest { job_id: id.clone() })
        .await?
        .into_inner()
        .job
        .expect("job");
    assert!(job.due_at_ms >= job.created_at_ms + 300);

    // Waiting jobs list in run order: priority first, then FIFO.
    let low = c.enqueue(noop("report")).await?.into_inner().job_id;
    let high = c
        .enqueue(pb::EnqueueRequest {
            priority: 9,
            ..noop("report")
        })
        .await?
        .into_inner()
        .job_id;
    let order: Vec<String> = c
        .list_jobs(pb::ListJobsRequest {
            queue: "report".into(),
            state: pb::JobState::Waiting as i32,
            ..Default::default()
        })
        .await?
        .into_inner()
        .jobs
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(order, vec![high.clone(), id.clone(), low.clone()]);

    let cancelled = c
        .cancel_job(pb::CancelJobRequest {
            job_id: low.clone(),
            reason: "changed my mind".into(),
        })
        .await?
        .into_inner()
        .job
        .expect("job");
    assert_eq!(cancelled.state(), pb::JobState::Cancelled);
    assert_eq!(cancelled.last_error, "cancelled: changed my mind");
    // Cancelling again is a no-op success.
    c.cancel_job(pb::CancelJobRequest {
        job_id: low,
        reason: String::new(),
    })
    .await?;

    assert!(
        c.pause_queue(pb::PauseQueueRequest {
            queue: "report".into()
        })
        .await?
        .into_inner()
        .changed
    );
    assert!(
        !c.pause_queue(pb::PauseQueueRequest {
            queue: "report".into()
        })
        .await?
        .into_inner()
        .changed
    );
    let stats = c
        .queue_stats(pb::QueueStatsRequest {
            queue: "report".into(),
        })
        .await?
        .into_inner();
    assert!(stats.queues[0].paused);
    assert_eq!(stats.queues[0].waiting, 2);
    assert_eq!(stats.queues[0].cancelled, 1);
    assert_eq!(
        stats.queues[0].rate_limit.as_ref().map(|r| r.max_jobs),
        Some(10)
    );
    assert_eq!(stats.queues[0].concurrency_per_worker, 2);
    assert!(
        c.resume_queue(pb::ResumeQueueRequest {
            queue: "report".into()
        })
        .await?
        .into_inner()
        .changed
    );
    assert!(
        !c.resume_queue(pb::ResumeQueueRequest {
            queue: "report".into()
        })
        .await?
        .into_inner()
        .changed
    );
    running
        .stop(Duration::from_secs(10))
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_schedules_are_installed_and_two_replicas_fire_each_tick_once() -> anyhow::Result<()>
{
    let prefix = unique_prefix();
    let (mut a, ra) = start(&prefix, &[]).await?;
    let (_b, rb) = start(&prefix, &[]).await?;
    let mut names = Vec::new();
    assert_eventually("defaults installed", Duration::from_secs(10), || {
        let mut a = a.clone();
        async move {
            a.list_schedules(pb::ListSchedulesRequest::default())
                .await
                .map(|r| r.into_inner().schedules.len() == 2)
                .unwrap_or(false)
        }
    })
    .await;
    for s in a
        .list_schedules(pb::ListSchedulesRequest::default())
        .await?
        .into_inner()
        .schedules
    {
        names.push((s.name.clone(), s.cron.clone(), s.queue.clone()));
    }
    assert_eq!(
        names,
        vec![
            (
                "backup-database".to_owned(),
                "0 3 * * 0".to_owned(),
                "cleanup".to_owned()
            ),
            (
                "cleanup-old-data".to_owned(),
                "0 2 * * *".to_owned(),
                "cleanup".to_owned()
            ),
        ]
    );
    let up = a
        .upsert_schedule(schedule("every-second"))
        .await?
        .into_inner();
    assert!(up.created);
    assert!(up.schedule.expect("schedule").next_run_at_ms > 0);
    // Both replicas evaluate the schedule; wait for three ticks' jobs.
    assert_eventually("three ticks fired", Duration::from_secs(15), || {
        let mut a = a.clone();
        async move { waiting(&mut a, "notification").await.unwrap_or(0) >= 3 }
    })
    .await;
    a.delete_schedule(pb::DeleteScheduleRequest {
        name: "every-second".into(),
    })
    .await?;
    let jobs = a
        .list_jobs(pb::ListJobsRequest {
            queue: "notification".into(),
            state: pb::JobState::Waiting as i32,
            page_size: 500,
            ..Default::default()
        })
        .await?
        .into_inner()
        .jobs;
    let keys: Vec<&str> = jobs.iter().map(|j| j.idempotency_key.as_str()).collect();
    let distinct: HashSet<&str> = keys.iter().copied().collect();
    assert!(keys.len() >= 3);
    assert_eq!(keys.len(), distinct.len(), "a tick fired twice: {keys:?}");
    assert!(jobs.iter().all(|j| j.schedule_name == "every-second"));
    assert!(keys.iter().all(|k| k.starts_with("cron:every-second:")));
    let err = a
        .delete_schedule(pb::DeleteScheduleRequest {
            name: "every-second".into(),
        })
        .await
        .expect_err("gone");
    assert_eq!(err.code(), tonic::Code::NotFound);
    ra.stop(Duration::from_secs(10))
        .await
        .map_err(anyhow::Error::msg)?;
    rb.stop(Duration::from_secs(10))
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_missed_while_no_scheduler_ran_fire_once_or_are_skipped_by_policy()
-> anyhow::Result<()> {
    let prefix = unique_prefix();
    // An operator replica with cron off: stores the schedules, fires nothing.
    let (mut a, ra) = start(
        &prefix,
        &[
            ("NCY_CRON_ENABLED", "false"),
            ("NCY_CRON_INSTALL_DEFAULTS", "false"),
        ],
    )
    .await?;
    for (name, policy) in [
        ("hourly-once", pb::MissedRunPolicy::FireOnce),
        ("hourly-skip", pb::MissedRunPolicy::Skip),
    ] {
        a.upsert_schedule(pb::UpsertScheduleRequest {
            cron: "0 * * * *".into(),
            missed_run_policy: policy as i32,
            ..schedule(name)
        })
        .await?;
    }
    // Both last fired three hours ago: at least two hourly ticks were missed since.
    let keys = ncy_types::KeySpace::new(prefix.clone())?;
    let mut conn = redis::Client::open(ncy_testkit::redis_url())?
        .get_multiplexed_async_connection()
        .await?;
    let three_hours_ago = ncy_queue::now_ms() - 3 * 3_600_000;
    let _: () = redis::pipe()
        .hset(keys.schedule_last_fired(), "hourly-once", three_hours_ago)
        .hset(keys.schedule_last_fired(), "hourly-skip", three_hours_ago)
        .query_async(&mut conn)
        .await?;
    let (_b, rb) = start(&prefix, &[("NCY_CRON_INSTALL_DEFAULTS", "false")]).await?;
    assert_eventually("both schedules evaluated", Duration::from_secs(10), || {
        let mut a = a.clone();
        async move {
            a.list_schedules(pb::ListSchedulesRequest::default())
                .await
                .map(|r| {
                    r.into_inner()
                        .schedules
                        .iter()
                        .all(|s| s.last_run_at_ms > three_hours_ago)
                })
                .unwrap_or(false)
        }
    })
    .await;
    let jobs = a
        .list_jobs(pb::ListJobsRequest {
            queue: "notification".into(),
            state: pb::JobState::Waiting as i32,
            ..Default::default()
        })
        .await?
        .into_inner()
        .jobs;
    assert_eq!(
        jobs.len(),
        1,
        "FIRE_ONCE fires one job for all missed ticks, SKIP none: {jobs:?}"
    );
    assert_eq!(jobs[0].schedule_name, "hourly-once");
    let schedules = a
        .list_schedules(pb::ListSchedulesRequest::default())
        .await?
        .into_inner()
        .schedules;
    let once = schedules
        .iter()
        .find(|s| s.name == "hourly-once")
        .expect("schedule");
    // The most recent missed tick is a whole hour, and the job carries its idempotency key.
    assert_eq!(once.last_run_at_ms % 3_600_000, 0);
    assert_eq!(
        jobs[0].idempotency_key,
        format!("cron:hourly-once:{}", once.last_run_at_ms)
    );
    assert_eq!(once.last_job_id, jobs[0].id);
    ra.stop(Duration::from_secs(10))
        .await
        .map_err(anyhow::Error::msg)?;
    rb.stop(Duration::from_secs(10))
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_and_backup_payloads_are_checked_at_enqueue() -> anyhow::Result<()> {
    let (mut c, running) = start(&unique_prefix(), &[]).await?;
    let user = "123e4567-e89b-12d3-a456-426614174000";
    let req = |queue: &str, job_type: &str, payload: String| pb::EnqueueRequest {
        queue: queue.into(),
        job_type: job_type.into(),
        payload_json: payload,
        ..Default::default()
    };
    let report = |payload: String| req("report", "generate-report", payload);
    let cases = [
        (
            report(format!(
                r#"{{"reportType":"project_tasks","format":"csv","userId":"{user}"}}"#
            )),
            "payload_json.projectId",
        ),
        (
            report(format!(
                r#"{{"reportType":"organization_activity","format":"pdf","userId":"{user}"}}"#
            )),
            "payload_json.organizationId",
        ),
        (
            report(format!(
                r#"{{"reportType":"project_tasks","format":"docx","userId":"{user}","projectId":"{user}"}}"#
            )),
            "payload_json.format",
        ),
        (
            report(format!(
                r#"{{"reportType":"sales","format":"csv","userId":"{user}"}}"#
            )),
            "payload_json.reportType",
        ),
        (
            report(
                r#"{"reportType":"project_tasks","format":"csv","userId":"bob","projectId":"x"}"#
                    .into(),
            ),
            "payload_json.userId",
        ),
        (
            report(format!(
                r#"{{"reportType":"organization_activity","format":"csv","userId":"{user}","organizationId":"{user}","fromMs":5,"toMs":1}}"#
            )),
            "payload_json.toMs",
        ),
        (
            req("cleanup", "backup-database", r#"{"keepLast":0}"#.into()),
            "payload_json.keepLast",
        ),
        (
            req("cleanup", "backup-database", r#"{"keep":3}"#.into()),
            "payload_json.keep",
        ),
    ];
    for (req, field) in cases {
        let err = c.enqueue(req).await.expect_err(field);
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{field}: {err:?}");
        assert!(
            err.message().starts_with(&format!("{field}:")),
            "{field}: {}",
            err.message()
        );
    }
    assert_eq!(waiting(&mut c, "report").await?, 0, "nothing was enqueued");
    assert_eq!(waiting(&mut c, "cleanup").await?, 0, "nothing was enqueued");
    running
        .stop(Duration::from_secs(10))
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(())
}
