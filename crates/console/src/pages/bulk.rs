//! Bulk actions on one queue, for operators: retry or purge every dead letter that matches the
//! type and owner filters, and clean (delete the records of) the COMPLETED, DEAD or CANCELLED
//! jobs older than some age. `GET /queues/{queue}/bulk/{action}` is the confirmation page and
//! `POST` the same URL does it; `action` is `retry-dead`, `purge-dead` or `clean`.
//!
//! The scheduler's bulk RPCs examine a bounded number of entries per call and hand back a token
//! to continue, so both steps loop over calls, each with a bound:
//!
//! - the confirmation counts first with `dry_run`, at most [`COUNT_CALLS`] calls; when that bound
//!   stops it the page says "at least N";
//! - the action runs calls until the token is empty, at most [`RUN_CALLS`] calls or
//!   [`RUN_TIME`] per request, then redirects with how many it touched and, when it stopped
//!   early, that more remain and running it again continues.
//!
//! Viewers see no bulk buttons and get 403 on both steps. Every run is audited (who, the action,
//! the queue, the filter, how many and whether more remain), its failure too.
use std::{sync::Arc, time::Duration};

use askama::Template;
use axum::{
    Extension, Form,
    extract::{Path, Query, State, rejection::FormRejection},
    response::{Html, Redirect},
};
use ncy_proto::jobs::v1::{
    CleanJobsRequest, DeadLetterSelection, JobState, PurgeDeadLettersRequest,
    RetryDeadLettersRequest,
};
use serde::Deserialize;
use tokio::time::Instant;

use super::{Nav, render, state_name, state_named, url_part};
use crate::{
    AppState,
    access::{CurrentUser, Subject},
    error::ConsoleError,
    pages::queue::unknown_queue,
    upstream::{self, JobsClient},
};

/// Most dry-run calls a confirmation page makes to count.
pub const COUNT_CALLS: usize = 20;
/// Most calls one confirmed action makes before it stops and says more remain.
pub const RUN_CALLS: usize = 200;
/// Longest one confirmed action runs before it stops and says more remain.
pub const RUN_TIME: Duration = Duration::from_secs(10);
/// Entries each call examines (the scheduler's most).
const LIMIT: i32 = 1000;

/// A bulk action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    RetryDead,
    PurgeDead,
    Clean,
}

impl Action {
    fn parse(name: &str) -> Result<Self, ConsoleError> {
        match name {
            "retry-dead" => Ok(Self::RetryDead),
            "purge-dead" => Ok(Self::PurgeDead),
            "clean" => Ok(Self::Clean),
            _ => Err(ConsoleError::NotFound(
                "There is no such bulk action.".into(),
            )),
        }
    }

    fn url_name(self) -> &'static str {
        match self {
            Self::RetryDead => "retry-dead",
            Self::PurgeDead => "purge-dead",
            Self::Clean => "clean",
        }
    }

    /// The name in the audit log.
    fn audit_name(self) -> &'static str {
        match self {
            Self::RetryDead => "retry_dead_letters",
            Self::PurgeDead => "purge_dead_letters",
            Self::Clean => "clean_jobs",
        }
    }
}

/// The filter of a bulk action, as the queue page's forms send it (query or form).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct BulkFilter {
    #[serde(default, rename = "type")]
    job_type: String,
    #[serde(default)]
    owner: String,
    /// `completed`, `dead` or `cancelled` (clean only).
    #[serde(default)]
    state: String,
    /// How old a job must be to be cleaned, in `unit`s (clean only).
    #[serde(default)]
    older: String,
    /// `minutes`, `hours` or `days`.
    #[serde(default)]
    unit: String,
}

/// A bulk action checked and ready to call.
struct Plan {
    action: Action,
    queue: String,
    job_type: String,
    owner: String,
    /// Clean only.
    state: JobState,
    /// Clean only.
    older_than_ms: i64,
    /// Clean only, as typed back on the page: `7 days`.
    older_words: String,
    filter: BulkFilter,
}

impl Plan {
    fn new(action: Action, queue: String, filter: BulkFilter) -> Result<Self, ConsoleError> {
        let job_type = filter.job_type.trim().to_owned();
        let owner = filter.owner.trim().to_owned();
        let (mut state, mut older_than_ms, mut older_words) = (JobState::Dead, 0, String::new());
        if action == Action::Clean {
            state = state_named(filter.state.trim())
                .filter(|s| {
                    matches!(
                        s,
                        JobState::Completed | JobState::Dead | JobState::Cancelled
                    )
                })
                .ok_or_else(|| {
                    ConsoleError::BadRequest(
                        "Only completed, dead or cancelled jobs can be cleaned.".into(),
                    )
                })?;
            let n: u32 = filter.older.trim().parse().map_err(|_| {
                ConsoleError::BadRequest("“Older than” must be a whole number.".into())
            })?;
            let unit_ms: i64 = match filter.unit.trim() {
                "minutes" => 60_000,
                "hours" => 3_600_000,
                "days" => 86_400_000,
                _ => {
                    return Err(ConsoleError::BadRequest(
                        "The unit must be minutes, hours or days.".into(),
                    ));
                }
            };
            older_than_ms = i64::from(n).saturating_mul(unit_ms);
            older_words = format!("{n} {}", filter.unit.trim());
        }
        Ok(Self {
            action,
            queue,
            job_type,
            owner,
            state,
            older_than_ms,
            older_words,
            filter,
        })
    }

