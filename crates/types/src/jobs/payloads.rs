//! Payload of each job type: the JSON a producer sends, as typed structs with their rules.
//!
//! On the wire field names are camelCase and unknown fields are refused, so a typo (`subjet`) is an
//! error at enqueue rather than a silently missing value at run time. `validate` reports fields
//! relative to the payload (`to`, `cc[1]`); [`super::parse_payload`] puts them under `payload.`.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::checks;
use crate::error::ValidationError;
use crate::ids::parse_uuid;

/// A job type's payload: decoded from the producer's JSON, then checked by `validate`, whose errors
/// name the field relative to the payload.
pub trait JobData: Serialize + DeserializeOwned {
    /// Checks the rules of every field (serde has already checked the shape).
    fn validate(&self) -> Result<(), ValidationError> {
        Ok(())
    }
}

/// `noop`: any JSON object.
pub type NoopJobData = Map<String, Value>;

impl JobData for NoopJobData {}

/// Longest email subject, in characters.
pub const MAX_SUBJECT_CHARS: usize = 998;
/// Longest template name, in bytes.
pub const MAX_TEMPLATE_LEN: usize = 128;
/// Most `cc` recipients of one email.
pub const MAX_CC: usize = 50;
/// Longest person name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest notification type, in bytes.
pub const MAX_NOTIFICATION_TYPE_LEN: usize = 64;
/// Longest notification message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 10_000;
/// Retention bounds of the cleanup job, in days.
pub const RETENTION_DAYS: (u32, u32) = (1, 3650);
/// Bounds of the number of backups to keep.
pub const KEEP_LAST: (u32, u32) = (1, 1000);

/// Keys of a `send-email`'s `data` that only the worker sets: `appUrl` is the configured
/// `FRONTEND_URL`, so a payload cannot point the links of our templates elsewhere.
pub const RESERVED_EMAIL_DATA_KEYS: &[&str] = &["appUrl"];

/// `send-email`: render `template` with `data` and send it to `to` (and `cc`). `data` is the
/// template's context, any keys but [`RESERVED_EMAIL_DATA_KEYS`] (refused like an unknown field);
/// its links (keys ending in `Url`, see [`super::links`]) must be http(s) URLs or relative paths,
/// and the worker sends them only when they point at its `FRONTEND_URL`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmailJobData {
    pub to: String,
    pub subject: String,
    pub template: String,
    #[serde(default)]
    pub data: Map<String, Value>,
    #[serde(default)]
    pub cc: Vec<String>,
}

impl JobData for EmailJobData {
    /// Checks the rules of every field.
    fn validate(&self) -> Result<(), ValidationError> {
        checks::email("to", &self.to)?;
        checks::line("subject", &self.subject, MAX_SUBJECT_CHARS)?;
        checks::path_name("template", &self.template, MAX_TEMPLATE_LEN)?;
        if self.cc.len() > MAX_CC {
            return Err(ValidationError::new(
                "cc",
                format!("must have at most {MAX_CC} addresses"),
            ));
        }
        for (i, address) in self.cc.iter().enumerate() {
            checks::email(&format!("cc[{i}]"), address)?;
        }
        if let Some(key) = RESERVED_EMAIL_DATA_KEYS
            .iter()
            .find(|k| self.data.contains_key(**k))
        {
            return Err(ValidationError::new(
                format!("data.{key}"),
                "is not accepted: the worker sets it from its FRONTEND_URL",
            ));
        }
        super::links::check_links(&self.data)
    }
}

/// `send-welcome-email`: the welcome email of a new user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WelcomeEmailData {
    pub user_id: String,
    pub email: String,
    pub name: String,
}

impl JobData for WelcomeEmailData {
    /// Checks the rules of every field.
    fn validate(&self) -> Result<(), ValidationError> {
        parse_uuid("userId", &self.user_id)?;
        checks::email("email", &self.email)?;
        checks::line("name", &self.name, MAX_NAME_CHARS)
    }
}

/// `send-notification`: a notification row for a user, pushed to them live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotificationJobData {
    pub user_id: String,
    /// The notification kind, e.g. `TASK_UPDATED`.
    pub r#type: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

