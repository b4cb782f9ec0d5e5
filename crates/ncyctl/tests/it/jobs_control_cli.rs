//! `ncyctl jobs promote|delete` and `ncyctl schedules trigger|pause|resume` run as a process
//! against a job-scheduler running in this process (no worker: jobs stay where the commands put
//! them): the lines an operator reads, `--json`, and the exit codes of a refusal (1) and of an
//! unreachable server (69).
#![allow(clippy::unwrap_used)]

use crate::support::{Stack, ctl, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_delete_and_schedule_trigger_pause_resume() {
    let stack = Stack::new().await;
    let sched = stack.scheduler().await;
    let url = sched.url.clone();
    let url = url.as_str();

    let later = json(
        url,
        &[
            "jobs",
            "enqueue",
            "--queue",
            "report",
            "--type",
            "sleep",
            "--payload",
            r#"{"ms":1}"#,
            "--delay-ms",
            "600000",
        ],
    )
    .await;
    let later = later["job_id"].as_str().unwrap().to_owned();
    let promoted = ctl(url, &["jobs", "promote", &later]).await;
    assert_eq!(promoted.ok(), format!("{later}: waiting\n"));
    ctl(url, &["jobs", "promote", &later]).await.fails(
        1,
        &[
            "failed precondition",
            "is waiting: only a delayed job can be promoted",
        ],
    );
    let deleted = json(url, &["jobs", "delete", &later]).await;
    assert_eq!(
        deleted,
        serde_json::json!({"deleted": later, "state": "JOB_STATE_WAITING"})
    );
    ctl(url, &["jobs", "get", &later])
        .await
        .fails(1, &["not found"]);
    ctl(url, &["jobs", "delete", "nope"])
        .await
        .fails(1, &["invalid argument: job_id: is malformed"]);

    let set = ctl(
        url,
        &[
            "schedules",
            "set",
            "nightly",
            "--cron",
            "0 3 * * *",
            "--queue",
            "notification",
            "--type",
            "noop",
        ],
    )
    .await;
    set.ok();
    let paused = ctl(url, &["schedules", "pause", "nightly"]).await;
    assert_eq!(paused.ok(), "nightly: paused\n");
    let again = json(url, &["schedules", "pause", "nightly"]).await;
    assert_eq!(again["changed"], false, "{again}");
    assert_eq!(again["schedule"]["paused"], true, "{again}");
    // Enabled and paused both say yes.
    let table = ctl(url, &["schedules", "list"]).await;
    assert!(table.ok().contains("PAUSED"), "{}", table.ok());
    let row = |out: &str| {
        out.lines()
            .find(|l| l.contains("nightly"))
            .unwrap_or_default()
            .matches(" yes ")
            .count()
    };
    assert_eq!(row(table.ok()), 2, "{}", table.ok());

    let triggered = json(url, &["schedules", "trigger", "nightly"]).await;
    let job_id = triggered["job_id"].as_str().unwrap().to_owned();
    let job = json(url, &["jobs", "get", &job_id]).await;
    assert_eq!(
        (&job["schedule_name"], &job["state"]),
        (
            &serde_json::json!("nightly"),
            &serde_json::json!("JOB_STATE_WAITING")
        )
    );
    let deleted = ctl(url, &["jobs", "delete", &job_id]).await;
    assert_eq!(deleted.ok(), format!("deleted {job_id} (was waiting)\n"));

    let resumed = ctl(url, &["schedules", "resume", "nightly"]).await;
    assert_eq!(resumed.ok(), "nightly: resumed\n");
    let table = ctl(url, &["schedules", "list"]).await;
    assert_eq!(row(table.ok()), 1, "{}", table.ok());
    let listed = json(url, &["schedules", "list"]).await;
    let nightly = &listed["schedules"][0];
    assert_eq!(nightly["name"], "nightly");
    // proto3 JSON leaves a false bool out.
    assert!(
        nightly.get("paused").is_none_or(|p| p == false),
        "{nightly}"
    );
    ctl(url, &["schedules", "trigger", "absent"])
        .await
        .fails(1, &["not found: schedule absent not found"]);
    ctl(url, &["schedules", "resume", "Bad"])
        .await
        .fails(1, &["invalid argument: name: must match"]);
    sched.stop().await;

    // The server is gone: 69, as for every command.
    ctl(url, &["schedules", "pause", "nightly"])
        .await
        .fails(69, &[]);
}
