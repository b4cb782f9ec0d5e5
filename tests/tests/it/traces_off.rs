//! Without OpenTelemetry configured (as in this binary: no service here exports spans), a
//! `traceparent` on Enqueue or EnqueueBulk stores nothing with the job: its hash has no `trace`
//! field, so jobs cost what they cost before trace propagation. The traced path, with a real OTLP
//! receiver, is its own binary (`tests/tests/traces.rs`).
use std::collections::HashMap;
use std::time::Duration;

use crate::support::jobs::{StackEnv, job, redis, wait_state};
use crate::support::stop;
use ncy_proto::jobs::v1::{self as pb, JobState};
use redis::AsyncCommands;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_telemetry_a_traceparent_stores_nothing_with_the_job() -> anyhow::Result<()> {
    let env = StackEnv::new(&[]).await?;
    let (mut c, sched) = env.scheduler().await?;
    let noop = || job("notification", "noop", "{}");

    let mut one = tonic::Request::new(noop());
    one.metadata_mut()
        .insert("traceparent", TRACEPARENT.parse()?);
    let mut ids = vec![c.enqueue(one).await?.into_inner().job_id];
    let mut bulk = tonic::Request::new(pb::EnqueueBulkRequest {
        jobs: vec![noop(), noop()],
    });
    bulk.metadata_mut()
        .insert("traceparent", TRACEPARENT.parse()?);
    ids.extend(
        c.enqueue_bulk(bulk)
            .await?
            .into_inner()
            .results
            .into_iter()
            .map(|r| r.job_id),
    );

    let keys = env.keys()?.queue("notification");
    let mut conn = redis().await?;
    for id in &ids {
        let hash: HashMap<String, String> = conn.hgetall(keys.job(id)).await?;
        assert_eq!(hash.get("type").map(String::as_str), Some("noop"), "{id}");
        assert!(!hash.contains_key("trace"), "{id}: {hash:?}");
    }
    // And the job runs as any other.
    let work = env.worker().await?;
    wait_state(&c, &ids[0], JobState::Completed, Duration::from_secs(30)).await;
    stop(work).await?;
    stop(sched).await
}
