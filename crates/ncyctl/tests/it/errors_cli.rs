//! How `ncyctl` fails, as a script sees it: the message on stderr and the exit code — 1 when the
//! service answered "no" (invalid argument naming the field, not found, precondition), 2 for a usage
//! error, 69 when the service could not be reached. Nothing is printed on stdout when a command fails,
//! so `--json` output is never mixed with an error.
#![allow(clippy::unwrap_used)]

use crate::support::{Stack, ctl, ncyctl, ncyctl_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_and_unknown_ids_exit_1_with_the_field_or_the_id() {
    let stack = Stack::new().await;
    let sched = stack.scheduler().await;
    let cache = stack.cache().await;
    let jobs = sched.url.as_str();

    let bad_queue = ctl(
        jobs,
        &["jobs", "enqueue", "--queue", "nosuch", "--type", "noop"],
    )
    .await;
    bad_queue.fails(1, &["ncyctl: invalid argument: ", "queue"]);
    assert_eq!(bad_queue.stdout, "");
    ctl(
        jobs,
        &[
            "jobs",
            "enqueue",
            "--queue",
            "email",
            "--type",
            "noop",
            "--payload",
            "{oops",
        ],
    )
    .await
    .fails(1, &["invalid argument", "payload_json"]);
    ctl(
        jobs,
        &[
            "--json",
            "jobs",
            "list",
            "--queue",
            "email",
            "--state",
            "dead",
            "--page-size=-1",
        ],
    )
    .await
    .fails(1, &["invalid argument", "page_size"]);
    ctl(jobs, &["queues", "pause", "nosuch"])
        .await
        .fails(1, &["invalid argument", "queue"]);

    ctl(jobs, &["jobs", "get", "email:0-0"])
        .await
        .fails(1, &["invalid argument: job_id: is malformed"]);
    let absent = format!("email.{}", "0".repeat(32));
    let missing = ctl(jobs, &["--json", "jobs", "get", &absent]).await;
    missing.fails(1, &[&format!("ncyctl: not found: job {absent} not found")]);
    assert_eq!(missing.stdout, "", "--json prints nothing on failure");
    ctl(jobs, &["jobs", "watch", &absent])
        .await
        .fails(1, &["not found"]);
    ctl(jobs, &["jobs", "cancel", &absent])
        .await
        .fails(1, &["not found"]);

    let cache_url = cache.url.as_str();
    ctl(cache_url, &["cache", "set", "page:1", "not json"])
        .await
        .fails(1, &["invalid argument", "value_json"]);
    ctl(cache_url, &["cache", "set", "session:1", "{}"])
        .await
        .fails(1, &["invalid argument", "key", "reserved"]);
    ctl(cache_url, &["cache", "set", "realtime:user_status", "{}"])
        .await
        .fails(1, &["invalid argument", "key", "reserved"]);
    ctl(cache_url, &["cache", "set", "user:1", "{}"])
        .await
        .fails(1, &["invalid argument", "key", "loader-backed"]);
    ctl(cache_url, &["cache", "invalidate", "entity", "org", "42"])
        .await
        .fails(1, &["invalid argument", "id"]);

    // A service of the wrong kind at the address answers UNIMPLEMENTED: exit 1, said plainly.
    ctl(cache_url, &["queues"])
        .await
        .fails(1, &["not implemented by this server"]);

    cache.stop().await;
    sched.stop().await;
}

#[tokio::test]
async fn usage_errors_exit_2_and_unreachable_services_exit_69() {
    ncyctl(&["jobs", "list", "--queue", "email"])
        .await
        .fails(2, &["--state"]);
    ncyctl(&["jobs", "list", "--queue", "email", "--state", "sleeping"])
        .await
        .fails(2, &["sleeping"]);
    ncyctl(&["frobnicate"]).await.fails(2, &["frobnicate"]);
    ncyctl(&["queues", "--addr", "not a url"])
        .await
        .fails(1, &["not a valid URL"]);

    let nowhere = format!("http://127.0.0.1:{}", ncy_testkit::free_port());
    for args in [
        &["queues"][..],
        &["jobs", "get", "email.1"],
        &["dlq", "list"],
        &["schedules", "list"],
        &["cache", "stats"],
        &["realtime", "stats"],
    ] {
        let run = ncyctl(&[args, &["--addr", &nowhere, "--timeout-secs", "2"]].concat()).await;
        run.fails(
            69,
            &[&format!("ncyctl: service unavailable: cannot reach {nowhere}: transport error: tcp connect error")],
        );
        assert_eq!(run.stdout, "");
    }
    // The environment variable is the address when --addr is absent.
    ncyctl_with(&["--json", "queues"], &[("NCY_SCHEDULER_ADDR", &nowhere)])
        .await
        .fails(69, &[&format!("cannot reach {nowhere}")]);
    ncyctl_with(&["health"], &[("NCY_ADDR", &nowhere)])
        .await
        .fails(
            69,
            &["service unavailable: cannot reach", "tcp connect error"],
        );
}
