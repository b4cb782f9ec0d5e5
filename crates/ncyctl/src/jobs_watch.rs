//! `ncyctl jobs watch ID`: follows `WatchJob` until the job reaches a terminal state, drawing a
//! progress bar on a terminal (or one JSON line per event with `--json`).
use indicatif::{ProgressBar, ProgressStyle};
use ncy_proto::jobs::v1::{self as pb, JobState, job_service_client::JobServiceClient};
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use crate::Outcome;
use crate::jobs::state_name;
use crate::rpc::{failed, print_json};

pub async fn watch(client: &mut JobServiceClient<Channel>, job_id: String, json: bool) -> Outcome {
    let mut stream = match client.watch_job(pb::WatchJobRequest { job_id }).await {
        Ok(r) => r.into_inner(),
        Err(s) => return failed(s),
    };
    let bar = if json {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::new(100);
        if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos:>3}% {msg}") {
            bar.set_style(style);
        }
        bar
    };
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(e) => e,
            Err(s) => {
                bar.abandon();
                return failed(s);
            }
        };
        if json {
            print_json(&event, "ncy.jobs.v1.JobEvent");
        }
        bar.set_position(u64::try_from(event.progress.clamp(0, 100)).unwrap_or(0));
        let state = state_name(event.state);
        if event.message.is_empty() {
            bar.set_message(state.clone());
        } else {
            bar.set_message(format!("{state}: {}", event.message));
        }
        match JobState::try_from(event.state) {
            Ok(JobState::Completed) => {
                bar.finish_with_message("completed");
                return Outcome::Ok;
            }
            Ok(JobState::Dead | JobState::Cancelled) => {
                bar.abandon_with_message(format!("{state}: {}", event.message));
                return Outcome::Failed;
            }
            _ => {}
        }
    }
    bar.abandon();
    eprintln!("ncyctl: the server closed the stream before the job finished");
    Outcome::Unavailable
}
