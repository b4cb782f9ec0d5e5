//! `ncyctl queues history` run as a process against a job-scheduler and a real worker running in
//! this process: jobs the worker ran (completed, and a failed attempt that went DEAD) appear once
//! the worker has sent its counts, here at its drain (the periodic flush is set to a minute, so
//! the drain is what sends them); `--json` prints the QueueHistory response, text the totals and
//! the minutes in which something finished, and a bad window is the scheduler's invalid argument.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use ncy_testkit::{assert_eventually, set_env};

use crate::support::{Stack, ctl, json};

const T: Duration = Duration::from_secs(20);

/// The (completed, failed) sums of one series of a `--json` answer.
fn totals(series: &serde_json::Value) -> (u64, u64) {
    series["points"]
        .as_array()
        .unwrap()
        .iter()
        .fold((0, 0), |(c, f), p| {
            (
                c + p["completed"].as_u64().unwrap(),
                f + p["failed"].as_u64().unwrap(),
            )
        })
}

async fn enqueue(url: &str, job_type: &str, payload: &str, attempts: &str) -> String {
    ctl(
        url,
        &[
            "jobs",
            "enqueue",
            "--queue",
            "notification",
            "--type",
            job_type,
            "--payload",
            payload,
            "--attempts",
            attempts,
        ],
    )
    .await
    .ok()
    .trim()
    .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_history_shows_what_the_worker_ran() {
    let mut stack = Stack::new().await;
    set_env(&mut stack.env, "NCY_JOBS_HISTORY_FLUSH_MS", "60000");
    let sched = stack.scheduler().await;
    let work = stack.worker().await;
    let url = sched.url.as_str();

    let mut ids = vec![
        (enqueue(url, "noop", "{}", "0").await, "JOB_STATE_COMPLETED"),
        (enqueue(url, "noop", "{}", "0").await, "JOB_STATE_COMPLETED"),
    ];
    ids.push((
        enqueue(url, "fail", r#"{"message":"boom"}"#, "1").await,
        "JOB_STATE_DEAD",
    ));
    for (id, state) in &ids {
        assert_eventually(&format!("{id} {state}"), T, || async {
            json(url, &["jobs", "get", id]).await["state"] == *state
        })
        .await;
    }
    // The worker has not sent its counts yet (its next flush is a minute away).
    let before = json(url, &["queues", "history", "notification"]).await;
    assert_eq!(totals(&before["queues"][0]), (0, 0), "{before}");

    work.stop().await;
    let answer = ctl(
        url,
        &[
            "queues",
            "history",
            "notification",
            "--minutes",
            "5",
            "--json",
        ],
    )
    .await
    .json();
    let series = answer["queues"].as_array().unwrap();
    assert_eq!(series.len(), 1, "{answer}");
    assert_eq!(series[0]["queue"], "notification");
    assert_eq!(series[0]["points"].as_array().unwrap().len(), 5);
    assert_eq!(totals(&series[0]), (2, 1), "sent at the drain: {answer}");

    // Every queue without one named; the default window is the last hour.
    let all = json(url, &["queues", "history"]).await;
    let names: Vec<&str> = all["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["queue"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["email", "notification", "report", "cleanup"]);
    assert_eq!(all["queues"][0]["points"].as_array().unwrap().len(), 60);

    let text = ctl(url, &["queues", "history", "notification"]).await;
    assert!(
        text.ok()
            .contains("notification: 2 completed, 1 failed attempts in the last 60 minutes"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("MINUTE (UTC)"), "{}", text.stdout);

    ctl(url, &["queues", "history", "--minutes", "10081"])
        .await
        .fails(1, &["minutes"]);
    sched.stop().await;
}
