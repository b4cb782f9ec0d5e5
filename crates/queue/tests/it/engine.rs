//! The engine's Lua transitions against the real Redis: enqueue → fetch → complete, priority order,
//! retry then dead letter, cancel, pause, reclaim of an abandoned job.
use ncy_queue::{Engine, FailOutcome, Fetched, Finish, Finished, JobState};
use ncy_types::jobs::QueueName;

use crate::support::{engine, job};

async fn fetch(e: &Engine, n: usize) -> anyhow::Result<Vec<ncy_queue::FetchedJob>> {
    match e.fetch(QueueName::Notification, "c1", n, &[]).await? {
        Fetched::Jobs(j) => Ok(j),
        other => anyhow::bail!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn enqueue_fetch_complete_in_priority_order() -> anyhow::Result<()> {
    let e = engine(&[]).await?;
    let q = QueueName::Notification;
    let low = e.enqueue(q, &[job(0), job(0)]).await?;
    let high = e.enqueue(q, &[job(10)]).await?;
    assert_eq!(low[0].state, Some(JobState::Waiting));
    let got = fetch(&e, 2).await?;
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].id, high[0].job_id, "priority 10 first");
    assert_eq!(got[1].id, low[0].job_id, "then FIFO");
    assert!(e.complete(q, "c1", &got[0].id, "{\"ok\":true}").await?);
    assert!(
        !e.complete(q, "other", &got[1].id, "").await?,
        "only the holder completes"
    );
    let rec = e.get_job(&got[0].id).await?;
    assert_eq!(rec.state()?, JobState::Completed);
    assert_eq!(rec.get("result"), "{\"ok\":true}");
    Ok(())
}

