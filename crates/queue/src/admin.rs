//! Operator views and actions: queue statistics, dead letters (list, retry, delete), retention sweep,
//! and the purge of finished jobs older than a cutoff (the `cleanup-old-data` job).
use std::collections::HashMap;

use ncy_types::jobs::QueueName;
use redis::{AsyncCommands, Value};

use crate::engine::{BANDS, Engine, GROUP};
use crate::error::{QueueError, Result};
use crate::ids::{dead_letter_id, new_job_id, parse_dead_letter_id};
use crate::job::{int, now_ms, text};
use ncy_runtime::RedisConn;

/// Counts of one queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub queue: String,
    pub paused: bool,
    pub waiting: u64,
    pub delayed: u64,
    pub active: u64,
    pub completed: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub dead_letters: u64,
    /// Starts counted in the current rate-limit window, and ms until a start is allowed (0 if not limited).
    pub rate_used: u64,
    pub retry_after_ms: i64,
    pub workers: u64,
    pub oldest_waiting_at_ms: i64,
}

/// What [`Engine::purge_finished`] deleted from one queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeCounts {
    /// Finished job records (completed, dead, cancelled).
    pub jobs: u64,
    /// Dead-letter entries.
    pub dead_letters: u64,
}

/// Records one purge script call deletes at most per set (and from the dead-letter stream).
const PURGE_BATCH: u64 = 500;

/// A dead letter as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: String,
    pub queue: String,
    pub job_id: String,
    pub job_type: String,
    pub data: String,
    pub error: String,
    pub failed_at_ms: i64,
    pub attempts_made: i64,
    pub priority: i64,
    pub owner_user_id: String,
    pub non_retryable: bool,
}

impl Engine {
    /// The queue's ACTIVE jobs: its consumer group's pending entries, summed over the bands
    /// (`XPENDING` summaries; a band whose stream or group does not exist yet counts 0).
    pub(crate) async fn pending_count(
        &self,
        conn: &mut RedisConn,
        queue: QueueName,
    ) -> Result<u64> {
        let q = self.queue_keys(queue);
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for band in 0..BANDS {
            pipe.cmd("XPENDING").arg(q.ready(band)).arg(GROUP);
        }
        let values: Vec<Value> = pipe.query_async(conn).await?;
        Ok(values
            .iter()
            .map(|v| match v {
                Value::Array(summary) => summary.first().map(int).unwrap_or(0),
                _ => 0,
            })
            .map(|n| u64::try_from(n).unwrap_or(0))
            .sum())
    }

    /// When the oldest WAITING entry of `queue` was added (ms), 0 when none waits: per band, the
    /// first entry after the consumer group's last delivered one (an entry up to it was handed to a
    /// worker, so it is ACTIVE or done, not waiting). Two pipelined round trips.
    async fn oldest_waiting(&self, conn: &mut RedisConn, queue: QueueName) -> Result<i64> {
        let q = self.queue_keys(queue);
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for band in 0..BANDS {
            pipe.cmd("XINFO").arg("GROUPS").arg(q.ready(band));
        }
        let groups: Vec<Value> = pipe.query_async(&mut *conn).await?;
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for (band, info) in (0..BANDS).zip(&groups) {
            let from = last_delivered(info).map_or_else(|| "-".to_owned(), |id| format!("({id}"));
            pipe.cmd("XRANGE")
                .arg(q.ready(band))
                .arg(from)
                .arg("+")
                .arg("COUNT")
                .arg(1);
        }
        let firsts: Vec<Value> = pipe.query_async(&mut *conn).await?;
        Ok(firsts
            .iter()
            .filter_map(|v| match v {
                Value::Array(entries) => entries.first(),
                _ => None,
            })
            .filter_map(|entry| match entry {
                Value::Array(parts) => parts.first().map(text),
                _ => None,
            })
            .filter_map(|id| id.split('-').next().and_then(|ms| ms.parse::<i64>().ok()))
            .min()
            .unwrap_or(0))
    }

