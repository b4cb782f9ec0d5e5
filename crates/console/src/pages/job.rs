//! One job, `/jobs/{id}`: everything GetJob returns (payload and result as indented JSON, as
//! text), a progress bar and state kept live by WatchJob (`live.rs`), and for operators the
//! buttons of the actions its state allows (`job_actions.rs`): Retry now, Promote, Cancel, Delete.
use std::sync::Arc;

use askama::Template;
use axum::{
    Extension,
    extract::{Path, Query, State},
    response::Html,
};
use ncy_proto::jobs::v1::{BackoffType, GetJobRequest, Job, JobEvent, JobState};
use serde::Deserialize;
use tonic::Code;

use super::{Nav, pretty_json, render, state_name, time, url_part};
use crate::{AppState, access::CurrentUser, error::ConsoleError, upstream};

/// The live part of the page: state, progress and the latest message.
#[derive(Template)]
#[template(path = "job_live.html")]
pub struct JobLive {
    state: &'static str,
    progress: i32,
    attempts_made: i32,
    message: String,
}

/// The live fragment for one WatchJob event.
pub fn live_html(event: &JobEvent) -> String {
    JobLive {
        state: state_name(event.state),
        progress: event.progress.clamp(0, 100),
        attempts_made: event.attempts_made,
        message: event.message.clone(),
    }
    .render()
    .unwrap_or_else(|e| {
        tracing::error!(error = %e, "job fragment failed to render");
        String::new()
    })
}

#[derive(Template)]
#[template(path = "job.html")]
struct JobPage {
    nav: Nav,
    job: Job,
    url: String,
    queue_url: String,
    live: String,
    /// Not terminal: the page subscribes to its events.
    watch: bool,
    cancellable: bool,
    retryable: bool,
    promotable: bool,
    deletable: bool,
    /// Still to run (the delete confirmation says it never will).
    pending: bool,
    may_act: bool,
    backoff: String,
    payload: String,
    result: String,
    times: Vec<(&'static str, String)>,
    flash: Option<&'static str>,
}

/// States CancelJob acts on (a FAILED job is waiting for its retry).
fn cancellable(state: i32) -> bool {
    [
        JobState::Waiting,
        JobState::Delayed,
        JobState::Active,
        JobState::Failed,
    ]
    .iter()
    .any(|s| *s as i32 == state)
}

fn terminal(state: i32) -> bool {
    [JobState::Completed, JobState::Dead, JobState::Cancelled]
        .iter()
        .any(|s| *s as i32 == state)
}

/// States RetryJob acts on (a DEAD job is retried from its dead letter, as a new job).
fn retryable(state: i32) -> bool {
    state == JobState::Failed as i32 || state == JobState::Dead as i32
}

/// A job by id; an unknown or malformed id is a 404.
pub(super) async fn get(app: &AppState, id: &str) -> Result<Job, ConsoleError> {
    let answer = app
        .jobs
        .clone()
        .get_job(GetJobRequest {
            job_id: id.to_owned(),
        })
        .await;
    match answer {
        Ok(r) => r
            .into_inner()
            .job
            .ok_or_else(|| ConsoleError::NotFound(format!("There is no job with id {id:?}."))),
        Err(s) if matches!(s.code(), Code::NotFound | Code::InvalidArgument) => {
            Err(ConsoleError::NotFound(format!(
                "There is no job with id {id:?} (jobs are removed some time after they finish)."
            )))
        }
        Err(s) => Err(upstream::failed(upstream::JOB_SCHEDULER, s)),
    }
}

/// The query of a job page.
#[derive(Debug, Default, Deserialize)]
pub struct JobQuery {
    done: Option<String>,
}

/// `GET /jobs/{id}`.
pub async fn page(
    State(app): State<Arc<AppState>>,
    Extension(user): Extension<CurrentUser>,
    Path(id): Path<String>,
    Query(query): Query<JobQuery>,
) -> Result<Html<String>, ConsoleError> {
    let job = get(&app, &id).await?;
    let backoff = job.backoff.map_or_else(
        || "default".to_owned(),
        |b| {
            let kind = match b.r#type() {
                BackoffType::Fixed => "fixed",
                _ => "exponential",
            };
            format!("{kind}, {} ms", b.delay_ms)
        },
    );
    let live = live_html(&JobEvent {
        state: job.state,
        progress: job.progress,
        attempts_made: job.attempts_made,
        message: job.progress_message.clone(),
        ..JobEvent::default()
    });
    let flash = match query.done.as_deref() {
        Some("cancelled") => Some("Job cancelled."),
        Some("cancel-requested") => {
            Some("The job is running: it was asked to stop and becomes CANCELLED when it does.")
        }
        Some("retried") if !job.retried_from_dead_letter_id.is_empty() => Some(
            "Retried: this is a new job made from the dead job's dead letter (the dead job stays \
             as it was).",
        ),
        Some("retried") => Some("Retried: the job is waiting to run again now."),
        Some("promoted") => Some("Promoted: the job is waiting to run now."),
        Some("triggered") => Some("Schedule run now: this is the job it enqueued."),
        _ => None,
    };
    let page = JobPage {
        nav: Nav::for_user("job", &user),
        url: url_part(&job.id),
        queue_url: url_part(&job.queue),
        live,
        watch: !terminal(job.state),
        cancellable: cancellable(job.state),
        retryable: retryable(job.state),
        promotable: job.state == JobState::Delayed as i32,
        deletable: job.state != JobState::Active as i32,
        pending: cancellable(job.state) && job.state != JobState::Active as i32,
        may_act: user.may_act(),
        backoff,
        payload: pretty_json(&job.payload_json),
        result: pretty_json(&job.result_json),
        times: vec![
            ("Created", time(job.created_at_ms)),
            ("Due", time(job.due_at_ms)),
            ("Started", time(job.started_at_ms)),
            ("Finished", time(job.finished_at_ms)),
            ("Updated", time(job.updated_at_ms)),
        ],
        flash,
        job,
    };
    render(&page)
}
