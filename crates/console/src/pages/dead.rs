//! Dead letters, `/dead?queue=…&page=…`: jobs that failed for good, newest first, for one queue
//! or all, paginated with ListDeadLetters' token; for operators Retry (a new job from the letter)
//! and Delete, each answering with a redirect back and a message (`?done=retried&job=<new id>`).
//! With a queue chosen, operators also get "Retry all matching…" and "Purge all matching…" by
//! job type and owner, which lead to the bulk actions' confirmation pages (`bulk.rs`) and back
//! here with how many were done (`?done=retried-all&n=…`).
use std::sync::Arc;

use askama::Template;
use axum::{
    Extension, Form,
    extract::{Path, Query, State, rejection::FormRejection},
    response::{Html, Redirect},
};
use ncy_proto::jobs::v1::{
    DeadLetter, DeleteDeadLetterRequest, ListDeadLettersRequest, QueueStatsRequest,
    RetryDeadLetterRequest,
};
use serde::Deserialize;
use tonic::Code;

use super::{Nav, clip, render, time, url_part};
use crate::{
    AppState,
    access::{CurrentUser, Subject},
    error::ConsoleError,
    pages::queue::{PAGE_SIZE, unknown_queue},
    upstream,
};

/// The query of the dead-letters page.
#[derive(Debug, Default, Deserialize)]
pub struct DeadQuery {
    queue: Option<String>,
    page: Option<String>,
    done: Option<String>,
    /// The job a retry made.
    job: Option<String>,
    /// How many a bulk action touched.
    n: Option<u64>,
    /// Whether a bulk action stopped before the end (`1`).
    more: Option<u8>,
}

/// The form of Retry and Delete: the queue filter to return to.
#[derive(Debug, Default, Deserialize)]
pub struct BackTo {
    #[serde(default)]
    queue: String,
}

/// One letter's row.
pub struct LetterRow {
    id: String,
    url: String,
    queue: String,
    job_type: String,
    error: String,
    failed_at: String,
    attempts_made: i32,
    job_id: String,
    job_url: String,
    payload: String,
}

impl LetterRow {
    fn of(d: &DeadLetter) -> Self {
        Self {
            id: d.id.clone(),
            url: url_part(&d.id),
            queue: d.queue.clone(),
            job_type: d.job_type.clone(),
            error: clip(&d.error, 300),
            failed_at: time(d.failed_at_ms),
            attempts_made: d.attempts_made,
            job_id: d.job_id.clone(),
            job_url: url_part(&d.job_id),
            payload: clip(&d.payload_json, 500),
        }
    }
}

#[derive(Template)]
#[template(path = "dead.html")]
struct DeadPage {
    nav: Nav,
    may_act: bool,
    queues: Vec<String>,
    queue: String,
    queue_url: String,
    letters: Vec<LetterRow>,
    next_page: Option<String>,
    first_page: bool,
    flash: Option<String>,
    new_job: Option<(String, String)>,
    /// The job types a bulk action may be narrowed to.
    types: Vec<&'static str>,
}

