//! CleanJobs: deleting the records of a queue's finished jobs of one terminal state, oldest first,
//! a bounded slice at a time, for operators who want memory back before retention would free it.
//!
//! A run walks the state's sorted set (finish time → job) from the oldest up to a cutoff fixed when
//! it started, so it ends even while jobs keep finishing. Its position is the last job examined,
//! `(finish time, id)`: deleted jobs leave the set, so an offset would skip jobs, while a position
//! stays right (members of one score are in id order). Each kept job is deleted by
//! `clean_job.lua`, only if it is still in that state and set and finished by the cutoff, so a job
//! retried or deleted meanwhile is left alone and not counted. Dead letters stay.
use ncy_types::ValidationError;
use ncy_types::jobs::QueueName;

use crate::engine::Engine;
use crate::error::{QueueError, Result};
use crate::job::JobState;
use crate::listing::{ByteBudget, JobFilter};

/// Members read per round trip.
const CHUNK: usize = 200;

/// Where a clean run continues: after the job `job_id`, which finished at `finished_at_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanPosition {
    pub finished_at_ms: i64,
    pub job_id: String,
}

/// One slice of a clean run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanSlice {
    /// COMPLETED, DEAD or CANCELLED.
    pub state: JobState,
    /// Only jobs that finished at or before this time (ms), fixed when the run started.
    pub cutoff_ms: i64,
    /// Continue after this job; `None` from the oldest.
    pub after: Option<CleanPosition>,
    /// Most jobs to examine (at least 1).
    pub limit: usize,
    /// Count what would be deleted, change nothing.
    pub dry_run: bool,
}

/// What one slice did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanBatch {
    /// Job records deleted (or that would be, in a dry run).
    pub deleted: usize,
    /// Jobs examined.
    pub examined: usize,
    /// Where the run continues; `None` when it reached the cutoff.
    pub next: Option<CleanPosition>,
}

impl Engine {
    /// Deletes the records of `queue`'s jobs in `slice.state` kept by `filter` (type, owner; a
    /// payload text is not used here), in `slice`.
    pub async fn clean_finished(
        &self,
        queue: QueueName,
        filter: &JobFilter,
        slice: &CleanSlice,
    ) -> Result<CleanBatch> {
        let q = self.queue_keys(queue);
        let key = match slice.state {
            JobState::Completed => q.done(),
            JobState::Dead => q.failed(),
            JobState::Cancelled => q.cancelled(),
            _ => {
                return Err(
                    ValidationError::new("state", "must be completed, dead or cancelled").into(),
                );
            }
        };
        let filter = JobFilter {
            payload_contains: None,
            ..filter.clone()
        };
        let limit = slice.limit.max(1);
        let min = slice
            .after
            .as_ref()
            .map_or_else(|| "-inf".to_owned(), |p| p.finished_at_ms.to_string());
        let mut conn = self.conn().await?;
        let mut offset = 0usize;
        let mut examined: Vec<(String, i64)> = Vec::new();
        let mut kept: Vec<String> = Vec::new();
        let mut done = false;
        while examined.len() < limit {
            let page: Vec<(String, f64)> = redis::cmd("ZRANGE")
                .arg(&key)
                .arg(&min)
                .arg(slice.cutoff_ms)
                .arg("BYSCORE")
                .arg("LIMIT")
                .arg(offset)
                .arg(CHUNK)
                .arg("WITHSCORES")
                .query_async(&mut conn)
                .await?;
            offset += page.len();
            // Members of the position's own finish time up to its id were examined before.
            let mut fresh: Vec<(String, i64)> = page
                .iter()
                .map(|(id, score)| (id.clone(), *score as i64))
                .filter(|(id, score)| {
                    slice.after.as_ref().is_none_or(|p| {
                        *score > p.finished_at_ms
                            || (*score == p.finished_at_ms && id.as_str() > p.job_id.as_str())
                    })
                })
                .collect();
            let room = limit - examined.len();
            let cut = fresh.len() > room;
            fresh.truncate(room);
            let ids: Vec<String> = fresh.iter().map(|(id, _)| id.clone()).collect();
            let keep = self
                .matching(
                    &mut conn,
                    queue,
                    &ids,
                    slice.state,
                    &filter,
                    &mut ByteBudget::default(),
                )
                .await?;
            kept.extend(
                ids.iter()
                    .zip(&keep)
                    .filter(|(_, k)| **k)
                    .map(|(id, _)| id.clone()),
            );
            examined.extend(fresh);
            if cut {
                break;
            }
            if page.len() < CHUNK {
                done = true;
                break;
            }
        }
        let mut batch = CleanBatch {
            examined: examined.len(),
            next: if done {
                None
            } else {
                examined.last().map(|(id, at)| CleanPosition {
                    finished_at_ms: *at,
                    job_id: id.clone(),
                })
            },
            deleted: kept.len(),
        };
        if slice.dry_run || kept.is_empty() {
            return Ok(batch);
        }
        let mut pipe = redis::pipe();
        pipe.load_script(&self.scripts.clean_job).ignore();
        let calls: Vec<_> = kept
            .iter()
            .map(|id| {
                let mut call = self.scripts.clean_job.key(q.job(id));
                call.arg(q.tag())
                    .arg(id)
                    .arg(slice.state.as_str())
                    .arg(slice.cutoff_ms);
                call
            })
            .collect();
        for call in &calls {
            pipe.invoke_script(call);
        }
        let replies: Vec<i64> = pipe.query_async(&mut conn).await?;
        batch.deleted = replies.iter().filter(|n| **n == 1).count();
        if replies.len() != kept.len() {
            return Err(QueueError::Corrupt(format!(
                "clean_job answered {} of {} calls",
                replies.len(),
                kept.len()
            )));
        }
        Ok(batch)
    }
}
