//! Producer and operator operations on the engine: enqueue (single and bulk, one script call per
//! queue), read and list jobs, cancel, pause/resume.
use std::collections::HashMap;

use ncy_types::jobs::{BackoffKind, QueueName};
use redis::{AsyncCommands, Value};

use crate::engine::{BANDS, Engine, GROUP};
use crate::error::{QueueError, Result};
use crate::ids::{new_job_id, parse_job_id};
use crate::job::{Enqueued, JobRecord, JobState, NewJob, int, now_ms, text};

/// A page of jobs.
#[derive(Debug, Clone, Default)]
pub struct JobPage {
    pub jobs: Vec<JobRecord>,
    pub next_token: String,
}

impl Engine {
    /// Enqueues `jobs` (validated) on `queue` in one script call; results in order.
    pub async fn enqueue(&self, queue: QueueName, jobs: &[NewJob]) -> Result<Vec<Enqueued>> {
        if matches!(self.pool, ncy_runtime::RedisPool::Single(_))
            && jobs
                .iter()
                .all(|j| j.idempotency_key.is_empty() && j.delay_ms == 0)
        {
            return self.enqueue_plain(queue, jobs).await;
        }
        let q = self.queue_keys(queue);
        let mut inv = self.scripts.enqueue.key(q.delayed());
        inv.arg(q.tag())
            .arg(now_ms())
            .arg(u64::try_from(self.settings.dedup_ttl.as_millis()).unwrap_or(u64::MAX))
            .arg(queue.as_str())
            .arg(jobs.len());
        for job in jobs {
            inv.arg(new_job_id(queue))
                .arg(&job.job_type)
                .arg(&job.data)
                .arg(job.priority)
                .arg(job.max_attempts)
                .arg(match job.backoff.kind {
                    BackoffKind::Fixed => "fixed",
                    BackoffKind::Exponential => "exponential",
                })
                .arg(job.backoff.delay_ms)
                .arg(job.delay_ms)
                .arg(&job.idempotency_key)
                .arg(&job.owner_user_id)
                .arg(&job.schedule_name);
        }
        let mut conn = self.conn().await?;
        let reply: Vec<Value> = inv.invoke_async(&mut conn).await?;
        reply
            .iter()
            .map(|item| match item {
                Value::Array(f) if f.len() == 3 => Ok(Enqueued {
                    job_id: text(&f[0]),
                    deduplicated: int(&f[1]) == 1,
                    state: JobState::parse(&text(&f[2])),
                }),
                other => Err(QueueError::Corrupt(format!("enqueue reply {other:?}"))),
            })
            .collect()
    }

