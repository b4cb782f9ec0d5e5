//! One queue, `/queues/{queue}?state=…&page=…&type=…&owner=…&payload=…`: a tab per state with
//! its count, that state's jobs fifty at a time (ListJobs with its page token: a state is never
//! loaded whole), optionally only one job type and/or one owner's and/or those whose payload
//! contains some text (the filter rides along in the tab and page links; a filtered page may be
//! short, even empty, while "Continue" still leads on, and says how many jobs it examined), a
//! job-id search, and for operators Pause / Resume and the bulk actions of `bulk.rs` (retry or
//! purge the matching dead letters on the dead tab, clean old jobs on the completed, dead and
//! cancelled tabs). A bad filter is the scheduler's INVALID_ARGUMENT, shown as the 400 page.
use std::sync::Arc;

use askama::Template;
use axum::{
    Extension,
    extract::{Path, Query, State},
    response::{IntoResponse, Redirect, Response},
};
use ncy_proto::jobs::v1::{
    GetJobRequest, Job, JobState, ListJobsRequest, PauseQueueRequest, QueueStatsRequest,
    ResumeQueueRequest,
};
use ncy_types::jobs::JobType;
use serde::Deserialize;
use tonic::Code;

use super::{Nav, STATES, clip, render, state_name, state_named, time, url_part};
use crate::{
    AppState,
    access::{CurrentUser, Subject},
    error::ConsoleError,
    upstream,
};

/// Jobs per page.
pub const PAGE_SIZE: i32 = 50;

/// The query of a queue page.
#[derive(Debug, Default, Deserialize)]
pub struct QueueQuery {
    state: Option<String>,
    page: Option<String>,
    /// A job id to find.
    job: Option<String>,
    /// Only jobs of this type (wire name); empty = any.
    #[serde(rename = "type")]
    job_type: Option<String>,
    /// Only jobs this user owns (UUID); empty = any.
    owner: Option<String>,
    /// Only jobs whose payload JSON contains this text; empty = any.
    payload: Option<String>,
    /// How many jobs a bulk action touched (with `done=cleaned`).
    n: Option<u64>,
    /// Whether a bulk action stopped before the end (`1`).
    more: Option<u8>,
    /// The action just done (flash message).
    done: Option<String>,
}

/// A tab.
pub struct Tab {
    name: &'static str,
    count: Option<u64>,
    current: bool,
}

/// A choice of the job-type filter.
pub struct TypeChoice {
    name: &'static str,
    selected: bool,
}

/// The filter as it rides along in links: `&type=…&owner=…&payload=…` with only the parts set,
/// encoded.
pub fn filter_query(job_type: &str, owner: &str, payload: &str) -> String {
    let mut q = String::new();
    for (name, value) in [("type", job_type), ("owner", owner), ("payload", payload)] {
        if !value.is_empty() {
            q.push('&');
            q.push_str(name);
            q.push('=');
            q.push_str(&url_part(value));
        }
    }
    q
}

/// A job's row.
pub struct JobRow {
    id: String,
    url: String,
    job_type: String,
    priority: i32,
    attempts: String,
    created: String,
    due: String,
    finished: String,
    error: String,
}

impl JobRow {
    fn of(job: &Job) -> Self {
        Self {
            id: job.id.clone(),
            url: url_part(&job.id),
            job_type: job.job_type.clone(),
            priority: job.priority,
            attempts: format!("{} / {}", job.attempts_made, job.max_attempts),
            created: time(job.created_at_ms),
            due: time(job.due_at_ms),
            finished: time(job.finished_at_ms),
            error: clip(&job.last_error, 120),
        }
    }
}

