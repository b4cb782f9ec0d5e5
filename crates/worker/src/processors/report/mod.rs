//! `generate-report`: the seed's `reportService.generate`, for real. Queries the report's data
//! from PostgreSQL (ncy-store), renders it as csv, xlsx or pdf, stores the file in the
//! [`FileStore`] under `reports/<userId>/<reportType>-<projectOrOrgId>-<timestamp>.<ext>` and
//! notifies the user (`REPORT_READY`, with the link) — progress 10 (querying), 50 (rendering), 80
//! (storing), 100 as in the seed.
//!
//! Who gets a report: only a member (any role) of the organization that owns its data — for a
//! `project_tasks` report the project's organization. `userId` is checked before anything is read,
//! rendered, stored or sent; anyone else fails the job at once, non-retryably ("user <u> may not
//! read project <p>: not a member of its organization"), with no file and no notification.
//!
//! For whom: a job with an owner (`owner_user_id`, the user the enqueuing service asked for it on
//! behalf of) builds a report only for that owner — `userId` must be the owner, or the job fails at
//! once, non-retryably ("userId <u> is not the job's owner <o>: …"), before anything is read,
//! written or notified; otherwise one member could have a report built for, and pushed to, another.
//! An ownerless job (enqueued by an internal service or a schedule) keeps the membership rule only.
//!
//! Failures: a project or organization that does not exist is final ("project <id> does not
//! exist"), as is a user outside its organization; the database unreachable is an outage of
//! PostgreSQL and an S3 file store unreachable or not serving is an outage of the object store
//! (either way the job is postponed, see [`crate::outages`]); another database error or the file
//! store failing otherwise (a local directory not writable) is retried with their message.
use chrono::Utc;
use ncy_runtime::{ConfigError, Env};
use ncy_types::jobs::{JobType, ReportFormat, ReportJobData, ReportType};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use super::{JobContext, JobError, JobResult, Processor};
use crate::files::FileStore;
use crate::notify::{NOTIFICATION_EVENT, Notifier};

mod csv;
pub mod model;
mod pdf;
mod xlsx;

use model::Report;

/// The notification kind of a finished report.
pub const REPORT_READY: &str = "REPORT_READY";
/// Default period of organization_activity when `fromMs` is absent: 30 days before `toMs`.
const DEFAULT_PERIOD_MS: i64 = 30 * 24 * 3600 * 1000;

/// Settings of the report processor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportSettings {
    /// `NCY_REPORT_LINK_BASE_URL`: the link sent to the user is this + `/` + the file's key
    /// (default `http://localhost:3000/files`).
    pub link_base_url: String,
}

impl ReportSettings {
    /// Reads `NCY_REPORT_LINK_BASE_URL`.
    pub fn load(env: &Env) -> Result<Self, ConfigError> {
        let base = env
            .get("NCY_REPORT_LINK_BASE_URL")
            .unwrap_or_else(|| "http://localhost:3000/files".to_owned());
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ConfigError::new(
                "NCY_REPORT_LINK_BASE_URL",
                "expected an http:// or https:// URL",
            ));
        }
        Ok(Self {
            link_base_url: base.trim_end_matches('/').to_owned(),
        })
    }
}

/// Runs `generate-report` jobs.
#[derive(Clone)]
pub struct ReportProcessor {
    pub settings: ReportSettings,
    pub files: FileStore,
    pub notifier: Notifier,
}

impl Processor for ReportProcessor {
    const JOB_TYPE: JobType = JobType::GenerateReport;
    type Payload = ReportJobData;

    async fn process(&self, ctx: JobContext, data: ReportJobData) -> JobResult {
        let user_id = parse_id("userId", &data.user_id)?;
        check_owner(&ctx.job.owner_user_id, user_id)?;
        let pool = self
            .notifier
            .postgres
            .clone()
            .ok_or_else(|| JobError::fatal("no database is configured (DATABASE_URL)"))?;

        ctx.progress(10, "querying").await;
        let now_ms = Utc::now().timestamp_millis();
        let (subject, report) = query(&pool, &data, user_id, now_ms).await?;
        if ctx.cancel.is_cancelled() {
            return Err(JobError::fatal("cancelled"));
        }

        ctx.progress(50, "rendering").await;
        let rows = report.detail.rows.len();
        let format = data.format;
        let bytes = tokio::task::spawn_blocking(move || render(&report, format))
            .await
            .map_err(|e| JobError::fatal(format!("rendering stopped: {e}")))?
            .map_err(|e| JobError::fatal(format!("cannot render the {format:?} report: {e}")))?;
        if ctx.cancel.is_cancelled() {
            return Err(JobError::fatal("cancelled"));
        }

        ctx.progress(80, "storing").await;
        let report_type = report_type_name(data.report_type);
        let file_name = format!(
            "{report_type}-{subject}-{}.{}",
            Utc::now().format("%Y%m%dT%H%M%S%3fZ"),
            format.extension()
        );
        let key = format!("reports/{user_id}/{file_name}");
        let size = self
            .files
            .put(&key, bytes.into())
            .await
            .map_err(|e| JobError::file_store(&e))?;
        let url = format!("{}/{key}", self.settings.link_base_url);
        let format_name = format.extension();
        let metadata = json!({
            "jobId": ctx.job.id.clone(),
            "url": url,
            "key": key,
            "fileName": file_name,
            "format": format_name,
            "reportType": report_type,
            "rows": rows,
            "bytes": size,
        });
        let message = format!("Your {report_type} report ({format_name}, {rows} rows) is ready");
        self.notifier
            .notify(
                NOTIFICATION_EVENT,
                user_id,
                REPORT_READY,
                &message,
                &metadata,
            )
            .await
            .map_err(super::notification::to_job_error)?;
        ctx.progress(100, "done").await;
        Ok(Some(json!({
            "key": key,
            "url": url,
            "rows": rows,
            "bytes": size,
            "format": format_name,
        })))
    }
}

