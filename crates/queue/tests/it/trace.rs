//! The trace context kept with a job: stored (field `trace`) only when the job was enqueued under
//! one, by both enqueue paths (the plain transaction and the script), handed to the worker with
//! the job on every attempt, and absent — no field, nothing more in the fetch reply — otherwise.
use ncy_queue::{Engine, FailOutcome, Fetched, FetchedJob, NewJob};
use ncy_types::jobs::QueueName;

use crate::support::{engine, job};

const Q: QueueName = QueueName::Notification;
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

async fn fetch_all(e: &Engine, n: usize) -> anyhow::Result<Vec<FetchedJob>> {
    match e.fetch(Q, "c1", n, &[]).await? {
        Fetched::Jobs(j) => Ok(j),
        other => anyhow::bail!("unexpected {other:?}"),
    }
}

fn traced(mut j: NewJob) -> NewJob {
    j.trace = TRACEPARENT.to_owned();
    j
}

fn keyed(mut j: NewJob, key: &str) -> NewJob {
    j.idempotency_key = key.to_owned();
    j
}

#[tokio::test]
async fn a_trace_context_is_stored_and_fetched_only_when_given() -> anyhow::Result<()> {
    let e = engine(&[]).await?;
    // The plain path (no key, no delay), then the script path (an idempotency key).
    let plain = e.enqueue(Q, &[job(0), traced(job(0))]).await?;
    let script = e
        .enqueue(Q, &[keyed(job(0), "a"), traced(keyed(job(0), "b"))])
        .await?;
    let ids: Vec<&str> = plain
        .iter()
        .chain(&script)
        .map(|j| j.job_id.as_str())
        .collect();
    let expected = ["", TRACEPARENT, "", TRACEPARENT];
    for (id, want) in ids.iter().zip(expected) {
        let stored = e.get_job(id).await?;
        assert_eq!(
            stored.fields.get("trace").map(String::as_str),
            (!want.is_empty()).then_some(want),
            "job {id}: {:?}",
            stored.fields
        );
    }
    let fetched = fetch_all(&e, 4).await?;
    assert_eq!(fetched.len(), 4);
    for (id, want) in ids.iter().zip(expected) {
        let f = fetched
            .iter()
            .find(|f| f.id == *id)
            .ok_or_else(|| anyhow::anyhow!("{id} not fetched"))?;
        assert_eq!(f.trace, want, "job {id}");
    }
    Ok(())
}

#[tokio::test]
async fn every_attempt_gets_the_context_the_job_was_enqueued_under() -> anyhow::Result<()> {
    let e = engine(&[]).await?;
    let id = e.enqueue(Q, &[traced(job(0))]).await?[0].job_id.clone();
    let first = fetch_all(&e, 1).await?;
    assert_eq!(first[0].trace, TRACEPARENT);
    let out = e.fail(Q, "c1", &first[0], "boom", true).await?;
    assert!(matches!(out, FailOutcome::Retry(_)), "{out:?}");
    ncy_testkit::assert_eventually(
        "retry promoted",
        std::time::Duration::from_secs(5),
        || async { e.promote(Q).await.map(|(m, _)| m == 1).unwrap_or(false) },
    )
    .await;
    let second = fetch_all(&e, 1).await?;
    assert_eq!((second[0].id.as_str(), second[0].attempt), (id.as_str(), 2));
    assert_eq!(second[0].trace, TRACEPARENT, "the retry keeps the context");
    Ok(())
}
