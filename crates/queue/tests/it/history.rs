//! The queue history against a real Redis: completions and failed attempts are counted in memory
//! as the worker records them (a refused finish, a postponed attempt are not), a flush adds them
//! to the day hash of their minute with a TTL of 8 days, a flush that fails while Redis is down
//! keeps them for the next one (added once, not twice), and a read zero-fills every minute of its
//! window, ending with the current one.
use ncy_queue::{Engine, FailOutcome, Fetched, Finish, Finished, HistoryPoint, QueueError};
use ncy_testkit::RedisServer;
use ncy_types::jobs::QueueName;

use crate::support::{engine, job};

const Q: QueueName = QueueName::Report;
const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 24 * 60 * MINUTE_MS;

/// Sums of the completed and failed counts of `points`.
fn totals(points: &[HistoryPoint]) -> (u64, u64) {
    points
        .iter()
        .fold((0, 0), |(c, f), p| (c + p.completed, f + p.failed))
}

/// The points of `Q` over the last `minutes`.
async fn points(e: &Engine, minutes: u32) -> anyhow::Result<Vec<HistoryPoint>> {
    let mut history = e.history(&[Q], minutes).await?;
    anyhow::ensure!(history.len() == 1, "{history:?}");
    Ok(history.remove(0).points)
}

#[tokio::test]
async fn counts_survive_a_failed_flush_and_their_keys_expire_after_eight_days() -> anyhow::Result<()>
{
    let mut redis = RedisServer::start().await?;
    let e = engine(&[("REDIS_URL", &redis.url())]).await?;
    let started = ncy_queue::now_ms();
    e.enqueue(Q, &[job(0), job(0), job(0), job(0)]).await?;
    let jobs = match e.fetch(Q, "c1", 4, &[]).await? {
        Fetched::Jobs(jobs) if jobs.len() == 4 => jobs,
        other => anyhow::bail!("expected four jobs, got {other:?}"),
    };
    // Two complete in one batch; one attempt fails (retried); one is postponed (given back).
    let done = e
        .finish(
            Q,
            "c1",
            &[
                Finished {
                    job_id: &jobs[0].id,
                    outcome: Finish::Completed,
                    text: "",
                },
                Finished {
                    job_id: &jobs[1].id,
                    outcome: Finish::Completed,
                    text: "",
                },
            ],
        )
        .await?;
    assert_eq!(done, [true, true]);
    let failed = e.fail(Q, "c1", &jobs[2], "boom", true).await?;
    assert!(matches!(failed, FailOutcome::Retry(_)), "{failed:?}");
    let postponed = e
        .postpone(
            Q,
            "c1",
            &jobs[3],
            "smtp down",
            std::time::Duration::from_secs(60),
        )
        .await?;
    assert!(
        matches!(postponed, FailOutcome::Postponed(_)),
        "{postponed:?}"
    );
    // Finishing a job that is no longer ours is refused, and not counted.
    let refused = e.complete(Q, "c1", &jobs[2].id, "").await?;
    assert!(!refused, "the failed job is not ACTIVE for c1 any more");

    redis.stop();
    for _ in 0..2 {
        let err = e.flush_history().await.expect_err("redis is down");
        assert!(err.is_unavailable(), "{err}");
    }
    redis.resume().await?;
    assert_eq!(totals(&points(&e, 5).await?), (0, 0), "nothing added yet");

    assert!(e.flush_history().await? >= 1, "the kept counts are added");
    let seen = points(&e, 5).await?;
    assert_eq!(totals(&seen), (2, 1), "{seen:?}");
    assert!(
        seen.iter()
            .filter(|p| p.completed + p.failed > 0)
            .all(|p| p.minute_at_ms >= started - started % MINUTE_MS),
        "counted in the minute they finished: {seen:?}"
    );
    assert_eq!(e.flush_history().await?, 0, "nothing left to add");
    assert_eq!(totals(&points(&e, 5).await?), (2, 1), "added once");

    let mut conn = redis::Client::open(redis.url())?
        .get_multiplexed_async_connection()
        .await?;
    for p in seen.iter().filter(|p| p.completed + p.failed > 0) {
        let key = e.queue_keys(Q).history(p.minute_at_ms.div_euclid(DAY_MS));
        let ttl: i64 = redis::cmd("TTL").arg(&key).query_async(&mut conn).await?;
        assert!(
            ttl > 7 * 24 * 3600 && ttl <= ncy_queue::HISTORY_TTL_SECS,
            "{key} expires in {ttl} s"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_read_zero_fills_every_minute_up_to_the_current_one() -> anyhow::Result<()> {
    let e = engine(&[]).await?;
    for minutes in [1, 60, ncy_queue::MAX_HISTORY_MINUTES] {
        let before = ncy_queue::now_ms();
        let seen = points(&e, minutes).await?;
        let after = ncy_queue::now_ms();
        assert_eq!(seen.len(), usize::try_from(minutes)?);
        assert_eq!(totals(&seen), (0, 0));
        let last = seen.last().map(|p| p.minute_at_ms).unwrap_or_default();
        assert!(
            (before - before % MINUTE_MS..=after - after % MINUTE_MS).contains(&last),
            "the last point is the current minute: {last}"
        );
        assert!(
            seen.windows(2)
                .all(|w| w[1].minute_at_ms - w[0].minute_at_ms == MINUTE_MS),
            "one point per minute, oldest first"
        );
    }
    let all = e.history(&QueueName::ALL, 3).await?;
    let names: Vec<QueueName> = all.iter().map(|h| h.queue).collect();
    assert_eq!(names, QueueName::ALL);
    for bad in [0, ncy_queue::MAX_HISTORY_MINUTES + 1] {
        match e.history(&[Q], bad).await {
            Err(QueueError::Invalid(v)) => assert_eq!(v.field, "minutes"),
            other => anyhow::bail!("{bad} minutes: {other:?}"),
        }
    }
    Ok(())
}
