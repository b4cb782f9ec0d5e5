//! RetryJob, PromoteJob and DeleteJob through gRPC against the real Redis, with this test playing
//! the worker through the engine (fetch, fail): each RPC's effect as GetJob, QueueStats and a
//! worker's fetch see it, the states each refuses (FAILED_PRECONDITION naming the state),
//! NOT_FOUND, and bad ids refused with nothing changed.
use std::time::Duration;

use futures_util::StreamExt;
use ncy_proto::jobs::v1 as pb;
use ncy_queue::{Engine, Fetched, FetchedJob};
use ncy_testkit::unique_prefix;
use ncy_types::jobs::QueueName;
use tonic::Code;

use crate::support::{Client, start, worker_engine};

const QUEUE: &str = "notification";
const Q: QueueName = QueueName::Notification;
/// A well-formed id no job has.
const UNKNOWN: &str = "notification.0123456789abcdef0123456789abcdef";

fn noop() -> pb::EnqueueRequest {
    pb::EnqueueRequest {
        queue: QUEUE.into(),
        job_type: "noop".into(),
        payload_json: "{}".into(),
        // A retry waits an hour: only RetryJob runs it sooner.
        backoff: Some(pb::Backoff {
            r#type: pb::BackoffType::Fixed as i32,
            delay_ms: 3_600_000,
        }),
        ..Default::default()
    }
}

async fn enqueue(c: &mut Client, req: pb::EnqueueRequest) -> anyhow::Result<String> {
    Ok(c.enqueue(req).await?.into_inner().job_id)
}

async fn get(c: &mut Client, id: &str) -> Result<pb::Job, tonic::Status> {
    let r = c
        .get_job(pb::GetJobRequest {
            job_id: id.to_owned(),
        })
        .await?;
    r.into_inner()
        .job
        .ok_or_else(|| tonic::Status::internal("no job"))
}

async fn stats(c: &mut Client) -> anyhow::Result<pb::QueueSummary> {
    let r = c
        .queue_stats(pb::QueueStatsRequest {
            queue: QUEUE.into(),
        })
        .await?;
    r.into_inner()
        .queues
        .pop()
        .ok_or_else(|| anyhow::anyhow!("no summary"))
}

/// What a worker's fetch hands out now.
async fn fetch(w: &Engine, n: usize) -> anyhow::Result<Vec<FetchedJob>> {
    match w.fetch(Q, "w1", n, &[]).await? {
        Fetched::Jobs(j) => Ok(j),
        other => anyhow::bail!("unexpected {other:?}"),
    }
}

