//! `cleanup-old-data {notificationsOlderThanDays, jobsOlderThanDays}`: deletes read notifications
//! past their retention (PostgreSQL, `ncy_store::notifications::delete_read_older_than`) and the
//! finished job records and dead letters of every queue past theirs (Redis,
//! `Engine::purge_finished`). A field absent from the payload takes the worker's setting.
//!
//! Progress: 10 at start, 50 once notifications are done, then up to 100 queue by queue. The
//! result is `{"notificationsDeleted", "jobsDeleted", "deadLettersDeleted"}`. A database or Redis
//! that is down is an outage (the job is postponed, see [`crate::outages`]), another error of
//! theirs fails the attempt retryably; what was already deleted stays deleted, and the next
//! attempt simply finds less to do.
use std::time::Duration;

use ncy_runtime::{ConfigError, Env};
use ncy_types::jobs::payloads::RETENTION_DAYS;
use ncy_types::jobs::{CleanupJobData, JobType, QueueName};
use serde_json::json;
use sqlx::PgPool;

use super::{JobContext, JobError, JobResult, Processor};

const DAY_MS: u64 = 86_400_000;

/// Default retentions of the cleanup job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupSettings {
    /// `NCY_WORKER_NOTIFICATIONS_RETENTION_DAYS`: read notifications kept this long (default 30).
    pub notifications_days: u32,
    /// `NCY_WORKER_JOBS_RETENTION_DAYS`: finished jobs and dead letters kept this long (default 7).
    pub jobs_days: u32,
}

impl CleanupSettings {
    /// Reads the retentions from `env` (each 1–3650 days).
    pub fn load(env: &Env) -> Result<Self, ConfigError> {
        let days = |var: &str, default: u32| -> Result<u32, ConfigError> {
            let d: u32 = env.parse_or(var, default, "a number of days")?;
            let (min, max) = RETENTION_DAYS;
            if !(min..=max).contains(&d) {
                return Err(ConfigError::new(
                    var,
                    format!("must be between {min} and {max} days"),
                ));
            }
            Ok(d)
        };
        Ok(Self {
            notifications_days: days("NCY_WORKER_NOTIFICATIONS_RETENTION_DAYS", 30)?,
            jobs_days: days("NCY_WORKER_JOBS_RETENTION_DAYS", 7)?,
        })
    }
}

/// The `cleanup-old-data` processor.
#[derive(Debug, Clone)]
pub struct CleanupProcessor {
    pub settings: CleanupSettings,
    pub postgres: Option<PgPool>,
}

impl Processor for CleanupProcessor {
    const JOB_TYPE: JobType = JobType::CleanupOldData;
    type Payload = CleanupJobData;

    async fn process(&self, ctx: JobContext, job: CleanupJobData) -> JobResult {
        let pg = self
            .postgres
            .as_ref()
            .ok_or_else(|| JobError::fatal("no database is configured (DATABASE_URL)"))?;
        let notification_days = job
            .notifications_older_than_days
            .unwrap_or(self.settings.notifications_days);
        let job_days = job.jobs_older_than_days.unwrap_or(self.settings.jobs_days);

        ctx.progress(10, "deleting read notifications").await;
        let retention = Duration::from_millis(u64::from(notification_days) * DAY_MS);
        let notifications = ncy_store::notifications::delete_read_older_than(pg, retention)
            .await
            .map_err(|e| JobError::database(format!("cannot delete notifications: {e}"), &e))?;
        ctx.progress(50, &format!("deleted {notifications} notifications"))
            .await;

        let cutoff_ms =
            ncy_queue::now_ms() - i64::try_from(u64::from(job_days) * DAY_MS).unwrap_or(i64::MAX);
        let (mut jobs, mut dead_letters) = (0, 0);
        let queues = QueueName::ALL;
        for (i, queue) in queues.into_iter().enumerate() {
            if ctx.cancel.is_cancelled() {
                return Err(JobError::fatal("cancelled"));
            }
            let purged = ctx
                .engine
                .purge_finished(queue, cutoff_ms)
                .await
                .map_err(|e| {
                    let message = format!(
                        "cannot purge finished jobs of queue {}: {e}",
                        queue.as_str()
                    );
                    JobError::redis(message, &e)
                })?;
            jobs += purged.jobs;
            dead_letters += purged.dead_letters;
            let percent = 50 + (50 * (i + 1) / queues.len());
            ctx.progress(
                u8::try_from(percent).unwrap_or(100),
                &format!("purged queue {}", queue.as_str()),
            )
            .await;
        }
        tracing::info!(
            notifications,
            jobs,
            dead_letters,
            notification_days,
            job_days,
            "cleanup done"
        );
        Ok(Some(json!({
            "notificationsDeleted": notifications,
            "jobsDeleted": jobs,
            "deadLettersDeleted": dead_letters,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retentions_default_and_are_bounded() {
        let s = CleanupSettings::load(&Env::from_pairs::<String, String>([])).expect("defaults");
        assert_eq!((s.notifications_days, s.jobs_days), (30, 7));
        let env = Env::from_pairs([("NCY_WORKER_JOBS_RETENTION_DAYS", "0")]);
        let err = CleanupSettings::load(&env).expect_err("0 days");
        assert_eq!(err.var, "NCY_WORKER_JOBS_RETENTION_DAYS");
    }
}
