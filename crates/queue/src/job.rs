//! A job as stored in its hash (`…:job:<id>`), the job states, and what a worker receives.
//!
//! Hash fields: `state`, `queue`, `type`, `data` (payload JSON), `priority`, `attempts` (started),
//! `max_attempts`, `backoff_kind`, `backoff_ms`, `progress`, `progress_msg`, `result`, `error`,
//! `idem`, `owner`, `schedule`, `retried_from`, `dead_id`, `worker`, `cancel`, `reclaims`,
//! `created`, `due`, `started`, `finished`, `updated`, `band`/`entry` (its stream entry while
//! waiting or active), and `trace` (the W3C `traceparent` it was enqueued under, only when there
//! was one). Values written by the Lua scripts; read here without trusting them.
use std::collections::HashMap;

use ncy_types::jobs::{Backoff, BackoffKind, DEFAULT_BACKOFF};
use redis::Value;
use serde::{Deserialize, Serialize};

use crate::error::QueueError;

/// Where a job is in its lifecycle (the proto's `JobState`, as stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Waiting,
    Delayed,
    Active,
    Completed,
    Failed,
    Dead,
    Cancelled,
}

impl JobState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Waiting => "waiting",
            JobState::Delayed => "delayed",
            JobState::Active => "active",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Dead => "dead",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "waiting" => JobState::Waiting,
            "delayed" => JobState::Delayed,
            "active" => JobState::Active,
            "completed" => JobState::Completed,
            "failed" => JobState::Failed,
            "dead" => JobState::Dead,
            "cancelled" => JobState::Cancelled,
            _ => return None,
        })
    }

    /// COMPLETED, DEAD and CANCELLED never change again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Dead | JobState::Cancelled
        )
    }
}

/// A job to enqueue, already validated.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub job_type: String,
    /// Payload JSON in normal form.
    pub data: String,
    pub priority: u8,
    pub max_attempts: u32,
    pub backoff: Backoff,
    pub delay_ms: u64,
    pub idempotency_key: String,
    pub owner_user_id: String,
    pub schedule_name: String,
    /// The W3C `traceparent` of the span that enqueued it (the Enqueue call's, a cron tick's),
    /// when spans are exported and that span is sampled: each attempt's span is its child. Empty
    /// otherwise, and then not stored.
    pub trace: String,
}

impl NewJob {
    /// The state a new job starts in: DELAYED with a delay, else WAITING.
    pub(crate) fn initial_state(&self) -> JobState {
        if self.delay_ms > 0 {
            JobState::Delayed
        } else {
            JobState::Waiting
        }
    }

    /// The hash a new job starts with, as (field, value) pairs: the one definition of it, written
    /// as given by `enqueue.lua` and by the transaction path of `Engine::enqueue` (each adds
    /// `entry`, the stream entry, to a WAITING job once its `XADD` has answered). Fields that would
    /// be empty or 0 (attempts, progress, no idempotency key, owner, schedule, trace context, the
    /// band of a delayed job) are left out: readers take a missing field as empty or 0, and a listpack hash
    /// costs per field on every write that follows. Public so that `loadgen jobs-floor` pre-fills
    /// its jobs with exactly this hash.
    pub fn initial_hash<'a>(
        &'a self,
        queue: &'a str,
        now: i64,
    ) -> Vec<(&'static str, HashValue<'a>)> {
        use HashValue::{Num, Text};
        let due = now.saturating_add(i64::try_from(self.delay_ms).unwrap_or(i64::MAX));
        let mut h = vec![
            ("state", Text(self.initial_state().as_str())),
            ("queue", Text(queue)),
            ("type", Text(&self.job_type)),
            ("data", Text(&self.data)),
            ("priority", Num(i64::from(self.priority))),
            ("max_attempts", Num(i64::from(self.max_attempts))),
            ("backoff_kind", Text(self.backoff.kind.as_str())),
            (
                "backoff_ms",
                Num(i64::try_from(self.backoff.delay_ms).unwrap_or(i64::MAX)),
            ),
            ("created", Num(now)),
            ("due", Num(due)),
            ("updated", Num(now)),
        ];
        if self.delay_ms == 0 {
            h.push(("band", Num(i64::from(self.priority))));
        }
        for (name, value) in [
            ("idem", &self.idempotency_key),
            ("owner", &self.owner_user_id),
            ("schedule", &self.schedule_name),
            ("trace", &self.trace),
        ] {
            if !value.is_empty() {
                h.push((name, Text(value)));
            }
        }
        h
    }
}

/// A value of a job hash field, borrowed: the payload is not copied to be sent.
#[derive(Debug, Clone, Copy)]
pub enum HashValue<'a> {
    Text(&'a str),
    Num(i64),
}

impl redis::ToRedisArgs for HashValue<'_> {
    fn write_redis_args<W>(&self, out: &mut W)
    where
        W: ?Sized + redis::RedisWrite,
    {
        match self {
            HashValue::Text(s) => s.write_redis_args(out),
            HashValue::Num(n) => n.write_redis_args(out),
        }
    }
}

