//! The dead-letter alert: when a job fails for good, an error log line, and a `notifications` row
//! (PostgreSQL) for each configured alert recipient. The event on the queue's events stream and
//! pub/sub channel is written by the fail script itself (atomically with the move).
//!
//! Each recipient also gets a `job_dead_letter` realtime message in their `user:<id>` room through the
//! room bus, so an open dashboard shows the alert at once (and a reconnecting one recovers it).
use ncy_bus::BusPublisher;
use ncy_queue::FetchedJob;
use ncy_types::jobs::QueueName;
use ncy_types::realtime::Room;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

/// Who is told and through what.
#[derive(Clone, Debug)]
pub struct Alerts {
    pub postgres: Option<PgPool>,
    /// `NCY_WORKER_ALERT_USER_IDS`: users that get a notification row per dead letter.
    pub recipients: Vec<Uuid>,
    /// Publishes the realtime message of the alert.
    pub bus: BusPublisher,
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
        let data = json!({ "message": message, "metadata": metadata });
        if let Err(e) = alerts
            .bus
            .publish(&Room::user(*user), "job_dead_letter", &data)
            .await
        {
            tracing::warn!(user_id = %user, error = %e, "cannot publish the dead-letter alert");
        }
        let Some(pg) = &alerts.postgres else { continue };
        let inserted = sqlx::query(
            "INSERT INTO notifications (user_id, type, message, metadata) VALUES ($1, $2, $3, $4)",
        )
        .bind(user)
        .bind("job_dead_letter")
        .bind(&message)
        .bind(&metadata)
        .execute(pg)
        .await;
        if let Err(e) = inserted {
            tracing::warn!(user_id = %user, error = %e, "cannot write the dead-letter notification");
        }
    }
}
