//! Recurring jobs: schedules stored in Redis (`{<p>:cron}:schedules`, name → JSON), evaluated by
//! every job-scheduler replica.
//!
//! Why this is exactly-once without a leader: each tick is enqueued with the idempotency key
//! `cron:<name>:<tick-ms>`, so however many replicas fire the same tick, the queue keeps one job.
//! `…:last_fired` records the latest fired tick per schedule; a replica starting after all were down
//! fires the most recent missed tick once (policy FIRE_ONCE) or skips it (SKIP). A paused schedule
//! fires nothing, and once resumed no tick at or before its resume (see `schedule_control.rs`).
//! Expressions and their ticks are in `cron_expr.rs` (re-exported here).
use std::collections::HashMap;
use std::time::Duration;

use ncy_types::ValidationError;
use ncy_types::jobs::{Backoff, QueueName, cron_idempotency_key};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::engine::Engine;
use crate::error::{QueueError, Result};
use crate::job::{NewJob, now_ms};

pub use crate::cron_expr::{latest_tick, next_tick, parse};

/// What to do with ticks missed while no scheduler ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissedRunPolicy {
    FireOnce,
    Skip,
}

/// A schedule as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleDef {
    pub name: String,
    pub cron: String,
    pub time_zone: String,
    pub queue: QueueName,
    pub job_type: String,
    /// Payload JSON in normal form (validated at upsert).
    pub payload: String,
    pub priority: u8,
    pub attempts: u32,
    pub backoff: Backoff,
    pub enabled: bool,
    /// `None`: the setting.
    pub missed_run_policy: Option<MissedRunPolicy>,
    pub description: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// Paused by an operator (PauseSchedule): its ticks are not fired. Kept by upserts.
    #[serde(default)]
    pub paused: bool,
    /// When it was last resumed (0: never): ticks at or before then are not fired late.
    #[serde(default)]
    pub resumed_at_ms: i64,
}

/// A schedule with its run times.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleView {
    pub def: ScheduleDef,
    pub next_run_at_ms: i64,
    pub last_run_at_ms: i64,
    pub last_job_id: String,
}

/// Checks a schedule name: `[a-z0-9][a-z0-9._-]{0,127}`.
pub fn check_name(name: &str) -> std::result::Result<(), ValidationError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            "name",
            "must match [a-z0-9][a-z0-9._-]{0,127}",
        ))
    }
}

impl Engine {
    /// Creates or replaces a schedule (already validated); returns it and whether it was new. A
    /// pause (and the time of the last resume) is kept: it is the operators', not the definition's.
    pub async fn upsert_schedule(&self, def: ScheduleDef) -> Result<(ScheduleView, bool)> {
        let now = now_ms();
        let mut created = false;
        let name = def.name.clone();
        let (stored, _) = self
            .update_schedule(&name, |old| {
                let mut new = def.clone();
                new.created_at_ms = old.map(|o| o.created_at_ms).unwrap_or(now);
                new.updated_at_ms = now;
                new.paused = old.is_some_and(|o| o.paused);
                new.resumed_at_ms = old.map(|o| o.resumed_at_ms).unwrap_or(0);
                created = old.is_none();
                Some(new)
            })
            .await?;
        let def = stored.ok_or_else(|| QueueError::Corrupt("upsert wrote nothing".into()))?;
        let mut conn = self.conn().await?;
        let view = self.view(&mut conn, def).await?;
        Ok((view, created))
    }

    /// Installs `def` unless a schedule of that name exists (the defaults at start).
    pub async fn install_schedule(&self, mut def: ScheduleDef) -> Result<bool> {
        let now = now_ms();
        def.created_at_ms = now;
        def.updated_at_ms = now;
        let json = serde_json::to_string(&def).map_err(|e| QueueError::Corrupt(e.to_string()))?;
        let mut conn = self.conn().await?;
        Ok(conn.hset_nx(self.keys.schedules(), &def.name, json).await?)
    }

    /// Deletes a schedule.
    pub async fn delete_schedule(&self, name: &str) -> Result<()> {
        let mut conn = self.conn().await?;
        let removed: i64 = conn.hdel(self.keys.schedules(), name).await?;
        if removed == 0 {
            return Err(QueueError::NotFound(format!("schedule {name}")));
        }
        let _: i64 = conn
            .hdel(
                self.keys.schedule_last_fired(),
                &[name.to_owned(), format!("{name}:job")],
            )
            .await?;
        Ok(())
    }

    /// Every schedule, by name.
    pub async fn schedules(&self) -> Result<Vec<ScheduleView>> {
        let mut conn = self.conn().await?;
        let all: HashMap<String, String> = conn.hgetall(self.keys.schedules()).await?;
        let mut defs: Vec<ScheduleDef> = all
            .values()
            .filter_map(|v| serde_json::from_str(v).ok())
            .collect();
        defs.sort_by(|a, b| a.name.cmp(&b.name));
        let mut out = Vec::with_capacity(defs.len());
        for def in defs {
            out.push(self.view(&mut conn, def).await?);
        }
        Ok(out)
    }