impl JobData for NotificationJobData {
    /// Checks the rules of every field.
    fn validate(&self) -> Result<(), ValidationError> {
        parse_uuid("userId", &self.user_id)?;
        checks::token("type", &self.r#type, MAX_NOTIFICATION_TYPE_LEN)?;
        checks::text("message", &self.message, MAX_MESSAGE_CHARS)
    }
}

/// Which report to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportType {
    /// Tasks of a project by status and assignee; needs `projectId`.
    ProjectTasks,
    /// Activity of an organization; needs `organizationId`.
    OrganizationActivity,
}

/// File format of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportFormat {
    Pdf,
    Excel,
    Csv,
}

impl ReportFormat {
    /// File extension of the format.
    pub fn extension(self) -> &'static str {
        match self {
            ReportFormat::Pdf => "pdf",
            ReportFormat::Excel => "xlsx",
            ReportFormat::Csv => "csv",
        }
    }
}

/// `generate-report`: build a report for `userId` and notify them with a link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReportJobData {
    pub report_type: ReportType,
    pub format: ReportFormat,
    pub user_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_id: Option<String>,
    /// Start of the period covered, ms since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_ms: Option<i64>,
    /// End of the period covered, ms since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_ms: Option<i64>,
}

impl JobData for ReportJobData {
    /// Checks the rules of every field and that the report type has the id it needs.
    fn validate(&self) -> Result<(), ValidationError> {
        parse_uuid("userId", &self.user_id)?;
        if let Some(id) = &self.project_id {
            parse_uuid("projectId", id)?;
        }
        if let Some(id) = &self.organization_id {
            parse_uuid("organizationId", id)?;
        }
        match self.report_type {
            ReportType::ProjectTasks if self.project_id.is_none() => {
                return Err(ValidationError::new(
                    "projectId",
                    "is required when reportType is project_tasks",
                ));
            }
            ReportType::OrganizationActivity if self.organization_id.is_none() => {
                return Err(ValidationError::new(
                    "organizationId",
                    "is required when reportType is organization_activity",
                ));
            }
            _ => {}
        }
        for (field, value) in [("fromMs", self.from_ms), ("toMs", self.to_ms)] {
            if value.is_some_and(|ms| ms < 0) {
                return Err(ValidationError::new(field, "must not be negative"));
            }
        }
        if let (Some(from), Some(to)) = (self.from_ms, self.to_ms)
            && to < from
        {
            return Err(ValidationError::new("toMs", "must not be before fromMs"));
        }
        Ok(())
    }
}

/// `cleanup-old-data`: delete read notifications and finished job records past their retention
/// (the worker's settings decide when a field is absent).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CleanupJobData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifications_older_than_days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobs_older_than_days: Option<u32>,
}

impl JobData for CleanupJobData {
    /// Checks that each retention, when given, is 1..=3650 days.
    fn validate(&self) -> Result<(), ValidationError> {
        let (min, max) = RETENTION_DAYS;
        checks::range(
            "notificationsOlderThanDays",
            self.notifications_older_than_days,
            min,
            max,
        )?;
        checks::range("jobsOlderThanDays", self.jobs_older_than_days, min, max)
    }
}

/// `backup-database`: dump the database to the file store, keeping the last `keepLast` dumps
/// (the worker's setting when absent).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupJobData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
}

impl JobData for BackupJobData {
    /// Checks that `keepLast`, when given, is 1..=1000.
    fn validate(&self) -> Result<(), ValidationError> {
        let (min, max) = KEEP_LAST;
        checks::range("keepLast", self.keep_last, min, max)
    }
}

/// Longest test `sleep`, in milliseconds (ten minutes).
pub const MAX_SLEEP_MS: u64 = 600_000;

/// Test-only `sleep`: wait `ms` milliseconds, reporting progress, stopping early when cancelled.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SleepJobData {
    #[serde(default)]
    pub ms: u64,
}

impl JobData for SleepJobData {
    /// Checks that `ms` is at most [`MAX_SLEEP_MS`].
    fn validate(&self) -> Result<(), ValidationError> {
        if self.ms > MAX_SLEEP_MS {
            return Err(ValidationError::new(
                "ms",
                format!("must be at most {MAX_SLEEP_MS}"),
            ));
        }
        Ok(())
    }
}

/// Test-only `fail`: the attempt fails with `message` (non-retryable when `retryable` is false),
/// or panics when `panic` is true; attempts after `failAttempts` (when set) succeed instead.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FailJobData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub panic: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_attempts: Option<u32>,
}

impl JobData for FailJobData {}
