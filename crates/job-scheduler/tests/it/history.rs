//! QueueHistory through gRPC against the real Redis, with this test playing the worker through
//! the engine it runs on (fetch, finish, fail, and the periodic history flush): the jobs completed
//! and the attempts failed show up in the minutes they finished, exactly once, every other minute
//! of the window is a point of zeros, the last point is the current minute, an empty `queue`
//! answers every queue, and bad requests are INVALID_ARGUMENT naming the field.
use std::time::Duration;

use ncy_proto::jobs::v1 as pb;
use ncy_queue::{Fetched, Finish, Finished, now_ms};
use ncy_testkit::{assert_eventually, unique_prefix};
use ncy_types::jobs::QueueName;
use tokio_util::sync::CancellationToken;
use tonic::Code;

use crate::support::{Client, start, worker_engine};

const QUEUE: &str = "notification";
const Q: QueueName = QueueName::Notification;
const MINUTE_MS: i64 = 60_000;
const T: Duration = Duration::from_secs(15);

fn job(job_type: &str, max_attempts: i32) -> pb::EnqueueRequest {
    pb::EnqueueRequest {
        queue: QUEUE.into(),
        job_type: job_type.into(),
        payload_json: if job_type == "fail" {
            r#"{"message":"boom"}"#.into()
        } else {
            "{}".into()
        },
        attempts: max_attempts,
        // A retry waits an hour: nothing runs twice during the test.
        backoff: Some(pb::Backoff {
            r#type: pb::BackoffType::Fixed as i32,
            delay_ms: 3_600_000,
        }),
        ..Default::default()
    }
}

async fn history(
    c: &mut Client,
    queue: &str,
    minutes: i32,
) -> Result<pb::QueueHistoryResponse, tonic::Status> {
    Ok(c.queue_history(pb::QueueHistoryRequest {
        queue: queue.into(),
        minutes,
    })
    .await?
    .into_inner())
}

fn totals(points: &[pb::HistoryPoint]) -> (u64, u64) {
    points
        .iter()
        .fold((0, 0), |(c, f), p| (c + p.completed, f + p.failed))
}

