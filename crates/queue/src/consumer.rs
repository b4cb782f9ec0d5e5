//! Worker-side transitions: fetch (batch), complete (batch), fail (retry or dead), postpone (a
//! dependency is down: due again later, the attempt given back), heartbeat, progress, reclaim, and
//! the blocking wait on all bands when a queue is idle.
//!
//! Why this shape: a fetch claims up to n jobs in one script call (highest band first), and a batch
//! of finished jobs is one script call (the worker groups the outcomes that arrive while the
//! previous batch is being written), so under load a job costs a fraction of a round trip. When
//! nothing is ready the worker parks in `XREADGROUP BLOCK` on a dedicated connection (no polling
//! loop) and hands what it read to the next fetch, which activates it.
//!
//! A blocking read whose reply never reaches the worker (it gave up waiting, the connection
//! dropped) may still have delivered entries: Redis made them pending for this consumer, and
//! nobody runs them until another worker's reclaim after the visibility timeout. So such a read is
//! remembered, and the consumer's next fetch first takes its own pending entries whose jobs are
//! still WAITING (`XREADGROUP … 0`, inside the fetch script) at no cost to fetches in between.
use std::sync::PoisonError;
use std::time::Duration;

use ncy_types::jobs::QueueName;
use rand::Rng;
use redis::Value;

use crate::engine::{BANDS, Engine, GROUP};
use crate::error::{QueueError, Result};
use crate::job::{FetchedJob, int, now_ms, text};

/// What a fetch got.
#[derive(Debug)]
pub enum Fetched {
    /// Jobs now ACTIVE for this consumer (maybe none).
    Jobs(Vec<FetchedJob>),
    /// The queue is paused.
    Paused,
    /// The shared rate limit is used up for this long.
    RateLimited(u64),
}

/// What a failed attempt became.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailOutcome {
    /// The job was no longer ours (reclaimed); nothing recorded.
    Stale,
    /// A retry is due at this time (ms).
    Retry(i64),
    /// The job is DEAD with this dead-letter id.
    Dead(String),
    /// A dependency was down: the job is due again at this time (ms), its attempt given back.
    Postponed(i64),
}

/// How a job that did not fail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// Its processor succeeded (the text is the result JSON, maybe empty).
    Completed,
    /// It stopped because CancelJob asked it to (the text is the reason).
    Cancelled,
}

impl Finish {
    fn as_str(self) -> &'static str {
        match self {
            Finish::Completed => "completed",
            Finish::Cancelled => "cancelled",
        }
    }
}

/// One outcome for [`Engine::finish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished<'a> {
    pub job_id: &'a str,
    pub outcome: Finish,
    /// The result JSON of a completed job (maybe empty), the reason of a cancelled one.
    pub text: &'a str,
}

/// One job a consumer holds, for [`Engine::heartbeat`]: its stream entry is kept fresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldJob {
    pub job_id: String,
    pub band: u8,
    pub entry: String,
}

/// A stream entry read by the blocking wait, not yet activated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preclaimed {
    pub band: u8,
    pub entry: String,
}

