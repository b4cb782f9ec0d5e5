//! Bulk actions on a queue's dead letters (retry or delete every one matching a selection), done a
//! bounded slice at a time so an operator can clear thousands without one call holding Redis.
//!
//! A run walks the dead-letter stream oldest first, from a cursor (the last entry a previous call
//! examined) up to an entry fixed when the run started (the newest then), so it ends even while
//! new dead letters arrive. Each call selects in Redis (`dead_select.lua`: type, owner, failure
//! time; payloads never leave Redis, and a call stops early after [`SELECT_BYTE_BUDGET`] of
//! entries), then retries each selected entry exactly as RetryDeadLetter does (`retry_dead.lua`,
//! atomic per entry, the calls pipelined) or deletes it (XDEL). An entry someone else retried or
//! deleted in between is simply not counted.
use redis::Value;

use ncy_types::jobs::QueueName;

use crate::engine::Engine;
use crate::error::{QueueError, Result};
use crate::ids::{dead_letter_id, new_job_id};
use crate::job::{int, now_ms, text};
use crate::listing::StreamId;

/// Entry bytes (payload and other fields) one call reads from the dead-letter stream at most.
pub const SELECT_BYTE_BUDGET: u64 = 8 << 20;

/// Which dead letters of a queue a bulk action takes; the default takes them all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetterFilter {
    /// The job type's wire name.
    pub job_type: Option<String>,
    /// A user's UUID (compared without regard to case).
    pub owner_user_id: Option<String>,
    /// Only dead letters that failed before this time (ms).
    pub failed_before_ms: Option<i64>,
}

/// What a bulk action does to each selected dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterAction {
    /// Re-enqueue as a new job (priority 10, one attempt), as RetryDeadLetter.
    Retry,
    /// Remove the entry.
    Delete,
}

/// One slice of a bulk run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadLetterSlice {
    /// Continue after this entry; `None` from the start.
    pub after: Option<StreamId>,
    /// The last entry the run reaches (fixed when it started).
    pub until: StreamId,
    /// Most entries to examine (at least 1).
    pub limit: usize,
    /// Count what would be done, change nothing.
    pub dry_run: bool,
}

/// What one slice did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetterBatch {
    /// Dead letters retried or deleted by this call (or that would be, in a dry run).
    pub done: usize,
    /// The new jobs' ids (retry, not dry run), in the order retried.
    pub job_ids: Vec<String>,
    /// Entries examined.
    pub examined: usize,
    /// Where the run continues; `None` when it reached its last entry.
    pub next: Option<StreamId>,
}

impl Engine {
    /// The newest dead letter of `queue` now, where a run starting now ends; `None` when there is
    /// none.
    pub async fn newest_dead_letter(&self, queue: QueueName) -> Result<Option<StreamId>> {
        let mut conn = self.conn().await?;
        let newest: Vec<(String, Value)> = redis::cmd("XREVRANGE")
            .arg(self.queue_keys(queue).dead())
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut conn)
            .await?;
        newest
            .first()
            .map(|(id, _)| {
                StreamId::parse(id)
                    .ok_or_else(|| QueueError::Corrupt(format!("dead letter entry id {id:?}")))
            })
            .transpose()
    }

    /// Retries or deletes the dead letters of `queue` that `filter` selects, in `slice`.
    pub async fn act_on_dead_letters(
        &self,
        queue: QueueName,
        filter: &DeadLetterFilter,
        action: DeadLetterAction,
        slice: DeadLetterSlice,
    ) -> Result<DeadLetterBatch> {
        let q = self.queue_keys(queue);
        let mut conn = self.conn().await?;
        if slice.after.is_some_and(|a| a >= slice.until) {
            return Ok(DeadLetterBatch::default());
        }
        let start = slice
            .after
            .map_or_else(|| "-".to_owned(), |a| format!("({a}"));
        let reply: Vec<Value> = self
            .scripts
            .dead_select
            .key(q.dead())
            .arg(q.tag())
            .arg(start)
            .arg(slice.until.to_string())
            .arg(slice.limit.max(1))
            .arg(filter.job_type.as_deref().unwrap_or(""))
            .arg(
                filter
                    .owner_user_id
                    .as_deref()
                    .unwrap_or("")
                    .to_ascii_lowercase(),
            )
            .arg(filter.failed_before_ms.unwrap_or(0).max(0))
            .arg(SELECT_BYTE_BUDGET)
            .invoke_async(&mut conn)
            .await?;
        let bad = || QueueError::Corrupt(format!("dead_select reply of {} values", reply.len()));
        let examined = usize::try_from(reply.first().map(int).ok_or_else(bad)?).unwrap_or(0);
        let last = reply.get(1).map(text).ok_or_else(bad)?;
        let done = reply.get(2).map(int).ok_or_else(bad)? == 1;
        let selected: Vec<String> = reply.iter().skip(3).map(text).collect();
        let next = if done || last.is_empty() {
            None
        } else {
            Some(
                StreamId::parse(&last)
                    .ok_or_else(|| QueueError::Corrupt(format!("dead letter entry id {last:?}")))?,
            )
        };
        let mut batch = DeadLetterBatch {
            examined,
            next,
            ..DeadLetterBatch::default()
        };
        if selected.is_empty() || slice.dry_run {
            batch.done = selected.len();
            return Ok(batch);
        }
        match action {
            DeadLetterAction::Retry => {
                let mut pipe = redis::pipe();
                pipe.load_script(&self.scripts.retry_dead).ignore();
                let now = now_ms();
                let new_ids: Vec<String> = selected.iter().map(|_| new_job_id(queue)).collect();
                let calls: Vec<_> = selected
                    .iter()
                    .zip(&new_ids)
                    .map(|(entry, new_id)| {
                        let mut call = self.scripts.retry_dead.key(q.dead());
                        call.arg(q.tag())
                            .arg(entry)
                            .arg(dead_letter_id(queue, entry))
                            .arg(new_id)
                            .arg(now);
                        call
                    })
                    .collect();
                for call in &calls {
                    pipe.invoke_script(call);
                }
                let replies: Vec<Option<String>> = pipe.query_async(&mut conn).await?;
                // A dead letter retried or deleted meanwhile answers nil: not ours to count.
                batch.job_ids = replies.into_iter().flatten().collect();
                batch.done = batch.job_ids.len();
            }
            DeadLetterAction::Delete => {
                let mut pipe = redis::pipe();
                for entry in &selected {
                    pipe.cmd("XDEL").arg(q.dead()).arg(entry);
                }
                let removed: Vec<i64> = pipe.query_async(&mut conn).await?;
                batch.done = removed.iter().filter(|n| **n == 1).count();
            }
        }
        Ok(batch)
    }
}
