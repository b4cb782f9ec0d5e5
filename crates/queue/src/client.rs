//! Producer and operator operations on the engine: enqueue (single and bulk, one script call per
//! queue), read jobs, cancel, pause/resume. Listing is in `listing.rs`.
use std::collections::HashMap;

use ncy_types::jobs::QueueName;
use redis::{AsyncCommands, Value};

use crate::engine::{BANDS, Engine};
use crate::error::{QueueError, Result};
use crate::ids::{new_job_id, parse_job_id};
use crate::job::{Enqueued, JobRecord, JobState, NewJob, int, now_ms, text};

impl Engine {
    /// Enqueues `jobs` (validated) on `queue` in one script call; results in order.
    ///
    /// A job with an idempotency key is deduplicated against earlier jobs with the same key in the
    /// same namespace: a cron tick's (a job with a schedule name, which only the scheduler sets)
    /// or the clients'. The two never meet, so no client can enqueue a tick's key first and
    /// suppress the tick.
    pub async fn enqueue(&self, queue: QueueName, jobs: &[NewJob]) -> Result<Vec<Enqueued>> {
        if matches!(self.pool, ncy_runtime::RedisPool::Single(_))
            && jobs
                .iter()
                .all(|j| j.idempotency_key.is_empty() && j.delay_ms == 0)
        {
            return self.enqueue_plain(queue, jobs).await;
        }
        let q = self.queue_keys(queue);
        let now = now_ms();
        let ids: Vec<String> = jobs.iter().map(|_| new_job_id(queue)).collect();
        let mut inv = self.scripts.enqueue.key(q.delayed());
        inv.arg(q.tag())
            .arg(u64::try_from(self.settings.dedup_ttl.as_millis()).unwrap_or(u64::MAX))
            .arg(jobs.len());
        for (job, id) in jobs.iter().zip(&ids) {
            let hash = job.initial_hash(queue.as_str(), now);
            inv.arg(id).arg(dedup_key(&q, job));
            if job.delay_ms > 0 {
                inv.arg(now.saturating_add(i64::try_from(job.delay_ms).unwrap_or(i64::MAX)))
                    .arg("");
            } else {
                inv.arg(0).arg(job.priority);
            }
            inv.arg(hash.len()).arg(&hash);
        }
        let mut conn = self.conn().await?;
        let reply: Vec<Value> = inv.invoke_async(&mut conn).await?;
        if reply.len() != jobs.len() {
            return Err(QueueError::Corrupt(format!("enqueue reply {reply:?}")));
        }
        reply
            .iter()
            .zip(jobs.iter().zip(ids))
            .map(|(item, (job, id))| match item {
                // A new job: the script wrote its initial hash.
                Value::Array(f) if f.is_empty() => Ok(Enqueued {
                    job_id: id,
                    deduplicated: false,
                    state: Some(job.initial_state()),
                }),
                // Deduplicated: the earlier job's id and state ('removed' once retention took it).
                Value::Array(f) if f.len() == 2 => Ok(Enqueued {
                    job_id: text(&f[0]),
                    deduplicated: true,
                    state: JobState::parse(&text(&f[1])),
                }),
                other => Err(QueueError::Corrupt(format!("enqueue reply {other:?}"))),
            })
            .collect()
    }

    /// Enqueues jobs that need no script (no idempotency key to check, no delay) in one
    /// `MULTI`/`EXEC`: per job an `XADD` to its band and an `HSET` of its initial hash, without
    /// the entry id (the fetch that activates the job records it). Native commands cost Redis
    /// about a third of what the same work costs from Lua (arguments and replies cross the
    /// script bridge one by one), and bulk enqueueing was Redis-bound. On Redis Cluster the
    /// script is used: a transaction there is not routed by slot by the client.
    async fn enqueue_plain(&self, queue: QueueName, jobs: &[NewJob]) -> Result<Vec<Enqueued>> {
        let q = self.queue_keys(queue);
        let now = now_ms();
        let mut pipe = redis::pipe();
        pipe.atomic();
        let mut out = Vec::with_capacity(jobs.len());
        for job in jobs {
            let id = new_job_id(queue);
            // XADD first, as in the script; nothing runs between the two inside the transaction.
            pipe.cmd("XADD")
                .arg(q.ready(job.priority))
                .arg("*")
                .arg("j")
                .arg(&id)
                .ignore();
            pipe.cmd("HSET")
                .arg(q.job(&id))
                .arg(job.initial_hash(queue.as_str(), now))
                .ignore();
            out.push(Enqueued {
                job_id: id,
                deduplicated: false,
                state: Some(job.initial_state()),
            });
        }
        let mut conn = self.conn().await?;
        let () = pipe.query_async(&mut conn).await?;
        Ok(out)
    }

