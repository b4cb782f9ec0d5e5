//! Job progress and outcomes to the owner's browser: for a job enqueued with an `ownerUserId`, the
//! worker publishes `job_progress`, `job_completed`, `job_failed` and `job_cancelled` to the owner's
//! `user:<id>` room through the room bus. Every socket of that user is in the room (the gateway joins
//! it on authentication), so an open page watching the job sees it live, and a page that reconnects
//! recovers the events it missed from the room's history — the seed's `job:progress` push, without
//! every gateway instance having to read every queue's event channel.
//!
//! Jobs without an owner publish nothing here; WatchJob (gRPC) serves internal callers. A publish
//! failure is logged, never fails the job.
use ncy_bus::BusPublisher;
use ncy_queue::FetchedJob;
use ncy_types::jobs::QueueName;
use ncy_types::realtime::Room;
use serde_json::{Value, json};
use uuid::Uuid;

/// Realtime event names.
pub const JOB_PROGRESS: &str = "job_progress";
pub const JOB_COMPLETED: &str = "job_completed";
pub const JOB_FAILED: &str = "job_failed";
pub const JOB_CANCELLED: &str = "job_cancelled";

/// Publishes a job's updates to its owner's room.
#[derive(Clone, Debug)]
pub struct JobUpdates {
    pub bus: BusPublisher,
}

/// What happened to the job.
#[derive(Debug, Clone, PartialEq)]
pub enum Update<'a> {
    Progress {
        percent: u8,
        message: &'a str,
    },
    Completed {
        result: Option<&'a Value>,
    },
    /// `will_retry`: another attempt is scheduled; false: the job is dead-lettered.
    Failed {
        error: &'a str,
        will_retry: bool,
    },
    Cancelled,
}

impl JobUpdates {
    /// Publishes `update` of `job` to its owner's room, if it has a (valid) owner.
    pub async fn publish(&self, queue: QueueName, job: &FetchedJob, update: Update<'_>) {
        let Some(owner) = owner(job) else { return };
        let (event, data) = message(queue, job, &update);
        if let Err(e) = self.bus.publish(&Room::user(owner), event, &data).await {
            tracing::warn!(job_id = %job.id, user_id = %owner, event, error = %e, "cannot publish the job update");
        }
    }
}

fn owner(job: &FetchedJob) -> Option<Uuid> {
    if job.owner_user_id.is_empty() {
        return None;
    }
    job.owner_user_id.parse().ok()
}

/// The event name and its data (camelCase, like the gRPC `JobEvent`).
fn message(queue: QueueName, job: &FetchedJob, update: &Update<'_>) -> (&'static str, Value) {
    let mut data = json!({
        "jobId": job.id,
        "queue": queue.as_str(),
        "jobType": job.job_type,
        "attempt": job.attempt,
        "maxAttempts": job.max_attempts,
    });
    let event = match update {
        Update::Progress { percent, message } => {
            data["progress"] = json!(percent);
            data["message"] = json!(message);
            JOB_PROGRESS
        }
        Update::Completed { result } => {
            data["progress"] = json!(100);
            data["result"] = result.cloned().unwrap_or(Value::Null);
            JOB_COMPLETED
        }
        Update::Failed { error, will_retry } => {
            data["error"] = json!(error);
            data["willRetry"] = json!(will_retry);
            JOB_FAILED
        }
        Update::Cancelled => JOB_CANCELLED,
    };
    (event, data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ncy_types::jobs::DEFAULT_BACKOFF;

    fn job(owner: &str) -> FetchedJob {
        FetchedJob {
            id: "j1".into(),
            job_type: "generate-report".into(),
            data: "{}".into(),
            attempt: 1,
            max_attempts: 3,
            backoff: DEFAULT_BACKOFF,
            band: 0,
            entry: "1-0".into(),
            created_at_ms: 0,
            due_at_ms: 0,
            owner_user_id: owner.into(),
            trace: String::new(),
        }
    }

    #[test]
    fn only_jobs_with_a_valid_owner_are_routed() {
        assert_eq!(owner(&job("")), None);
        assert_eq!(owner(&job("not-a-uuid")), None);
        let id = Uuid::new_v4();
        assert_eq!(owner(&job(&id.to_string())), Some(id));
    }

    #[test]
    fn messages_carry_the_job_and_what_happened() {
        let j = job("");
        let (ev, d) = message(
            QueueName::Report,
            &j,
            &Update::Progress {
                percent: 50,
                message: "rendering",
            },
        );
        assert_eq!(ev, JOB_PROGRESS);
        assert_eq!(d["progress"], 50);
        assert_eq!(d["jobType"], "generate-report");
        let (ev, d) = message(
            QueueName::Report,
            &j,
            &Update::Failed {
                error: "boom",
                will_retry: false,
            },
        );
        assert_eq!(ev, JOB_FAILED);
        assert_eq!(d["willRetry"], false);
        assert_eq!(d["error"], "boom");
    }
}
