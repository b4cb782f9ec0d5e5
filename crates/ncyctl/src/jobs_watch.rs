//! `ncyctl jobs watch ID`: follows `WatchJob` until the job reaches a terminal state, drawing a
//! progress bar on a terminal, one plain line per event when stderr is not a terminal (a pipe, a
//! log, CI), or one JSON line per event with `--json`.
//!
//! Exit code: 0 when the job completed, 1 when it ended dead or cancelled, 69 when the stream broke
//! before the job finished.
use std::io::IsTerminal;

use crate::rpc::Channel;
use indicatif::{ProgressBar, ProgressStyle};
use ncy_proto::jobs::v1::{self as pb, JobState, job_service_client::JobServiceClient};
use tokio_stream::StreamExt;

use crate::Outcome;
use crate::jobs::state_name;
use crate::rpc::{failed, print_json};

/// How events are shown.
enum View {
    Json,
    Bar(ProgressBar),
    Lines,
}

impl View {
    fn new(json: bool) -> Self {
        if json {
            return Self::Json;
        }
        if !std::io::stderr().is_terminal() {
            return Self::Lines;
        }
        let bar = ProgressBar::new(100);
        if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos:>3}% {msg}") {
            bar.set_style(style);
        }
        Self::Bar(bar)
    }

    fn show(&self, event: &pb::JobEvent) {
        let state = state_name(event.state);
        let text = if event.message.is_empty() {
            state
        } else {
            format!("{state}: {}", event.message)
        };
        match self {
            Self::Json => print_json(event, "ncy.jobs.v1.JobEvent"),
            Self::Bar(bar) => {
                bar.set_position(u64::try_from(event.progress.clamp(0, 100)).unwrap_or(0));
                bar.set_message(text);
            }
            Self::Lines => println!("{:>3}% {text}", event.progress.clamp(0, 100)),
        }
    }

    fn finish(&self, event: &pb::JobEvent, completed: bool) {
        if let Self::Bar(bar) = self {
            let state = state_name(event.state);
            if completed {
                bar.finish_with_message(state);
            } else {
                bar.abandon_with_message(format!("{state}: {}", event.message));
            }
        }
    }

    fn abandon(&self) {
        if let Self::Bar(bar) = self {
            bar.abandon();
        }
    }
}

/// The event's message, or — when the watch began after the job had ended, so the snapshot
/// carries none — the job's last error.
async fn why_it_ended(client: &mut JobServiceClient<Channel>, event: &pb::JobEvent) -> String {
    if !event.message.is_empty() {
        return event.message.clone();
    }
    let request = pb::GetJobRequest {
        job_id: event.job_id.clone(),
    };
    match client.get_job(request).await {
        Ok(r) => r
            .into_inner()
            .job
            .map(|j| j.last_error)
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| "no reason recorded".to_owned()),
        Err(s) => format!("(cannot read the job: {})", s.message()),
    }
}

pub async fn watch(client: &mut JobServiceClient<Channel>, job_id: String, json: bool) -> Outcome {
    let mut stream = match client.watch_job(pb::WatchJobRequest { job_id }).await {
        Ok(r) => r.into_inner(),
        Err(s) => return failed(s),
    };
    let view = View::new(json);
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(e) => e,
            Err(s) => {
                view.abandon();
                return failed(s);
            }
        };
        view.show(&event);
        match JobState::try_from(event.state) {
            Ok(JobState::Completed) => {
                view.finish(&event, true);
                return Outcome::Ok;
            }
            Ok(JobState::Dead | JobState::Cancelled) => {
                view.finish(&event, false);
                if !json {
                    let why = why_it_ended(client, &event).await;
                    eprintln!(
                        "ncyctl: job {} ended {}: {why}",
                        event.job_id,
                        state_name(event.state),
                    );
                }
                return Outcome::Failed;
            }
            _ => {}
        }
    }
    view.abandon();
    eprintln!("ncyctl: the server closed the stream before the job finished");
    Outcome::Unavailable
}
