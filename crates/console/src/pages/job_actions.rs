//! What an operator does to one job from its page, each a `POST /jobs/{id}/…`: Cancel while it
//! can be cancelled, Retry now (FAILED or DEAD), Promote (DELAYED) and Delete (any state but
//! ACTIVE).
//!
//! Each is refused to a viewer, audited, and answered with a redirect whose `?done=…` the page it
//! leads to shows as a message. A job in a state the action does not apply to (it moved on since
//! the page was drawn) is the scheduler's FAILED_PRECONDITION, shown as the 409 page with the
//! scheduler's words, which name the job's state.
use std::sync::Arc;

use axum::{
    Extension,
    extract::{Path, State},
    response::Redirect,
};
use ncy_proto::jobs::v1::{
    CancelJobRequest, DeleteJobRequest, JobState, PromoteJobRequest, RetryJobRequest,
};
use tonic::Code;

use super::{job, url_part};
use crate::{
    AppState,
    access::{CurrentUser, Subject},
    error::ConsoleError,
    upstream,
};

/// A job the scheduler does not know (or an id it cannot parse) is a missing page.
fn missing_job(e: ConsoleError, id: &str) -> ConsoleError {
    match e {
        ConsoleError::Upstream { status, .. }
            if matches!(status.code(), Code::NotFound | Code::InvalidArgument) =>
        {
            ConsoleError::NotFound(format!("There is no job with id {id:?}."))
        }
        other => other,
    }
}

fn on_job(id: &str) -> Subject<'_> {
    Subject {
        job_id: Some(id),
        ..Subject::default()
    }
}

/// Where an action on job `id` leads: its page with the message for `done`.
fn job_page(id: &str, done: &str) -> Redirect {
    Redirect::to(&format!("/jobs/{}?done={done}", url_part(id)))
}

/// `POST /jobs/{id}/cancel`.
pub async fn cancel(
    State(app): State<Arc<AppState>>,
    Extension(user): Extension<CurrentUser>,
    Path(id): Path<String>,
) -> Result<Redirect, ConsoleError> {
    let subject = on_job(&id);
    user.require_operator("cancel_job", &subject)?;
    let answer = app
        .jobs
        .clone()
        .cancel_job(CancelJobRequest {
            job_id: id.clone(),
            reason: format!("cancelled from the console by {}", user.name),
        })
        .await;
    let result = upstream::jobs(answer).map_err(|e| missing_job(e, &id));
    let r = user.audit_failure("cancel_job", &subject, result)?;
    let still_running = r.job.is_some_and(|j| j.state == JobState::Active as i32);
    let done = if still_running {
        "cancel-requested"
    } else {
        "cancelled"
    };
    user.audit("cancel_job", &subject, done);
    Ok(job_page(&id, done))
}

/// `POST /jobs/{id}/retry`: the job that will run is the same one for a FAILED job and a new one
/// (made from the dead letter) for a DEAD job; the redirect goes to whichever the scheduler names.
pub async fn retry(
    State(app): State<Arc<AppState>>,
    Extension(user): Extension<CurrentUser>,
    Path(id): Path<String>,
) -> Result<Redirect, ConsoleError> {
    let subject = on_job(&id);
    user.require_operator("retry_job", &subject)?;
    let answer = app
        .jobs
        .clone()
        .retry_job(RetryJobRequest { job_id: id.clone() })
        .await;
    let result = upstream::jobs(answer).map_err(|e| missing_job(e, &id));
    let r = user.audit_failure("retry_job", &subject, result)?;
    let runs = r.job.map(|j| j.id).filter(|j| !j.is_empty());
    match runs {
        Some(new) if new != id => {
            user.audit("retry_job", &subject, &format!("retried as job {new}"));
            Ok(job_page(&new, "retried"))
        }
        _ => {
            user.audit("retry_job", &subject, "retried");
            Ok(job_page(&id, "retried"))
        }
    }
}

/// `POST /jobs/{id}/promote`: a DELAYED job becomes WAITING now.
pub async fn promote(
    State(app): State<Arc<AppState>>,
    Extension(user): Extension<CurrentUser>,
    Path(id): Path<String>,
) -> Result<Redirect, ConsoleError> {
    let subject = on_job(&id);
    user.require_operator("promote_job", &subject)?;
    let answer = app
        .jobs
        .clone()
        .promote_job(PromoteJobRequest { job_id: id.clone() })
        .await;
    let result = upstream::jobs(answer).map_err(|e| missing_job(e, &id));
    user.audit_failure("promote_job", &subject, result)?;
    user.audit("promote_job", &subject, "promoted");
    Ok(job_page(&id, "promoted"))
}

/// `POST /jobs/{id}/delete`: the job's record and its place in its queue are removed; the answer
/// leads to its queue's page (the job's own page is gone).
pub async fn delete(
    State(app): State<Arc<AppState>>,
    Extension(user): Extension<CurrentUser>,
    Path(id): Path<String>,
) -> Result<Redirect, ConsoleError> {
    let subject = on_job(&id);
    user.require_operator("delete_job", &subject)?;
    let found = job::get(&app, &id).await;
    let queue = user.audit_failure("delete_job", &subject, found)?.queue;
    let subject = Subject {
        queue: Some(&queue),
        ..subject
    };
    let answer = app
        .jobs
        .clone()
        .delete_job(DeleteJobRequest { job_id: id.clone() })
        .await;
    let result = upstream::jobs(answer).map_err(|e| missing_job(e, &id));
    let r = user.audit_failure("delete_job", &subject, result)?;
    let was = super::state_name(r.state);
    user.audit("delete_job", &subject, &format!("deleted ({was})"));
    Ok(Redirect::to(&format!(
        "/queues/{}?done=deleted",
        url_part(&queue)
    )))
}