/// `GET /dead`.
pub async fn page(
    State(app): State<Arc<AppState>>,
    Extension(user): Extension<CurrentUser>,
    Query(query): Query<DeadQuery>,
) -> Result<Html<String>, ConsoleError> {
    let queue = query.queue.unwrap_or_default().trim().to_owned();
    let stats = upstream::jobs(
        app.jobs
            .clone()
            .queue_stats(QueueStatsRequest::default())
            .await,
    )?;
    let queues: Vec<String> = stats.queues.into_iter().map(|q| q.queue).collect();
    if !queue.is_empty() && !queues.contains(&queue) {
        return Err(ConsoleError::NotFound(format!(
            "There is no queue named {queue:?}."
        )));
    }
    let page_token = query.page.unwrap_or_default();
    let list = upstream::jobs(
        app.jobs
            .clone()
            .list_dead_letters(ListDeadLettersRequest {
                queue: queue.clone(),
                page_size: PAGE_SIZE,
                page_token: page_token.clone(),
            })
            .await,
    )
    .map_err(|e| unknown_queue(e, &queue))?;
    let bulk = |verb| {
        super::bulk::summary(
            verb,
            "dead letter",
            query.n.unwrap_or(0),
            query.more == Some(1),
        )
    };
    let (flash, new_job) = match query.done.as_deref() {
        Some("retried-all") => (Some(bulk("Retried")), None),
        Some("purged-all") => (Some(bulk("Purged")), None),
        Some("retried") => (
            Some("Dead letter retried as a new job:".to_owned()),
            query
                .job
                .filter(|j| !j.is_empty())
                .map(|j| (url_part(&j), j)),
        ),
        Some("deleted") => (Some("Dead letter deleted.".to_owned()), None),
        _ => (None, None),
    };
    render(&DeadPage {
        nav: Nav::for_user("dead", &user),
        may_act: user.may_act(),
        queues,
        queue_url: url_part(&queue),
        queue,
        letters: list.dead_letters.iter().map(LetterRow::of).collect(),
        next_page: Some(list.next_page_token)
            .filter(|t| !t.is_empty())
            .map(|t| url_part(&t)),
        first_page: page_token.is_empty(),
        flash,
        new_job,
        types: ncy_types::jobs::JobType::ALL
            .iter()
            .filter(|t| !t.is_test_only())
            .map(|t| t.as_str())
            .collect(),
    })
}

fn back(queue: &str, done: &str) -> String {
    if queue.is_empty() {
        format!("/dead?done={done}")
    } else {
        format!("/dead?queue={}&done={done}", url_part(queue))
    }
}

fn missing_letter(e: ConsoleError, id: &str) -> ConsoleError {
    match e {
        ConsoleError::Upstream { status, .. }
            if matches!(status.code(), Code::NotFound | Code::InvalidArgument) =>
        {
            ConsoleError::NotFound(format!(
                "There is no dead letter with id {id:?} (already retried or deleted?)."
            ))
        }
        other => other,
    }
}

/// `POST /dead/{id}/retry`.
pub async fn retry(
    State(app): State<Arc<AppState>>,
    Extension(user): Extension<CurrentUser>,
    Path(id): Path<String>,
    form: Result<Form<BackTo>, FormRejection>,
) -> Result<Redirect, ConsoleError> {
    let form = form.map(|f| f.0).unwrap_or_default();
    let subject = Subject {
        dead_letter_id: Some(&id),
        queue: (!form.queue.is_empty()).then_some(form.queue.as_str()),
        ..Subject::default()
    };
    user.require_operator("retry_dead_letter", &subject)?;
    let answer = app
        .jobs
        .clone()
        .retry_dead_letter(RetryDeadLetterRequest {
            dead_letter_id: id.clone(),
        })
        .await;
    let result = upstream::jobs(answer).map_err(|e| missing_letter(e, &id));
    let r = user.audit_failure("retry_dead_letter", &subject, result)?;
    let subject = Subject {
        job_id: Some(&r.job_id),
        ..subject
    };
    user.audit("retry_dead_letter", &subject, "retried");
    let to = format!(
        "{}&job={}",
        back(&form.queue, "retried"),
        url_part(&r.job_id)
    );
    Ok(Redirect::to(&to))
}

/// `POST /dead/{id}/delete`.
pub async fn delete(
    State(app): State<Arc<AppState>>,
    Extension(user): Extension<CurrentUser>,
    Path(id): Path<String>,
    form: Result<Form<BackTo>, FormRejection>,
) -> Result<Redirect, ConsoleError> {
    let form = form.map(|f| f.0).unwrap_or_default();
    let subject = Subject {
        dead_letter_id: Some(&id),
        queue: (!form.queue.is_empty()).then_some(form.queue.as_str()),
        ..Subject::default()
    };
    user.require_operator("delete_dead_letter", &subject)?;
    let answer = app
        .jobs
        .clone()
        .delete_dead_letter(DeleteDeadLetterRequest {
            dead_letter_id: id.clone(),
        })
        .await;
    let result = upstream::jobs(answer).map_err(|e| missing_letter(e, &id));
    user.audit_failure("delete_dead_letter", &subject, result)?;
    user.audit("delete_dead_letter", &subject, "deleted");
    Ok(Redirect::to(&back(&form.queue, "deleted")))
}