    /// Enqueues jobs that need no script (no idempotency key to check, no delay) in one
    /// `MULTI`/`EXEC`: per job an `XADD` to its band and an `HSET` of the hash `enqueue.lua` would
    /// write, without the entry id (the fetch that activates the job records it). Native commands
    /// cost Redis about a third of what the same work costs from Lua (arguments and replies cross
    /// the script bridge one by one), and bulk enqueueing was Redis-bound. On Redis Cluster the script is used:
    /// a transaction there is not routed by slot by the client.
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
                .arg(&[
                    ("state", "waiting"),
                    ("queue", queue.as_str()),
                    ("type", &job.job_type),
                    ("data", &job.data),
                    (
                        "backoff_kind",
                        match job.backoff.kind {
                            BackoffKind::Fixed => "fixed",
                            BackoffKind::Exponential => "exponential",
                        },
                    ),
                ])
                .arg(&[
                    ("priority", u64::from(job.priority)),
                    ("band", u64::from(job.priority)),
                    ("max_attempts", u64::from(job.max_attempts)),
                    ("backoff_ms", job.backoff.delay_ms),
                ])
                .arg(&[("created", now), ("due", now), ("updated", now)]);
            for (name, value) in [
                ("owner", job.owner_user_id.as_str()),
                ("schedule", job.schedule_name.as_str()),
            ] {
                if !value.is_empty() {
                    pipe.arg(name).arg(value);
                }
            }
            pipe.ignore();
            out.push(Enqueued {
                job_id: id,
                deduplicated: false,
                state: Some(JobState::Waiting),
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
    async fn read_jobs(&self, queue: QueueName, ids: &[String]) -> Result<Vec<JobRecord>> {
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

    /// Lists the jobs of `queue` in `state` (see the proto for the order), `page_size` ≥ 1.
    pub async fn list_jobs(
        &self,
        queue: QueueName,
        state: JobState,
        page_size: usize,
        token: &str,
    ) -> Result<JobPage> {
        let q = self.queue_keys(queue);
        if state == JobState::Waiting {
            return self.list_waiting(queue, page_size, token).await;
        }
        let offset: isize = if token.is_empty() {
            0
        } else {
            token
                .strip_prefix("o:")
                .and_then(|o| o.parse().ok())
                .ok_or_else(|| ncy_types::ValidationError::new("pageToken", "is not valid"))?
        };
        if state == JobState::Active {
            return self.list_active(queue, page_size, offset).await;
        }
        let (key, newest_first) = match state {
            JobState::Delayed | JobState::Failed => (q.delayed(), false),
            JobState::Waiting | JobState::Active => listed_from_streams(),
            JobState::Completed => (q.done(), true),
            JobState::Dead => (q.failed(), true),
            JobState::Cancelled => (q.cancelled(), true),
        };
        let mut conn = self.conn().await?;
        let stop = offset + isize::try_from(page_size).unwrap_or(500) - 1;
        let ids: Vec<String> = if newest_first {
            conn.zrevrange(&key, offset, stop).await?
        } else {
            conn.zrange(&key, offset, stop).await?
        };
        let full = ids.len() >= page_size;
        let next = offset + isize::try_from(ids.len()).unwrap_or(0);
        // DELAYED and FAILED share the delayed set: a page holds at most `page_size` of the state
        // asked for (possibly fewer; the token moves on past the others).
        let jobs: Vec<JobRecord> = self
            .read_jobs(queue, &ids)
            .await?
            .into_iter()
            .filter(|j| j.get("state") == state.as_str())
            .collect();
        Ok(JobPage {
            jobs,
            next_token: if full {
                format!("o:{next}")
            } else {
                String::new()
            },
        })
    }

    /// ACTIVE jobs: the consumer group's pending entries, band 10 down to 0, oldest entry first
    /// (the order they started in, within a band); token `o:<offset>`.
    async fn list_active(
        &self,
        queue: QueueName,
        page_size: usize,
        offset: isize,
    ) -> Result<JobPage> {
        let q = self.queue_keys(queue);
        let offset = usize::try_from(offset).unwrap_or(0);
        let want = offset.saturating_add(page_size);
        let mut conn = self.conn().await?;
        // One pipeline over the bands (ACTIVE jobs are bounded by the workers' concurrency).
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for band in (0..BANDS).rev() {
            pipe.cmd("XPENDING")
                .arg(q.ready(band))
                .arg(GROUP)
                .arg("-")
                .arg("+")
                .arg(want);
        }
        let replies: Vec<Value> = pipe.query_async(&mut conn).await?;
        let mut entries: Vec<(u8, String)> = Vec::new();
        for (band, reply) in (0..BANDS).rev().zip(replies) {
            let pending: Vec<(String, String, u64, u64)> = match reply {
                // A band whose stream or group does not exist yet has nothing pending.
                Value::ServerError(e) if e.code() == "NOGROUP" => Vec::new(),
                Value::ServerError(e) => return Err(redis::RedisError::from(e).into()),
                other => redis::from_redis_value(other)
                    .map_err(|e| QueueError::Corrupt(format!("XPENDING reply: {e}")))?,
            };
            entries.extend(pending.into_iter().map(|(entry, ..)| (band, entry)));
            if entries.len() >= want {
                break;
            }
        }
        let page: Vec<(u8, String)> = entries.into_iter().skip(offset).take(page_size).collect();
        let full = page.len() >= page_size;
        let mut pipe = redis::pipe();
        for (band, entry) in &page {
            pipe.cmd("XRANGE").arg(q.ready(*band)).arg(entry).arg(entry);
        }
        let found: Vec<Vec<(String, HashMap<String, String>)>> = if page.is_empty() {
            Vec::new()
        } else {
            pipe.query_async(&mut conn).await?
        };
        let ids: Vec<String> = found
            .iter()
            .filter_map(|e| e.first().and_then(|(_, f)| f.get("j").cloned()))
            .collect();
        let jobs = self
            .read_jobs(queue, &ids)
            .await?
            .into_iter()
            .filter(|j| j.get("state") == JobState::Active.as_str())
            .collect();
        Ok(JobPage {
            jobs,
            next_token: if full {
                format!("o:{}", offset + page.len())
            } else {
                String::new()
            },
        })
    }

    /// WAITING jobs in run order: band 10 down to 0, oldest first; token `w:<band>:<entry>`.
    async fn list_waiting(
        &self,
        queue: QueueName,
        page_size: usize,
        token: &str,
    ) -> Result<JobPage> {
        let q = self.queue_keys(queue);
        let bad = || ncy_types::ValidationError::new("pageToken", "is not valid");
        let (mut band, mut after): (i32, String) = if token.is_empty() {
            (i32::from(BANDS) - 1, "-".to_owned())
        } else {
            let rest = token.strip_prefix("w:").ok_or_else(bad)?;
            let (b, e) = rest.split_once(':').ok_or_else(bad)?;
            (b.parse().map_err(|_| bad())?, format!("({e}"))
        };
        let mut conn = self.conn().await?;
        let mut out = Vec::new();
        let mut next = String::new();
        while band >= 0 && out.len() < page_size {
            let key = q.ready(u8::try_from(band).unwrap_or(0));
            let entries: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
                .arg(&key)
                .arg(&after)
                .arg("+")
                .arg("COUNT")
                .arg(page_size)
                .query_async(&mut conn)
                .await?;
            let ids: Vec<String> = entries
                .iter()
                .filter_map(|(_, f)| f.get("j").cloned())
                .collect();
            // A job enqueued without a script learns its entry id only when it is activated:
            // the page token names the stream entry, not the hash's `entry` field.
            let entry_of: HashMap<&str, &str> = entries
                .iter()
                .filter_map(|(e, f)| f.get("j").map(|j| (j.as_str(), e.as_str())))
                .collect();
            for job in self.read_jobs(queue, &ids).await? {
                if job.get("state") == "waiting" && out.len() < page_size {
                    next = format!("w:{band}:{}", entry_of.get(job.id.as_str()).unwrap_or(&""));
                    out.push(job);
                }
            }
            if entries.len() < page_size {
                band -= 1;
                after = "-".to_owned();
            } else if let Some((last, _)) = entries.last() {
                after = format!("({last}");
            }
        }
        if out.len() < page_size {
            next.clear();
        }
        Ok(JobPage {
            jobs: out,
            next_token: next,
        })
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

fn listed_from_streams() -> (String, bool) {
    // WAITING and ACTIVE are listed from the streams before this match is reached.
    (String::new(), false)
}