impl Engine {
    /// Claims up to `n` jobs of `queue` for `consumer`, activating `preclaimed` entries first.
    pub async fn fetch(
        &self,
        queue: QueueName,
        consumer: &str,
        n: usize,
        preclaimed: &[Preclaimed],
    ) -> Result<Fetched> {
        let q = self.queue_keys(queue);
        let limit = self.queue_settings(queue).rate_limit;
        let recover = self.lost_read(queue, consumer);
        let mut inv = self.scripts.fetch.key(q.limiter());
        inv.arg(q.tag())
            .arg(consumer)
            .arg(n)
            .arg(now_ms())
            .arg(limit.map(|l| l.max).unwrap_or(0))
            .arg(limit.map(|l| l.window_ms).unwrap_or(0))
            .arg(u8::from(recover))
            .arg(preclaimed.len());
        for p in preclaimed {
            inv.arg(p.band).arg(&p.entry);
        }
        let mut conn = self.conn().await?;
        let reply: Vec<Value> = inv.invoke_async(&mut conn).await?;
        match reply.first().map(int) {
            Some(-1) => Ok(Fetched::Paused),
            Some(-2) => Ok(Fetched::RateLimited(
                u64::try_from(reply.get(1).map(int).unwrap_or(1)).unwrap_or(1),
            )),
            // 2: some of the consumer's own waiting entries did not fit in `n`; the next fetch
            // takes them.
            Some(code @ (1 | 2)) => {
                let jobs = reply[1..]
                    .iter()
                    .map(FetchedJob::from_value)
                    .collect::<Result<Vec<_>>>()?;
                if recover && code == 1 {
                    self.forget_lost_read(queue, consumer);
                }
                Ok(Fetched::Jobs(jobs))
            }
            _ => Err(QueueError::Corrupt(format!("fetch reply {reply:?}"))),
        }
    }

