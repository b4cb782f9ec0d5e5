//! Request validation and conversions between the gRPC contract and the engine's types.
//! Everything is checked before anything is written; errors name the proto field.
use ncy_proto::jobs::v1 as pb;
use ncy_queue::cron::{MissedRunPolicy, ScheduleView};
use ncy_queue::listing::MAX_PAYLOAD_CONTAINS;
use ncy_queue::{DeadLetter, JobFilter, JobRecord, JobState, NewJob};
use ncy_types::ValidationError;
use ncy_types::jobs::{
    Backoff, BackoffKind, DEFAULT_BACKOFF_DELAY_MS, JobType, MAX_BACKOFF_DELAY_MS, QueueName,
    check_attempts, check_delay_ms, check_priority, validate_payload,
};

/// Longest delay accepted: a year.
pub const MAX_DELAY_MS: u64 = 31_536_000_000;
/// Longest idempotency key.
pub const MAX_IDEMPOTENCY_KEY: usize = 256;

/// A validated Enqueue.
pub struct ValidJob {
    pub queue: QueueName,
    pub job: NewJob,
}

/// Parses a queue name (`queue`).
pub fn queue(name: &str) -> Result<QueueName, ValidationError> {
    name.parse::<QueueName>()
        .map_err(|e| ValidationError::new("queue", e.message))
}

/// Parses a job type allowed on `queue` (`job_type`); test-only types only when enabled.
pub fn job_type(
    name: &str,
    queue: QueueName,
    test_types: bool,
) -> Result<JobType, ValidationError> {
    let t = name
        .parse::<JobType>()
        .ok()
        .filter(|t| test_types || !t.is_test_only())
        .ok_or_else(|| ValidationError::new("job_type", format!("unknown job type {name:?}")))?;
    if !t.allowed_on(queue) {
        return Err(ValidationError::new(
            "job_type",
            format!("{name} does not run on queue {queue}"),
        ));
    }
    Ok(t)
}

/// Backoff from the request (`backoff.delay_ms` 0 = 2000, else 1..=86,400,000).
pub fn backoff(b: Option<&pb::Backoff>) -> Result<Backoff, ValidationError> {
    let Some(b) = b else {
        return Ok(Backoff::default());
    };
    let kind = match pb::BackoffType::try_from(b.r#type) {
        Ok(pb::BackoffType::Fixed) => BackoffKind::Fixed,
        Ok(_) => BackoffKind::Exponential,
        Err(_) => {
            return Err(ValidationError::new(
                "backoff.type",
                "is not a backoff type",
            ));
        }
    };
    let delay_ms = match b.delay_ms {
        0 => DEFAULT_BACKOFF_DELAY_MS,
        d => u64::try_from(d)
            .ok()
            .filter(|d| (1..=MAX_BACKOFF_DELAY_MS).contains(d))
            .ok_or_else(|| {
                ValidationError::new(
                    "backoff.delay_ms",
                    format!("must be 0 (default) or between 1 and {MAX_BACKOFF_DELAY_MS}"),
                )
            })?,
    };
    Ok(Backoff { kind, delay_ms })
}

/// Validates one Enqueue request.
pub fn enqueue(req: &pb::EnqueueRequest, test_types: bool) -> Result<ValidJob, ValidationError> {
    let q = queue(&req.queue)?;
    let t = job_type(&req.job_type, q, test_types)?;
    let data = validate_payload(t, &req.payload_json)?.to_string();
    let priority = check_priority(i64::from(req.priority))?;
    let max_attempts = check_attempts(i64::from(req.attempts))?;
    let delay_ms = check_delay_ms(req.delay_ms)?;
    if delay_ms > MAX_DELAY_MS {
        return Err(ValidationError::new(
            "delay_ms",
            format!("must be at most {MAX_DELAY_MS} (a year)"),
        ));
    }
    let backoff = backoff(req.backoff.as_ref())?;
    if req.idempotency_key.len() > MAX_IDEMPOTENCY_KEY {
        return Err(ValidationError::new(
            "idempotency_key",
            format!("must be at most {MAX_IDEMPOTENCY_KEY} characters"),
        ));
    }
    if !req.owner_user_id.is_empty() {
        ncy_types::parse_uuid("owner_user_id", &req.owner_user_id)?;
    }
    Ok(ValidJob {
        queue: q,
        job: NewJob {
            job_type: t.as_str().to_owned(),
            data,
            priority,
            max_attempts,
            backoff,
            delay_ms,
            idempotency_key: req.idempotency_key.clone(),
            owner_user_id: req.owner_user_id.clone(),
            schedule_name: String::new(),
            // Set by the call (`api.rs`): every job of it gets the call's trace context.
            trace: String::new(),
        },
    })
}