    /// One job by id.
    pub async fn get_job(&self, job_id: &str) -> Result<JobRecord> {
        let queue = parse_job_id(job_id, "jobId")?;
        let mut conn = self.conn().await?;
        self.read_job(&mut conn, queue, job_id)
            .await?
            .ok_or_else(|| QueueError::NotFound(format!("job {job_id}")))
    }

    async fn read_job(
        &self,
        conn: &mut ncy_runtime::RedisConn,
        queue: QueueName,
        job_id: &str,
    ) -> Result<Option<JobRecord>> {
        let fields: HashMap<String, String> =
            conn.hgetall(self.queue_keys(queue).job(job_id)).await?;
        if fields.is_empty() {
            return Ok(None);
        }
        Ok(Some(JobRecord {
            id: job_id.to_owned(),
            fields,
        }))
    }

    /// Reads many jobs of one queue (missing ones skipped), pipelined.
    pub(crate) async fn read_jobs(
        &self,
        queue: QueueName,
        ids: &[String],
    ) -> Result<Vec<JobRecord>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let q = self.queue_keys(queue);
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.hgetall(q.job(id));
        }
        let mut conn = self.conn().await?;
        let all: Vec<HashMap<String, String>> = pipe.query_async(&mut conn).await?;
        Ok(ids
            .iter()
            .zip(all)
            .filter(|(_, f)| !f.is_empty())
            .map(|(id, fields)| JobRecord {
                id: id.clone(),
                fields,
            })
            .collect())
    }

    /// Cancels a job (see cancel.lua) and returns it as it is after the call.
    pub async fn cancel_job(&self, job_id: &str, reason: &str) -> Result<JobRecord> {
        let queue = parse_job_id(job_id, "jobId")?;
        let q = self.queue_keys(queue);
        let s = self.queue_settings(queue);
        let mut conn = self.conn().await?;
        let reply: Vec<Value> = self
            .scripts
            .cancel
            .key(q.job(job_id))
            .arg(q.tag())
            .arg(job_id)
            .arg(reason)
            .arg(now_ms())
            .arg(s.keep_count)
            .arg(u64::try_from(s.keep_age.as_millis()).unwrap_or(u64::MAX))
            .invoke_async(&mut conn)
            .await?;
        match reply.first().map(int) {
            Some(1) => self.get_job(job_id).await,
            Some(2) => Err(QueueError::FailedPrecondition(format!(
                "job {job_id} is already {}",
                reply.get(1).map(text).unwrap_or_default()
            ))),
            _ => Err(QueueError::NotFound(format!("job {job_id}"))),
        }
    }

    /// Pauses `queue`; false when it was already paused.
    pub async fn pause(&self, queue: QueueName) -> Result<bool> {
        let mut conn = self.conn().await?;
        let set: Option<String> = redis::cmd("SET")
            .arg(self.queue_keys(queue).paused())
            .arg(now_ms())
            .arg("NX")
            .query_async(&mut conn)
            .await?;
        Ok(set.is_some())
    }

    /// Resumes `queue`; false when it was not paused. Publishes a wake so idle workers look again.
    pub async fn resume(&self, queue: QueueName) -> Result<bool> {
        let q = self.queue_keys(queue);
        let mut conn = self.conn().await?;
        let removed: i64 = conn.del(q.paused()).await?;
        if removed > 0 {
            // An empty entry in the top band wakes workers blocked in XREADGROUP; fetch drops it.
            let _: String = redis::cmd("XADD")
                .arg(q.ready(BANDS - 1))
                .arg("*")
                .arg("wake")
                .arg("1")
                .query_async(&mut conn)
                .await?;
        }
        Ok(removed > 0)
    }
}

/// The idempotency record of `job` (empty without a key): cron ticks and clients apart.
fn dedup_key(q: &ncy_types::QueueKeys, job: &NewJob) -> String {
    if job.idempotency_key.is_empty() {
        String::new()
    } else if job.schedule_name.is_empty() {
        q.dedup(&job.idempotency_key)
    } else {
        q.schedule_dedup(&job.idempotency_key)
    }
}