    /// The filter as the audit log shows it.
    fn target(&self) -> String {
        let mut parts = Vec::new();
        if self.action == Action::Clean {
            parts.push(format!("state={}", state_name(self.state as i32)));
            parts.push(format!("older_than_ms={}", self.older_than_ms));
        }
        if !self.job_type.is_empty() {
            parts.push(format!("type={}", self.job_type));
        }
        if !self.owner.is_empty() {
            parts.push(format!("owner={}", self.owner));
        }
        parts.join(" ")
    }

    /// What the action touches, in words: `dead letters`, `completed jobs`.
    fn what(&self) -> String {
        match self.action {
            Action::RetryDead | Action::PurgeDead => "dead letters".to_owned(),
            Action::Clean => format!("{} jobs", state_name(self.state as i32)),
        }
    }

    /// One call: (touched, next token).
    async fn call(
        &self,
        jobs: &JobsClient,
        token: String,
        dry_run: bool,
    ) -> Result<(u64, String), ConsoleError> {
        let mut jobs = jobs.clone();
        let selection = || DeadLetterSelection {
            queue: self.queue.clone(),
            job_type: self.job_type.clone(),
            owner_user_id: self.owner.clone(),
            failed_before_ms: 0,
        };
        let answer = match self.action {
            Action::RetryDead => upstream::jobs(
                jobs.retry_dead_letters(RetryDeadLettersRequest {
                    selection: Some(selection()),
                    limit: LIMIT,
                    page_token: token,
                    dry_run,
                })
                .await,
            )
            .map(|r| (u64::from(r.retried), r.next_page_token)),
            Action::PurgeDead => upstream::jobs(
                jobs.purge_dead_letters(PurgeDeadLettersRequest {
                    selection: Some(selection()),
                    limit: LIMIT,
                    page_token: token,
                    dry_run,
                })
                .await,
            )
            .map(|r| (u64::from(r.deleted), r.next_page_token)),
            Action::Clean => upstream::jobs(
                jobs.clean_jobs(CleanJobsRequest {
                    queue: self.queue.clone(),
                    state: self.state as i32,
                    older_than_ms: self.older_than_ms,
                    job_type: self.job_type.clone(),
                    owner_user_id: self.owner.clone(),
                    limit: LIMIT,
                    page_token: token,
                    dry_run,
                })
                .await,
            )
            .map(|r| (u64::from(r.deleted), r.next_page_token)),
        };
        answer.map_err(|e| unknown_queue(e, &self.queue))
    }

    /// Calls until the token is empty, a bound stops it or a call fails.
    async fn walk(
        &self,
        jobs: &JobsClient,
        dry_run: bool,
        calls: usize,
        deadline: Option<Instant>,
    ) -> Walked {
        let (mut touched, mut token) = (0u64, String::new());
        for _ in 0..calls {
            let (n, next) = match self.call(jobs, token, dry_run).await {
                Ok(answer) => answer,
                Err(e) => {
                    return Walked {
                        touched,
                        more: true,
                        error: Some(e),
                    };
                }
            };
            touched = touched.saturating_add(n);
            if next.is_empty() {
                return Walked {
                    touched,
                    more: false,
                    error: None,
                };
            }
            token = next;
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
        }
        Walked {
            touched,
            more: true,
            error: None,
        }
    }

    /// Where the action leads back to: the queue's dead letters, or the tab it cleaned.
    fn back(&self) -> String {
        let q = url_part(&self.queue);
        let filter = super::queue::filter_query(&self.job_type, &self.owner, "");
        match self.action {
            Action::RetryDead | Action::PurgeDead => format!("/dead?queue={q}"),
            Action::Clean => format!(
                "/queues/{q}?state={}{filter}",
                state_name(self.state as i32)
            ),
        }
    }
}

/// How far a walk over the calls got.
struct Walked {
    /// Entries touched (or that would be, in a dry run) by the calls that answered.
    touched: u64,
    /// Whether it stopped before the end.
    more: bool,
    /// The call that failed, if one did (the ones before it stand).
    error: Option<ConsoleError>,
}

/// The confirmation page.
#[derive(Template)]
#[template(path = "bulk_confirm.html")]
struct ConfirmPage {
    nav: Nav,
    queue: String,
    action_url: String,
    /// The button and heading: `Retry`, `Purge`, `Clean`.
    verb: &'static str,
    what: String,
    count: u64,
    /// Counting stopped at its bound: `count` is a lower bound.
    at_least: bool,
    job_type: String,
    owner: String,
    older_words: String,
    filter: BulkFilter,
    back: String,
    danger: bool,
}

