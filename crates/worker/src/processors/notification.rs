//! `send-notification {userId, type, message, metadata}`: the notifications row plus the realtime
//! `notification` message in the user's room, through the worker's [`Notifier`] (the seed's
//! `notificationService.create` + `realtimeService.sendToUser`).
//!
//! A user that does not exist fails the job at once (no retry brings them back); a database that
//! is unreachable is an outage of PostgreSQL (the job is postponed, see [`crate::outages`]); any
//! other database error is retried per the job's attempts. The result is `{"notificationId": …}`.
use ncy_types::jobs::{JobType, NotificationJobData};
use serde_json::json;
use uuid::Uuid;

use super::{JobContext, JobError, JobResult, Processor};
use crate::notify::{NOTIFICATION_EVENT, Notifier, NotifyError};

/// The `send-notification` processor.
#[derive(Debug, Clone)]
pub struct NotificationProcessor {
    pub notifier: Notifier,
}

impl Processor for NotificationProcessor {
    const JOB_TYPE: JobType = JobType::SendNotification;
    type Payload = NotificationJobData;

    async fn process(&self, _ctx: JobContext, job: NotificationJobData) -> JobResult {
        let user_id: Uuid = job
            .user_id
            .parse()
            .map_err(|e| JobError::fatal(format!("bad userId {:?}: {e}", job.user_id)))?;
        let metadata = job.metadata.unwrap_or_else(|| json!({}));
        let row = self
            .notifier
            .notify(
                NOTIFICATION_EVENT,
                user_id,
                &job.r#type,
                &job.message,
                &metadata,
            )
            .await
            .map_err(to_job_error)?;
        Ok(Some(json!({"notificationId": row.id})))
    }
}

/// Unknown user and a worker without a database are fatal; the database down is an outage; other
/// store errors are retried.
pub(crate) fn to_job_error(e: NotifyError) -> JobError {
    match &e {
        NotifyError::UnknownUser(_) | NotifyError::NoDatabase => JobError::fatal(e.to_string()),
        NotifyError::Store(store) => JobError::database(e.to_string(), store),
    }
}
