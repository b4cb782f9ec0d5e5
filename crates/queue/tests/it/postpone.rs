//! `Engine::postpone` against the real Redis: an attempt that failed because a dependency was down
//! is given back (the attempt count stays what it was before), the job waits as FAILED with the
//! error until the delay passes, it is never dead-lettered however often it is postponed, and a
//! consumer whose job was reclaimed meanwhile cannot postpone it.
use std::time::Duration;

use ncy_queue::{Engine, FailOutcome, Fetched, FetchedJob, JobEventMessage, JobState};
use ncy_types::jobs::QueueName;

use crate::support::{engine, job};

const Q: QueueName = QueueName::Email;
const T: Duration = Duration::from_secs(5);

async fn fetch_one(e: &Engine, consumer: &str) -> anyhow::Result<FetchedJob> {
    match e.fetch(Q, consumer, 1, &[]).await? {
        Fetched::Jobs(mut jobs) if jobs.len() == 1 => Ok(jobs.remove(0)),
        other => anyhow::bail!("expected one job, got {other:?}"),
    }
}

/// Promotes until the job is due and fetched again.
async fn refetch(e: &Engine, consumer: &str) -> anyhow::Result<FetchedJob> {
    ncy_testkit::assert_eventually("the postponed job promoted", T, || async {
        e.promote(Q).await.map(|(m, _)| m == 1).unwrap_or(false)
    })
    .await;
    fetch_one(e, consumer).await
}

/// The last event of the queue's events stream.
async fn last_event(e: &Engine) -> anyhow::Result<JobEventMessage> {
    let mut redis = redis::Client::open(ncy_testkit::redis_url())?
        .get_multiplexed_async_connection()
        .await?;
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
        .arg(e.queue_keys(Q).events())
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut redis)
        .await?;
    let (_, fields) = entries.first().ok_or_else(|| anyhow::anyhow!("no event"))?;
    let (_, json) = fields
        .first()
        .ok_or_else(|| anyhow::anyhow!("empty event"))?;
    Ok(serde_json::from_str(json)?)
}

#[tokio::test]
async fn postpone_gives_the_attempt_back_and_waits_as_failed_with_the_error() -> anyhow::Result<()>
{
    let e = engine(&[]).await?;
    let id = e.enqueue(Q, &[job(0)]).await?[0].job_id.clone();
    let first = fetch_one(&e, "c1").await?;
    assert_eq!(first.attempt, 1);

    let before = ncy_queue::now_ms();
    let out = e
        .postpone(Q, "c1", &first, "SMTP server down", Duration::from_secs(60))
        .await?;
    let FailOutcome::Postponed(due) = out else {
        anyhow::bail!("{out:?}")
    };
    assert!(due >= before + 60_000, "due {due}, postponed at {before}");
    let rec = e.get_job(&id).await?;
    assert_eq!(rec.state()?, JobState::Failed);
    assert_eq!(rec.num("attempts"), 0, "the attempt was given back");
    assert_eq!(rec.get("error"), "SMTP server down");
    assert_eq!(rec.num("due"), due);
    assert_eq!(rec.get("worker"), "");
    // Not due yet: nothing to promote, and the delayed set says when.
    assert_eq!(e.promote(Q).await?, (0, Some(due)));
    assert!(
        matches!(e.fetch(Q, "c1", 1, &[]).await?, Fetched::Jobs(j) if j.is_empty()),
        "nothing runs before it is due"
    );
    // Operators and WatchJob see the same state_changed event as for a retry.
    let ev = last_event(&e).await?;
    assert_eq!(
        (ev.job_id.as_str(), ev.kind.as_str(), ev.state.as_str()),
        (id.as_str(), "state_changed", "failed")
    );
    assert_eq!(ev.message, "SMTP server down");
    assert_eq!((ev.attempts_made, ev.due_at_ms), (0, due));
    Ok(())
}

#[tokio::test]
async fn a_job_postponed_more_often_than_its_attempts_keeps_every_attempt() -> anyhow::Result<()> {
    let e = engine(&[]).await?;
    // Two attempts.
    let id = e.enqueue(Q, &[job(0)]).await?[0].job_id.clone();
    let mut current = fetch_one(&e, "c1").await?;
    for _ in 0..4 {
        assert_eq!(current.attempt, 1, "every postponed attempt was given back");
        let out = e
            .postpone(Q, "c1", &current, "database down", Duration::from_millis(1))
            .await?;
        assert!(matches!(out, FailOutcome::Postponed(_)), "{out:?}");
        current = refetch(&e, "c1").await?;
    }
    assert_eq!(current.attempt, 1);
    // The retries are all still there: an ordinary failure now retries, the next one is the last.
    let out = e.fail(Q, "c1", &current, "boom", true).await?;
    assert!(matches!(out, FailOutcome::Retry(_)), "{out:?}");
    let second = refetch(&e, "c1").await?;
    assert_eq!(second.attempt, 2);
    let out = e.fail(Q, "c1", &second, "boom again", true).await?;
    assert!(matches!(out, FailOutcome::Dead(_)), "{out:?}");
    let letters = e.dead_letters(Q, None, 10).await?;
    assert_eq!(letters.len(), 1);
    assert_eq!(
        (letters[0].job_id.as_str(), letters[0].attempts_made),
        (id.as_str(), 2)
    );
    Ok(())
}

#[tokio::test]
async fn a_stale_consumer_cannot_postpone_a_reclaimed_job() -> anyhow::Result<()> {
    let e = engine(&[("NCY_JOBS_VISIBILITY_TIMEOUT_MS", "100")]).await?;
    let id = e.enqueue(Q, &[job(0)]).await?[0].job_id.clone();
    let mine = fetch_one(&e, "c1").await?;
    // c1 stops heartbeating; after the visibility timeout c2 takes the job over (attempt 2).
    ncy_testkit::assert_eventually("reclaimed by c2", T, || async {
        e.reclaim(Q, "c2", 1)
            .await
            .map(|j| j.len() == 1)
            .unwrap_or(false)
    })
    .await;
    let out = e
        .postpone(Q, "c1", &mine, "SMTP server down", Duration::from_secs(60))
        .await?;
    assert_eq!(out, FailOutcome::Stale);
    let rec = e.get_job(&id).await?;
    assert_eq!(rec.state()?, JobState::Active, "c2 still runs it");
    assert_eq!(rec.get("worker"), "c2");
    assert_eq!(rec.num("attempts"), 2, "c1 gave nothing back");
    assert_eq!(rec.get("error"), "");
    assert_eq!(e.promote(Q).await?, (0, None), "nothing was scheduled");
    assert!(e.complete(Q, "c2", &id, "").await?);
    Ok(())
}
