//! Creating, editing and deleting a schedule, for operators. `GET /schedules/new` and
//! `GET /schedules/{name}/edit` are the form; a `POST` to the same URL saves it through
//! UpsertSchedule; `POST /schedules/{name}/delete` is DeleteSchedule.
//!
//! UpsertSchedule creates or replaces by name and only says which after it wrote (`created`), so
//! the console looks first (ListSchedules): a create whose name is taken is refused (409, the form
//! kept, with a link to edit that schedule), and saving the edit of a schedule deleted meanwhile is
//! a 404 rather than bringing it back. The look and the write are two calls, so two operators
//! creating one name at the same moment can both pass the look; the second write then answers
//! `created: false`, which is audited and shown as a replacement.
//!
//! The scheduler validates (cron fields, time zone, queue, job type, payload against the type's
//! schema, options) and answers INVALID_ARGUMENT naming the field: the form comes back as a 400
//! with that message, the field marked and everything typed kept (escaped); nothing was written.
//! Retry backoff is not on the form: an edit keeps the schedule's own, a create gets the default.
//! A save keeps a pause (the scheduler keeps it; the form says so).
//!
//! Viewers are refused (403, audited) on the form's GET as on every POST, as on the bulk pages.
use std::sync::Arc;

use askama::Template;
use axum::{
    Extension, Form,
    extract::{Path, State, rejection::FormRejection},
    response::{Html, IntoResponse, Redirect, Response},
};
use http::StatusCode;
use ncy_proto::jobs::v1::{BackoffType, DeleteScheduleRequest, ListSchedulesRequest, Schedule};
use tonic::Code;

use super::fields::{Problem, ScheduleFields};
use super::{back, in_zone, missing_schedule, on_schedule};
use crate::{
    AppState,
    access::{CurrentUser, Subject},
    error::ConsoleError,
    pages::{Nav, render, time, url_part},
    upstream,
};

/// Schedules asked for per ListSchedules call while looking for a name (the scheduler's most).
const LIST_PAGE: i32 = 500;
/// Most ListSchedules calls one look makes (200 × 500 schedules).
const LIST_CALLS: usize = 200;

/// What the edit form shows of the schedule as it is now.
struct Current {
    name: String,
    url: String,
    paused: bool,
    next_run: String,
    next_run_local: Option<String>,
    last_run: String,
    backoff: String,
    updated: String,
}

impl Current {
    fn of(s: &Schedule) -> Self {
        let backoff = s.options.and_then(|o| o.backoff).unwrap_or_default();
        let kind = match BackoffType::try_from(backoff.r#type) {
            Ok(BackoffType::Fixed) => "fixed",
            _ => "exponential",
        };
        let delay = if backoff.delay_ms > 0 {
            format!("{} ms", backoff.delay_ms)
        } else {
            "the default delay".to_owned()
        };
        Self {
            name: s.name.clone(),
            url: url_part(&s.name),
            paused: s.paused,
            next_run: time(s.next_run_at_ms),
            next_run_local: in_zone(s.next_run_at_ms, &s.time_zone),
            last_run: time(s.last_run_at_ms),
            backoff: format!("{kind} from {delay}"),
            updated: time(s.updated_at_ms),
        }
    }
}

#[derive(Template)]
#[template(path = "schedule_form.html")]
struct FormPage {
    nav: Nav,
    /// The schedule being edited; `None` on the create form.
    current: Option<Current>,
    action: String,
    fields: ScheduleFields,
    /// Why the form was not saved.
    problem: Option<String>,
    /// The field that message is about (`aria-invalid`); empty for none.
    marked: &'static str,
    /// On a refused create: the edit page of the schedule that has the name.
    taken: Option<String>,
}

impl FormPage {
    fn new(user: &CurrentUser, current: Option<Current>, fields: ScheduleFields) -> Self {
        let action = current.as_ref().map_or_else(
            || "/schedules/new".to_owned(),
            |c| format!("/schedules/{}/edit", c.url),
        );
        Self {
            nav: Nav::for_user("schedules", user),
            current,
            action,
            fields,
            problem: None,
            marked: "",
            taken: None,
        }
    }