#[derive(Template)]
#[template(path = "queue.html")]
struct QueuePage {
    nav: Nav,
    may_act: bool,
    queue: String,
    queue_url: String,
    paused: bool,
    dead_letters: u64,
    tabs: Vec<Tab>,
    state: &'static str,
    jobs: Vec<JobRow>,
    /// The job-type filter's choices (none selected: any type).
    types: Vec<TypeChoice>,
    /// The job-type filter (empty: any type).
    job_type: String,
    /// The owner filter as typed (empty: any owner).
    owner: String,
    /// The payload search as typed (empty: any payload).
    payload: String,
    /// Jobs the scheduler examined for this page (shown with a filter).
    examined: u32,
    /// Whether the state has a bulk clean (COMPLETED, DEAD, CANCELLED).
    cleanable: bool,
    /// Whether a filter is set.
    filtered: bool,
    /// [`filter_query`], appended to tab and page links.
    filter_query: String,
    next_page: Option<String>,
    first_page: bool,
    missing: Option<String>,
    flash: Option<String>,
}

/// A queue's summary; an unknown queue is a 404.
async fn summary(
    app: &AppState,
    queue: &str,
) -> Result<ncy_proto::jobs::v1::QueueSummary, ConsoleError> {
    let answer = app
        .jobs
        .clone()
        .queue_stats(QueueStatsRequest {
            queue: queue.to_owned(),
        })
        .await;
    let stats = upstream::jobs(answer).map_err(|e| unknown_queue(e, queue))?;
    stats
        .queues
        .into_iter()
        .find(|q| q.queue == queue)
        .ok_or_else(|| ConsoleError::NotFound(format!("There is no queue named {queue:?}.")))
}

/// The scheduler calls an unknown queue an invalid argument; to a person it is a missing page.
pub fn unknown_queue(e: ConsoleError, queue: &str) -> ConsoleError {
    match e {
        ConsoleError::Upstream { status, .. } if status.code() == Code::InvalidArgument => {
            ConsoleError::NotFound(format!("There is no queue named {queue:?}."))
        }
        other => other,
    }
}

fn flash(query: &QueueQuery) -> Option<String> {
    let text = match query.done.as_deref()? {
        "paused" => "Queue paused: workers start none of its jobs until it is resumed.",
        "already-paused" => "The queue was already paused.",
        "resumed" => "Queue resumed.",
        "not-paused" => "The queue was not paused.",
        "deleted" => "Job deleted.",
        "cleaned" => {
            return Some(super::bulk::summary(
                "Cleaned",
                "job",
                query.n.unwrap_or(0),
                query.more == Some(1),
            ));
        }
        _ => return None,
    };
    Some(text.to_owned())
}