    /// Whether a blocking read of `consumer` on `queue` failed or was given up on since its last
    /// fetch that took its own pending entries.
    fn lost_read(&self, queue: QueueName, consumer: &str) -> bool {
        self.lost_reads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&(queue, consumer.to_owned()))
    }

    fn forget_lost_read(&self, queue: QueueName, consumer: &str) {
        self.lost_reads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(queue, consumer.to_owned()));
    }

    /// Records success; false when the job was no longer ours.
    pub async fn complete(
        &self,
        queue: QueueName,
        consumer: &str,
        job_id: &str,
        result_json: &str,
    ) -> Result<bool> {
        let done = self
            .finish(
                queue,
                consumer,
                &[Finished {
                    job_id,
                    outcome: Finish::Completed,
                    text: result_json,
                }],
            )
            .await?;
        Ok(done.first().copied().unwrap_or(false))
    }

    /// Records the outcomes of a batch of this consumer's ACTIVE jobs in one script call. Per
    /// job, false when it was no longer ours (reclaimed by another worker): that outcome is
    /// dropped.
    pub async fn finish(
        &self,
        queue: QueueName,
        consumer: &str,
        jobs: &[Finished<'_>],
    ) -> Result<Vec<bool>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let q = self.queue_keys(queue);
        let s = self.queue_settings(queue);
        let now = now_ms();
        let mut inv = self.scripts.complete.key(q.done());
        inv.arg(q.tag())
            .arg(consumer)
            .arg(now)
            .arg(s.keep_count)
            .arg(u64::try_from(s.keep_age.as_millis()).unwrap_or(u64::MAX));
        for job in jobs {
            inv.arg(job.job_id).arg(job.outcome.as_str()).arg(job.text);
        }
        let mut conn = self.conn().await?;
        let flags: Vec<i64> = inv.invoke_async(&mut conn).await?;
        if flags.len() != jobs.len() {
            return Err(QueueError::Corrupt(format!(
                "complete answered {} flags for {} jobs",
                flags.len(),
                jobs.len()
            )));
        }
        let ours: Vec<bool> = flags.into_iter().map(|f| f == 1).collect();
        let completed = jobs
            .iter()
            .zip(&ours)
            .filter(|(job, ours)| **ours && job.outcome == Finish::Completed)
            .count();
        self.history
            .add(queue, now, u64::try_from(completed).unwrap_or(0), 0);
        Ok(ours)
    }

    /// Records a failed attempt: retry after backoff (with ±20 % jitter) or dead.
    pub async fn fail(
        &self,
        queue: QueueName,
        consumer: &str,
        job: &FetchedJob,
        error: &str,
        retryable: bool,
    ) -> Result<FailOutcome> {
        let base = job
            .backoff
            .delay_ms(job.attempt)
            .min(self.settings.max_backoff_ms);
        let jitter = base / 5;
        let delay = if jitter > 0 {
            base - jitter + rand::rng().random_range(0..=2 * jitter)
        } else {
            base
        };
        let mode = if retryable { "1" } else { "0" };
        self.record_failure(queue, consumer, job, error, mode, delay)
            .await
    }

    /// Records an attempt that failed because a dependency is down (an SMTP server, the database),
    /// not because of the job: FAILED, due again after `delay`, with this attempt given back, so
    /// the job's attempt count is what it was before and an outage neither uses up its retries nor
    /// dead-letters it, whatever attempts remain. The error is stored on the job (operators see
    /// why it waits). Stale, like [`Engine::fail`], when the job is no longer this consumer's.
    ///
    /// Nothing here bounds how often a job is postponed: the caller must (the worker stops
    /// postponing once an outage outlasts its grace period).
    pub async fn postpone(
        &self,
        queue: QueueName,
        consumer: &str,
        job: &FetchedJob,
        error: &str,
        delay: Duration,
    ) -> Result<FailOutcome> {
        let delay = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.record_failure(queue, consumer, job, error, "p", delay)
            .await
    }

    /// `fail.lua` in `mode`: `1` retry while attempts remain, `0` dead at once, `p` postpone.
    async fn record_failure(
        &self,
        queue: QueueName,
        consumer: &str,
        job: &FetchedJob,
        error: &str,
        mode: &str,
        delay_ms: u64,
    ) -> Result<FailOutcome> {
        let q = self.queue_keys(queue);
        let s = self.queue_settings(queue);
        let now = now_ms();
        let mut conn = self.conn().await?;
        let reply: Vec<Value> = self
            .scripts
            .fail
            .key(q.job(&job.id))
            .arg(q.tag())
            .arg(consumer)
            .arg(&job.id)
            .arg(error)
            .arg(mode)
            .arg(now)
            .arg(delay_ms)
            .arg(s.keep_count)
            .arg(u64::try_from(s.keep_age.as_millis()).unwrap_or(u64::MAX))
            .invoke_async(&mut conn)
            .await?;
        let outcome = match reply.first().map(int) {
            Some(1) => FailOutcome::Retry(reply.get(1).map(int).unwrap_or(0)),
            Some(2) => FailOutcome::Dead(crate::ids::dead_letter_id(
                queue,
                &reply.get(1).map(text).unwrap_or_default(),
            )),
            Some(3) => FailOutcome::Postponed(reply.get(1).map(int).unwrap_or(0)),
            _ => FailOutcome::Stale,
        };
        // A postponed attempt is given back (it did not fail because of the job); a stale one was
        // not recorded at all.
        if matches!(outcome, FailOutcome::Retry(_) | FailOutcome::Dead(_)) {
            self.history.add(queue, now, 0, 1);
        }
        Ok(outcome)
    }

    /// Heartbeat for this consumer's in-flight jobs; returns the ids whose cancel was requested.
    pub async fn heartbeat(
        &self,
        queue: QueueName,
        consumer: &str,
        in_flight: &[HeldJob],
    ) -> Result<Vec<String>> {
        let q = self.queue_keys(queue);
        let mut inv = self.scripts.heartbeat.key(q.workers());
        inv.arg(q.tag()).arg(consumer).arg(now_ms());
        for job in in_flight {
            inv.arg(&job.job_id).arg(job.band).arg(&job.entry);
        }
        let mut conn = self.conn().await?;
        Ok(inv.invoke_async(&mut conn).await?)
    }

    /// Stores progress; returns Some(cancel requested) or None when the job is no longer ours.
    pub async fn progress(
        &self,
        queue: QueueName,
        consumer: &str,
        job_id: &str,
        progress: u8,
        message: &str,
    ) -> Result<Option<bool>> {
        let q = self.queue_keys(queue);
        let mut conn = self.conn().await?;
        let r: i64 = self
            .scripts
            .progress
            .key(q.job(job_id))
            .arg(q.tag())
            .arg(consumer)
            .arg(job_id)
            .arg(progress.min(100))
            .arg(message)
            .arg(now_ms())
            .invoke_async(&mut conn)
            .await?;
        Ok(match r {
            -1 => None,
            1 => Some(true),
            _ => Some(false),
        })
    }

    /// Takes over up to `count` entries idle longer than the visibility timeout.
    pub async fn reclaim(
        &self,
        queue: QueueName,
        consumer: &str,
        count: usize,
    ) -> Result<Vec<FetchedJob>> {
        let q = self.queue_keys(queue);
        let s = self.queue_settings(queue);
        let mut conn = self.conn().await?;
        let reply: Vec<Value> = self
            .scripts
            .reclaim
            .key(q.workers())
            .arg(q.tag())
            .arg(consumer)
            .arg(u64::try_from(self.settings.visibility_timeout.as_millis()).unwrap_or(30_000))
            .arg(count)
            .arg(self.settings.max_reclaims)
            .arg(now_ms())
            .arg(s.keep_count)
            .arg(u64::try_from(s.keep_age.as_millis()).unwrap_or(u64::MAX))
            .invoke_async(&mut conn)
            .await?;
        reply.iter().map(FetchedJob::from_value).collect()
    }

    /// Parks on `conn` in `XREADGROUP BLOCK` over every band of `queue` until an entry arrives or
    /// `block_ms` passes; returns the entries read (to pass to the next [`Engine::fetch`]).
    ///
    /// When this fails (a response timeout shorter than the block, a dropped connection) or its
    /// future is dropped before the reply (a caller's timeout or shutdown), Redis may still have
    /// delivered entries to `consumer`: the next [`Engine::fetch`] of `consumer` takes them.
    pub async fn wait_for_jobs(
        &self,
        conn: &mut redis::aio::MultiplexedConnection,
        queue: QueueName,
        consumer: &str,
        block_ms: u64,
    ) -> Result<Vec<Preclaimed>> {
        let mut unanswered = LostReadGuard {
            engine: self,
            queue,
            consumer,
            armed: true,
        };
        let out = self.read_blocking(conn, queue, consumer, block_ms).await?;
        unanswered.armed = false;
        Ok(out)
    }

    async fn read_blocking(
        &self,
        conn: &mut redis::aio::MultiplexedConnection,
        queue: QueueName,
        consumer: &str,
        block_ms: u64,
    ) -> Result<Vec<Preclaimed>> {
        let q = self.queue_keys(queue);
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(block_ms)
            .arg("STREAMS");
        for band in (0..BANDS).rev() {
            cmd.arg(q.ready(band));
        }
        for _ in 0..BANDS {
            cmd.arg(">");
        }
        let reply: Value = cmd.query_async(conn).await?;
        let mut out = Vec::new();
        let streams: Vec<(Value, Value)> = match reply {
            Value::Array(streams) => streams
                .into_iter()
                .filter_map(|s| match s {
                    Value::Array(mut parts) if parts.len() == 2 => {
                        let entries = parts.pop()?;
                        let name = parts.pop()?;
                        Some((name, entries))
                    }
                    _ => None,
                })
                .collect(),
            Value::Map(pairs) => pairs,
            _ => Vec::new(),
        };
        for (name, entries) in streams {
            let band: u8 = text(&name)
                .rsplit(':')
                .next()
                .and_then(|b| b.parse().ok())
                .unwrap_or(0);
            let Value::Array(entries) = entries else {
                continue;
            };
            for entry in entries {
                if let Value::Array(e) = entry
                    && let Some(id) = e.first()
                {
                    out.push(Preclaimed {
                        band,
                        entry: text(id),
                    });
                }
            }
        }
        Ok(out)
    }
}

/// Marks a blocking read as lost unless disarmed once its reply was read: dropped with the read's
/// future, or left armed by its error.
struct LostReadGuard<'a> {
    engine: &'a Engine,
    queue: QueueName,
    consumer: &'a str,
    armed: bool,
}

impl Drop for LostReadGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.engine
                .lost_reads
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert((self.queue, self.consumer.to_owned()));
        }
    }
}
