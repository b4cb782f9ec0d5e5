//! Operator actions on one job against the real Redis: a deleted WAITING job is never handed to a
//! worker (whether its entry id is on its hash or, enqueued without a script, not), a deleted job
//! of any other state is gone, an ACTIVE one is refused; PromoteJob and RetryJob put a job in its
//! band at once, in order with the others.
use ncy_queue::{Engine, Fetched, JobState, QueueError};
use ncy_types::jobs::QueueName;

use crate::support::{engine, job};

const Q: QueueName = QueueName::Notification;

async fn fetch(e: &Engine, n: usize) -> anyhow::Result<Vec<String>> {
    match e.fetch(Q, "c1", n, &[]).await? {
        Fetched::Jobs(j) => Ok(j.into_iter().map(|j| j.id).collect()),
        other => anyhow::bail!("unexpected {other:?}"),
    }
}

async fn ghosts(e: &Engine) -> anyhow::Result<u64> {
    let mut conn = redis::Client::open(ncy_testkit::redis_url())?
        .get_multiplexed_async_connection()
        .await?;
    Ok(redis::cmd("SCARD")
        .arg(e.queue_keys(Q).ghosts())
        .query_async(&mut conn)
        .await?)
}

#[tokio::test]
async fn a_deleted_waiting_job_is_never_fetched() -> anyhow::Result<()> {
    let e = engine(&[]).await?;
    // Without a key or delay: no script, so no entry id on the hash.
    let plain: Vec<String> = e
        .enqueue(Q, &[job(3), job(3)])
        .await?
        .into_iter()
        .map(|r| r.job_id)
        .collect();
    assert_eq!(e.get_job(&plain[0]).await?.get("entry"), "");
    // With a key: the script records the entry id.
    let keyed = e
        .enqueue(
            Q,
            &[ncy_queue::NewJob {
                idempotency_key: "k1".into(),
                ..job(3)
            }],
        )
        .await?[0]
        .job_id
        .clone();
    assert_ne!(e.get_job(&keyed).await?.get("entry"), "");

    assert_eq!(e.delete_job(&plain[0]).await?, JobState::Waiting);
    assert_eq!(e.delete_job(&keyed).await?, JobState::Waiting);
    assert!(matches!(
        e.get_job(&plain[0]).await,
        Err(QueueError::NotFound(_))
    ));
    assert!(matches!(
        e.delete_job(&keyed).await,
        Err(QueueError::NotFound(_))
    ));
    let stats = e.stats(Q).await?;
    assert_eq!(stats.waiting, 1, "only the job left: {stats:?}");
    assert_eq!(ghosts(&e).await?, 1, "the entry without id awaits a fetch");

    assert_eq!(fetch(&e, 10).await?, vec![plain[1].clone()]);
    assert!(fetch(&e, 10).await?.is_empty(), "nothing else to run");
    assert_eq!(ghosts(&e).await?, 0, "the passed entry is forgotten");
    let stats = e.stats(Q).await?;
    assert_eq!((stats.waiting, stats.active), (0, 1), "{stats:?}");

    // The running job cannot be deleted; once completed, it can.
    let refused = e.delete_job(&plain[1]).await.expect_err("active");
    assert!(
        matches!(&refused, QueueError::FailedPrecondition(m) if m.contains("is active: cancel it first")),
        "{refused:?}"
    );
    assert!(e.complete(Q, "c1", &plain[1], "").await?);
    assert_eq!(e.delete_job(&plain[1]).await?, JobState::Completed);
    assert_eq!(e.stats(Q).await?.completed, 0);
    Ok(())
}

