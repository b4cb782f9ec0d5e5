//! The recurring schedules, `/schedules?page=…`: every schedule ListSchedules returns, by name, a
//! page at a time with its token — cron and time zone, queue, job type, whether it is enabled or
//! paused, its last fire and next run (UTC, and in the schedule's own zone when that is not UTC) —
//! and for operators Run now (TriggerSchedule: a job beside its ticks, the answer leads to that
//! job's page), Pause / Resume, Edit and Delete, and a link to create one. The form behind
//! create and edit, and delete, are in `schedules/form.rs`.
use std::sync::Arc;

use askama::Template;
use axum::{
    Extension,
    extract::{Path, Query, State},
    response::{Html, Redirect},
};
use ncy_proto::jobs::v1::{
    ListSchedulesRequest, PauseScheduleRequest, ResumeScheduleRequest, Schedule,
    TriggerScheduleRequest,
};
use serde::Deserialize;
use tonic::Code;

use super::{Nav, clip, render, time, url_part};

mod fields;
pub mod form;
use crate::{
    AppState,
    access::{CurrentUser, Subject},
    error::ConsoleError,
    pages::queue::PAGE_SIZE,
    upstream,
};

/// The query of the schedules page.
#[derive(Debug, Default, Deserialize)]
pub struct SchedulesQuery {
    page: Option<String>,
    /// The action just done (flash message).
    done: Option<String>,
    /// The schedule it was done to.
    schedule: Option<String>,
}

/// One schedule's row.
pub struct ScheduleRow {
    name: String,
    url: String,
    description: String,
    cron: String,
    time_zone: Option<String>,
    queue: String,
    queue_url: String,
    job_type: String,
    enabled: bool,
    paused: bool,
    last_run: String,
    last_job: Option<(String, String)>,
    next_run: String,
    /// The next run in the schedule's own time zone, when that is not UTC.
    next_run_local: Option<String>,
}

impl ScheduleRow {
    fn of(s: &Schedule) -> Self {
        let next_run = if s.next_run_at_ms > 0 {
            time(s.next_run_at_ms)
        } else if s.paused {
            "paused".to_owned()
        } else {
            "—".to_owned()
        };
        Self {
            name: s.name.clone(),
            url: url_part(&s.name),
            description: clip(&s.description, 200),
            cron: s.cron.clone(),
            time_zone: Some(s.time_zone.clone()).filter(|z| !z.is_empty()),
            queue: s.queue.clone(),
            queue_url: url_part(&s.queue),
            job_type: s.job_type.clone(),
            enabled: s.enabled,
            paused: s.paused,
            last_run: time(s.last_run_at_ms),
            last_job: Some(s.last_job_id.clone())
                .filter(|j| !j.is_empty())
                .map(|j| (url_part(&j), j)),
            next_run,
            next_run_local: in_zone(s.next_run_at_ms, &s.time_zone),
        }
    }
}

/// `ms` as the wall-clock time of IANA zone `zone` with its offset, `2027-01-01 09:00:00
/// Europe/Paris (UTC+01:00)`; `None` when unset, when the zone is UTC (the UTC time says it
/// already) or when this console's zone database does not know it.
pub fn in_zone(ms: i64, zone: &str) -> Option<String> {
    if ms <= 0 || zone.is_empty() || zone == "UTC" {
        return None;
    }
    let tz: chrono_tz::Tz = zone.parse().ok()?;
    let at = chrono::DateTime::from_timestamp_millis(ms)?.with_timezone(&tz);
    Some(format!(
        "{} {zone} (UTC{})",
        at.format("%Y-%m-%d %H:%M:%S"),
        at.format("%:z")
    ))
}

#[derive(Template)]
#[template(path = "schedules.html")]
struct SchedulesPage {
    nav: Nav,
    may_act: bool,
    schedules: Vec<ScheduleRow>,
    next_page: Option<String>,
    first_page: bool,
    flash: Option<String>,
}

/// Whether `name` can be a schedule's name (`[a-z0-9][a-z0-9._-]{0,127}`): only such a name from
/// the query is repeated in a message.
fn schedule_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.len() <= 128
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
}

fn flash(done: Option<&str>, schedule: Option<&str>) -> Option<String> {
    let name = schedule
        .filter(|n| schedule_name(n))
        .map_or_else(|| "The schedule".to_owned(), |n| format!("Schedule {n}"));
    let what = match done? {
        "paused" => "paused: its ticks are not fired until it is resumed.",
        "already-paused" => "was already paused.",
        "resumed" => "resumed: it fires from its next tick (ticks missed while paused are not).",
        "not-paused" => "was not paused.",
        "created" => "created.",
        "saved" => "saved (a pause it had is kept).",
        "replaced" => {
            "was created by someone else at the same moment, and this form's values replaced theirs."
        }
        "deleted" => "deleted. Jobs it already enqueued are not affected.",
        _ => return None,
    };
    Some(format!("{name} {what}"))
}

/// `GET /schedules`.
pub async fn page(
    State(app): State<Arc<AppState>>,
    Extension(user): Extension<CurrentUser>,
    Query(query): Query<SchedulesQuery>,
) -> Result<Html<String>, ConsoleError> {
    let page_token = query.page.unwrap_or_default();
    let list = upstream::jobs(
        app.jobs
            .clone()
            .list_schedules(ListSchedulesRequest {
                queue: String::new(),
                page_size: PAGE_SIZE,
                page_token: page_token.clone(),
            })
            .await,
    )?;
    render(&SchedulesPage {
        nav: Nav::for_user("schedules", &user),
        may_act: user.may_act(),
        schedules: list.schedules.iter().map(ScheduleRow::of).collect(),
        next_page: Some(list.next_page_token)
            .filter(|t| !t.is_empty())
            .map(|t| url_part(&t)),
        first_page: page_token.is_empty(),
        flash: flash(query.done.as_deref(), query.schedule.as_deref()),
    })
}