    /// Counts jobs by state (two pipelines).
    pub async fn stats(&self, queue: QueueName) -> Result<QueueStats> {
        let q = self.queue_keys(queue);
        let now = now_ms();
        let visibility = i64::try_from(self.settings.visibility_timeout.as_millis()).unwrap_or(0);
        let mut pipe = redis::pipe();
        pipe.exists(q.paused());
        for band in 0..BANDS {
            pipe.xlen(q.ready(band));
        }
        pipe.zcard(q.delayed())
            .zcard(q.done())
            .zcard(q.cancelled())
            .xlen(q.dead())
            .zcount(q.limiter(), now - 86_400_000, "+inf")
            .zcount(q.workers(), now - visibility.max(1000), "+inf")
            .scard(q.ghosts());
        let mut conn = self.conn().await?;
        let values: Vec<Value> = pipe.query_async(&mut conn).await?;
        let n = |i: usize| u64::try_from(values.get(i).map(int).unwrap_or(0)).unwrap_or(0);
        let stream_total: u64 = (1..=usize::from(BANDS)).map(n).sum();
        let base = usize::from(BANDS) + 1;
        // Entries in the streams are waiting or active (or a few stale ones not yet dropped); the
        // ACTIVE ones are the consumer group's pending entries.
        let active = self.pending_count(&mut conn, queue).await?;
        let delayed_all = n(base);
        // DELAYED vs FAILED (retry pending) share the delayed set: split by reading the states of
        // the first 1000 (exact below that size).
        let ids: Vec<String> = conn.zrange(q.delayed(), 0, 999).await?;
        let mut retries = 0u64;
        if !ids.is_empty() {
            let mut p = redis::pipe();
            for id in &ids {
                p.hget(q.job(id), "state");
            }
            let states: Vec<Option<String>> = p.query_async(&mut conn).await?;
            retries = states
                .iter()
                .filter(|s| s.as_deref() == Some("failed"))
                .count() as u64;
        }
        let oldest = self.oldest_waiting(&mut conn, queue).await?;
        let mut retry_after_ms = 0;
        let rate_used = n(base + 4);
        if let Some(limit) = self.queue_settings(queue).rate_limit {
            let window = i64::try_from(limit.window_ms).unwrap_or(i64::MAX);
            let used: u64 = conn.zcount(q.limiter(), now - window, "+inf").await?;
            if used >= u64::from(limit.max) {
                let first: Vec<(String, f64)> = conn
                    .zrangebyscore_limit_withscores(q.limiter(), now - window, "+inf", 0, 1)
                    .await?;
                retry_after_ms = first
                    .first()
                    .map(|(_, s)| (*s as i64) + window - now)
                    .unwrap_or(window)
                    .max(1);
            }
        }
        // Entries of cancelled jobs not yet passed by a fetch are not waiting.
        let waiting = stream_total
            .saturating_sub(active)
            .saturating_sub(n(base + 6));
        Ok(QueueStats {
            queue: queue.as_str().to_owned(),
            paused: n(0) == 1,
            waiting,
            delayed: delayed_all.saturating_sub(retries),
            active,
            completed: n(base + 1),
            failed: retries,
            cancelled: n(base + 2),
            dead_letters: n(base + 3),
            rate_used,
            retry_after_ms,
            workers: n(base + 5),
            // A cancelled job's or a wake-up's entry is no waiting job.
            oldest_waiting_at_ms: if waiting == 0 { 0 } else { oldest },
        })
    }