    /// The form again with `problem`, answered with `status`.
    fn refused(mut self, status: StatusCode, problem: Problem) -> Result<Response, ConsoleError> {
        self.problem = Some(problem.message);
        self.marked = problem.field;
        Ok((status, render(&self)?).into_response())
    }
}

/// Schedule `name` as ListSchedules lists it, `None` when there is none.
async fn find(app: &AppState, name: &str) -> Result<Option<Schedule>, ConsoleError> {
    let mut token = String::new();
    for _ in 0..LIST_CALLS {
        let list = upstream::jobs(
            app.jobs
                .clone()
                .list_schedules(ListSchedulesRequest {
                    queue: String::new(),
                    page_size: LIST_PAGE,
                    page_token: token,
                })
                .await,
        )?;
        // Listed by name: once past `name`, it is not further on.
        let past = list
            .schedules
            .last()
            .is_some_and(|s| s.name.as_str() > name);
        if let Some(s) = list.schedules.into_iter().find(|s| s.name == name) {
            return Ok(Some(s));
        }
        if past || list.next_page_token.is_empty() {
            return Ok(None);
        }
        token = list.next_page_token;
    }
    Err(ConsoleError::BadRequest(format!(
        "There are more than {} schedules: the console cannot look this name up.",
        LIST_CALLS * LIST_PAGE as usize
    )))
}

/// Schedule `name`, or the 404 page.
async fn existing(app: &AppState, name: &str) -> Result<Schedule, ConsoleError> {
    find(app, name)
        .await?
        .ok_or_else(|| ConsoleError::NotFound(format!("There is no schedule named {name:?}.")))
}

/// The scheduler's INVALID_ARGUMENT message, when that is why a call failed.
fn invalid(e: &ConsoleError) -> Option<&str> {
    match e {
        ConsoleError::Upstream { status, .. } if status.code() == Code::InvalidArgument => {
            Some(status.message())
        }
        _ => None,
    }
}

/// `GET /schedules/new`.
pub async fn new_form(
    Extension(user): Extension<CurrentUser>,
) -> Result<Html<String>, ConsoleError> {
    user.require_operator("create_schedule", &Subject::default())?;
    render(&FormPage::new(&user, None, ScheduleFields::blank()))
}

/// `POST /schedules/new`: creates the schedule unless its name is taken.
pub async fn create(
    State(app): State<Arc<AppState>>,
    Extension(user): Extension<CurrentUser>,
    form: Result<Form<ScheduleFields>, FormRejection>,
) -> Result<Response, ConsoleError> {
    let fields = form.map(|f| f.0);
    let name = fields.as_ref().map_or("", |f| f.name.trim()).to_owned();
    let subject = on_schedule(&name);
    user.require_operator("create_schedule", &subject)?;
    let fields = fields.map_err(|e| ConsoleError::BadRequest(e.body_text()))?;
    let target = fields.target();
    let subject = Subject {
        target: Some(&target),
        ..subject
    };
    let page = FormPage::new(&user, None, fields.clone());
    let request = match fields.request(&name, None) {
        Ok(r) => r,
        Err(problem) => {
            user.audit("create_schedule", &subject, "refused: form");
            return page.refused(StatusCode::BAD_REQUEST, problem);
        }
    };
    let found = user.audit_failure("create_schedule", &subject, find(&app, &name).await)?;
    if found.is_some() {
        user.audit("create_schedule", &subject, "refused: name taken");
        let problem = Problem {
            message: format!(
                "A schedule named {name:?} already exists. Edit it, or choose another name."
            ),
            field: "name",
        };
        let page = FormPage {
            taken: Some(format!("/schedules/{}/edit", url_part(&name))),
            ..page
        };
        return page.refused(StatusCode::CONFLICT, problem);
    }
    let answer = app.jobs.clone().upsert_schedule(request).await;
    match user.audit_failure("create_schedule", &subject, upstream::jobs(answer)) {
        Ok(r) => {
            let done = if r.created { "created" } else { "replaced" };
            user.audit("create_schedule", &subject, done);
            Ok(back(&name, done).into_response())
        }
        Err(e) => match invalid(&e) {
            Some(message) => page.refused(StatusCode::BAD_REQUEST, Problem::refused(message)),
            None => Err(e),
        },
    }
}

