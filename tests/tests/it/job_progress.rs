//! Job progress to the owner's browser: a job enqueued over gRPC with an `ownerUserId` reports its
//! progress and outcome to every WebSocket of that user on the realtime gateway (through the room
//! bus, across services), and to nobody else.

use crate::support::jobs::{StackEnv, enqueue, job};
use crate::support::stop;
use crate::support::ws::{self, Socket, next_frame};
use serde_json::Value;
use uuid::Uuid;

const SECRET: &str = "job-progress-test-secret-0123456789";

/// The `message` frames of job events for `job_id`, until (and including) its final event.
async fn job_events(ws: &mut Socket, job_id: &str) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    loop {
        let f = next_frame(ws).await?;
        if f["type"] != "message" || f["data"]["jobId"] != job_id {
            continue;
        }
        let event = f["event"].as_str().unwrap_or_default().to_owned();
        out.push(f);
        if event == "job_completed"
            || (event == "job_failed"
                && out.last().is_some_and(|f| f["data"]["willRetry"] == false))
        {
            return Ok(out);
        }
    }
}

#[tokio::test]
async fn the_owner_sees_progress_and_the_outcome_of_their_jobs_live() -> anyhow::Result<()> {
    let mut stack = StackEnv::new(&[]).await?;
    stack.set("JWT_SECRET", SECRET);
    stack.set("NCY_WS_ADDR", "127.0.0.1:0");
    let gateway = realtime_gateway::Application::build(realtime_gateway::Settings::load(
        &ncy_testkit::env_of(&stack.env),
    )?)
    .await?;
    let ws_addr = gateway
        .local_addrs()
        .websocket
        .ok_or_else(|| anyhow::anyhow!("no websocket listener"))?;
    let gateway = ncy_testkit::InProcess::spawn(|s| gateway.run_until_stopped(s));
    let (mut c, scheduler) = stack.scheduler().await?;
    let worker = stack.worker().await?;

    let (owner, other) = (Uuid::new_v4(), Uuid::new_v4());
    let mut owner_tab = ws::browser(ws_addr, SECRET, owner, None).await?;
    let mut other_tab = ws::browser(ws_addr, SECRET, other, None).await?;

    // A job that reports progress 10..100 and completes.
    let mut req = job("report", "sleep", r#"{"ms":200}"#);
    req.owner_user_id = owner.to_string();
    let id = enqueue(&mut c, req).await?;
    let events = job_events(&mut owner_tab, &id).await?;
    let progress: Vec<i64> = events
        .iter()
        .filter(|f| f["event"] == "job_progress")
        .filter_map(|f| f["data"]["progress"].as_i64())
        .collect();
    assert_eq!(progress, (1..=10).map(|i| i * 10).collect::<Vec<_>>());
    let done = events.last().unwrap_or(&Value::Null);
    assert_eq!(done["event"], "job_completed");
    assert_eq!(done["room"], format!("user:{owner}"));
    assert_eq!(done["data"]["result"]["sleptMs"], 200);
    assert_eq!(done["data"]["jobType"], "sleep");

    // A job that fails for good: the owner hears it with the error.
    let mut req = job(
        "report",
        "fail",
        r#"{"message":"printer on fire","retryable":false}"#,
    );
    req.owner_user_id = owner.to_string();
    let failed = enqueue(&mut c, req).await?;
    let events = job_events(&mut owner_tab, &failed).await?;
    let last = events.last().unwrap_or(&Value::Null);
    assert_eq!(last["event"], "job_failed");
    assert_eq!(last["data"]["error"], "printer on fire");
    assert_eq!(last["data"]["willRetry"], false);

    // Another user's socket got none of it: the next thing it sees is its own message.
    let mut mine = job("report", "noop", "{}");
    mine.owner_user_id = other.to_string();
    let own = enqueue(&mut c, mine).await?;
    let f = loop {
        let f = next_frame(&mut other_tab).await?;
        if f["type"] == "message" {
            break f;
        }
    };
    assert_eq!(
        f["data"]["jobId"],
        own.as_str(),
        "first job event of the other user: {f}"
    );
    assert_eq!(f["event"], "job_completed");

    stop(worker).await?;
    stop(scheduler).await?;
    stop(gateway).await?;
    Ok(())
}
