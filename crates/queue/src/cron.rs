//! Recurring jobs: schedules stored in Redis (`{<p>:cron}:schedules`, name → JSON), evaluated by
//! every job-scheduler replica.
//!
//! Why this is exactly-once without a leader: each tick is enqueued with the idempotency key
//! `cron:<name>:<tick-ms>`, so however many replicas fire the same tick, the queue keeps one job.
//! `…:last_fired` records the latest fired tick per schedule; a replica starting after all were down
//! fires the most recent missed tick once (policy FIRE_ONCE) or skips it (SKIP).
//! Expressions: 5 fields (standard cron, day-of-week 0–7 with 0 and 7 = Sunday) or 6 with leading
//! seconds, evaluated in an IANA time zone (UTC default) by the `cron` crate (whose day-of-week is
//! 1–7 from Sunday; numeric days are translated).
use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use chrono_tz::Tz;
use ncy_types::ValidationError;
use ncy_types::jobs::{Backoff, QueueName, cron_idempotency_key};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::engine::Engine;
use crate::error::{QueueError, Result};
use crate::job::{NewJob, now_ms};

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

/// Parses a 5- or 6-field expression and a time zone (empty = UTC); errors name `cron`/`timeZone`.
pub fn parse(
    expr: &str,
    time_zone: &str,
) -> std::result::Result<(cron::Schedule, Tz), ValidationError> {
    let tz = if time_zone.is_empty() {
        Tz::UTC
    } else {
        Tz::from_str(time_zone)
            .map_err(|_| ValidationError::new("timeZone", "is not an IANA time zone"))?
    };
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let mut six: Vec<String> = match fields.len() {
        5 => std::iter::once("0")
            .chain(fields.iter().copied())
            .map(str::to_owned)
            .collect(),
        6 => fields.iter().map(|f| (*f).to_owned()).collect(),
        _ => {
            return Err(ValidationError::new(
                "cron",
                "must have 5 fields (minute hour day-of-month month day-of-week) or 6 with leading seconds",
            ));
        }
    };
    check_ranges(&six).map_err(|m| ValidationError::new("cron", m))?;
    six[5] = translate_dow(&six[5]).map_err(|m| ValidationError::new("cron", m))?;
    let schedule = cron::Schedule::from_str(&six.join(" "))
        .map_err(|e| ValidationError::new("cron", format!("is not a valid expression: {e}")))?;
    Ok((schedule, tz))
}

/// The six fields (seconds first) by name, with the values standard cron allows.
const FIELDS: [(&str, u64, u64); 6] = [
    ("second", 0, 59),
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 7),
];

/// Checks every number of every field against its field's bounds, so an error names the field and
/// its real range (the `cron` crate answers "Minutes must be less than 59" for 61, and counts
/// days of the week from 1). Names (`JAN`, `MON`), `*`, `?` are left to the crate.
fn check_ranges(six: &[String]) -> std::result::Result<(), String> {
    let number = |s: &str| -> Option<Option<u64>> {
        // Some(None): digits too many to be any field's value.
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())
    };
    for (field, &(name, min, max)) in six.iter().zip(FIELDS.iter()) {
        for item in field.split(',') {
            let (range, step) = match item.split_once('/') {
                Some((r, s)) => (r, Some(s)),
                None => (item, None),
            };
            if let Some(step) = step.and_then(number) {
                match step {
                    Some(n) if (1..=max).contains(&n) => {}
                    _ => return Err(format!("{name} step must be 1–{max} (got {item:?})")),
                }
            }
            let (low, high) = range.split_once('-').unwrap_or((range, range));
            let mut bounds = Vec::new();
            for part in [low, high] {
                if let Some(n) = number(part) {
                    match n {
                        Some(n) if (min..=max).contains(&n) => bounds.push(n),
                        _ => return Err(format!("{name} must be {min}–{max} (got {item:?})")),
                    }
                }
            }
            if let [a, b] = bounds[..]
                && a > b
            {
                return Err(format!("{name} range must run low to high (got {item:?})"));
            }
        }
    }
    Ok(())
}