    /// Dead letters of `queue`, newest first, `count` at most after exclusive entry `before`.
    pub async fn dead_letters(
        &self,
        queue: QueueName,
        before: Option<&str>,
        count: usize,
    ) -> Result<Vec<DeadLetter>> {
        let q = self.queue_keys(queue);
        let end = before
            .map(|b| format!("({b}"))
            .unwrap_or_else(|| "+".to_owned());
        let mut conn = self.conn().await?;
        let entries: Vec<(String, HashMap<String, String>)> = redis::cmd("XREVRANGE")
            .arg(q.dead())
            .arg(end)
            .arg("-")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut conn)
            .await?;
        Ok(entries
            .into_iter()
            .map(|(entry, f)| {
                let g = |k: &str| f.get(k).cloned().unwrap_or_default();
                let num = |k: &str| f.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
                DeadLetter {
                    id: dead_letter_id(queue, &entry),
                    queue: g("queue"),
                    job_id: g("jobId"),
                    job_type: g("type"),
                    data: g("data"),
                    error: g("error"),
                    failed_at_ms: num("failedAt"),
                    attempts_made: num("attemptsMade"),
                    priority: num("priority"),
                    owner_user_id: g("owner"),
                    non_retryable: g("nonRetryable") == "1",
                }
            })
            .collect())
    }

    /// Re-enqueues a dead letter (priority 10, one attempt) and removes it; returns the new job id.
    pub async fn retry_dead_letter(&self, id: &str) -> Result<String> {
        let (queue, entry) = parse_dead_letter_id(id, "deadLetterId")?;
        let q = self.queue_keys(queue);
        let new_id = new_job_id(queue);
        let mut conn = self.conn().await?;
        let reply: Option<String> = self
            .scripts
            .retry_dead
            .key(q.dead())
            .arg(q.tag())
            .arg(&entry)
            .arg(id)
            .arg(&new_id)
            .arg(now_ms())
            .invoke_async(&mut conn)
            .await?;
        reply.ok_or_else(|| QueueError::NotFound(format!("dead letter {id}")))
    }

    /// Removes a dead letter without retrying it.
    pub async fn delete_dead_letter(&self, id: &str) -> Result<()> {
        let (queue, entry) = parse_dead_letter_id(id, "deadLetterId")?;
        let mut conn = self.conn().await?;
        let removed: i64 = conn.xdel(self.queue_keys(queue).dead(), &[entry]).await?;
        if removed == 0 {
            return Err(QueueError::NotFound(format!("dead letter {id}")));
        }
        Ok(())
    }

    /// Retention sweep of one queue (finished jobs by count and age, dead letters by count).
    pub async fn sweep(&self, queue: QueueName) -> Result<()> {
        let q = self.queue_keys(queue);
        let s = self.queue_settings(queue);
        let mut conn = self.conn().await?;
        let _: i64 = self
            .scripts
            .trim
            .key(q.done())
            .arg(q.tag())
            .arg(now_ms())
            .arg(s.keep_count)
            .arg(u64::try_from(s.keep_age.as_millis()).unwrap_or(u64::MAX))
            .arg(self.settings.dead_letter_max)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Deletes the finished job records (completed, dead, cancelled) of `queue` that finished
    /// before `cutoff_ms`, and its dead letters added before then, in batches (one short script
    /// call each, so Redis never blocks long). Jobs still waiting, delayed or active are untouched.
    pub async fn purge_finished(&self, queue: QueueName, cutoff_ms: i64) -> Result<PurgeCounts> {
        let q = self.queue_keys(queue);
        let mut conn = self.conn().await?;
        let mut total = PurgeCounts::default();
        loop {
            let (jobs, dead, more): (u64, u64, u8) = self
                .scripts
                .purge
                .key(q.done())
                .arg(q.tag())
                .arg(cutoff_ms)
                .arg(PURGE_BATCH)
                .invoke_async(&mut conn)
                .await?;
            total.jobs += jobs;
            total.dead_letters += dead;
            if more == 0 {
                return Ok(total);
            }
        }
    }

    /// The consumer group name (for tools and tests).
    pub fn group(&self) -> &'static str {
        GROUP
    }
}

/// The `last-delivered-id` of the workers' group in an `XINFO GROUPS` reply (RESP2 flat pairs or
/// RESP3 maps), if the group exists.
fn last_delivered(info: &Value) -> Option<String> {
    let Value::Array(groups) = info else {
        return None;
    };
    groups.iter().find_map(|group| {
        let pairs: Vec<(String, &Value)> = match group {
            Value::Array(flat) => flat
                .chunks(2)
                .filter_map(|kv| Some((text(kv.first()?), kv.get(1)?)))
                .collect(),
            Value::Map(map) => map.iter().map(|(k, v)| (text(k), v)).collect(),
            _ => return None,
        };
        let field = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| text(v));
        (field("name").as_deref() == Some(GROUP))
            .then(|| field("last-delivered-id"))
            .flatten()
    })
}
