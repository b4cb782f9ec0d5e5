//! Operator actions on one job beside cancel: run a FAILED or DEAD job again now (retry), run a
//! DELAYED job now (promote), and delete a job that is not running. Each is one script in the
//! job's queue slot (`run_now.lua`, `delete_job.lua`); retrying a DEAD job is `retry_dead.lua` on
//! its dead letter, as RetryDeadLetter does.
use redis::Value;

use crate::engine::Engine;
use crate::error::{QueueError, Result};
use crate::ids::{dead_letter_id, parse_job_id};
use crate::job::{JobRecord, JobState, int, now_ms, text};

impl Engine {
    /// Runs a FAILED job now (WAITING, attempts kept), or retries a DEAD job's dead letter as a
    /// new job (priority 10, one attempt) and returns that one. FailedPrecondition for any other
    /// state, or a DEAD job whose dead letter is gone.
    pub async fn retry_job(&self, job_id: &str) -> Result<JobRecord> {
        match self.run_now(job_id, JobState::Failed).await? {
            RunNow::Moved => self.get_job(job_id).await,
            RunNow::Dead(entry) if !entry.is_empty() => {
                let queue = parse_job_id(job_id, "jobId")?;
                let letter = dead_letter_id(queue, &entry);
                match self.retry_dead_letter(&letter).await {
                    Ok(new_id) => self.get_job(&new_id).await,
                    Err(QueueError::NotFound(_)) => Err(letter_gone(job_id)),
                    Err(e) => Err(e),
                }
            }
            RunNow::Dead(_) => Err(letter_gone(job_id)),
            RunNow::Other(state) => Err(QueueError::FailedPrecondition(format!(
                "job {job_id} is {state}: only a failed or dead job can be retried"
            ))),
        }
    }

    /// Runs a DELAYED job now (WAITING in its band, due now). FailedPrecondition for any other
    /// state.
    pub async fn promote_job(&self, job_id: &str) -> Result<JobRecord> {
        match self.run_now(job_id, JobState::Delayed).await? {
            RunNow::Moved => self.get_job(job_id).await,
            RunNow::Dead(_) => Err(not_delayed(job_id, "dead")),
            RunNow::Other(state) => Err(not_delayed(job_id, &state)),
        }
    }

    /// Deletes a job that is not ACTIVE (see delete_job.lua); returns the state it was in.
    pub async fn delete_job(&self, job_id: &str) -> Result<JobState> {
        let queue = parse_job_id(job_id, "jobId")?;
        let q = self.queue_keys(queue);
        let mut conn = self.conn().await?;
        let reply: Vec<Value> = self
            .scripts
            .delete_job
            .key(q.job(job_id))
            .arg(q.tag())
            .arg(job_id)
            .arg(now_ms())
            .invoke_async(&mut conn)
            .await?;
        let state = reply.get(1).map(text).unwrap_or_default();
        match reply.first().map(int) {
            Some(1) => JobState::parse(&state)
                .ok_or_else(|| QueueError::Corrupt(format!("job {job_id} had state {state:?}"))),
            Some(2) => Err(QueueError::FailedPrecondition(format!(
                "job {job_id} is {state}: cancel it first"
            ))),
            _ => Err(QueueError::NotFound(format!("job {job_id}"))),
        }
    }

    /// Calls run_now.lua expecting `want` (DELAYED or FAILED).
    async fn run_now(&self, job_id: &str, want: JobState) -> Result<RunNow> {
        let queue = parse_job_id(job_id, "jobId")?;
        let q = self.queue_keys(queue);
        let mut conn = self.conn().await?;
        let reply: Vec<Value> = self
            .scripts
            .run_now
            .key(q.job(job_id))
            .arg(q.tag())
            .arg(job_id)
            .arg(want.as_str())
            .arg(now_ms())
            .invoke_async(&mut conn)
            .await?;
        let detail = reply.get(1).map(text).unwrap_or_default();
        match reply.first().map(int) {
            Some(1) => Ok(RunNow::Moved),
            Some(2) => Ok(RunNow::Other(detail)),
            Some(3) => Ok(RunNow::Dead(detail)),
            _ => Err(QueueError::NotFound(format!("job {job_id}"))),
        }
    }
}

/// What run_now.lua did.
enum RunNow {
    Moved,
    /// The job is in this other state.
    Other(String),
    /// The job is DEAD; its dead-letter entry id (empty if it has none).
    Dead(String),
}

fn letter_gone(job_id: &str) -> QueueError {
    QueueError::FailedPrecondition(format!(
        "job {job_id} is dead and its dead letter is gone (already retried, deleted or trimmed)"
    ))
}

fn not_delayed(job_id: &str, state: &str) -> QueueError {
    QueueError::FailedPrecondition(format!(
        "job {job_id} is {state}: only a delayed job can be promoted"
    ))
}