/// Standard day-of-week numbers (0–7, Sunday 0 or 7) to the `cron` crate's (1–7, Sunday 1).
fn translate_dow(field: &str) -> std::result::Result<String, String> {
    let day = |s: &str| -> std::result::Result<Option<u8>, String> {
        if s.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty() {
            let n: u8 = s.parse().map_err(|_| format!("bad day of week {s:?}"))?;
            if n > 7 {
                return Err(format!("day of week {n} is out of range 0-7"));
            }
            Ok(Some(n))
        } else {
            Ok(None)
        }
    };
    let mut out = Vec::new();
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        let suffix = step.map(|s| format!("/{s}")).unwrap_or_default();
        if let Some((a, b)) = range.split_once('-') {
            match (day(a)?, day(b)?) {
                (Some(a), Some(7)) => {
                    out.push(format!("{}-7{suffix}", a + 1));
                    if step.is_none() {
                        out.push("1".to_owned());
                    }
                }
                (Some(a), Some(b)) => out.push(format!("{}-{}{suffix}", a + 1, b + 1)),
                _ => out.push(item.to_owned()),
            }
        } else {
            match day(range)? {
                Some(n) => out.push(format!("{}{suffix}", n % 7 + 1)),
                None => out.push(item.to_owned()),
            }
        }
    }
    Ok(out.join(","))
}

/// The first tick strictly after `after_ms`.
pub fn next_tick(schedule: &cron::Schedule, tz: Tz, after_ms: i64) -> Option<i64> {
    let after = Utc
        .timestamp_millis_opt(after_ms)
        .single()?
        .with_timezone(&tz);
    schedule
        .after(&after)
        .find(|t| t.timestamp_millis() > after_ms && !is_repeat(t))
        .map(|t| t.timestamp_millis())
}

/// The latest tick at or before `at_ms`.
pub fn latest_tick(schedule: &cron::Schedule, tz: Tz, at_ms: i64) -> Option<i64> {
    let at = Utc
        .timestamp_millis_opt(at_ms + 1)
        .single()?
        .with_timezone(&tz);
    schedule
        .after(&at)
        .rev()
        .find(|t| t.timestamp_millis() <= at_ms && !is_repeat(t))
        .map(|t| t.timestamp_millis())
}

