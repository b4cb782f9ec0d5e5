//! A blocking read whose reply the worker never got (its client gave up before the server's block
//! ended): Redis still delivers the next entry to that read, making it pending for the consumer.
//! The consumer's next fetch runs it, without waiting for another worker's reclaim after the
//! visibility timeout (ten minutes here, so a pass cannot come from a reclaim), and without
//! touching the consumer's running jobs.
use std::time::Duration;

use ncy_queue::{Engine, Fetched, JobState};
use ncy_testkit::assert_eventually;
use ncy_types::jobs::QueueName;
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;

use crate::support::{engine, job};

const Q: QueueName = QueueName::Notification;

async fn fetch(e: &Engine, consumer: &str, n: usize) -> anyhow::Result<Vec<String>> {
    match e.fetch(Q, consumer, n, &[]).await? {
        Fetched::Jobs(jobs) => Ok(jobs.into_iter().map(|j| j.id).collect()),
        other => anyhow::bail!("unexpected {other:?}"),
    }
}

/// How many entries of `queue` are pending for `consumer`, over every band.
async fn pending_of(
    e: &Engine,
    conn: &mut MultiplexedConnection,
    consumer: &str,
) -> anyhow::Result<usize> {
    let keys = e.queue_keys(Q);
    let mut n = 0;
    for band in 0..ncy_queue::BANDS {
        let entries: Vec<redis::Value> = redis::cmd("XPENDING")
            .arg(keys.ready(band))
            .arg(ncy_queue::GROUP)
            .arg("-")
            .arg("+")
            .arg(100)
            .arg(consumer)
            .query_async(conn)
            .await?;
        n += entries.len();
    }
    Ok(n)
}

async fn wait_for_pending(e: &Engine, consumer: &str, n: usize) {
    let url = ncy_testkit::redis_url();
    assert_eventually(
        "the late reply delivered the entry to the consumer",
        Duration::from_secs(10),
        || {
            let url = url.clone();
            async move {
                let Ok(client) = redis::Client::open(url) else {
                    return false;
                };
                let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
                    return false;
                };
                pending_of(e, &mut conn, consumer).await.ok() == Some(n)
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_delivered_to_a_read_whose_reply_was_lost_run_at_the_next_fetch()
-> anyhow::Result<()> {
    let e = engine(&[("NCY_JOBS_VISIBILITY_TIMEOUT_MS", "600000")]).await?;
    let client = redis::Client::open(ncy_testkit::redis_url())?;

    // c1 is running a job already: taking its lost entries must leave that one alone.
    let running = e.enqueue(Q, &[job(5)]).await?[0].job_id.clone();
    assert_eq!(fetch(&e, "c1", 1).await?, vec![running.clone()]);

    // 1. The reply times out on the client: a response timeout shorter than the server's block.
    let impatient =
        AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_millis(200)));
    let mut impatient = client
        .get_multiplexed_async_connection_with_config(&impatient)
        .await?;
    let read = e.wait_for_jobs(&mut impatient, Q, "c1", 600_000).await;
    assert!(read.is_err(), "the client gave up waiting: {read:?}");
    // The server still blocks for c1 and hands it the next job; nobody reads that reply.
    let late = e.enqueue(Q, &[job(3)]).await?[0].job_id.clone();
    wait_for_pending(&e, "c1", 2).await;
    assert_eq!(e.get_job(&late).await?.state()?, JobState::Waiting);
    assert_eq!(fetch(&e, "c1", 5).await?, vec![late.clone()]);
    let rec = e.get_job(&late).await?;
    assert_eq!(rec.state()?, JobState::Active);
    assert_eq!(rec.get("worker"), "c1");

    // 2. The read's future is dropped by the caller's own timeout (no response timeout at all).
    let patient = AsyncConnectionConfig::new().set_response_timeout(None);
    let mut patient = client
        .get_multiplexed_async_connection_with_config(&patient)
        .await?;
    let gave_up = tokio::time::timeout(
        Duration::from_millis(200),
        e.wait_for_jobs(&mut patient, Q, "c1", 600_000),
    )
    .await;
    assert!(gave_up.is_err(), "the caller gave up waiting");
    let later = e.enqueue(Q, &[job(7)]).await?[0].job_id.clone();
    wait_for_pending(&e, "c1", 3).await;
    // Another consumer's fetch does not see c1's entry; c1's next fetch runs it.
    assert!(fetch(&e, "c2", 5).await?.is_empty());
    assert_eq!(fetch(&e, "c1", 5).await?, vec![later.clone()]);
    assert!(fetch(&e, "c1", 5).await?.is_empty(), "each job runs once");

    // The running jobs were left alone: each one completes, its entry acknowledged.
    for id in [&running, &late, &later] {
        assert!(e.complete(Q, "c1", id, "").await?, "{id} still c1's");
        assert_eq!(e.get_job(id).await?.state()?, JobState::Completed);
    }
    let mut conn = client.get_multiplexed_async_connection().await?;
    assert_eq!(pending_of(&e, &mut conn, "c1").await?, 0);
    drop((impatient, patient));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_lost_entries_than_free_slots_run_over_the_next_fetches() -> anyhow::Result<()> {
    let e = engine(&[("NCY_JOBS_VISIBILITY_TIMEOUT_MS", "600000")]).await?;
    let client = redis::Client::open(ncy_testkit::redis_url())?;
    let patient = AsyncConnectionConfig::new().set_response_timeout(None);
    let mut patient = client
        .get_multiplexed_async_connection_with_config(&patient)
        .await?;
    // Three reads given up on; each leaves one entry pending for c1 (bands 4, 2, 0).
    let mut lost = Vec::new();
    for (i, priority) in [4u8, 2, 0].into_iter().enumerate() {
        let gave_up = tokio::time::timeout(
            Duration::from_millis(200),
            e.wait_for_jobs(&mut patient, Q, "c1", 600_000),
        )
        .await;
        assert!(gave_up.is_err());
        lost.push(e.enqueue(Q, &[job(priority)]).await?[0].job_id.clone());
        wait_for_pending(&e, "c1", i + 1).await;
    }
    // One free slot at a time: highest band first, then the next, then the last.
    let mut ran = Vec::new();
    for _ in 0..3 {
        let got = fetch(&e, "c1", 1).await?;
        assert_eq!(got.len(), 1, "{got:?}");
        ran.extend(got);
    }
    assert_eq!(ran, lost);
    assert!(fetch(&e, "c1", 5).await?.is_empty());
    Ok(())
}
