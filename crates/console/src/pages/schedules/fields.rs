//! The schedule form's fields as typed, how an existing schedule fills them, and how they become
//! an UpsertSchedule request. The console checks only what it must to build the request (numbers,
//! the missed-tick choice); everything else is the scheduler's to judge, and its refusal names the
//! field, which [`Problem::refused`] turns into the input to mark.
use ncy_proto::jobs::v1::{Backoff, JobOptions, MissedRunPolicy, Schedule, UpsertScheduleRequest};
use serde::Deserialize;

/// The form's fields, as typed (and as shown again when the scheduler refuses them).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct ScheduleFields {
    pub(super) name: String,
    pub(super) description: String,
    pub(super) cron: String,
    pub(super) time_zone: String,
    pub(super) queue: String,
    pub(super) job_type: String,
    pub(super) payload: String,
    pub(super) priority: String,
    pub(super) attempts: String,
    /// A checkbox: present when ticked.
    pub(super) enabled: Option<String>,
    /// `` (the scheduler's setting), `fire-once` or `skip`.
    pub(super) missed: String,
}

impl ScheduleFields {
    /// A new schedule's form: enabled, empty payload object, default options.
    pub(super) fn blank() -> Self {
        Self {
            payload: "{}".to_owned(),
            priority: "0".to_owned(),
            enabled: Some("on".to_owned()),
            ..Self::default()
        }
    }

    /// The form of an existing schedule.
    pub(super) fn of(s: &Schedule) -> Self {
        let options = s.options.unwrap_or_default();
        Self {
            name: s.name.clone(),
            description: s.description.clone(),
            cron: s.cron.clone(),
            time_zone: s.time_zone.clone(),
            queue: s.queue.clone(),
            job_type: s.job_type.clone(),
            payload: s.payload_json.clone(),
            priority: options.priority.to_string(),
            attempts: options.attempts.to_string(),
            enabled: s.enabled.then(|| "on".to_owned()),
            missed: match MissedRunPolicy::try_from(s.missed_run_policy) {
                Ok(MissedRunPolicy::FireOnce) => "fire-once",
                Ok(MissedRunPolicy::Skip) => "skip",
                _ => "",
            }
            .to_owned(),
        }
    }

    /// Whether the Enabled box is ticked (the template asks).
    pub(super) fn ticked(&self) -> bool {
        self.enabled.is_some()
    }

    /// The UpsertSchedule request for schedule `name`, or what is wrong and with which field.
    pub(super) fn request(
        &self,
        name: &str,
        backoff: Option<Backoff>,
    ) -> Result<UpsertScheduleRequest, Problem> {
        let number = |text: &str, field: &'static str, label: &str| {
            let text = text.trim();
            if text.is_empty() {
                return Ok(0);
            }
            text.parse::<i32>().map_err(|_| Problem {
                message: format!("{label} must be a whole number."),
                field,
            })
        };
        let priority = number(&self.priority, "priority", "Priority")?;
        let attempts = number(&self.attempts, "attempts", "Attempts")?;
        let missed = match self.missed.as_str() {
            "" => MissedRunPolicy::Unspecified,
            "fire-once" => MissedRunPolicy::FireOnce,
            "skip" => MissedRunPolicy::Skip,
            _ => {
                return Err(Problem {
                    message: "Missed ticks must be the setting's, fire once or skip.".to_owned(),
                    field: "missed",
                });
            }
        };
        Ok(UpsertScheduleRequest {
            name: name.to_owned(),
            cron: self.cron.trim().to_owned(),
            time_zone: self.time_zone.trim().to_owned(),
            queue: self.queue.trim().to_owned(),
            job_type: self.job_type.trim().to_owned(),
            payload_json: self.payload.trim().to_owned(),
            options: Some(JobOptions {
                priority,
                attempts,
                backoff,
            }),
            enabled: Some(self.ticked()),
            missed_run_policy: missed as i32,
            description: self.description.trim().to_owned(),
        })
    }

    /// The definition as the audit log shows it.
    pub(super) fn target(&self) -> String {
        format!(
            "cron={:?} zone={:?} queue={} type={} enabled={}",
            self.cron.trim(),
            self.time_zone.trim(),
            self.queue.trim(),
            self.job_type.trim(),
            self.ticked()
        )
    }
}

/// Why the form was not saved, and the field to mark (empty: none).
#[derive(Debug)]
pub(super) struct Problem {
    pub(super) message: String,
    pub(super) field: &'static str,
}

impl Problem {
    /// The scheduler's refusal: its message names the field first (`cron: …`).
    pub(super) fn refused(message: &str) -> Self {
        let named = message.split_once(':').map_or("", |(f, _)| f.trim());
        let field = match named {
            "name" => "name",
            "cron" => "cron",
            "time_zone" => "time_zone",
            "queue" => "queue",
            "job_type" => "job_type",
            "options.priority" => "priority",
            "options.attempts" => "attempts",
            "description" => "description",
            "missed_run_policy" => "missed",
            f if f.starts_with("payload") => "payload",
            _ => "",
        };
        Self {
            message: format!("The job-scheduler refused this schedule: {message}"),
            field,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheduler_names_the_field_to_mark() {
        for (message, field) in [
            ("cron: must have 5 fields", "cron"),
            ("time_zone: not an IANA zone", "time_zone"),
            ("payload.to: is required", "payload"),
            ("options.attempts: must be 1 to 25", "attempts"),
            ("no field here", ""),
        ] {
            assert_eq!(Problem::refused(message).field, field, "{message}");
        }
        assert!(Problem::refused("cron: x").message.ends_with("cron: x"));
    }

    #[test]
    fn the_form_becomes_a_request() {
        let fields = ScheduleFields {
            cron: " 0 9 * * 1 ".into(),
            priority: "7".into(),
            attempts: String::new(),
            missed: "skip".into(),
            ..ScheduleFields::blank()
        };
        let r = fields.request("weekly", None).ok();
        let r = r.as_ref();
        assert_eq!(r.map(|r| r.cron.as_str()), Some("0 9 * * 1"));
        assert_eq!(
            r.and_then(|r| r.options).map(|o| (o.priority, o.attempts)),
            Some((7, 0))
        );
        assert_eq!(r.and_then(|r| r.enabled), Some(true));
        assert_eq!(
            r.map(|r| r.missed_run_policy),
            Some(MissedRunPolicy::Skip as i32)
        );
        let unticked = ScheduleFields {
            enabled: None,
            ..ScheduleFields::blank()
        };
        assert_eq!(
            unticked.request("a", None).ok().and_then(|r| r.enabled),
            Some(false)
        );
        let bad = ScheduleFields {
            priority: "high".into(),
            ..ScheduleFields::blank()
        };
        assert_eq!(
            bad.request("a", None).err().map(|p| p.field),
            Some("priority")
        );
    }

    #[test]
    fn an_existing_schedule_fills_the_form() {
        let s = Schedule {
            name: "nightly".into(),
            cron: "0 2 * * *".into(),
            enabled: false,
            missed_run_policy: MissedRunPolicy::FireOnce as i32,
            options: Some(JobOptions {
                priority: 3,
                attempts: 5,
                backoff: None,
            }),
            ..Schedule::default()
        };
        let f = ScheduleFields::of(&s);
        assert_eq!((f.priority.as_str(), f.attempts.as_str()), ("3", "5"));
        assert!(!f.ticked());
        assert_eq!(f.missed, "fire-once");
    }
}