fn minute_of(ms: i64) -> i64 {
    ms - ms.rem_euclid(MINUTE_MS)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_counts_what_workers_finished_per_minute() -> anyhow::Result<()> {
    let prefix = unique_prefix();
    let (mut c, running) = start(&prefix, &[]).await?;
    let w = worker_engine(&prefix).await?;
    let started = now_ms();
    // Three complete; one fails with a retry left; one fails its only attempt and goes DEAD.
    for req in [
        job("noop", 3),
        job("noop", 3),
        job("noop", 3),
        job("fail", 2),
        job("fail", 1),
    ] {
        c.enqueue(req).await?;
    }
    let jobs = match w.fetch(Q, "w1", 10, &[]).await? {
        Fetched::Jobs(jobs) if jobs.len() == 5 => jobs,
        other => anyhow::bail!("expected five jobs, got {other:?}"),
    };
    let (fails, noops): (Vec<_>, Vec<_>) = jobs.iter().partition(|j| j.job_type == "fail");
    let finished: Vec<Finished<'_>> = noops
        .iter()
        .map(|j| Finished {
            job_id: &j.id,
            outcome: Finish::Completed,
            text: "",
        })
        .collect();
    assert_eq!(w.finish(Q, "w1", &finished).await?, [true, true, true]);
    let mut outcomes = Vec::new();
    for j in &fails {
        outcomes.push(w.fail(Q, "w1", j, "boom", true).await?);
    }
    assert!(
        matches!(
            outcomes.as_slice(),
            [
                ncy_queue::FailOutcome::Retry(_),
                ncy_queue::FailOutcome::Dead(_)
            ] | [
                ncy_queue::FailOutcome::Dead(_),
                ncy_queue::FailOutcome::Retry(_)
            ]
        ),
        "{outcomes:?}"
    );
    // Nothing reaches Redis before the worker's flush.
    assert_eq!(
        totals(&history(&mut c, QUEUE, 0).await?.queues[0].points),
        (0, 0)
    );

    let stop = CancellationToken::new();
    let flusher = {
        let (w, stop) = (w.clone(), stop.clone());
        tokio::spawn(async move {
            w.flush_history_every(Duration::from_millis(100), stop)
                .await
        })
    };
    assert_eventually("the flushed counts in QueueHistory", T, || {
        let mut c = c.clone();
        async move {
            history(&mut c, QUEUE, 0)
                .await
                .is_ok_and(|h| totals(&h.queues[0].points) == (3, 2))
        }
    })
    .await;
    let before = now_ms();
    let answer = history(&mut c, QUEUE, 0).await?;
    let after = now_ms();
    assert_eq!(answer.queues.len(), 1);
    let series = &answer.queues[0];
    assert_eq!(series.queue, QUEUE);
    assert_eq!(series.points.len(), 60, "0 minutes means the last hour");
    let last = series.points.last().map_or(0, |p| p.minute_at_ms);
    assert!(
        (minute_of(before)..=minute_of(after)).contains(&last),
        "the last point is the current minute"
    );
    assert!(
        series
            .points
            .windows(2)
            .all(|w| w[1].minute_at_ms - w[0].minute_at_ms == MINUTE_MS),
        "one point per minute, oldest first"
    );
    // Counted once, in the minutes the test ran; every earlier minute is a point of zeros.
    assert_eq!(totals(&series.points), (3, 2));
    assert!(
        series
            .points
            .iter()
            .filter(|p| p.minute_at_ms < minute_of(started))
            .all(|p| p.completed == 0 && p.failed == 0),
        "{series:?}"
    );
    if minute_of(started) == minute_of(after) {
        let current = &series.points[59];
        assert_eq!((current.completed, current.failed), (3, 2));
    }
    // Later flushes add nothing more.
    w.flush_history().await?;
    assert_eq!(
        totals(&history(&mut c, QUEUE, 0).await?.queues[0].points),
        (3, 2)
    );

    // An empty queue: every configured queue, in order, each over the same window.
    let all = history(&mut c, "", 5).await?;
    let names: Vec<&str> = all.queues.iter().map(|s| s.queue.as_str()).collect();
    assert_eq!(names, ["email", "notification", "report", "cleanup"]);
    for s in &all.queues {
        assert_eq!(s.points.len(), 5, "{}", s.queue);
        let want = if s.queue == QUEUE { (3, 2) } else { (0, 0) };
        assert_eq!(totals(&s.points), want, "{}", s.queue);
    }

    stop.cancel();
    flusher.await?;
    running
        .stop(Duration::from_secs(10))
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(())
}

#[tokio::test]
async fn bad_history_requests_name_the_field() -> anyhow::Result<()> {
    let (mut c, running) = start(&unique_prefix(), &[]).await?;
    for (queue, minutes, field) in [
        (QUEUE, -1, "minutes"),
        (QUEUE, 10_081, "minutes"),
        ("", i32::MIN, "minutes"),
        ("nope", 0, "queue"),
    ] {
        match history(&mut c, queue, minutes).await {
            Err(s) => assert!(
                s.code() == Code::InvalidArgument && s.message().starts_with(&format!("{field}:")),
                "{queue:?} {minutes}: {s:?}"
            ),
            Ok(h) => anyhow::bail!("{queue:?} {minutes} answered {h:?}"),
        }
    }
    // The longest window: a week of minutes, all zeros.
    let week = history(&mut c, QUEUE, 10_080).await?;
    assert_eq!(week.queues[0].points.len(), 10_080);
    assert_eq!(totals(&week.queues[0].points), (0, 0));
    running
        .stop(Duration::from_secs(10))
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(())
}
