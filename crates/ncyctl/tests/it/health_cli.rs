//! `ncyctl health` against a real job scheduler whose Redis is a `redis-server` of the test's own,
//! stopped and started again the way an outage happens: the operator sees a server that stays ready
//! (exit 0) while Redis is down, the job service not serving and Redis down, and a line saying what
//! that means; a server that never reached its Redis is not ready (exit 1). Each state is polled for
//! with a deadline: the server notices within its probe interval.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use ncy_testkit::{InProcess, RedisServer, assert_eventually, env_of, set_env};

use crate::support::{Run, Stack, ncyctl};

/// How long a change of Redis may take to show in health (probe every 5 s, 3 s probe timeout).
const NOTICE: Duration = Duration::from_secs(30);

async fn health(url: &str) -> Run {
    ncyctl(&["health", "--addr", url]).await
}

/// `ncyctl --json health`, whatever its exit code, with its JSON.
async fn health_json(url: &str) -> (Option<i32>, serde_json::Value) {
    let run = ncyctl(&["--json", "health", "--addr", url]).await;
    let value = serde_json::from_str(run.stdout.trim())
        .unwrap_or_else(|e| panic!("invalid JSON ({e}): {run:#?}"));
    (run.code, value)
}

async fn redis_reported(url: &str, state: &str) -> bool {
    health_json(url).await.1["dependencies"]["redis"] == state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_leaves_the_scheduler_ready_and_says_what_does_not_work() {
    let mut redis = RedisServer::start().await.unwrap();
    let mut stack = Stack::new().await;
    set_env(&mut stack.env, "REDIS_URL", &redis.url());
    let sched = stack.scheduler().await;
    let url = sched.url.as_str();
    // Health entries follow readiness in one pass that sets the dependencies last.
    assert_eventually("health reports redis up", NOTICE, || {
        redis_reported(url, "up")
    })
    .await;

    // The job scheduler serves one NCY service and probes Redis only: no other service, no
    // PostgreSQL line (NOT_FOUND entries are left out).
    let all_up = "server                  SERVING\n\
                  ncy.jobs.v1.JobService  SERVING\n\
                  dependency redis        UP\n";
    assert_eq!(health(url).await.ok(), all_up);
    let (code, v) = health_json(url).await;
    assert_eq!(code, Some(0));
    assert_eq!(
        v,
        serde_json::json!({
            "addr": url,
            "status": "SERVING",
            "degraded": false,
            "services": {"ncy.jobs.v1.JobService": "SERVING"},
            "dependencies": {"redis": "up"},
        })
    );

    redis.stop();
    assert_eventually("health reports redis down", NOTICE, || {
        redis_reported(url, "down")
    })
    .await;
    let (code, v) = health_json(url).await;
    assert_eq!(code, Some(0), "a degraded server is still ready: {v}");
    assert_eq!(v["status"], "SERVING");
    assert_eq!(v["degraded"], true);
    assert_eq!(v["services"]["ncy.jobs.v1.JobService"], "NOT_SERVING");
    assert_eq!(v["dependencies"]["redis"], "down");
    assert_eq!(
        health(url).await.ok(),
        "server                  SERVING\n\
         ncy.jobs.v1.JobService  NOT_SERVING\n\
         dependency redis        DOWN\n\
         degraded: redis down — ready, serving what does not need it\n"
    );
    // The single check of one entry keeps its meaning: the job service is not serving.
    let run = ncyctl(&[
        "health",
        "--addr",
        url,
        "--service",
        "ncy.jobs.v1.JobService",
    ])
    .await;
    assert_eq!(
        (run.code, run.stdout.trim()),
        (Some(1), "NOT_SERVING"),
        "{run:#?}"
    );

    redis.resume().await.unwrap();
    assert_eventually("health reports redis back", NOTICE, || {
        redis_reported(url, "up")
    })
    .await;
    assert_eq!(health(url).await.ok(), all_up);
    sched.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_that_never_reached_redis_is_not_ready() {
    let mut redis = RedisServer::start().await.unwrap();
    redis.stop();
    let mut stack = Stack::new().await;
    set_env(&mut stack.env, "REDIS_URL", &redis.url());
    let settings = job_scheduler::Settings::load(&env_of(&stack.env)).unwrap();
    let app = job_scheduler::Application::build(settings).await.unwrap();
    let url = format!("http://{}", app.local_addrs().grpc);
    // Not `InProcess::serving`: this server is not going to serve until Redis answers.
    let running = InProcess::spawn(|stop| app.run_until_stopped(stop));

    let run = health(&url).await;
    assert_eq!(run.code, Some(1), "{run:#?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines[..3],
        [
            "server                  NOT_SERVING",
            "ncy.jobs.v1.JobService  NOT_SERVING",
            "dependency redis        DOWN",
        ],
        "{run:#?}"
    );
    assert!(
        lines[3].starts_with("not ready: starting, draining or a pool of this instance wedged")
            && lines[3].ends_with("; redis down"),
        "{run:#?}"
    );
    let (code, v) = health_json(&url).await;
    assert_eq!(code, Some(1));
    assert_eq!(v["status"], "NOT_SERVING");
    assert_eq!(v["degraded"], false, "not ready, which is worse: {v}");

    redis.resume().await.unwrap();
    assert_eventually("health reports redis up", NOTICE, || {
        redis_reported(&url, "up")
    })
    .await;
    let (code, v) = health_json(&url).await;
    assert_eq!(code, Some(0), "ready once Redis answered: {v}");
    assert_eq!(v["status"], "SERVING");
    assert_eq!(v["services"]["ncy.jobs.v1.JobService"], "SERVING");
    assert_eq!(v["dependencies"]["redis"], "up");
    running.stop(Duration::from_secs(15)).await.unwrap();
}