/// Whether `t` is the second occurrence of a local time the clocks went back over. The `cron`
/// crate walks wall-clock time and yields both (going back from inside the repeated hour, the
/// later one first, which is still in the future); a schedule fires once, at the first.
fn is_repeat(t: &chrono::DateTime<Tz>) -> bool {
    let local = t.timezone().from_local_datetime(&t.naive_local());
    matches!(local, chrono::LocalResult::Ambiguous(first, _) if first != *t)
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
                    let id = self.fire(def, tick).await?;
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
    fn five_fields_are_standard_cron_with_sunday_zero() {
        let (s, tz) = parse("0 3 * * 0", "").expect("valid");
        // 2026-11-25 is a Wednesday; the next Sunday 03:00 UTC is 2026-11-29.
        let wed = Utc
            .with_ymd_and_hms(2026, 11, 25, 12, 0, 0)
            .single()
            .expect("date");
        let next = next_tick(&s, tz, wed.timestamp_millis()).expect("next");
        let want = Utc
            .with_ymd_and_hms(2026, 11, 29, 3, 0, 0)
            .single()
            .expect("date");
        assert_eq!(next, want.timestamp_millis());
        let (s7, _) = parse("0 3 * * 7", "").expect("valid");
        assert_eq!(next_tick(&s7, tz, wed.timestamp_millis()), Some(next));
        let (daily, _) = parse("0 2 * * *", "UTC").expect("valid");
        let want = Utc
            .with_ymd_and_hms(2026, 11, 26, 2, 0, 0)
            .single()
            .expect("date");
        assert_eq!(
            next_tick(&daily, tz, wed.timestamp_millis()),
            Some(want.timestamp_millis())
        );
        let (weekdays, _) = parse("0 9 * * 1-5", "").expect("valid");
        let sat = Utc
            .with_ymd_and_hms(2026, 11, 28, 12, 0, 0)
            .single()
            .expect("date");
        let mon = Utc
            .with_ymd_and_hms(2026, 11, 30, 9, 0, 0)
            .single()
            .expect("date");
        assert_eq!(
            next_tick(&weekdays, tz, sat.timestamp_millis()),
            Some(mon.timestamp_millis())
        );
    }

    #[test]
    fn seconds_and_time_zones() {
        let (s, tz) = parse("*/10 * * * * *", "Europe/Paris").expect("valid");
        let t = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 1)
            .single()
            .expect("date");
        assert_eq!(
            next_tick(&s, tz, t.timestamp_millis()),
            Some(t.timestamp_millis() + 9_000)
        );
        assert_eq!(
            latest_tick(&s, tz, t.timestamp_millis()),
            Some(t.timestamp_millis() - 1_000)
        );
        let (paris, tz) = parse("0 2 * * *", "Europe/Paris").expect("valid");
        let want = Utc
            .with_ymd_and_hms(2026, 1, 1, 1, 0, 0)
            .single()
            .expect("date");
        assert_eq!(
            next_tick(&paris, tz, t.timestamp_millis()),
            Some(want.timestamp_millis())
        );
    }

    /// Found by `fuzz/fuzz_targets/cron_expr.rs`: when the clocks go back, 02:20 happens twice;
    /// from the first, the latest tick was the second, an hour in the future, and the fired tick
    /// was labelled with it.
    #[test]
    fn a_repeated_local_time_is_one_tick_at_its_first_occurrence() {
        let (s, tz) = parse("20  2 * * 0", "Europe/Paris").expect("valid");
        let now = 3_875_696_999_424; // 2092-10-24T14:29:59.424Z, the Friday before
        let first = 3_875_818_800_000; // 2092-10-26T02:20+02:00
        let second = 3_875_822_400_000; // 2092-10-26T02:20+01:00, the same wall-clock time
        assert_eq!(next_tick(&s, tz, now), Some(first));
        assert_eq!(latest_tick(&s, tz, first), Some(first));
        assert_eq!(latest_tick(&s, tz, first + 500), Some(first));
        assert_eq!(latest_tick(&s, tz, second + 500), Some(first));
        let week = 7 * 24 * 3_600_000;
        assert_eq!(latest_tick(&s, tz, first - 1), Some(first - week));
        let next_week = second + week; // CET from then on
        for t in [first, first + 500, second - 1, second, second + 500] {
            assert_eq!(next_tick(&s, tz, t), Some(next_week), "{t}");
        }
    }

    #[test]
    fn bad_expressions_and_zones_name_the_field() {
        assert_eq!(parse("* * *", "").expect_err("3 fields").field, "cron");
        assert_eq!(parse("61 * * * *", "").expect_err("minute").field, "cron");
        for (expr, message) in [
            ("61 * * * *", "minute must be 0–59 (got \"61\")"),
            ("0 24 * * *", "hour must be 0–23 (got \"24\")"),
            ("0 0 0 * *", "day-of-month must be 1–31 (got \"0\")"),
            ("0 0 * 13 *", "month must be 1–12 (got \"13\")"),
            ("0 0 * * 8", "day-of-week must be 0–7 (got \"8\")"),
            ("60 * * * * *", "second must be 0–59 (got \"60\")"),
            ("1,5-70 * * * *", "minute must be 0–59 (got \"5-70\")"),
            ("*/0 * * * *", "minute step must be 1–59 (got \"*/0\")"),
            (
                "0 */99999999999999999999 * * *",
                "hour step must be 1–23 (got \"*/99999999999999999999\")",
            ),
            (
                "30-10 * * * *",
                "minute range must run low to high (got \"30-10\")",
            ),
        ] {
            assert_eq!(parse(expr, "").expect_err(expr).message, message, "{expr}");
        }
        for good in [
            "59 23 31 12 7",
            "0-59/15 0 1 1 0",
            "0 0 * JAN-MAR MON-FRI",
            "*/5 * * * * *",
        ] {
            assert!(parse(good, "").is_ok(), "{good}");
        }
        assert_eq!(parse("0 0 * * 9", "").expect_err("dow").field, "cron");
        assert_eq!(
            parse("0 0 * * *", "Mars/Olympus").expect_err("tz").field,
            "timeZone"
        );
        assert!(check_name("cleanup-old-data").is_ok());
        assert!(check_name("Bad").is_err());
        assert!(check_name("").is_err());
    }
}
