//! Jobs finished per queue per UTC minute (QueueHistory), at no per-job Redis cost.
//!
//! Why this shape: a job's finish is one script call shared by a batch, and adding a history write
//! to it would cost every job. Instead the engine counts, in memory, the completions and failed
//! attempts its finish and fail calls recorded (after their script succeeded, so an outcome
//! refused because the job was reclaimed is not counted), and [`Engine::flush_history`] adds those
//! counts to Redis in one pipelined round trip (`HINCRBY` per non-zero count, `EXPIRE` per key).
//! The worker flushes every few seconds and once more when it drains.
//!
//! Layout: one hash per queue per UTC day, `{<p>:q:Q}:history:<days since epoch>`
//! ([`ncy_types::QueueKeys::history`]), fields `<minute of the day>:c` (completed) and `:f`
//! (failed attempts), expiring [`HISTORY_TTL_SECS`] after its last flush: at most 8 keys of at
//! most 2,880 fields per queue, whatever the traffic.
//!
//! A flush that fails (Redis unreachable) gives its counts back to be added by the next one;
//! minutes older than [`MAX_HISTORY_MINUTES`] are dropped then, so memory stays bounded however
//! long Redis is away. On Redis Cluster the queues live in different slots, so a flush (and a read
//! of several queues) sends one pipeline per queue instead.
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use ncy_types::ValidationError;
use ncy_types::jobs::QueueName;
use tokio_util::sync::CancellationToken;

use crate::engine::Engine;
use crate::error::{QueueError, Result};
use crate::job::now_ms;

/// The longest history one read returns and the engine keeps unsent: 7 days of minutes.
pub const MAX_HISTORY_MINUTES: u32 = 7 * MINUTES_PER_DAY_U32;
/// How long a day's hash lives after the last flush that wrote to it: 8 days, so the 7 days a
/// read reaches back are always there.
pub const HISTORY_TTL_SECS: i64 = 8 * 24 * 3600;

const MINUTES_PER_DAY_U32: u32 = 24 * 60;
const MINUTES_PER_DAY: i64 = 24 * 60;
const MINUTE_MS: i64 = 60_000;

/// One minute of a queue's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryPoint {
    /// Start of the minute (UTC), Unix epoch ms.
    pub minute_at_ms: i64,
    /// Jobs that completed in that minute.
    pub completed: u64,
    /// Attempts that failed in that minute (retried or dead).
    pub failed: u64,
}

/// A queue's history: one point per minute, oldest first, the last one the current minute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueHistory {
    pub queue: QueueName,
    pub points: Vec<HistoryPoint>,
}

/// Counts of one (queue, minute) not yet added to Redis.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    completed: u64,
    failed: u64,
}

type Counts = BTreeMap<(QueueName, i64), Tally>;

/// The counts an engine recorded and has not yet added to Redis, by queue and minute since the
/// epoch.
#[derive(Debug, Default)]
pub(crate) struct HistoryCounts {
    pending: Mutex<Counts>,
}

impl HistoryCounts {
    /// Counts `completed` jobs and `failed` attempts of `queue` that finished at `at_ms`.
    pub(crate) fn add(&self, queue: QueueName, at_ms: i64, completed: u64, failed: u64) {
        if completed == 0 && failed == 0 {
            return;
        }
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let tally = pending
            .entry((queue, at_ms.div_euclid(MINUTE_MS)))
            .or_default();
        tally.completed = tally.completed.saturating_add(completed);
        tally.failed = tally.failed.saturating_add(failed);
    }