    pub(crate) async fn view(
        &self,
        conn: &mut ncy_runtime::RedisConn,
        def: ScheduleDef,
    ) -> Result<ScheduleView> {
        let (last, job): (Option<i64>, Option<String>) = redis::pipe()
            .hget(self.keys.schedule_last_fired(), &def.name)
            .hget(self.keys.schedule_last_fired(), format!("{}:job", def.name))
            .query_async(conn)
            .await?;
        let next = if def.enabled && !def.paused {
            parse(&def.cron, &def.time_zone)
                .ok()
                .and_then(|(s, tz)| next_tick(&s, tz, now_ms()))
                .unwrap_or(0)
        } else {
            0
        };
        Ok(ScheduleView {
            def,
            next_run_at_ms: next,
            last_run_at_ms: last.unwrap_or(0),
            last_job_id: job.unwrap_or_default(),
        })
    }

    /// Fires the tick `tick_ms` of `def` (idempotent: a tick already fired by any replica is kept once).
    pub async fn fire(&self, def: &ScheduleDef, tick_ms: i64) -> Result<String> {
        let job = NewJob {
            job_type: def.job_type.clone(),
            data: def.payload.clone(),
            priority: def.priority,
            max_attempts: def.attempts,
            backoff: def.backoff,
            delay_ms: 0,
            idempotency_key: cron_idempotency_key(&def.name, tick_ms),
            owner_user_id: String::new(),
            schedule_name: def.name.clone(),
            trace: ncy_runtime::telemetry::current_traceparent().unwrap_or_default(),
        };
        let enqueued = self.enqueue(def.queue, &[job]).await?;
        let id = enqueued
            .first()
            .map(|e| e.job_id.clone())
            .ok_or_else(|| QueueError::Corrupt("empty enqueue reply".into()))?;
        let mut conn = self.conn().await?;
        let _: () = redis::pipe()
            .hset(self.keys.schedule_last_fired(), &def.name, tick_ms)
            .hset(
                self.keys.schedule_last_fired(),
                format!("{}:job", def.name),
                &id,
            )
            .query_async(&mut conn)
            .await?;
        Ok(id)
    }

    /// Evaluates every schedule until `cancel`: fires due ticks, applies the missed-tick policy on
    /// the first pass, re-reads schedules at least every second (upserts by other replicas).
    pub async fn run_cron(self, default_policy: MissedRunPolicy, cancel: CancellationToken) {
        let mut first = true;
        while !cancel.is_cancelled() {
            let wait = match self.cron_pass(first, default_policy).await {
                Ok(next) => {
                    first = false;
                    let until = next.unwrap_or(i64::MAX).min(now_ms() + 1000);
                    Duration::from_millis(u64::try_from(until - now_ms()).unwrap_or(0))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cron: redis error; retrying");
                    Duration::from_millis(500)
                }
            };
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn cron_pass(&self, first: bool, default_policy: MissedRunPolicy) -> Result<Option<i64>> {
        let now = now_ms();
        let mut next_wake: Option<i64> = None;
        for view in self.schedules().await? {
            let def = &view.def;
            if !def.enabled || def.paused {
                continue;
            }
            let Ok((schedule, tz)) = parse(&def.cron, &def.time_zone) else {
                continue;
            };
            let since = if view.last_run_at_ms > 0 {
                view.last_run_at_ms
            } else {
                def.updated_at_ms
            }
            .max(def.resumed_at_ms);
            if let Some(tick) = latest_tick(&schedule, tz, now).filter(|t| *t > since) {
                let policy = def.missed_run_policy.unwrap_or(default_policy);
                let missed = first && tick < now - 2_000;
                if missed && policy == MissedRunPolicy::Skip {
                    let mut conn = self.conn().await?;
                    let _: () = conn
                        .hset(self.keys.schedule_last_fired(), &def.name, tick)
                        .await?;
                } else {
                    // The tick's span is the parent of its job's attempts (when spans are exported).
                    let span = tracing::info_span!("cron.tick", otel.name = %format!("cron tick {}", def.name), schedule = %def.name, tick_ms = tick);
                    let id = self.fire(def, tick).instrument(span).await?;
                    tracing::info!(schedule = %def.name, tick_ms = tick, job_id = %id, missed, "cron tick fired");
                }
            }
            if let Some(next) = next_tick(&schedule, tz, now) {
                next_wake = Some(next_wake.map_or(next, |w: i64| w.min(next)));
            }
        }
        Ok(next_wake)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_names_are_checked() {
        assert!(check_name("cleanup-old-data").is_ok());
        assert!(check_name("a.b_c-9").is_ok());
        assert!(check_name("Bad").is_err());
        assert!(check_name("-x").is_err());
        assert!(check_name("").is_err());
        assert!(check_name(&"a".repeat(129)).is_err());
    }
}