fn assert_status(r: Result<impl std::fmt::Debug, tonic::Status>, code: Code, message: &str) {
    match r {
        Err(s) => assert!(
            s.code() == code && s.message().contains(message),
            "want {code:?} {message:?}, got {s:?}"
        ),
        Ok(v) => panic!("want {code:?} {message:?}, got {v:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_runs_a_failed_job_now_and_a_dead_one_from_its_dead_letter() -> anyhow::Result<()> {
    let prefix = unique_prefix();
    let (mut c, running) = start(&prefix, &[]).await?;
    let w = worker_engine(&prefix).await?;
    let flaky = enqueue(&mut c, noop()).await?;
    let broken = enqueue(&mut c, noop()).await?;
    let got = fetch(&w, 2).await?;
    assert_eq!(got.len(), 2);
    let (first, second) = if got[0].id == flaky {
        (&got[0], &got[1])
    } else {
        (&got[1], &got[0])
    };
    w.fail(Q, "w1", first, "flaky", true).await?;
    w.fail(Q, "w1", second, "broken", false).await?;
    let failed = get(&mut c, &flaky).await?;
    assert_eq!(failed.state(), pb::JobState::Failed);
    assert!(
        failed.due_at_ms > ncy_queue::now_ms() + 60_000,
        "{failed:?}"
    );

    // A waiting, active or finished job is not retried; nothing changes.
    let waiting = enqueue(&mut c, noop()).await?;
    assert_status(
        c.retry_job(pb::RetryJobRequest {
            job_id: waiting.clone(),
        })
        .await,
        Code::FailedPrecondition,
        &format!("job {waiting} is waiting: only a failed or dead job can be retried"),
    );
    assert_eq!(get(&mut c, &waiting).await?.state(), pb::JobState::Waiting);

    // FAILED: the same job, WAITING now, its attempt kept; a worker gets it at once.
    let retried = c
        .retry_job(pb::RetryJobRequest {
            job_id: flaky.clone(),
        })
        .await?
        .into_inner()
        .job
        .ok_or_else(|| anyhow::anyhow!("no job"))?;
    assert_eq!(retried.id, flaky);
    assert_eq!(retried.state(), pb::JobState::Waiting);
    assert_eq!(retried.attempts_made, 1);
    assert!(retried.due_at_ms <= ncy_queue::now_ms());
    let s = stats(&mut c).await?;
    assert_eq!((s.failed, s.waiting), (0, 2), "{s:?}");
    let run: Vec<(String, u32)> = fetch(&w, 5)
        .await?
        .into_iter()
        .map(|j| (j.id, j.attempt))
        .collect();
    assert!(run.contains(&(flaky.clone(), 2)), "{run:?}");
    assert_status(
        c.retry_job(pb::RetryJobRequest {
            job_id: flaky.clone(),
        })
        .await,
        Code::FailedPrecondition,
        "is active",
    );

    // DEAD: a new job from its dead letter (as RetryDeadLetter), the dead letter consumed.
    let dead = get(&mut c, &broken).await?;
    assert_eq!(dead.state(), pb::JobState::Dead);
    let fresh = c
        .retry_job(pb::RetryJobRequest {
            job_id: broken.clone(),
        })
        .await?
        .into_inner()
        .job
        .ok_or_else(|| anyhow::anyhow!("no job"))?;
    assert_ne!(fresh.id, broken);
    assert_eq!(fresh.state(), pb::JobState::Waiting);
    assert_eq!(fresh.retried_from_dead_letter_id, dead.dead_letter_id);
    assert_eq!((fresh.priority, fresh.max_attempts), (10, 1));
    assert_eq!(get(&mut c, &broken).await?.state(), pb::JobState::Dead);
    let letters = c
        .list_dead_letters(pb::ListDeadLettersRequest::default())
        .await?
        .into_inner();
    assert!(letters.dead_letters.is_empty(), "{letters:?}");
    assert_status(
        c.retry_job(pb::RetryJobRequest {
            job_id: broken.clone(),
        })
        .await,
        Code::FailedPrecondition,
        "is dead and its dead letter is gone",
    );

    // Bad and unknown ids.
    for (id, message) in [
        ("", "job_id: must not be empty"),
        ("nope", "job_id: is malformed"),
        ("notification.xyz", "job_id: is not a job id"),
    ] {
        assert_status(
            c.retry_job(pb::RetryJobRequest { job_id: id.into() }).await,
            Code::InvalidArgument,
            message,
        );
    }
    assert_status(
        c.retry_job(pb::RetryJobRequest {
            job_id: UNKNOWN.into(),
        })
        .await,
        Code::NotFound,
        &format!("job {UNKNOWN} not found"),
    );
    running
        .stop(Duration::from_secs(10))
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_makes_a_delayed_job_waiting_now() -> anyhow::Result<()> {
    let prefix = unique_prefix();
    let (mut c, running) = start(&prefix, &[]).await?;
    let w = worker_engine(&prefix).await?;
    let later = enqueue(
        &mut c,
        pb::EnqueueRequest {
            delay_ms: 3_600_000,
            ..noop()
        },
    )
    .await?;
    for (id, message) in [
        ("", "job_id: must not be empty"),
        ("email", "job_id: is malformed"),
    ] {
        assert_status(
            c.promote_job(pb::PromoteJobRequest { job_id: id.into() })
                .await,
            Code::InvalidArgument,
            message,
        );
    }
    assert_status(
        c.promote_job(pb::PromoteJobRequest {
            job_id: UNKNOWN.into(),
        })
        .await,
        Code::NotFound,
        "not found",
    );
    assert_eq!(stats(&mut c).await?.delayed, 1, "nothing changed");
    assert!(fetch(&w, 1).await?.is_empty(), "not due for an hour");

    let promoted = c
        .promote_job(pb::PromoteJobRequest {
            job_id: later.clone(),
        })
        .await?
        .into_inner()
        .job
        .ok_or_else(|| anyhow::anyhow!("no job"))?;
    assert_eq!(promoted.state(), pb::JobState::Waiting);
    assert!(promoted.due_at_ms <= ncy_queue::now_ms());
    let s = stats(&mut c).await?;
    assert_eq!((s.delayed, s.waiting), (0, 1), "{s:?}");
    assert_status(
        c.promote_job(pb::PromoteJobRequest {
            job_id: later.clone(),
        })
        .await,
        Code::FailedPrecondition,
        &format!("job {later} is waiting: only a delayed job can be promoted"),
    );
    let run = fetch(&w, 1).await?;
    assert_eq!(run.first().map(|j| j.id.as_str()), Some(later.as_str()));
    running
        .stop(Duration::from_secs(10))
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_job_is_gone_and_a_deleted_waiting_job_never_runs() -> anyhow::Result<()> {
    let prefix = unique_prefix();
    let (mut c, running) = start(&prefix, &[]).await?;
    let w = worker_engine(&prefix).await?;
    let doomed = enqueue(&mut c, noop()).await?;
    let keyed = enqueue(
        &mut c,
        pb::EnqueueRequest {
            idempotency_key: "once".into(),
            ..noop()
        },
    )
    .await?;
    let running_job = enqueue(&mut c, noop()).await?;
    for (id, message) in [
        ("", "job_id: must not be empty"),
        ("x.1", "job_id: is malformed"),
    ] {
        assert_status(
            c.delete_job(pb::DeleteJobRequest { job_id: id.into() })
                .await,
            Code::InvalidArgument,
            message,
        );
    }
    assert_status(
        c.delete_job(pb::DeleteJobRequest {
            job_id: UNKNOWN.into(),
        })
        .await,
        Code::NotFound,
        "not found",
    );
    assert_eq!(stats(&mut c).await?.waiting, 3, "nothing changed");

    // A watcher of the job learns it is gone.
    let mut events = c
        .watch_job(pb::WatchJobRequest {
            job_id: doomed.clone(),
        })
        .await?
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(20), events.next())
        .await?
        .ok_or_else(|| anyhow::anyhow!("no snapshot"))??;
    assert_eq!(first.r#type(), pb::JobEventType::Snapshot);

    for id in [&doomed, &keyed] {
        let deleted = c
            .delete_job(pb::DeleteJobRequest { job_id: id.clone() })
            .await?
            .into_inner();
        assert_eq!(deleted.state(), pb::JobState::Waiting);
        assert_status(get(&mut c, id).await, Code::NotFound, "not found");
    }
    let ended = tokio::time::timeout(Duration::from_secs(20), events.next())
        .await?
        .ok_or_else(|| anyhow::anyhow!("the watch ended without a status"))?;
    assert_status(ended, Code::NotFound, &format!("job {doomed} not found"));
    assert_eq!(stats(&mut c).await?.waiting, 1);

    // A worker's fetch gets only the job left, never the deleted ones.
    let run: Vec<String> = fetch(&w, 10).await?.into_iter().map(|j| j.id).collect();
    assert_eq!(run, vec![running_job.clone()]);
    assert!(fetch(&w, 10).await?.is_empty());
    assert_status(
        c.delete_job(pb::DeleteJobRequest {
            job_id: running_job.clone(),
        })
        .await,
        Code::FailedPrecondition,
        &format!("job {running_job} is active: cancel it first"),
    );
    assert_eq!(
        get(&mut c, &running_job).await?.state(),
        pb::JobState::Active
    );
    assert!(w.complete(Q, "w1", &running_job, "").await?);
    let deleted = c
        .delete_job(pb::DeleteJobRequest {
            job_id: running_job.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(deleted.state(), pb::JobState::Completed);
    let s = stats(&mut c).await?;
    assert_eq!((s.waiting, s.active, s.completed), (0, 0, 0), "{s:?}");
    running
        .stop(Duration::from_secs(10))
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(())
}
