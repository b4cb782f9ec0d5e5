//! `ncyctl queues history [QUEUE] [--minutes N]`: jobs finished per minute (QueueHistory), for
//! seeing at a glance whether a queue is getting work done or failing. Text shows each queue's
//! totals and the minutes in which something finished; `--json` prints the response.
use clap::Args;
use ncy_proto::jobs::v1::{self as pb, job_service_client::JobServiceClient};

use crate::Outcome;
use crate::rpc::{Channel, failed, print_json, table};

/// `ncyctl queues history …`
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Only this queue (default: every queue).
    queue: Option<String>,
    /// How many minutes back, ending with the current one (1–10080; default 60).
    #[arg(long, default_value_t = 0)]
    minutes: i32,
}

pub async fn history(
    client: &mut JobServiceClient<Channel>,
    args: HistoryArgs,
    json: bool,
) -> Outcome {
    let request = pb::QueueHistoryRequest {
        queue: args.queue.unwrap_or_default(),
        minutes: args.minutes,
    };
    let history = match client.queue_history(request).await {
        Ok(r) => r.into_inner(),
        Err(s) => return failed(s),
    };
    if json {
        print_json(&history, "ncy.jobs.v1.QueueHistoryResponse");
        return Outcome::Ok;
    }
    let minutes = history.queues.first().map_or(0, |q| q.points.len());
    for q in &history.queues {
        let completed: u64 = q.points.iter().map(|p| p.completed).sum();
        let failed: u64 = q.points.iter().map(|p| p.failed).sum();
        println!(
            "{}: {completed} completed, {failed} failed attempts in the last {minutes} minutes",
            q.queue
        );
    }
    let mut t = table(&["MINUTE (UTC)", "QUEUE", "COMPLETED", "FAILED"]);
    let mut rows = 0;
    for q in &history.queues {
        for p in q.points.iter().filter(|p| p.completed > 0 || p.failed > 0) {
            t.add_row(vec![
                minute(p.minute_at_ms),
                q.queue.clone(),
                p.completed.to_string(),
                p.failed.to_string(),
            ]);
            rows += 1;
        }
    }
    if rows > 0 {
        println!("{t}");
    }
    Outcome::Ok
}

/// The start of a minute as `2026-12-07 23:41Z`.
fn minute(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%MZ").to_string())
        .unwrap_or_else(|| ms.to_string())
}
