//! `ncyctl queues|jobs|dlq|schedules` run as a process against a job-scheduler and a worker running
//! in this process: what an operator reads on stdout and stderr, and the exit codes scripts test.
#![allow(clippy::unwrap_used)]

use crate::support::{Stack, ctl, first_word, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_pause_enqueue_list_watch_get_and_cancel() {
    let stack = Stack::new().await;
    let sched = stack.scheduler().await;
    let work = stack.worker().await;
    let url = sched.url.as_str();

    let paused = ctl(url, &["queues", "pause", "report"]).await;
    assert_eq!(paused.ok(), "report: paused\n");
    let again = ctl(url, &["queues", "pause", "report"]).await;
    assert_eq!(again.ok(), "report: already paused\n");
    let changed = json(url, &["queues", "resume", "email"]).await;
    assert_eq!(
        changed,
        serde_json::json!({"queue": "email", "changed": false})
    );

    // While `report` is paused, a job stays waiting where `jobs list` finds it.
    let id = ctl(
        url,
        &[
            "jobs",
            "enqueue",
            "--queue",
            "report",
            "--type",
            "sleep",
            "--payload",
            r#"{"ms":300}"#,
        ],
    )
    .await
    .ok()
    .trim()
    .to_owned();
    assert!(id.starts_with("report."), "the job id is printed: {id}");
    let table = ctl(
        url,
        &["jobs", "list", "--queue", "report", "--state", "waiting"],
    )
    .await;
    assert!(table.ok().contains(&id), "{}", table.stdout);
    assert!(table.stdout.contains("sleep") && table.stdout.contains("waiting"));
    let listed = json(
        url,
        &["jobs", "list", "--queue", "report", "--state", "waiting"],
    )
    .await;
    assert_eq!(listed["jobs"][0]["id"], id.as_str());
    assert_eq!(listed["jobs"][0]["state"], "JOB_STATE_WAITING");
    let none = json(
        url,
        &["jobs", "list", "--queue", "report", "--state", "dead"],
    )
    .await;
    assert_eq!(none["jobs"], serde_json::json!([]));
    // --type and --owner filter the listing; a bad filter is the scheduler's invalid argument.
    let by_type = json(
        url,
        &[
            "jobs", "list", "--queue", "report", "--state", "waiting", "--type", "sleep",
        ],
    )
    .await;
    assert_eq!(by_type["jobs"][0]["id"], id.as_str());
    let other_type = json(
        url,
        &[
            "jobs",
            "list",
            "--queue",
            "report",
            "--state",
            "waiting",
            "--type",
            "generate-report",
        ],
    )
    .await;
    assert_eq!(other_type["jobs"], serde_json::json!([]));
    let other_owner = json(
        url,
        &[
            "jobs",
            "list",
            "--queue",
            "report",
            "--state",
            "waiting",
            "--owner",
            "123e4567-e89b-12d3-a456-426614174000",
        ],
    )
    .await;
    assert_eq!(other_owner["jobs"], serde_json::json!([]));
    ctl(
        url,
        &[
            "jobs", "list", "--queue", "report", "--state", "waiting", "--owner", "bob",
        ],
    )
    .await
    .fails(1, &["invalid argument", "owner_user_id"]);
    ctl(
        url,
        &[
            "jobs", "list", "--queue", "report", "--state", "waiting", "--type", "mail",
        ],
    )
    .await
    .fails(1, &["invalid argument", "job_type"]);

    // The stats table has a row per queue; `report` reads paused with one job waiting.
    let stats = ctl(url, &["queues"]).await;
    let out = stats.ok();
    for queue in ["email", "notification", "report", "cleanup"] {
        assert!(out.contains(queue), "queues lists {queue}: {out}");
    }
    let report_row = out.lines().find(|l| l.contains("report")).unwrap();
    let cells: Vec<&str> = report_row
        .split_whitespace()
        .filter(|c| *c != "│")
        .collect();
    assert_eq!(&cells[..3], ["report", "yes", "1"], "{out}");
    let only = json(url, &["queues", "--queue", "report"]).await;
    assert_eq!(only["queues"].as_array().unwrap().len(), 1);
    assert_eq!(only["queues"][0]["paused"], true);
    assert_eq!(only["queues"][0]["waiting"], 1);

    // Resumed, the worker runs it; `jobs watch` follows it to the end and exits 0.
    let resumed = ctl(url, &["queues", "resume", "report"]).await;
    assert_eq!(resumed.ok(), "report: resumed\n");
    let watched = ctl(url, &["jobs", "watch", &id]).await;
    let lines = watched.ok();
    assert!(
        lines.lines().last().unwrap().starts_with("100% completed"),
        "{lines}"
    );
    let shown = ctl(url, &["jobs", "get", &id]).await;
    let out = shown.ok();
    assert!(out.contains(&format!("id           {id}")), "{out}");
    assert!(out.contains("state        completed"), "{out}");
    let job = json(url, &["jobs", "get", &id]).await;
    assert_eq!(job["state"], "JOB_STATE_COMPLETED");
    assert_eq!(job["progress"], 100);
    assert!(
        job["result_json"].as_str().unwrap().contains("300"),
        "{job}"
    );
    let again = json(url, &["jobs", "watch", &id]).await;
    assert_eq!(
        again["state"], "JOB_STATE_COMPLETED",
        "a finished job: one event"
    );

    // A delayed job is cancelled before it runs.
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
    let cancelled = ctl(url, &["jobs", "cancel", &later]).await;
    assert_eq!(cancelled.ok(), format!("{later}: cancelled\n"));
    let twice = json(url, &["jobs", "cancel", &later]).await;
    assert_eq!(twice["job"]["state"], "JOB_STATE_CANCELLED", "{twice}");
    assert_eq!(
        json(url, &["jobs", "get", &later]).await["state"],
        "JOB_STATE_CANCELLED"
    );
    let watch = ctl(url, &["jobs", "watch", &later]).await;
    watch.fails(1, &["cancelled"]);
    // Only a failed or dead job can be retried.
    ctl(url, &["jobs", "retry", &id]).await.fails(
        1,
        &[
            "failed precondition",
            "is completed: only a failed or dead job",
        ],
    );

    work.stop().await;
    sched.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_and_retried_and_watch_exits_non_zero() {
    let stack = Stack::new().await;
    let sched = stack.scheduler().await;
    let work = stack.worker().await;
    let url = sched.url.as_str();

    let id = first_word(
        ctl(
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
            ],
        )
        .await
        .ok(),
    );
    let watched = ctl(url, &["jobs", "watch", &id]).await;
    watched.fails(1, &[&format!("job {id} ended dead: smtp down")]);
    // "  0% dead" when the watch began after the job died, "  0% dead: smtp down" when it saw it die.
    let last = watched.stdout.lines().last().unwrap_or_default();
    assert!(last.starts_with("  0% dead"), "{watched:#?}");

    let table = ctl(url, &["dlq", "list"]).await;
    let out = table.ok();
    assert!(out.contains(&id) && out.contains("smtp down"), "{out}");
    let letters = json(url, &["dlq", "list", "--queue", "notification"]).await;
    let letter = &letters["dead_letters"][0];
    assert_eq!(letter["job_id"], id.as_str());
    assert_eq!(letter["error"], "smtp down");
    assert_eq!(letter["non_retryable"], true);
    let letter_id = letter["id"].as_str().unwrap().to_owned();
    let empty = json(url, &["dlq", "list", "--queue", "email"]).await;
    assert_eq!(empty["dead_letters"], serde_json::json!([]));

    // `dlq retry` re-enqueues it as a new job carrying where it came from.
    let retried = ctl(url, &["dlq", "retry", &letter_id]).await;
    let new_id = retried.ok().trim().to_owned();
    assert!(
        new_id.starts_with("notification.") && new_id != id,
        "{new_id}"
    );
    let job = json(url, &["jobs", "get", &new_id]).await;
    assert_eq!(job["retried_from_dead_letter_id"], letter_id.as_str());
    assert_eq!(
        (job["priority"].as_i64(), job["max_attempts"].as_i64()),
        (Some(10), Some(1))
    );
    // Retrying consumed the dead letter: the original job's cannot be retried twice.
    ctl(url, &["jobs", "retry", &id])
        .await
        .fails(1, &["is dead and its dead letter is gone"]);
    // The retry fails again (same payload); `jobs retry <job>` finds its new dead letter.
    ctl(url, &["jobs", "watch", &new_id])
        .await
        .fails(1, &["ended dead: smtp down"]);
    let third = json(url, &["jobs", "retry", &new_id]).await;
    assert_eq!(
        third["job"]["retried_from_dead_letter_id"]
            .as_str()
            .map(|d| !d.is_empty()),
        Some(true)
    );
    let third = third["job"]["id"].as_str().unwrap().to_owned();
    ctl(url, &["jobs", "watch", &third])
        .await
        .fails(1, &["ended dead"]);
    let letters = json(url, &["dlq", "list"]).await;
    let letter_id = letters["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["job_id"] == third.as_str())
        .unwrap_or_else(|| panic!("{letters}"))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deleted = json(url, &["dlq", "delete", &letter_id]).await;
    assert_eq!(deleted, serde_json::json!({"deleted": letter_id}));
    ctl(url, &["dlq", "retry", &letter_id])
        .await
        .fails(1, &["not found"]);

    work.stop().await;
    sched.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_set_list_delete_and_bulk_enqueue_from_a_file() {
    let stack = Stack::new().await;
    let sched = stack.scheduler().await;
    let url = sched.url.as_str();

    let set = [
        "schedules",
        "set",
        "nightly-cleanup",
        "--cron",
        "0 2 * * *",
        "--queue",
        "cleanup",
        "--type",
        "noop",
        "--description",
        "tidy up",
    ];
    let created = ctl(url, &set).await;
    assert!(
        created
            .ok()
            .starts_with("nightly-cleanup created; next run 20"),
        "{created:#?}"
    );
    let updated = ctl(url, &[&set[..], &["--disabled"]].concat()).await;
    assert!(
        updated.ok().starts_with("nightly-cleanup updated"),
        "{updated:#?}"
    );
    let table = ctl(url, &["schedules", "list"]).await;
    let row = table
        .ok()
        .lines()
        .find(|l| l.contains("nightly-cleanup"))
        .unwrap_or_else(|| panic!("{table:#?}"))
        .to_owned();
    assert!(
        row.contains("0 2 * * *") && row.contains("cleanup") && row.contains(" no "),
        "{row}"
    );
    let listed = json(url, &["schedules", "list", "--queue", "cleanup"]).await;
    assert_eq!(listed["schedules"][0]["name"], "nightly-cleanup");
    assert_eq!(listed["schedules"][0]["enabled"], false);
    let deleted = ctl(url, &["schedules", "delete", "nightly-cleanup"]).await;
    assert_eq!(deleted.ok(), "deleted nightly-cleanup\n");
    let recreated = json(url, &set).await;
    assert_eq!(recreated["created"], true, "{recreated}");
    assert_eq!(recreated["schedule"]["cron"], "0 2 * * *");
    let deleted = json(url, &["schedules", "delete", "nightly-cleanup"]).await;
    assert_eq!(deleted, serde_json::json!({"deleted": "nightly-cleanup"}));
    assert_eq!(
        json(url, &["schedules", "list"]).await["schedules"],
        serde_json::json!([])
    );
    ctl(url, &["schedules", "delete", "nightly-cleanup"])
        .await
        .fails(1, &["not found"]);
    let bad_cron = [
        "schedules",
        "set",
        "x",
        "--cron",
        "every day",
        "--queue",
        "cleanup",
        "--type",
        "noop",
    ];
    ctl(url, &bad_cron)
        .await
        .fails(1, &["invalid argument", "cron"]);

    // A JSON-lines file of EnqueueRequests, a blank line and a deduplicated repeat.
    let dir = std::env::temp_dir().join(format!("ncyctl-bulk-{}", stack.prefix));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("jobs.jsonl");
    std::fs::write(
        &file,
        concat!(
            r#"{"queue":"email","job_type":"noop","payload_json":"{}"}"#,
            "\n",
            r#"{"queue":"report","job_type":"noop","idempotency_key":"k1"}"#,
            "\n\n",
            r#"{"queue":"report","job_type":"noop","idempotency_key":"k1"}"#,
            "\n",
        ),
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let bulk = ctl(url, &["jobs", "enqueue-bulk", path]).await;
    let lines: Vec<&str> = bulk.ok().lines().collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[0].starts_with("email.") && lines[1].starts_with("report."),
        "{lines:?}"
    );
    assert_eq!(lines[2], format!("{} (deduplicated)", lines[1]));
    let stats = json(url, &["queues"]).await;
    let waiting: i64 = stats["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["waiting"].as_i64().unwrap())
        .sum();
    assert_eq!(waiting, 2, "{stats}");
    let again = json(url, &["jobs", "enqueue-bulk", path]).await;
    assert_eq!(again["results"].as_array().unwrap().len(), 3);
    std::fs::write(&file, "{\"queue\":\"email\",\"bogus\":1}\n").unwrap();
    ctl(url, &["jobs", "enqueue-bulk", path])
        .await
        .fails(1, &["jobs.jsonl:1", "bogus"]);
    std::fs::remove_dir_all(&dir).unwrap();

    sched.stop().await;
}