/// Summary text for after a run: `Retried 12 dead letters.` (+ that more remain).
pub fn summary(verb: &str, noun: &str, n: u64, more: bool) -> String {
    let plural = if n == 1 { "" } else { "s" };
    let mut text = format!("{verb} {n} {noun}{plural}.");
    if more {
        text.push_str(
            " More remain: one run stops after 10 seconds or 200 calls; run it again to go on.",
        );
    }
    text
}

fn on_queue(queue: &str) -> Subject<'_> {
    Subject {
        queue: Some(queue),
        ..Subject::default()
    }
}

fn subject<'a>(plan: &'a Plan, target: &'a str) -> Subject<'a> {
    Subject {
        queue: Some(&plan.queue),
        target: Some(target),
        ..Subject::default()
    }
}

/// `GET /queues/{queue}/bulk/{action}`: counts (dry run) and asks to confirm.
pub async fn confirm(
    State(app): State<Arc<AppState>>,
    Extension(user): Extension<CurrentUser>,
    Path((queue, action)): Path<(String, String)>,
    Query(filter): Query<BulkFilter>,
) -> Result<Html<String>, ConsoleError> {
    let action = Action::parse(&action)?;
    user.require_operator(action.audit_name(), &on_queue(&queue))?;
    let plan = Plan::new(action, queue, filter)?;
    let counted = plan.walk(&app.jobs, true, COUNT_CALLS, None).await;
    if let Some(e) = counted.error {
        return Err(e);
    }
    let (count, at_least) = (counted.touched, counted.more);
    let verb = match plan.action {
        Action::RetryDead => "Retry",
        Action::PurgeDead => "Purge",
        Action::Clean => "Clean",
    };
    render(&ConfirmPage {
        nav: Nav::for_user("queue", &user),
        action_url: format!(
            "/queues/{}/bulk/{}",
            url_part(&plan.queue),
            plan.action.url_name()
        ),
        verb,
        what: plan.what(),
        count,
        at_least,
        job_type: plan.job_type.clone(),
        owner: plan.owner.clone(),
        older_words: plan.older_words.clone(),
        back: plan.back(),
        danger: plan.action != Action::RetryDead,
        filter: plan.filter,
        queue: plan.queue,
    })
}

/// `POST /queues/{queue}/bulk/{action}`: runs the action (bounded), audits it, and goes back to
/// the queue page with what was done.
pub async fn run(
    State(app): State<Arc<AppState>>,
    Extension(user): Extension<CurrentUser>,
    Path((queue, action)): Path<(String, String)>,
    form: Result<Form<BulkFilter>, FormRejection>,
) -> Result<Redirect, ConsoleError> {
    let filter = form.map(|f| f.0).unwrap_or_default();
    let action = Action::parse(&action)?;
    let name = action.audit_name();
    user.require_operator(name, &on_queue(&queue))?;
    let plan = Plan::new(action, queue, filter)?;
    let target = plan.target();
    let subject = subject(&plan, &target);
    let deadline = Instant::now() + RUN_TIME;
    let walked = plan.walk(&app.jobs, false, RUN_CALLS, Some(deadline)).await;
    let (n, more) = (walked.touched, walked.more);
    if let Some(e) = walked.error {
        let outcome = format!("{} after {n} done", crate::access::failed_outcome(&e));
        user.audit(name, &subject, &outcome);
        return Err(e);
    }
    let outcome = match plan.action {
        Action::RetryDead => format!("retried {n}"),
        Action::PurgeDead | Action::Clean => format!("deleted {n}"),
    };
    let outcome = if more {
        format!("{outcome}, more remain")
    } else {
        outcome
    };
    user.audit(name, &subject, &outcome);
    let done = match plan.action {
        Action::RetryDead => "retried-all",
        Action::PurgeDead => "purged-all",
        Action::Clean => "cleaned",
    };
    let more = if more { "&more=1" } else { "" };
    Ok(Redirect::to(&format!(
        "{}&done={done}&n={n}{more}",
        plan.back()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(state: &str, older: &str, unit: &str) -> Result<Plan, ConsoleError> {
        let filter = BulkFilter {
            state: state.into(),
            older: older.into(),
            unit: unit.into(),
            ..BulkFilter::default()
        };
        Plan::new(Action::Clean, "email".into(), filter)
    }

    #[test]
    fn clean_takes_a_terminal_state_and_an_age() {
        let plan = clean("completed", "2", "hours").ok();
        assert_eq!(plan.map(|p| p.older_than_ms), Some(7_200_000));
        for (state, older, unit) in [
            ("waiting", "1", "days"),
            ("completed", "-1", "days"),
            ("completed", "x", "days"),
            ("completed", "1", "weeks"),
        ] {
            assert!(clean(state, older, unit).is_err(), "{state} {older} {unit}");
        }
    }

    #[test]
    fn summaries_say_when_more_remain() {
        assert_eq!(
            summary("Retried", "dead letter", 1, false),
            "Retried 1 dead letter."
        );
        assert!(summary("Deleted", "job", 5, true).contains("run it again"));
    }
}