#[tokio::test]
async fn delayed_failed_dead_and_cancelled_jobs_are_deleted_from_their_sets() -> anyhow::Result<()>
{
    let e = engine(&[]).await?;
    let delayed = e
        .enqueue(
            Q,
            &[ncy_queue::NewJob {
                delay_ms: 600_000,
                ..job(1)
            }],
        )
        .await?[0]
        .job_id
        .clone();
    let ids: Vec<String> = e
        .enqueue(Q, &[job(2), job(2), job(2)])
        .await?
        .into_iter()
        .map(|r| r.job_id)
        .collect();
    e.cancel_job(&ids[2], "no").await?;
    let got = match e.fetch(Q, "c1", 2, &[]).await? {
        Fetched::Jobs(j) => j,
        other => anyhow::bail!("unexpected {other:?}"),
    };
    // One fails with a retry pending, the other for good.
    e.fail(Q, "c1", &got[0], "later", true).await?;
    e.fail(Q, "c1", &got[1], "never", false).await?;
    let stats = e.stats(Q).await?;
    assert_eq!(
        (
            stats.delayed,
            stats.failed,
            stats.cancelled,
            stats.dead_letters
        ),
        (1, 1, 1, 1),
        "{stats:?}"
    );
    for (id, state) in [
        (&delayed, JobState::Delayed),
        (&got[0].id, JobState::Failed),
        (&got[1].id, JobState::Dead),
        (&ids[2], JobState::Cancelled),
    ] {
        assert_eq!(e.delete_job(id).await?, state);
        assert!(matches!(e.get_job(id).await, Err(QueueError::NotFound(_))));
    }
    let stats = e.stats(Q).await?;
    assert_eq!(
        (stats.delayed, stats.failed, stats.cancelled, stats.waiting),
        (0, 0, 0, 0),
        "{stats:?}"
    );
    assert_eq!(stats.dead_letters, 1, "the dead letter is its own object");
    assert_eq!(e.promote(Q).await?.0, 0, "nothing left to promote");
    Ok(())
}

#[tokio::test]
async fn promote_and_retry_put_the_job_in_its_band_now() -> anyhow::Result<()> {
    let e = engine(&[]).await?;
    let later = e
        .enqueue(
            Q,
            &[ncy_queue::NewJob {
                delay_ms: 600_000,
                ..job(5)
            }],
        )
        .await?[0]
        .job_id
        .clone();
    let low = e.enqueue(Q, &[job(0)]).await?[0].job_id.clone();
    let promoted = e.promote_job(&later).await?;
    assert_eq!(promoted.state()?, JobState::Waiting);
    assert!(promoted.num("due") <= ncy_queue::now_ms());
    let again = e.promote_job(&later).await.expect_err("waiting now");
    assert!(
        matches!(&again, QueueError::FailedPrecondition(m) if m.contains("is waiting")),
        "{again:?}"
    );
    assert_eq!(fetch(&e, 1).await?, vec![later.clone()], "its band first");

    // A retry waiting a long backoff runs at once, its attempts kept.
    let got = match e.fetch(Q, "c1", 1, &[]).await? {
        Fetched::Jobs(j) => j,
        other => anyhow::bail!("unexpected {other:?}"),
    };
    assert_eq!(got[0].id, low);
    let slow = ncy_queue::FetchedJob {
        backoff: ncy_types::jobs::Backoff {
            kind: ncy_types::jobs::BackoffKind::Fixed,
            delay_ms: 3_600_000,
        },
        ..got[0].clone()
    };
    e.fail(Q, "c1", &slow, "flaky", true).await?;
    assert_eq!(e.get_job(&low).await?.state()?, JobState::Failed);
    assert_eq!(e.stats(Q).await?.failed, 1);
    let retried = e.retry_job(&low).await?;
    assert_eq!(retried.id, low);
    assert_eq!(retried.state()?, JobState::Waiting);
    assert_eq!(retried.num("attempts"), 1);
    assert_eq!(e.stats(Q).await?.failed, 0);
    let run = match e.fetch(Q, "c1", 1, &[]).await? {
        Fetched::Jobs(j) => j,
        other => anyhow::bail!("unexpected {other:?}"),
    };
    assert_eq!((run[0].id.as_str(), run[0].attempt), (low.as_str(), 2));
    Ok(())
}