/// A schedule the scheduler does not know (or a name it cannot be) is a missing page.
fn missing_schedule(e: ConsoleError, name: &str) -> ConsoleError {
    match e {
        ConsoleError::Upstream { status, .. }
            if matches!(status.code(), Code::NotFound | Code::InvalidArgument) =>
        {
            ConsoleError::NotFound(format!("There is no schedule named {name:?}."))
        }
        other => other,
    }
}

fn on_schedule(name: &str) -> Subject<'_> {
    Subject {
        schedule: Some(name),
        ..Subject::default()
    }
}

fn back(name: &str, done: &str) -> Redirect {
    Redirect::to(&format!(
        "/schedules?done={done}&schedule={}",
        url_part(name)
    ))
}

/// `POST /schedules/{name}/run`: enqueues the schedule's job now and leads to it.
pub async fn run(
    State(app): State<Arc<AppState>>,
    Extension(user): Extension<CurrentUser>,
    Path(name): Path<String>,
) -> Result<Redirect, ConsoleError> {
    let subject = on_schedule(&name);
    user.require_operator("trigger_schedule", &subject)?;
    let answer = app
        .jobs
        .clone()
        .trigger_schedule(TriggerScheduleRequest { name: name.clone() })
        .await;
    let result = upstream::jobs(answer).map_err(|e| missing_schedule(e, &name));
    let job_id = user
        .audit_failure("trigger_schedule", &subject, result)?
        .job_id;
    let subject = Subject {
        job_id: Some(&job_id),
        ..subject
    };
    user.audit("trigger_schedule", &subject, "triggered");
    Ok(Redirect::to(&format!(
        "/jobs/{}?done=triggered",
        url_part(&job_id)
    )))
}

/// `POST /schedules/{name}/pause`.
pub async fn pause(
    State(app): State<Arc<AppState>>,
    Extension(user): Extension<CurrentUser>,
    Path(name): Path<String>,
) -> Result<Redirect, ConsoleError> {
    let subject = on_schedule(&name);
    user.require_operator("pause_schedule", &subject)?;
    let answer = app
        .jobs
        .clone()
        .pause_schedule(PauseScheduleRequest { name: name.clone() })
        .await;
    let result = upstream::jobs(answer).map_err(|e| missing_schedule(e, &name));
    let r = user.audit_failure("pause_schedule", &subject, result)?;
    let done = if r.changed {
        "paused"
    } else {
        "already-paused"
    };
    user.audit("pause_schedule", &subject, done);
    Ok(back(&name, done))
}

/// `POST /schedules/{name}/resume`.
pub async fn resume(
    State(app): State<Arc<AppState>>,
    Extension(user): Extension<CurrentUser>,
    Path(name): Path<String>,
) -> Result<Redirect, ConsoleError> {
    let subject = on_schedule(&name);
    user.require_operator("resume_schedule", &subject)?;
    let answer = app
        .jobs
        .clone()
        .resume_schedule(ResumeScheduleRequest { name: name.clone() })
        .await;
    let result = upstream::jobs(answer).map_err(|e| missing_schedule(e, &name));
    let r = user.audit_failure("resume_schedule", &subject, result)?;
    let done = if r.changed { "resumed" } else { "not-paused" };
    user.audit("resume_schedule", &subject, done);
    Ok(back(&name, done))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_schedule_name_from_the_query_is_repeated() {
        assert_eq!(
            flash(Some("paused"), Some("cleanup-old-data")).as_deref(),
            Some("Schedule cleanup-old-data paused: its ticks are not fired until it is resumed.")
        );
        assert_eq!(
            flash(Some("not-paused"), Some("Click here: evil.example")).as_deref(),
            Some("The schedule was not paused.")
        );
        assert_eq!(flash(Some("bogus"), Some("a")), None);
        assert_eq!(flash(None, Some("a")), None);
        assert!(!schedule_name(""));
        assert!(!schedule_name(&"a".repeat(129)));
    }

    #[test]
    fn next_run_says_why_there_is_none() {
        let paused = Schedule {
            paused: true,
            ..Schedule::default()
        };
        assert_eq!(ScheduleRow::of(&paused).next_run, "paused");
        assert_eq!(ScheduleRow::of(&Schedule::default()).next_run, "—");
        let due = Schedule {
            next_run_at_ms: 1_700_000_000_000,
            ..Schedule::default()
        };
        assert_eq!(ScheduleRow::of(&due).next_run, "2023-11-14 22:13:20 UTC");
        assert_eq!(
            ScheduleRow::of(&due).next_run_local,
            None,
            "UTC is said once"
        );
    }

    #[test]
    fn next_run_in_the_schedule_zone() {
        let at = 1_700_000_000_000;
        assert_eq!(
            in_zone(at, "Europe/Paris").as_deref(),
            Some("2023-11-14 23:13:20 Europe/Paris (UTC+01:00)")
        );
        assert_eq!(
            in_zone(at, "America/New_York").as_deref(),
            Some("2023-11-14 17:13:20 America/New_York (UTC-05:00)")
        );
        assert_eq!(in_zone(at, "UTC"), None);
        assert_eq!(in_zone(at, ""), None);
        assert_eq!(in_zone(0, "Europe/Paris"), None);
        assert_eq!(in_zone(at, "Mars/Olympus"), None);
    }
}