    fn take(&self) -> Counts {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Gives back counts a flush could not add, dropping minutes older than the history reaches
    /// at `now_ms`; returns how many minutes were dropped.
    fn restore(&self, counts: Counts, now_ms: i64) -> usize {
        let oldest = now_ms.div_euclid(MINUTE_MS) - i64::from(MAX_HISTORY_MINUTES) + 1;
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let mut dropped = 0;
        for (key, tally) in counts {
            let entry = pending.entry(key).or_default();
            entry.completed = entry.completed.saturating_add(tally.completed);
            entry.failed = entry.failed.saturating_add(tally.failed);
        }
        pending.retain(|(_, minute), _| {
            let keep = *minute >= oldest;
            dropped += usize::from(!keep);
            keep
        });
        dropped
    }

    #[cfg(test)]
    fn snapshot(&self) -> Counts {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The day hash and the field prefix of a minute since the epoch.
fn day_and_minute(minute: i64) -> (i64, i64) {
    (
        minute.div_euclid(MINUTES_PER_DAY),
        minute.rem_euclid(MINUTES_PER_DAY),
    )
}

impl Engine {
    /// Adds the counts recorded since the last flush to Redis in one pipelined round trip (per
    /// queue on Redis Cluster); returns how many (queue, minute) counts were added. On failure
    /// the counts are kept for the next flush.
    pub async fn flush_history(&self) -> Result<usize> {
        let counts = self.history.take();
        if counts.is_empty() {
            return Ok(0);
        }
        let groups: Vec<Counts> = if self.pool.is_cluster() {
            let mut by_queue: BTreeMap<QueueName, Counts> = BTreeMap::new();
            for (key, tally) in counts {
                by_queue.entry(key.0).or_default().insert(key, tally);
            }
            by_queue.into_values().collect()
        } else {
            vec![counts]
        };
        let mut added = 0;
        let mut failure = None;
        for group in groups {
            match self.add_counts(&group).await {
                Ok(()) => added += group.len(),
                Err(e) => {
                    let dropped = self.history.restore(group, now_ms());
                    if dropped > 0 {
                        metrics::counter!("queue_history_minutes_dropped_total")
                            .increment(dropped as u64);
                    }
                    failure.get_or_insert(e);
                }
            }
        }
        match failure {
            Some(e) => {
                metrics::counter!("queue_history_flush_failures_total").increment(1);
                Err(e)
            }
            None => Ok(added),
        }
    }

    /// One MULTI pipeline: HINCRBY per non-zero count, EXPIRE per day hash touched. Atomic, so a
    /// failed flush added nothing and giving its counts back cannot count them twice.
    async fn add_counts(&self, counts: &Counts) -> Result<()> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        let mut keys = BTreeSet::new();
        for (&(queue, minute), tally) in counts {
            let (day, of_day) = day_and_minute(minute);
            let key = self.queue_keys(queue).history(day);
            if tally.completed > 0 {
                pipe.hincr(&key, format!("{of_day}:c"), tally.completed)
                    .ignore();
            }
            if tally.failed > 0 {
                pipe.hincr(&key, format!("{of_day}:f"), tally.failed)
                    .ignore();
            }
            keys.insert(key);
        }
        for key in &keys {
            pipe.expire(key, HISTORY_TTL_SECS).ignore();
        }
        let mut conn = self.conn().await?;
        let () = pipe.query_async(&mut conn).await?;
        Ok(())
    }

    /// Flushes the history every `every` until `stop` fires (the caller flushes once more when
    /// whatever finishes jobs has stopped). A failed flush is retried at the next tick; the first
    /// failure of a run of them is logged at warn (the rest at debug, every one counted in
    /// `queue_history_flush_failures_total`), and the recovery at info.
    pub async fn flush_history_every(&self, every: Duration, stop: CancellationToken) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut failing = false;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            match self.flush_history().await {
                Ok(_) if failing => {
                    failing = false;
                    tracing::info!("queue history counts added again");
                }
                Ok(_) => {}
                Err(e) if failing => {
                    tracing::debug!(error = %e, "cannot add the queue history counts yet");
                }
                Err(e) => {
                    failing = true;
                    tracing::warn!(error = %e, "cannot add the queue history counts; keeping them for the next flush");
                }
            }
        }
    }

    /// The last `minutes` minutes (1..=[`MAX_HISTORY_MINUTES`]) of each of `queues`, ending with
    /// the current one, zero-filled: HMGET on the day hashes they span, one pipelined round trip
    /// (per queue on Redis Cluster).
    pub async fn history(&self, queues: &[QueueName], minutes: u32) -> Result<Vec<QueueHistory>> {
        if !(1..=MAX_HISTORY_MINUTES).contains(&minutes) {
            return Err(ValidationError::new(
                "minutes",
                format!("must be between 1 and {MAX_HISTORY_MINUTES}"),
            )
            .into());
        }
        let last = now_ms().div_euclid(MINUTE_MS);
        let first = last - i64::from(minutes) + 1;
        let groups: Vec<Vec<QueueName>> = if self.pool.is_cluster() {
            queues.iter().map(|q| vec![*q]).collect()
        } else {
            vec![queues.to_vec()]
        };
        let mut out = Vec::with_capacity(queues.len());
        for group in groups {
            out.extend(self.read_history(&group, first, last).await?);
        }
        Ok(out)
    }