/// `GET /schedules/{name}/edit`.
pub async fn edit_form(
    State(app): State<Arc<AppState>>,
    Extension(user): Extension<CurrentUser>,
    Path(name): Path<String>,
) -> Result<Html<String>, ConsoleError> {
    user.require_operator("update_schedule", &on_schedule(&name))?;
    let schedule = existing(&app, &name).await?;
    let fields = ScheduleFields::of(&schedule);
    render(&FormPage::new(&user, Some(Current::of(&schedule)), fields))
}

/// `POST /schedules/{name}/edit`: replaces the definition of an existing schedule (the name is
/// the URL's; a pause is kept by the scheduler).
pub async fn update(
    State(app): State<Arc<AppState>>,
    Extension(user): Extension<CurrentUser>,
    Path(name): Path<String>,
    form: Result<Form<ScheduleFields>, FormRejection>,
) -> Result<Response, ConsoleError> {
    let subject = on_schedule(&name);
    user.require_operator("update_schedule", &subject)?;
    let mut fields = form.map_err(|e| ConsoleError::BadRequest(e.body_text()))?.0;
    fields.name.clone_from(&name);
    let target = fields.target();
    let subject = Subject {
        target: Some(&target),
        ..subject
    };
    let schedule = user.audit_failure("update_schedule", &subject, existing(&app, &name).await)?;
    let page = FormPage::new(&user, Some(Current::of(&schedule)), fields.clone());
    let backoff = schedule.options.and_then(|o| o.backoff);
    let request = match fields.request(&name, backoff) {
        Ok(r) => r,
        Err(problem) => {
            user.audit("update_schedule", &subject, "refused: form");
            return page.refused(StatusCode::BAD_REQUEST, problem);
        }
    };
    let answer = app.jobs.clone().upsert_schedule(request).await;
    match user.audit_failure("update_schedule", &subject, upstream::jobs(answer)) {
        Ok(_) => {
            user.audit("update_schedule", &subject, "saved");
            Ok(back(&name, "saved").into_response())
        }
        Err(e) => match invalid(&e) {
            Some(message) => page.refused(StatusCode::BAD_REQUEST, Problem::refused(message)),
            None => Err(e),
        },
    }
}

/// `POST /schedules/{name}/delete`.
pub async fn delete(
    State(app): State<Arc<AppState>>,
    Extension(user): Extension<CurrentUser>,
    Path(name): Path<String>,
) -> Result<Redirect, ConsoleError> {
    let subject = on_schedule(&name);
    user.require_operator("delete_schedule", &subject)?;
    let answer = app
        .jobs
        .clone()
        .delete_schedule(DeleteScheduleRequest { name: name.clone() })
        .await;
    let result = upstream::jobs(answer).map_err(|e| missing_schedule(e, &name));
    user.audit_failure("delete_schedule", &subject, result)?;
    user.audit("delete_schedule", &subject, "deleted");
    Ok(back(&name, "deleted"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ncy_proto::jobs::v1::{Backoff, JobOptions};

    #[test]
    fn the_edit_form_says_what_backoff_it_keeps() {
        let default = Schedule::default();
        assert_eq!(
            Current::of(&default).backoff,
            "exponential from the default delay"
        );
        let fixed = Schedule {
            options: Some(JobOptions {
                backoff: Some(Backoff {
                    r#type: BackoffType::Fixed as i32,
                    delay_ms: 5000,
                }),
                ..JobOptions::default()
            }),
            ..Schedule::default()
        };
        assert_eq!(Current::of(&fixed).backoff, "fixed from 5000 ms");
    }
}