/// The proto state of an engine state.
pub fn state(s: JobState) -> pb::JobState {
    match s {
        JobState::Waiting => pb::JobState::Waiting,
        JobState::Delayed => pb::JobState::Delayed,
        JobState::Active => pb::JobState::Active,
        JobState::Completed => pb::JobState::Completed,
        JobState::Failed => pb::JobState::Failed,
        JobState::Dead => pb::JobState::Dead,
        JobState::Cancelled => pb::JobState::Cancelled,
    }
}

/// The engine state of a proto state (`state`); UNSPECIFIED is rejected.
pub fn engine_state(s: i32) -> Result<JobState, ValidationError> {
    Ok(match pb::JobState::try_from(s) {
        Ok(pb::JobState::Waiting) => JobState::Waiting,
        Ok(pb::JobState::Delayed) => JobState::Delayed,
        Ok(pb::JobState::Active) => JobState::Active,
        Ok(pb::JobState::Completed) => JobState::Completed,
        Ok(pb::JobState::Failed) => JobState::Failed,
        Ok(pb::JobState::Dead) => JobState::Dead,
        Ok(pb::JobState::Cancelled) => JobState::Cancelled,
        _ => return Err(ValidationError::new("state", "must be a job state")),
    })
}

fn backoff_pb(b: Backoff) -> pb::Backoff {
    pb::Backoff {
        r#type: match b.kind {
            BackoffKind::Fixed => pb::BackoffType::Fixed,
            BackoffKind::Exponential => pb::BackoffType::Exponential,
        } as i32,
        delay_ms: i64::try_from(b.delay_ms).unwrap_or(i64::MAX),
    }
}