/// `GET /queues/{queue}`.
pub async fn page(
    State(app): State<Arc<AppState>>,
    Extension(user): Extension<CurrentUser>,
    Path(queue): Path<String>,
    Query(query): Query<QueueQuery>,
) -> Result<Response, ConsoleError> {
    let mut missing = None;
    if let Some(id) = query
        .job
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let found = app
            .jobs
            .clone()
            .get_job(GetJobRequest {
                job_id: id.to_owned(),
            })
            .await;
        match found {
            Ok(_) => return Ok(Redirect::to(&format!("/jobs/{}", url_part(id))).into_response()),
            Err(s) if matches!(s.code(), Code::NotFound | Code::InvalidArgument) => {
                missing = Some(id.to_owned());
            }
            Err(s) => return Err(upstream::failed(upstream::JOB_SCHEDULER, s)),
        }
    }
    let summary = summary(&app, &queue).await?;
    let state_label = query.state.as_deref().unwrap_or("waiting");
    let (state, state_label) = state_named(state_label)
        .map(|s| (s, state_name(s as i32)))
        .ok_or_else(|| ConsoleError::BadRequest(format!("Unknown job state {state_label:?}.")))?;
    let page_token = query.page.clone().unwrap_or_default();
    let job_type = query.job_type.as_deref().map(str::trim).unwrap_or_default();
    let owner = query.owner.as_deref().map(str::trim).unwrap_or_default();
    // Not trimmed: spaces may be part of what is searched for.
    let payload = query.payload.as_deref().unwrap_or_default();
    // A bad filter is the scheduler's to judge: its INVALID_ARGUMENT names the field (400 page).
    let list = upstream::jobs(
        app.jobs
            .clone()
            .list_jobs(ListJobsRequest {
                queue: queue.clone(),
                state: state as i32,
                page_size: PAGE_SIZE,
                page_token: page_token.clone(),
                job_type: job_type.to_owned(),
                owner_user_id: owner.to_owned(),
                payload_contains: payload.to_owned(),
            })
            .await,
    )?;
    let count = |name: &str| match name {
        "waiting" => Some(summary.waiting),
        "delayed" => Some(summary.delayed),
        "active" => Some(summary.active),
        "failed" => Some(summary.failed),
        "completed" => Some(summary.completed),
        "cancelled" => Some(summary.cancelled),
        // Jobs DEAD and dead letters awaiting action are not the same set: no count shown.
        _ => None,
    };
    let page = QueuePage {
        nav: Nav::for_user("queue", &user),
        may_act: user.may_act(),
        queue_url: url_part(&queue),
        paused: summary.paused,
        dead_letters: summary.dead_letters,
        tabs: STATES
            .iter()
            .map(|(_, name)| Tab {
                name,
                count: count(name),
                current: *name == state_label,
            })
            .collect(),
        state: state_label,
        jobs: list.jobs.iter().map(JobRow::of).collect(),
        types: JobType::ALL
            .iter()
            .filter(|t| !t.is_test_only())
            .map(|t| TypeChoice {
                name: t.as_str(),
                selected: t.as_str() == job_type,
            })
            .collect(),
        job_type: job_type.to_owned(),
        owner: owner.to_owned(),
        payload: payload.to_owned(),
        examined: list.examined,
        cleanable: matches!(
            state,
            JobState::Completed | JobState::Dead | JobState::Cancelled
        ),
        filtered: !job_type.is_empty() || !owner.is_empty() || !payload.is_empty(),
        filter_query: filter_query(job_type, owner, payload),
        next_page: Some(list.next_page_token)
            .filter(|t| !t.is_empty())
            .map(|t| url_part(&t)),
        first_page: page_token.is_empty(),
        missing,
        flash: flash(&query),
        queue,
    };
    Ok(render(&page)?.into_response())
}

/// `POST /queues/{queue}/pause`.
pub async fn pause(
    State(app): State<Arc<AppState>>,
    Extension(user): Extension<CurrentUser>,
    Path(queue): Path<String>,
) -> Result<Redirect, ConsoleError> {
    set_paused(&app, &user, &queue, true).await
}

/// `POST /queues/{queue}/resume`.
pub async fn resume(
    State(app): State<Arc<AppState>>,
    Extension(user): Extension<CurrentUser>,
    Path(queue): Path<String>,
) -> Result<Redirect, ConsoleError> {
    set_paused(&app, &user, &queue, false).await
}

/// Pauses or resumes `queue` (operators only, audited) and goes back to its page with what
/// happened: `paused` / `already-paused`, `resumed` / `not-paused`.
async fn set_paused(
    app: &AppState,
    user: &CurrentUser,
    queue: &str,
    pause: bool,
) -> Result<Redirect, ConsoleError> {
    let action = if pause { "pause_queue" } else { "resume_queue" };
    let subject = Subject {
        queue: Some(queue),
        ..Subject::default()
    };
    user.require_operator(action, &subject)?;
    let mut jobs = app.jobs.clone();
    let changed = if pause {
        let answer = jobs
            .pause_queue(PauseQueueRequest {
                queue: queue.to_owned(),
            })
            .await;
        upstream::jobs(answer).map(|r| r.changed)
    } else {
        let answer = jobs
            .resume_queue(ResumeQueueRequest {
                queue: queue.to_owned(),
            })
            .await;
        upstream::jobs(answer).map(|r| r.changed)
    };
    let changed = user.audit_failure(
        action,
        &subject,
        changed.map_err(|e| unknown_queue(e, queue)),
    )?;
    let done = match (pause, changed) {
        (true, true) => "paused",
        (true, false) => "already-paused",
        (false, true) => "resumed",
        (false, false) => "not-paused",
    };
    user.audit(action, &subject, done);
    Ok(Redirect::to(&format!(
        "/queues/{}?done={done}",
        url_part(queue)
    )))
}