#[tokio::test]
async fn failures_retry_then_dead_letter_and_retry_dead_letter() -> anyhow::Result<()> {
    let e = engine(&[]).await?;
    let q = QueueName::Notification;
    let id = e.enqueue(q, &[job(3)]).await?[0].job_id.clone();
    let first = fetch(&e, 1).await?;
    let out = e.fail(q, "c1", &first[0], "boom", true).await?;
    assert!(matches!(out, FailOutcome::Retry(_)), "{out:?}");
    assert_eq!(e.get_job(&id).await?.state()?, JobState::Failed);
    // Wait for the 1 ms backoff, then promote.
    ncy_testkit::assert_eventually(
        "retry promoted",
        std::time::Duration::from_secs(5),
        || async { e.promote(q).await.map(|(m, _)| m == 1).unwrap_or(false) },
    )
    .await;
    let second = fetch(&e, 1).await?;
    assert_eq!(second[0].attempt, 2);
    let out = e.fail(q, "c1", &second[0], "boom again", true).await?;
    let FailOutcome::Dead(dead_id) = out else {
        anyhow::bail!("{out:?}")
    };
    assert_eq!(e.get_job(&id).await?.state()?, JobState::Dead);
    let letters = e.dead_letters(q, None, 10).await?;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].id, dead_id);
    assert_eq!(letters[0].error, "boom again");
    assert_eq!(letters[0].attempts_made, 2);
    let new_id = e.retry_dead_letter(&dead_id).await?;
    let rec = e.get_job(&new_id).await?;
    assert_eq!(rec.get("priority"), "10");
    assert_eq!(rec.get("max_attempts"), "1");
    assert!(e.dead_letters(q, None, 10).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn cancel_pause_and_reclaim() -> anyhow::Result<()> {
    let e = engine(&[("NCY_JOBS_VISIBILITY_TIMEOUT_MS", "100")]).await?;
    let q = QueueName::Notification;
    let a = e.enqueue(q, &[job(1)]).await?[0].job_id.clone();
    e.cancel_job(&a, "no").await?;
    assert_eq!(e.get_job(&a).await?.state()?, JobState::Cancelled);
    assert!(fetch(&e, 5).await?.is_empty(), "cancelled never runs");
    assert!(e.pause(q).await?);
    e.enqueue(q, &[job(1)]).await?;
    assert!(matches!(e.fetch(q, "c1", 1, &[]).await?, Fetched::Paused));
    assert!(e.resume(q).await?);
    let got = fetch(&e, 1).await?;
    assert_eq!(got.len(), 1);
    // c1 "dies": after the visibility timeout c2 takes the job over.
    ncy_testkit::assert_eventually("reclaimed", std::time::Duration::from_secs(5), || async {
        e.reclaim(q, "c2", 5)
            .await
            .map(|j| j.len() == 1)
            .unwrap_or(false)
    })
    .await;
    let rec = e.get_job(&got[0].id).await?;
    assert_eq!(rec.get("worker"), "c2");
    assert!(
        !e.complete(q, "c1", &got[0].id, "").await?,
        "the dead worker's late outcome is dropped"
    );
    assert!(e.complete(q, "c2", &got[0].id, "").await?);
    Ok(())
}

#[tokio::test]
async fn purge_finished_deletes_old_records_and_dead_letters_in_batches() -> anyhow::Result<()> {
    let e = engine(&[]).await?;
    let q = QueueName::Notification;
    let k = e.queue_keys(q);
    let mut redis = redis::Client::open(ncy_testkit::redis_url())?
        .get_multiplexed_async_connection()
        .await?;
    let now = ncy_queue::now_ms();
    let old = now - 10 * 86_400_000;
    // An old dead letter (stream ids are ms: it must come before the job that dies below).
    let _: String = redis::cmd("XADD")
        .arg(k.dead())
        .arg(format!("{old}-0"))
        .arg("jobId")
        .arg("old")
        .query_async(&mut redis)
        .await?;
    // Three finished jobs through the engine: completed, dead, cancelled; then a recent one of each.
    let ids: Vec<String> = e
        .enqueue(q, &[job(1), job(1), job(1), job(1)])
        .await?
        .into_iter()
        .map(|j| j.job_id)
        .collect();
    let got = fetch(&e, 3).await?;
    assert!(e.complete(q, "c1", &got[0].id, "").await?);
    assert!(e.complete(q, "c1", &got[2].id, "").await?);
    let out = e.fail(q, "c1", &got[1], "boom", false).await?;
    assert!(matches!(out, FailOutcome::Dead(_)), "{out:?}");
    e.cancel_job(&ids[3], "no").await?;
    // Age three of them (one per set); got[2] stays recent.
    for (set, id) in [
        (k.done(), &got[0].id),
        (k.failed(), &got[1].id),
        (k.cancelled(), &ids[3]),
    ] {
        let _: i64 = redis::cmd("ZADD")
            .arg(set)
            .arg("XX")
            .arg(old)
            .arg(id)
            .query_async(&mut redis)
            .await?;
    }
    // More old completed records than one script call takes (500), hash and set entry each.
    for i in 0..1_203 {
        let id = format!("bulk-{i}");
        let _: () = redis::pipe()
            .hset(k.job(&id), "state", "completed")
            .ignore()
            .zadd(k.done(), &id, old - i)
            .ignore()
            .query_async(&mut redis)
            .await?;
    }

    let cutoff = now - 86_400_000;
    let purged = e.purge_finished(q, cutoff).await?;
    assert_eq!(
        purged,
        ncy_queue::PurgeCounts {
            jobs: 3 + 1_203,
            dead_letters: 1
        }
    );
    for id in [&got[0].id, &got[1].id, &ids[3]] {
        let exists: bool = redis::cmd("EXISTS")
            .arg(k.job(id))
            .query_async(&mut redis)
            .await?;
        assert!(!exists, "{id} deleted");
    }
    assert!(e.get_job(&got[2].id).await.is_ok(), "recent job stays");
    let done: Vec<String> = redis::cmd("ZRANGE")
        .arg(k.done())
        .arg(0)
        .arg(-1)
        .query_async(&mut redis)
        .await?;
    assert_eq!(done, [got[2].id.clone()]);
    let left = e.dead_letters(q, None, 10).await?;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].job_id, got[1].id, "the recent dead letter stays");
    assert_eq!(
        e.purge_finished(q, cutoff).await?,
        ncy_queue::PurgeCounts::default()
    );
    Ok(())
}

fn finished<'a>(job_id: &'a str, outcome: Finish, text: &'a str) -> Finished<'a> {
    Finished {
        job_id,
        outcome,
        text,
    }
}