/// The outcome of enqueueing one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    pub job_id: String,
    pub deduplicated: bool,
    /// `None` when a deduplicated job was already removed by retention.
    pub state: Option<JobState>,
}

/// A job as stored.
#[derive(Debug, Clone, Default)]
pub struct JobRecord {
    pub id: String,
    pub fields: HashMap<String, String>,
}

impl JobRecord {
    /// A field, or empty.
    pub fn get(&self, name: &str) -> &str {
        self.fields.get(name).map(String::as_str).unwrap_or("")
    }

    /// A numeric field, or 0.
    pub fn num(&self, name: &str) -> i64 {
        self.get(name).parse().unwrap_or(0)
    }

    /// The state; unknown text is reported, not guessed.
    pub fn state(&self) -> Result<JobState, QueueError> {
        JobState::parse(self.get("state")).ok_or_else(|| {
            QueueError::Corrupt(format!("job {} has state {:?}", self.id, self.get("state")))
        })
    }

    /// The backoff stored on the job.
    pub fn backoff(&self) -> Backoff {
        Backoff {
            kind: stored_backoff_kind(self.get("backoff_kind")),
            delay_ms: u64::try_from(self.num("backoff_ms")).unwrap_or(0),
        }
    }
}

/// A job handed to a worker by fetch or reclaim: everything a processor needs.
#[derive(Debug, Clone)]
pub struct FetchedJob {
    pub id: String,
    /// The stored type name, as text: the engine runs any type, and a name this build does not
    /// know (enqueued by a newer scheduler) must reach the worker, whose registry parses it once
    /// into a `JobType` and dead-letters what it has no processor for.
    pub job_type: String,
    pub data: String,
    /// Attempts started, this one included.
    pub attempt: u32,
    pub max_attempts: u32,
    pub backoff: Backoff,
    pub band: u8,
    pub entry: String,
    pub created_at_ms: i64,
    pub due_at_ms: i64,
    pub owner_user_id: String,
    /// The `traceparent` it was enqueued under (empty without one): the parent of the attempt.
    pub trace: String,
}

impl FetchedJob {
    /// Parses one job of the fetch/reclaim scripts' reply (see `activate` in common.lua).
    pub(crate) fn from_value(v: &Value) -> Result<Self, QueueError> {
        let items = match v {
            Value::Array(items) if items.len() >= 12 => items,
            other => return Err(QueueError::Corrupt(format!("fetched job {other:?}"))),
        };
        let s = |i: usize| -> String { text(&items[i]) };
        let n = |i: usize| -> i64 { int(&items[i]) };
        Ok(FetchedJob {
            id: s(0),
            job_type: s(1),
            data: s(2),
            attempt: u32::try_from(n(3)).unwrap_or(1),
            max_attempts: u32::try_from(n(4)).unwrap_or(1),
            backoff: Backoff {
                kind: stored_backoff_kind(&s(5)),
                delay_ms: u64::try_from(n(6)).unwrap_or(0),
            },
            band: u8::try_from(n(7)).unwrap_or(0),
            entry: s(8),
            created_at_ms: n(9),
            due_at_ms: n(10),
            owner_user_id: s(11),
            // Only a job stored with a trace context has the 13th item.
            trace: items.get(12).map(text).unwrap_or_default(),
        })
    }
}

/// The backoff kind stored on a job: a hash without one (or with a name this version does not
/// know) gets the default kind, exponential, rather than failing the job.
fn stored_backoff_kind(name: &str) -> BackoffKind {
    name.parse().unwrap_or(DEFAULT_BACKOFF.kind)
}

/// Text of a reply item (bulk or simple string, or a number).
pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        _ => String::new(),
    }
}

/// Integer of a reply item (number or numeric text), 0 otherwise.
pub(crate) fn int(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        other => text(other).parse().unwrap_or(0),
    }
}

/// One event of a job, as JSON on the queue's events stream and pub/sub channel (written by the
/// Lua scripts' `emit`), read by WatchJob. Browsers get their jobs' updates from the worker instead
/// (see the worker's `job_updates`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobEventMessage {
    pub job_id: String,
    pub queue: String,
    /// `state_changed` or `progress`.
    #[serde(rename = "type")]
    pub kind: String,
    pub state: String,
    #[serde(default)]
    pub progress: i64,
    #[serde(default)]
    pub at_ms: i64,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub attempts_made: i64,
    #[serde(default)]
    pub result_json: String,
    #[serde(default)]
    pub due_at_ms: i64,
    #[serde(default)]
    pub owner_user_id: String,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_backoff_reads_back_and_a_missing_kind_is_the_default() {
        let record = |kind: &str| JobRecord {
            id: "j".to_owned(),
            fields: HashMap::from([
                ("backoff_kind".to_owned(), kind.to_owned()),
                ("backoff_ms".to_owned(), "500".to_owned()),
            ]),
        };
        for kind in BackoffKind::ALL {
            let b = record(kind.as_str()).backoff();
            assert_eq!((b.kind, b.delay_ms), (kind, 500));
        }
        for other in ["", "linear"] {
            assert_eq!(
                record(other).backoff().kind,
                DEFAULT_BACKOFF.kind,
                "{other:?}"
            );
        }
    }
}
