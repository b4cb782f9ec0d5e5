//! Operator actions on one schedule: pause and resume its ticks, trigger a manual run now, and the
//! compare-and-set write of a stored definition (`schedule_set.lua`) that these and upserts share,
//! so that two replicas changing one schedule at once never lose either change.
//!
//! The pause is a field of the stored definition (`{<p>:cron}:schedules`), read by every replica's
//! cron pass, so it holds across replicas at once. Resuming records its time, and the cron pass
//! fires no tick at or before it: a schedule resumed after an hour fires from its next tick on,
//! not the hour's last tick at once.
use crate::cron::{ScheduleDef, ScheduleView};
use crate::engine::Engine;
use crate::error::{QueueError, Result};
use crate::job::{NewJob, now_ms};

/// Compare-and-set rounds before giving up (each loses only to another write of the same schedule).
const MAX_ROUNDS: usize = 16;

impl Engine {
    /// Pauses schedule `name`; the schedule and false when it was already paused.
    pub async fn pause_schedule(&self, name: &str) -> Result<(ScheduleView, bool)> {
        self.set_paused(name, true).await
    }

    /// Resumes schedule `name` from its next tick; the schedule and false when it was not paused.
    pub async fn resume_schedule(&self, name: &str) -> Result<(ScheduleView, bool)> {
        self.set_paused(name, false).await
    }

    /// Enqueues schedule `name`'s job now as a manual run (no idempotency key: never a tick's),
    /// whatever its state; its last run and next tick are unchanged. Returns the job id.
    pub async fn trigger_schedule(&self, name: &str) -> Result<String> {
        let def = self
            .read_schedule(name)
            .await?
            .ok_or_else(|| QueueError::NotFound(format!("schedule {name}")))?;
        let job = NewJob {
            job_type: def.job_type.clone(),
            data: def.payload.clone(),
            priority: def.priority,
            max_attempts: def.attempts,
            backoff: def.backoff,
            delay_ms: 0,
            idempotency_key: String::new(),
            owner_user_id: String::new(),
            schedule_name: def.name.clone(),
            trace: ncy_runtime::telemetry::current_traceparent().unwrap_or_default(),
        };
        self.enqueue(def.queue, &[job])
            .await?
            .into_iter()
            .next()
            .map(|e| e.job_id)
            .ok_or_else(|| QueueError::Corrupt("empty enqueue reply".into()))
    }

    async fn set_paused(&self, name: &str, paused: bool) -> Result<(ScheduleView, bool)> {
        let now = now_ms();
        let (def, changed) = self
            .update_schedule(name, |old| {
                let old = old?;
                if old.paused == paused {
                    return None;
                }
                let mut new = old.clone();
                new.paused = paused;
                if !paused {
                    new.resumed_at_ms = now;
                }
                Some(new)
            })
            .await?;
        let def = def.ok_or_else(|| QueueError::NotFound(format!("schedule {name}")))?;
        let mut conn = self.conn().await?;
        Ok((self.view(&mut conn, def).await?, changed))
    }

    /// The stored definition of `name`, if any (one that does not parse counts as none).
    async fn read_schedule(&self, name: &str) -> Result<Option<ScheduleDef>> {
        Ok(self
            .read_schedule_raw(name)
            .await?
            .and_then(|raw| serde_json::from_str(&raw).ok()))
    }

    async fn read_schedule_raw(&self, name: &str) -> Result<Option<String>> {
        let mut conn = self.conn().await?;
        Ok(redis::cmd("HGET")
            .arg(self.keys.schedules())
            .arg(name)
            .query_async(&mut conn)
            .await?)
    }

    /// Reads schedule `name`, asks `change` for its new definition (`None`: leave it as it is)
    /// and writes that only if nothing changed the stored one meanwhile, else starts again.
    /// Returns the definition stored after the call (`None`: there is none) and whether it was
    /// written.
    pub(crate) async fn update_schedule(
        &self,
        name: &str,
        mut change: impl FnMut(Option<&ScheduleDef>) -> Option<ScheduleDef>,
    ) -> Result<(Option<ScheduleDef>, bool)> {
        let key = self.keys.schedules();
        for _ in 0..MAX_ROUNDS {
            let raw = self.read_schedule_raw(name).await?;
            let old: Option<ScheduleDef> =
                raw.as_deref().and_then(|r| serde_json::from_str(r).ok());
            let Some(new) = change(old.as_ref()) else {
                return Ok((old, false));
            };
            let json =
                serde_json::to_string(&new).map_err(|e| QueueError::Corrupt(e.to_string()))?;
            let mut conn = self.conn().await?;
            let written: i64 = self
                .scripts
                .schedule_set
                .key(&key)
                .arg(&key)
                .arg(name)
                .arg(raw.unwrap_or_default())
                .arg(json)
                .invoke_async(&mut conn)
                .await?;
            if written == 1 {
                return Ok((Some(new), true));
            }
        }
        Err(QueueError::FailedPrecondition(format!(
            "schedule {name} keeps changing; try again"
        )))
    }
}
