//! The job engine on a Redis Cluster of the test's own (three primaries): jobs of every queue run
//! (each queue's keys live on the node of its hash tag), each worker parks a blocking XREADGROUP on
//! its queue's node instead of polling, QueueHistory counts them (the worker's history flush and
//! the read of every queue go to each queue's node), and WatchJob streams a job's events to the end.

use std::time::Duration;

use crate::support::jobs::{StackEnv, enqueue, job, wait_state};
use crate::support::stop;
use futures_util::StreamExt;
use ncy_proto::jobs::v1::{self as pb, JobState};
use ncy_testkit::RedisCluster;

const T: Duration = Duration::from_secs(20);

/// Clients blocked in XREADGROUP on each node (`CLIENT LIST`: `flags=b … cmd=xreadgroup`).
async fn blocked_readers(cluster: &RedisCluster) -> anyhow::Result<Vec<usize>> {
    let mut out = Vec::new();
    for node in &cluster.nodes {
        let client = redis::Client::open(node.url())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut conn)
            .await?;
        out.push(
            list.lines()
                .filter(|l| l.contains("cmd=xreadgroup") && l.split(' ').any(|f| f == "flags=b"))
                .count(),
        );
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_run_block_and_stream_on_redis_cluster() -> anyhow::Result<()> {
    let cluster = RedisCluster::start(3).await?;
    let mut env = StackEnv::new(&[]).await?;
    env.set("REDIS_URL", &cluster.urls());
    env.set("NCY_REDIS_CLUSTER", "true");
    env.set("NCY_JOBS_HISTORY_FLUSH_MS", "200");
    let (mut c, sched) = env.scheduler().await?;
    let work = env.worker().await?;

    // Every queue: its job runs to completion.
    let mut ids = Vec::new();
    for queue in ["email", "notification", "report", "cleanup"] {
        ids.push(enqueue(&mut c, job(queue, "noop", "{}")).await?);
    }
    for id in &ids {
        wait_state(&c, id, JobState::Completed, T).await;
    }
    ncy_testkit::assert_eventually("one completed job per queue in QueueHistory", T, || {
        let mut c = c.clone();
        async move {
            let Ok(history) = c.queue_history(pb::QueueHistoryRequest::default()).await else {
                return false;
            };
            let queues = history.into_inner().queues;
            queues.len() == 4
                && queues.iter().all(|q| {
                    let completed: u64 = q.points.iter().map(|p| p.completed).sum();
                    let failed: u64 = q.points.iter().map(|p| p.failed).sum();
                    (completed, failed) == (1, 0)
                })
        }
    })
    .await;

    // Idle now: one blocked reader per queue, parked on the queues' nodes (no sleep-polling).
    ncy_testkit::assert_eventually("4 blocked XREADGROUP readers", T, || async {
        blocked_readers(&cluster)
            .await
            .is_ok_and(|per_node| per_node.iter().sum::<usize>() == 4)
    })
    .await;

    // WatchJob streams snapshot → progress → completion.
    let id = enqueue(&mut c, job("report", "sleep", r#"{"ms":300}"#)).await?;
    let mut events = c
        .watch_job(pb::WatchJobRequest { job_id: id.clone() })
        .await?
        .into_inner();
    let mut seen = Vec::new();
    while let Some(ev) = tokio::time::timeout(T, events.next()).await? {
        seen.push(ev?);
    }
    assert_eq!(seen[0].r#type(), pb::JobEventType::Snapshot);
    assert_eq!(
        seen.last().map(pb::JobEvent::state),
        Some(JobState::Completed),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|e| e.r#type() == pb::JobEventType::Progress),
        "progress is streamed: {seen:?}"
    );

    stop(work).await?;
    stop(sched).await
}
