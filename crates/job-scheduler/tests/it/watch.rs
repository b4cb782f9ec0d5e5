//! WatchJob's failure paths through gRPC: a watcher that stops reading is dropped with
//! RESOURCE_EXHAUSTED while the other watchers of its queue go on, a lost Redis connection ends
//! every watch with UNAVAILABLE, after which a new watch works again, and so does the scheduler's
//! drain, without waiting for the grace period.
use std::time::Duration;

use futures_util::StreamExt;
use ncy_proto::jobs::v1::{self as pb, job_service_client::JobServiceClient};
use ncy_queue::JobEventMessage;
use ncy_testkit::{RedisServer, unique_prefix};
use tonic::Code;

use crate::support::{Client, start, start_at};

const T: Duration = Duration::from_secs(20);
const QUEUE: &str = "notification";

async fn enqueue(c: &mut Client) -> anyhow::Result<String> {
    let req = pb::EnqueueRequest {
        queue: QUEUE.into(),
        job_type: "noop".into(),
        payload_json: "{}".into(),
        ..Default::default()
    };
    Ok(c.enqueue(req).await?.into_inner().job_id)
}

/// Opens a watch and checks that its first message is the job's snapshot.
async fn watch(c: &mut Client, id: &str) -> anyhow::Result<tonic::Streaming<pb::JobEvent>> {
    let mut events = c
        .watch_job(pb::WatchJobRequest {
            job_id: id.to_owned(),
        })
        .await?
        .into_inner();
    let first = tokio::time::timeout(T, events.next())
        .await?
        .ok_or_else(|| anyhow::anyhow!("the watch ended before its snapshot"))??;
    anyhow::ensure!(first.r#type() == pb::JobEventType::Snapshot, "{first:?}");
    Ok(events)
}

/// Publishes events on the queue's live channel, as the job scripts do.
async fn publish(redis_url: &str, prefix: &str, events: &[JobEventMessage]) -> anyhow::Result<()> {
    let channel = ncy_types::KeySpace::new(prefix)?
        .queue(QUEUE)
        .events_channel();
    let mut redis = redis::Client::open(redis_url)?
        .get_multiplexed_async_connection()
        .await?;
    let mut pipe = redis::pipe();
    for ev in events {
        pipe.cmd("PUBLISH")
            .arg(&channel)
            .arg(serde_json::to_string(ev)?)
            .ignore();
    }
    pipe.query_async::<()>(&mut redis).await?;
    Ok(())
}

fn progress(job_id: &str, n: i64) -> JobEventMessage {
    JobEventMessage {
        job_id: job_id.to_owned(),
        queue: QUEUE.into(),
        kind: "progress".into(),
        state: "active".into(),
        progress: n % 101,
        at_ms: ncy_queue::now_ms(),
        message: String::new(),
        attempts_made: 1,
        result_json: String::new(),
        due_at_ms: 0,
        owner_user_id: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_stops_reading_is_dropped_and_the_others_go_on() -> anyhow::Result<()> {
    let (url, prefix) = (ncy_testkit::redis_url(), unique_prefix());
    let (mut c, running, addr) = start_at(&prefix, &[]).await?;
    let (slow_job, fast_job) = (enqueue(&mut c).await?, enqueue(&mut c).await?);
    // The slow watcher has its own connection with a small HTTP/2 window, so the events it does not
    // read back up into the scheduler after a few instead of filling megabytes of client buffers.
    let small = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .initial_stream_window_size(Some(1024))
        .connect()
        .await?;
    let mut slow = watch(&mut JobServiceClient::new(small), &slow_job).await?;
    let mut fast = watch(&mut c, &fast_job).await?;

    let flood: Vec<_> = (1..=1000).map(|n| progress(&slow_job, n)).collect();
    publish(&url, &prefix, &flood).await?;
    let mut done = progress(&fast_job, 100);
    done.kind = "state_changed".into();
    done.state = "completed".into();
    publish(&url, &prefix, &[progress(&fast_job, 40), done]).await?;

    // The other watcher of the queue still gets its events, to the end.
    let mut seen = Vec::new();
    while let Some(ev) = tokio::time::timeout(T, fast.next()).await? {
        seen.push(ev?);
    }
    let kinds: Vec<_> = seen.iter().map(|e| (e.r#type(), e.progress)).collect();
    assert_eq!(
        kinds,
        [
            (pb::JobEventType::Progress, 40),
            (pb::JobEventType::StateChanged, 100)
        ]
    );
    assert_eq!(seen[1].state(), pb::JobState::Completed);

    // The slow one gets what was buffered for it, in order, then RESOURCE_EXHAUSTED.
    let mut delivered: i32 = 0;
    let status = loop {
        match tokio::time::timeout(T, slow.next()).await? {
            Some(Ok(ev)) => {
                delivered += 1;
                assert_eq!(ev.progress, delivered % 101, "in order, none skipped");
            }
            Some(Err(status)) => break status,
            None => anyhow::bail!("the slow watch ended without an error"),
        }
    };
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        delivered < 1000,
        "{delivered} events reached the slow watcher"
    );
    running.stop(T).await.map_err(anyhow::Error::msg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_redis_connection_ends_the_watch_with_unavailable_then_watching_works_again()
-> anyhow::Result<()> {
    let mut redis = RedisServer::start().await?;
    let prefix = unique_prefix();
    let (mut c, running) = start(&prefix, &[("REDIS_URL", &redis.url())]).await?;
    let id = enqueue(&mut c).await?;
    let mut events = watch(&mut c, &id).await?;
    redis.stop();
    let status = match tokio::time::timeout(T, events.next()).await? {
        Some(Err(status)) => status,
        other => anyhow::bail!("expected an error, got {other:?}"),
    };
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(tokio::time::timeout(T, events.next()).await?.is_none());

    // Redis is back (empty: no persistence). The first command on a pooled connection may fail
    // once after the restart, as for any client; then a new watch opens a new feed and gets events.
    redis.resume().await?;
    let deadline = tokio::time::Instant::now() + T;
    let id = loop {
        match enqueue(&mut c).await {
            Ok(id) => break id,
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(e.context("enqueue never worked after the restart"));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let mut events = watch(&mut c, &id).await?;
    publish(&redis.url(), &prefix, &[progress(&id, 7)]).await?;
    let ev = tokio::time::timeout(T, events.next())
        .await?
        .ok_or_else(|| anyhow::anyhow!("no event after the restart"))??;
    assert_eq!((ev.r#type(), ev.progress), (pb::JobEventType::Progress, 7));
    running.stop(T).await.map_err(anyhow::Error::msg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_ends_open_watches_with_unavailable_instead_of_waiting_out_the_grace_period()
-> anyhow::Result<()> {
    let prefix = unique_prefix();
    // A grace period far longer than the stop below waits: an open watch that held the drain up
    // would make the stop time out.
    let (mut c, running) = start(&prefix, &[("NCY_SHUTDOWN_GRACE_SECS", "120")]).await?;
    let id = enqueue(&mut c).await?;
    let mut events = watch(&mut c, &id).await?;
    let stopped = tokio::spawn(running.stop(T));
    let status = match tokio::time::timeout(T, events.next()).await? {
        Some(Err(status)) => status,
        other => anyhow::bail!("expected an error, got {other:?}"),
    };
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    stopped.await?.map_err(anyhow::Error::msg)
}