#[tokio::test]
async fn a_batch_of_outcomes_is_recorded_in_one_call_and_only_the_holders_count()
-> anyhow::Result<()> {
    let e = engine(&[]).await?;
    let q = QueueName::Notification;
    e.enqueue(q, &[job(0), job(0), job(5), job(0)]).await?;
    let got = fetch(&e, 4).await?;
    assert_eq!(got.len(), 4);
    let (a, b, c, d) = (&got[0].id, &got[1].id, &got[2].id, &got[3].id);
    let done = e
        .finish(
            q,
            "c1",
            &[
                finished(a, Finish::Completed, "{\"n\":1}"),
                finished(b, Finish::Cancelled, "stopped by CancelJob"),
                finished(a, Finish::Completed, "{\"n\":2}"),
                finished(c, Finish::Completed, ""),
            ],
        )
        .await?;
    assert_eq!(
        done,
        vec![true, true, false, true],
        "a job is finished once; the repeat is not ours any more"
    );
    let ra = e.get_job(a).await?;
    assert_eq!(ra.state()?, JobState::Completed);
    assert_eq!(ra.get("result"), "{\"n\":1}", "the first outcome stands");
    let rb = e.get_job(b).await?;
    assert_eq!(rb.state()?, JobState::Cancelled);
    assert_eq!(rb.get("error"), "cancelled: stopped by CancelJob");
    assert_eq!(e.get_job(c).await?.state()?, JobState::Completed);
    assert_eq!(
        e.finish(q, "c2", &[finished(d, Finish::Completed, "")])
            .await?,
        vec![false],
        "another consumer cannot finish d"
    );
    let stats = e.stats(q).await?;
    assert_eq!((stats.waiting, stats.active), (0, 1), "{stats:?}");
    assert_eq!((stats.completed, stats.cancelled), (2, 1), "{stats:?}");
    // ACTIVE jobs are the consumer group's pending entries: d only, listed page by page.
    let page = e.list_jobs(q, JobState::Active, 1, None).await?;
    let ids: Vec<&str> = page.jobs.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, vec![d.as_str()]);
    assert_eq!(page.jobs[0].get("worker"), "c1");
    assert!(page.next.is_none(), "d is the last ACTIVE job: {page:?}");
    // The finished jobs' stream entries are acknowledged and deleted: only d's is left.
    let mut conn = redis::Client::open(ncy_testkit::redis_url())?
        .get_multiplexed_async_connection()
        .await?;
    let keys = e.queue_keys(q);
    let mut left = 0u64;
    for band in 0..ncy_queue::BANDS {
        let n: u64 = redis::cmd("XLEN")
            .arg(keys.ready(band))
            .query_async(&mut conn)
            .await?;
        left += n;
    }
    assert_eq!(left, 1);
    assert!(e.finish(q, "c1", &[]).await?.is_empty());
    Ok(())
}

/// Jobs with no idempotency key and no delay are enqueued without a script (MULTI/EXEC, no entry id
/// on the hash). A waiting one that is cancelled leaves its entry in the band: QueueStats does not
/// count it as waiting, listing skips it, and the next fetch drops it without running it.
#[tokio::test]
async fn a_cancelled_job_enqueued_without_a_script_is_neither_waiting_nor_run() -> anyhow::Result<()>
{
    let e = engine(&[]).await?;
    let q = QueueName::Notification;
    let ids: Vec<String> = e
        .enqueue(q, &[job(3), job(3), job(3)])
        .await?
        .into_iter()
        .map(|r| r.job_id)
        .collect();
    assert_eq!(e.get_job(&ids[0]).await?.get("entry"), "", "plain enqueue");
    e.pause(q).await?;
    e.cancel_job(&ids[1], "not needed").await?;
    assert_eq!(e.get_job(&ids[1]).await?.state()?, JobState::Cancelled);
    let stats = e.stats(q).await?;
    assert_eq!((stats.waiting, stats.cancelled), (2, 1), "{stats:?}");
    let page = e.list_jobs(q, JobState::Waiting, 1, None).await?;
    assert_eq!(page.jobs[0].id, ids[0]);
    let next = e.list_jobs(q, JobState::Waiting, 5, page.next).await?;
    let rest: Vec<&str> = next.jobs.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(
        rest,
        vec![ids[2].as_str()],
        "the cancelled job is not listed"
    );
    e.resume(q).await?;
    let got: Vec<String> = fetch(&e, 10).await?.into_iter().map(|j| j.id).collect();
    assert_eq!(got, vec![ids[0].clone(), ids[2].clone()]);
    let fetched = e.get_job(&ids[0]).await?;
    assert!(
        !fetched.get("entry").is_empty(),
        "activation records the entry"
    );
    let stats = e.stats(q).await?;
    assert_eq!((stats.waiting, stats.active), (0, 2), "{stats:?}");
    let mut conn = redis::Client::open(ncy_testkit::redis_url())?
        .get_multiplexed_async_connection()
        .await?;
    let ghosts: u64 = redis::cmd("SCARD")
        .arg(e.queue_keys(q).ghosts())
        .query_async(&mut conn)
        .await?;
    assert_eq!(ghosts, 0, "the passed entry is forgotten");
    Ok(())
}

