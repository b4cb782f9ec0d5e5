//! The dead-letter alert: when a job fails for good, an error log line, and for each configured
//! alert recipient a `job_dead_letter` notification ([`crate::notify`]: a `notifications` row plus a
//! realtime message in their `user:<id>` room, so an open dashboard shows it at once). The event on
//! the queue's events stream and pub/sub channel is written by the fail script itself (atomically
//! with the move).
use ncy_queue::FetchedJob;
use ncy_types::jobs::QueueName;
use serde_json::json;
use uuid::Uuid;

use crate::notify::Notifier;

/// The notification type (and realtime event) of a dead-letter alert.
pub const DEAD_LETTER_EVENT: &str = "job_dead_letter";

/// Who is told and through what.
#[derive(Clone, Debug)]
pub struct Alerts {
    /// `NCY_WORKER_ALERT_USER_IDS`: users that get a notification per dead letter.
    pub recipients: Vec<Uuid>,
    /// Writes the rows and publishes the realtime messages.
    pub notifier: Notifier,
}

/// Raises the alert for a job that just became a dead letter.
pub async fn dead_letter(
    alerts: &Alerts,
    queue: QueueName,
    job: &FetchedJob,
    dead_letter_id: &str,
    error: &str,
) {
    tracing::error!(
        queue = queue.as_str(),
        job_id = %job.id,
        job_type = %job.job_type,
        dead_letter_id,
        attempts_made = job.attempt,
        error,
        "job moved to the dead-letter queue"
    );
    let message = format!(
        "Job {} ({}) on queue {} failed for good after {} attempt(s): {}",
        job.id, job.job_type, queue, job.attempt, error
    );
    let metadata = json!({
        "queue": queue.as_str(),
        "jobId": job.id,
        "jobType": job.job_type,
        "deadLetterId": dead_letter_id,
        "error": error,
        "attemptsMade": job.attempt,
    });
    for user in &alerts.recipients {
        let written = alerts
            .notifier
            .notify(
                DEAD_LETTER_EVENT,
                *user,
                DEAD_LETTER_EVENT,
                &message,
                &metadata,
            )
            .await;
        if let Err(e) = written {
            // No row (no database, or it is down): the realtime message is all we can send.
            tracing::warn!(user_id = %user, error = %e, "cannot write the dead-letter notification");
            let data =
                json!({ "type": DEAD_LETTER_EVENT, "message": message, "metadata": metadata });
            alerts.notifier.push(*user, DEAD_LETTER_EVENT, &data).await;
        }
    }
}