/// Queries the report's data, once [`authorize`] has let `user_id` read it; returns the id it is
/// about and the report.
async fn query(
    pool: &PgPool,
    data: &ReportJobData,
    user_id: Uuid,
    now_ms: i64,
) -> Result<(Uuid, Report), JobError> {
    let subject = Subject::of(data)?;
    authorize(pool, subject, user_id).await?;
    let db = |e: ncy_store::StoreError| JobError::database(e.to_string(), &e);
    match subject {
        Subject::Project(id) => {
            let found = ncy_store::reports::project_tasks(pool, id)
                .await
                .map_err(db)?
                .ok_or_else(|| JobError::fatal(format!("project {id} does not exist")))?;
            Ok((id, model::project_tasks(&found, now_ms)))
        }
        Subject::Organization(id) => {
            let to = data.to_ms.unwrap_or(now_ms);
            let from = data.from_ms.unwrap_or(to - DEFAULT_PERIOD_MS).max(0);
            let found = ncy_store::reports::organization_activity(pool, id, from, to)
                .await
                .map_err(db)?
                .ok_or_else(|| JobError::fatal(format!("organization {id} does not exist")))?;
            Ok((id, model::organization_activity(&found, from, to, now_ms)))
        }
    }
}

/// What a report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subject {
    Project(Uuid),
    Organization(Uuid),
}

impl Subject {
    fn of(data: &ReportJobData) -> Result<Self, JobError> {
        Ok(match data.report_type {
            ReportType::ProjectTasks => Subject::Project(parse_id(
                "projectId",
                data.project_id.as_deref().unwrap_or_default(),
            )?),
            ReportType::OrganizationActivity => Subject::Organization(parse_id(
                "organizationId",
                data.organization_id.as_deref().unwrap_or_default(),
            )?),
        })
    }
}

/// Lets the job go on only when `user_id` is a member of the organization that owns `subject`'s
/// data (the project's organization for a project). A subject that does not exist and a user
/// outside the organization are final: no retry changes either.
async fn authorize(pool: &PgPool, subject: Subject, user_id: Uuid) -> Result<(), JobError> {
    let db = |e: ncy_store::StoreError| JobError::database(e.to_string(), &e);
    let (member, what, owner) = match subject {
        Subject::Project(id) => (
            ncy_store::access::project_member(pool, id, user_id).await,
            format!("project {id}"),
            "its organization",
        ),
        Subject::Organization(id) => (
            ncy_store::access::organization_member(pool, id, user_id).await,
            format!("organization {id}"),
            "it",
        ),
    };
    match member.map_err(db)? {
        None => Err(JobError::fatal(format!("{what} does not exist"))),
        Some(true) => Ok(()),
        Some(false) => Err(JobError::fatal(format!(
            "user {user_id} may not read {what}: not a member of {owner}"
        ))),
    }
}

/// Lets the job go on when it has no owner, or when its owner is `user_id`: a report is built for,
/// stored under and notified to the user who asked for it, never another one.
fn check_owner(owner: &str, user_id: Uuid) -> Result<(), JobError> {
    if owner.is_empty() {
        return Ok(());
    }
    let owner: Uuid = owner.parse().map_err(|_| {
        JobError::fatal(format!(
            "the job's owner {owner:?} is not a UUID: cannot tell whom the report is for"
        ))
    })?;
    if owner == user_id {
        Ok(())
    } else {
        Err(JobError::fatal(format!(
            "userId {user_id} is not the job's owner {owner}: a report is built only for the \
             user who asked for it"
        )))
    }
}

fn render(report: &Report, format: ReportFormat) -> Result<Vec<u8>, String> {
    match format {
        ReportFormat::Csv => csv::render(report),
        ReportFormat::Excel => xlsx::render(report),
        ReportFormat::Pdf => pdf::render(report),
    }
}

fn report_type_name(t: ReportType) -> &'static str {
    match t {
        ReportType::ProjectTasks => "project_tasks",
        ReportType::OrganizationActivity => "organization_activity",
    }
}

fn parse_id(field: &str, s: &str) -> Result<Uuid, JobError> {
    s.parse().map_err(|_| {
        JobError::fatal(format!(
            "bad generate-report payload: {field} is not a UUID"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_with_an_owner_builds_a_report_only_for_its_owner() {
        let (ada, bob) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(check_owner("", ada), Ok(()), "ownerless: as before");
        assert_eq!(check_owner(&ada.to_string(), ada), Ok(()));
        assert_eq!(check_owner(&ada.to_string().to_uppercase(), ada), Ok(()));
        let err = check_owner(&bob.to_string(), ada).expect_err("another user");
        assert!(!err.retryable);
        assert_eq!(
            err.message,
            format!(
                "userId {ada} is not the job's owner {bob}: a report is built only for the user \
                 who asked for it"
            )
        );
        assert!(!check_owner("bob", ada).expect_err("not a UUID").retryable);
    }
}
