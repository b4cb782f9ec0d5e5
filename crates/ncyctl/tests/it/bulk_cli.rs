//! `ncyctl dead-letters retry-all|purge`, `ncyctl jobs clean` and `ncyctl jobs list
//! --payload-contains` run as a process against a job-scheduler (and, to make dead letters, a
//! worker) running in this process: the totals an operator reads, the `--json` summary objects,
//! and the exit codes of a refusal (1) and of bad usage (2).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use ncy_testkit::assert_eventually;

use crate::support::{Stack, ctl, json};

const ALICE: &str = "0b6f3a4e-2c1d-4e8f-9a7b-1c2d3e4f5a6b";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_retry_all_purge_and_jobs_clean() {
    let stack = Stack::new().await;
    let sched = stack.scheduler().await;
    let work = stack.worker().await;
    let url = sched.url.as_str();

    // Three jobs that die at once, one of them Alice's.
    let mut ids = Vec::new();
    for owner in [ALICE, "", ""] {
        let out = json(
            url,
            &[
                "jobs",
                "enqueue",
                "--queue",
                "notification",
                "--type",
                "fail",
                "--payload",
                r#"{"message":"smtp down","retryable":false}"#,
                "--owner",
                owner,
            ],
        )
        .await;
        ids.push(out["job_id"].as_str().unwrap().to_owned());
    }
    assert_eventually("three dead letters", Duration::from_secs(20), || async {
        let letters = json(url, &["dlq", "list", "--queue", "notification"]).await;
        letters["dead_letters"].as_array().map(Vec::len) == Some(3)
    })
    .await;
    // From here on nothing runs: retried jobs stay waiting.
    work.stop().await;

    let dry = json(
        url,
        &[
            "dead-letters",
            "retry-all",
            "--queue",
            "notification",
            "--owner",
            &ALICE.to_uppercase(),
            "--dry-run",
        ],
    )
    .await;
    assert_eq!(
        dry,
        serde_json::json!({"queue": "notification", "dry_run": true, "retried": 1,
            "examined": 3, "job_ids": []})
    );
    let retried = json(
        url,
        &[
            "dead-letters",
            "retry-all",
            "--queue",
            "notification",
            "--owner",
            ALICE,
            "--limit",
            "1",
        ],
    )
    .await;
    assert_eq!(
        (retried["retried"].as_u64(), retried["examined"].as_u64()),
        (Some(1), Some(3))
    );
    let new_id = retried["job_ids"][0].as_str().unwrap().to_owned();
    let job = json(url, &["jobs", "get", &new_id]).await;
    assert_eq!(job["state"], "JOB_STATE_WAITING");
    assert_eq!(job["owner_user_id"], ALICE);

    // The other two go; a bad selection is refused naming the field.
    ctl(
        url,
        &["dlq", "purge", "--queue", "notification", "--owner", "x"],
    )
    .await
    .fails(1, &["invalid argument", "selection.owner_user_id"]);
    let purged = ctl(
        url,
        &[
            "dead-letters",
            "purge",
            "--queue",
            "notification",
            "--type",
            "fail",
        ],
    )
    .await;
    assert_eq!(
        purged.ok(),
        "notification: deleted 2 dead letters (2 examined)\n"
    );
    let letters = json(url, &["dlq", "list", "--queue", "notification"]).await;
    assert_eq!(letters["dead_letters"], serde_json::json!([]));

    // The three DEAD job records are still there for `jobs clean`.
    let none = json(
        url,
        &[
            "jobs",
            "clean",
            "--queue",
            "notification",
            "--state",
            "dead",
            "--older-than",
            "7d",
            "--dry-run",
        ],
    )
    .await;
    assert_eq!(
        none,
        serde_json::json!({"queue": "notification", "state": "dead", "dry_run": true,
            "deleted": 0, "examined": 0})
    );
    let dry = json(
        url,
        &[
            "jobs",
            "clean",
            "--queue",
            "notification",
            "--state",
            "dead",
            "--dry-run",
        ],
    )
    .await;
    assert_eq!(
        (dry["deleted"].as_u64(), dry["examined"].as_u64()),
        (Some(3), Some(3))
    );
    json(url, &["jobs", "get", &ids[0]]).await;
    let cleaned = ctl(
        url,
        &[
            "jobs",
            "clean",
            "--queue",
            "notification",
            "--state",
            "dead",
            "--type",
            "fail",
        ],
    )
    .await;
    assert_eq!(
        cleaned.ok(),
        "notification: deleted 3 dead jobs (3 examined)\n"
    );
    for id in &ids {
        ctl(url, &["jobs", "get", id])
            .await
            .fails(1, &["not found"]);
    }
    ctl(
        url,
        &[
            "jobs",
            "clean",
            "--queue",
            "notification",
            "--state",
            "waiting",
        ],
    )
    .await
    .fails(2, &["waiting"]);
    ctl(
        url,
        &[
            "jobs",
            "clean",
            "--queue",
            "notification",
            "--state",
            "dead",
            "--older-than",
            "7w",
        ],
    )
    .await
    .fails(2, &["unit"]);
    ctl(
        url,
        &["jobs", "clean", "--queue", "nosuch", "--state", "dead"],
    )
    .await
    .fails(1, &["invalid argument", "queue"]);

    sched.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_list_searches_payloads() {
    let stack = Stack::new().await;
    let sched = stack.scheduler().await;
    let url = sched.url.as_str();
    let mut ids = Vec::new();
    for note in ["a zebra", "a horse", "another zebra"] {
        let payload = serde_json::json!({ "note": note }).to_string();
        let out = json(
            url,
            &[
                "jobs",
                "enqueue",
                "--queue",
                "email",
                "--type",
                "noop",
                "--payload",
                &payload,
            ],
        )
        .await;
        ids.push(out["job_id"].as_str().unwrap().to_owned());
    }
    let found = json(
        url,
        &[
            "jobs",
            "list",
            "--queue",
            "email",
            "--state",
            "waiting",
            "--payload-contains",
            "zebra",
        ],
    )
    .await;
    let listed: Vec<&str> = found["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [ids[0].as_str(), ids[2].as_str()]);
    let table = ctl(
        url,
        &[
            "jobs",
            "list",
            "--queue",
            "email",
            "--state",
            "waiting",
            "--payload-contains",
            "horse",
            "--type",
            "noop",
        ],
    )
    .await;
    let out = table.ok();
    assert!(out.contains(&ids[1]) && !out.contains(&ids[0]), "{out}");
    let long = "x".repeat(257);
    ctl(
        url,
        &[
            "jobs",
            "list",
            "--queue",
            "email",
            "--state",
            "waiting",
            "--payload-contains",
            &long,
        ],
    )
    .await
    .fails(1, &["invalid argument", "payload_contains"]);
    sched.stop().await;
}