    async fn read_history(
        &self,
        queues: &[QueueName],
        first: i64,
        last: i64,
    ) -> Result<Vec<QueueHistory>> {
        let (first_day, _) = day_and_minute(first);
        let (last_day, _) = day_and_minute(last);
        let mut pipe = redis::pipe();
        for queue in queues {
            let keys = self.queue_keys(*queue);
            for day in first_day..=last_day {
                let from = first.max(day * MINUTES_PER_DAY);
                let to = last.min(day * MINUTES_PER_DAY + MINUTES_PER_DAY - 1);
                let mut cmd = redis::cmd("HMGET");
                cmd.arg(keys.history(day));
                for minute in from..=to {
                    let (_, of_day) = day_and_minute(minute);
                    cmd.arg(format!("{of_day}:c")).arg(format!("{of_day}:f"));
                }
                pipe.add_command(cmd);
            }
        }
        let mut conn = self.conn().await?;
        let replies: Vec<Vec<Option<String>>> = pipe.query_async(&mut conn).await?;
        let days = usize::try_from(last_day - first_day + 1).unwrap_or(0);
        let mut replies = replies.into_iter();
        let mut out = Vec::with_capacity(queues.len());
        for queue in queues {
            let mut points = Vec::new();
            for values in replies.by_ref().take(days) {
                for pair in values.chunks(2) {
                    let count = |v: Option<&Option<String>>| match v.and_then(Option::as_deref) {
                        None => Ok(0),
                        Some(text) => text.parse::<u64>().map_err(|_| {
                            QueueError::Corrupt(format!("history count {text:?} of queue {queue}"))
                        }),
                    };
                    let minute = first + i64::try_from(points.len()).unwrap_or(0);
                    points.push(HistoryPoint {
                        minute_at_ms: minute * MINUTE_MS,
                        completed: count(pair.first())?,
                        failed: count(pair.get(1))?,
                    });
                }
            }
            if i64::try_from(points.len()).ok() != Some(last - first + 1) {
                return Err(QueueError::Corrupt(format!(
                    "history of queue {queue}: {} points for {} minutes",
                    points.len(),
                    last - first + 1
                )));
            }
            out.push(QueueHistory {
                queue: *queue,
                points,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_MS: i64 = MINUTES_PER_DAY * MINUTE_MS;

    #[test]
    fn counts_add_up_per_queue_and_minute() {
        let h = HistoryCounts::default();
        h.add(QueueName::Email, 120_000, 2, 0);
        h.add(QueueName::Email, 179_999, 1, 1);
        h.add(QueueName::Email, 180_000, 0, 3);
        h.add(QueueName::Report, 120_000, 0, 0);
        let counts = h.snapshot();
        assert_eq!(counts.len(), 2, "{counts:?}");
        assert_eq!(
            counts[&(QueueName::Email, 2)],
            Tally {
                completed: 3,
                failed: 1
            }
        );
        assert_eq!(
            counts[&(QueueName::Email, 3)],
            Tally {
                completed: 0,
                failed: 3
            }
        );
    }

    #[test]
    fn restored_counts_merge_with_new_ones_and_old_minutes_are_dropped() {
        let h = HistoryCounts::default();
        let now = 100 * DAY_MS;
        h.add(QueueName::Email, now - 8 * DAY_MS, 5, 0);
        h.add(QueueName::Email, now - 6 * DAY_MS, 1, 0);
        h.add(QueueName::Email, now, 1, 0);
        let taken = h.take();
        assert!(h.snapshot().is_empty());
        h.add(QueueName::Email, now, 2, 1);
        assert_eq!(
            h.restore(taken, now),
            1,
            "the minute 8 days back is dropped"
        );
        let counts = h.snapshot();
        assert_eq!(counts.len(), 2, "{counts:?}");
        assert_eq!(
            counts[&(QueueName::Email, now / MINUTE_MS)],
            Tally {
                completed: 3,
                failed: 1
            }
        );
        assert!(counts.contains_key(&(QueueName::Email, (now - 6 * DAY_MS) / MINUTE_MS)));
    }

    #[test]
    fn minutes_map_to_a_day_and_a_minute_of_it() {
        assert_eq!(day_and_minute(0), (0, 0));
        assert_eq!(day_and_minute(1439), (0, 1439));
        assert_eq!(day_and_minute(1440), (1, 0));
        assert_eq!(day_and_minute(-1), (-1, 1439));
        // A week of minutes spans at most 8 day hashes.
        let last = 20_000 * MINUTES_PER_DAY + 5;
        let first = last - i64::from(MAX_HISTORY_MINUTES) + 1;
        assert_eq!(day_and_minute(last).0 - day_and_minute(first).0 + 1, 8);
    }
}