fn to_i32(n: i64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// A stored job as the proto `Job`.
pub fn job(rec: &JobRecord) -> pb::Job {
    let st = JobState::parse(rec.get("state"));
    pb::Job {
        id: rec.id.clone(),
        queue: rec.get("queue").to_owned(),
        job_type: rec.get("type").to_owned(),
        payload_json: rec.get("data").to_owned(),
        state: st.map(state).unwrap_or(pb::JobState::Unspecified) as i32,
        priority: to_i32(rec.num("priority")),
        attempts_made: to_i32(rec.num("attempts")),
        max_attempts: to_i32(rec.num("max_attempts")),
        backoff: Some(backoff_pb(rec.backoff())),
        progress: to_i32(rec.num("progress")),
        progress_message: rec.get("progress_msg").to_owned(),
        result_json: rec.get("result").to_owned(),
        last_error: rec.get("error").to_owned(),
        idempotency_key: rec.get("idem").to_owned(),
        owner_user_id: rec.get("owner").to_owned(),
        schedule_name: rec.get("schedule").to_owned(),
        retried_from_dead_letter_id: rec.get("retried_from").to_owned(),
        dead_letter_id: match (rec.get("dead_id"), rec.get("queue").parse::<QueueName>()) {
            ("", _) | (_, Err(_)) => String::new(),
            (entry, Ok(q)) => ncy_queue::ids::dead_letter_id(q, entry),
        },
        // The scripts leave the last worker on a finished job; the contract shows it only while ACTIVE.
        worker_id: if st == Some(JobState::Active) {
            rec.get("worker").to_owned()
        } else {
            String::new()
        },
        cancel_requested: rec.get("cancel") == "1",
        created_at_ms: rec.num("created"),
        due_at_ms: rec.num("due"),
        started_at_ms: rec.num("started"),
        finished_at_ms: rec.num("finished"),
        updated_at_ms: rec.num("updated"),
    }
}

/// A dead letter as the proto message.
pub fn dead_letter(d: &DeadLetter) -> pb::DeadLetter {
    pb::DeadLetter {
        id: d.id.clone(),
        queue: d.queue.clone(),
        job_type: d.job_type.clone(),
        payload_json: d.data.clone(),
        error: d.error.clone(),
        failed_at_ms: d.failed_at_ms,
        attempts_made: to_i32(d.attempts_made),
        job_id: d.job_id.clone(),
        priority: to_i32(d.priority),
        owner_user_id: d.owner_user_id.clone(),
        non_retryable: d.non_retryable,
    }
}

/// A schedule as the proto message.
pub fn schedule(v: &ScheduleView) -> pb::Schedule {
    let d = &v.def;
    pb::Schedule {
        name: d.name.clone(),
        cron: d.cron.clone(),
        time_zone: if d.time_zone.is_empty() {
            "UTC".into()
        } else {
            d.time_zone.clone()
        },
        queue: d.queue.as_str().to_owned(),
        job_type: d.job_type.clone(),
        payload_json: d.payload.clone(),
        options: Some(pb::JobOptions {
            priority: i32::from(d.priority),
            attempts: i32::try_from(d.attempts).unwrap_or(0),
            backoff: Some(backoff_pb(d.backoff)),
        }),
        enabled: d.enabled,
        missed_run_policy: match d.missed_run_policy {
            None => pb::MissedRunPolicy::Unspecified,
            Some(MissedRunPolicy::FireOnce) => pb::MissedRunPolicy::FireOnce,
            Some(MissedRunPolicy::Skip) => pb::MissedRunPolicy::Skip,
        } as i32,
        description: d.description.clone(),
        next_run_at_ms: v.next_run_at_ms,
        last_run_at_ms: v.last_run_at_ms,
        last_job_id: v.last_job_id.clone(),
        created_at_ms: d.created_at_ms,
        updated_at_ms: d.updated_at_ms,
        paused: d.paused,
    }
}

/// Page size: 0 → 50, capped at 500, negative rejected (`page_size`).
pub fn page_size(n: i32) -> Result<usize, ValidationError> {
    match n {
        n if n < 0 => Err(ValidationError::new("page_size", "must not be negative")),
        0 => Ok(50),
        n => Ok(usize::try_from(n.min(500)).unwrap_or(500)),
    }
}

/// ListJobs' filters (`job_type`, `owner_user_id`, `payload_contains` up to 256 bytes; empty =
/// any). A known type is accepted on any queue (it then matches nothing there); test-only types
/// only when enabled.
pub fn job_filter(
    req: &pb::ListJobsRequest,
    test_types: bool,
) -> Result<JobFilter, ValidationError> {
    let job_type = match req.job_type.as_str() {
        "" => None,
        name => Some(
            name.parse::<JobType>()
                .ok()
                .filter(|t| test_types || !t.is_test_only())
                .ok_or_else(|| {
                    ValidationError::new("job_type", format!("unknown job type {name:?}"))
                })?
                .as_str()
                .to_owned(),
        ),
    };
    let owner_user_id = match req.owner_user_id.as_str() {
        "" => None,
        id => Some(ncy_types::parse_uuid("owner_user_id", id)?.to_string()),
    };
    if req.payload_contains.len() > MAX_PAYLOAD_CONTAINS {
        return Err(ValidationError::new(
            "payload_contains",
            format!("must be at most {MAX_PAYLOAD_CONTAINS} bytes"),
        ));
    }
    let payload_contains = Some(req.payload_contains.clone()).filter(|t| !t.is_empty());
    Ok(JobFilter {
        job_type,
        owner_user_id,
        payload_contains,
    })
}