#[tokio::test]
async fn outcome_events_in_the_stream_are_json_with_every_field() -> anyhow::Result<()> {
    let e = engine(&[]).await?;
    let q = QueueName::Notification;
    let mut owned = job(4);
    owned.owner_user_id = "7d0e4c1a-0000-4000-8000-000000000001".into();
    let ids: Vec<String> = e
        .enqueue(q, &[owned, job(4)])
        .await?
        .into_iter()
        .map(|j| j.job_id)
        .collect();
    let got = fetch(&e, 2).await?;
    assert_eq!(got.len(), 2);
    assert_eq!(
        e.progress(q, "c1", &ids[0], 40, "half \"way\"").await?,
        Some(false)
    );
    // Text that needs escaping: quotes, a backslash, a newline, a non-ASCII character.
    let result = "{\"said\":\"a \\\"b\\\" \\\\ c\\nd é\"}";
    let reason = "stop \"now\"\nplease";
    let flags = e
        .finish(
            q,
            "c1",
            &[
                finished(&ids[0], Finish::Completed, result),
                finished(&ids[1], Finish::Cancelled, reason),
            ],
        )
        .await?;
    assert_eq!(flags, vec![true, true]);
    let mut conn = redis::Client::open(ncy_testkit::redis_url())?
        .get_multiplexed_async_connection()
        .await?;
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(e.queue_keys(q).events())
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await?;
    let events: Vec<ncy_queue::JobEventMessage> = entries
        .iter()
        .map(|(_, fields)| serde_json::from_str(&fields[0].1))
        .collect::<Result<_, _>>()?;
    let done = events
        .iter()
        .find(|ev| ev.job_id == ids[0] && ev.state == "completed")
        .ok_or_else(|| anyhow::anyhow!("no completion event in {events:?}"))?;
    assert_eq!(done.kind, "state_changed");
    assert_eq!(done.queue, "notification");
    assert_eq!(done.result_json, result);
    assert_eq!(done.progress, 40);
    assert_eq!(done.attempts_made, 1);
    assert_eq!(done.owner_user_id, "7d0e4c1a-0000-4000-8000-000000000001");
    let rec = e.get_job(&ids[0]).await?;
    assert_eq!(done.at_ms.to_string(), rec.get("finished"));
    assert_eq!(done.due_at_ms.to_string(), rec.get("due"));
    let stopped = events
        .iter()
        .find(|ev| ev.job_id == ids[1] && ev.state == "cancelled")
        .ok_or_else(|| anyhow::anyhow!("no cancellation event in {events:?}"))?;
    assert_eq!(stopped.message, reason);
    assert_eq!(stopped.result_json, "");
    assert_eq!(stopped.owner_user_id, "");
    Ok(())
}

/// QueueStats' oldest WAITING time counts only jobs not yet handed out: an ACTIVE job's older
/// entry, still in its band until it finishes, is not a waiting one.
#[tokio::test]
async fn the_oldest_waiting_time_ignores_active_jobs() -> anyhow::Result<()> {
    let e = engine(&[]).await?;
    let q = QueueName::Notification;
    assert_eq!(
        e.stats(q).await?.oldest_waiting_at_ms,
        0,
        "nothing enqueued"
    );
    let before = ncy_queue::now_ms();
    e.enqueue(q, &[job(0), job(5)]).await?;
    let stats = e.stats(q).await?;
    assert_eq!(stats.waiting, 2);
    assert!(
        stats.oldest_waiting_at_ms >= before - 1000 && stats.oldest_waiting_at_ms > 0,
        "{stats:?}"
    );
    assert_eq!(fetch(&e, 2).await?.len(), 2);
    let stats = e.stats(q).await?;
    assert_eq!((stats.waiting, stats.active), (0, 2), "{stats:?}");
    assert_eq!(
        stats.oldest_waiting_at_ms, 0,
        "the active jobs' entries are not waiting"
    );
    e.enqueue(q, &[job(0)]).await?;
    let stats = e.stats(q).await?;
    assert_eq!(stats.waiting, 1);
    assert!(stats.oldest_waiting_at_ms > 0, "{stats:?}");
    Ok(())
}
