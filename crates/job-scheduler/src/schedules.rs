//! Schedule RPC helpers: validating an UpsertSchedule into a stored definition, the seed's default
//! schedules, and paging.
use ncy_proto::jobs::v1 as pb;
use ncy_queue::cron::{self, MissedRunPolicy, ScheduleDef};
use ncy_types::ValidationError;
use ncy_types::jobs::{Backoff, QueueName, check_attempts, check_priority, validate_payload};

use crate::convert;

/// Longest description.
const MAX_DESCRIPTION: usize = 1024;

/// Validates an UpsertSchedule request into a definition (timestamps filled by the engine).
pub fn definition(
    req: &pb::UpsertScheduleRequest,
    test_types: bool,
) -> Result<ScheduleDef, ValidationError> {
    cron::check_name(&req.name)?;
    cron::parse(&req.cron, &req.time_zone).map_err(|e| {
        let field = if e.field == "timeZone" {
            "time_zone"
        } else {
            "cron"
        };
        ValidationError::new(field, e.message)
    })?;
    let queue = convert::queue(&req.queue)?;
    let job_type = convert::job_type(&req.job_type, queue, test_types)?;
    let payload_json = if req.payload_json.is_empty() {
        "{}"
    } else {
        req.payload_json.as_str()
    };
    let payload = validate_payload(job_type, payload_json)?.to_string();
    let options = req.options.unwrap_or_default();
    let priority = check_priority(i64::from(options.priority))
        .map_err(|e| ValidationError::new("options.priority", e.message))?;
    let attempts = check_attempts(i64::from(options.attempts))
        .map_err(|e| ValidationError::new("options.attempts", e.message))?;
    let backoff = convert::backoff(options.backoff.as_ref())
        .map_err(|e| ValidationError::new(format!("options.{}", e.field), e.message))?;
    if req.description.len() > MAX_DESCRIPTION {
        return Err(ValidationError::new("description", "must be at most 1 KiB"));
    }
    let missed_run_policy = match pb::MissedRunPolicy::try_from(req.missed_run_policy) {
        Ok(pb::MissedRunPolicy::FireOnce) => Some(MissedRunPolicy::FireOnce),
        Ok(pb::MissedRunPolicy::Skip) => Some(MissedRunPolicy::Skip),
        Ok(pb::MissedRunPolicy::Unspecified) => None,
        Err(_) => return Err(ValidationError::new("missed_run_policy", "is not a policy")),
    };
    Ok(ScheduleDef {
        name: req.name.clone(),
        cron: req.cron.trim().to_owned(),
        time_zone: req.time_zone.clone(),
        queue,
        job_type: job_type.as_str().to_owned(),
        payload,
        priority,
        attempts,
        backoff,
        enabled: req.enabled.unwrap_or(true),
        missed_run_policy,
        description: req.description.clone(),
        created_at_ms: 0,
        updated_at_ms: 0,
        paused: false,
        resumed_at_ms: 0,
    })
}

/// The seed's schedules: cleanup-old-data daily at 02:00, backup-database weekly on Sunday at 03:00
/// (UTC), with the payloads' own defaults.
pub fn defaults() -> Vec<ScheduleDef> {
    let def = |name: &str, cron: &str, description: &str| ScheduleDef {
        name: name.to_owned(),
        cron: cron.to_owned(),
        time_zone: String::new(),
        queue: QueueName::Cleanup,
        job_type: name.to_owned(),
        payload: "{}".to_owned(),
        priority: 0,
        attempts: 3,
        backoff: Backoff::default(),
        enabled: true,
        missed_run_policy: None,
        description: description.to_owned(),
        created_at_ms: 0,
        updated_at_ms: 0,
        paused: false,
        resumed_at_ms: 0,
    };
    vec![
        def(
            "cleanup-old-data",
            "0 2 * * *",
            "Daily cleanup of old notifications and job records",
        ),
        def("backup-database", "0 3 * * 0", "Weekly database backup"),
    ]
}

/// Offset page token `o:<n>` (`page_token`).
pub fn offset(token: &str) -> Result<usize, ValidationError> {
    if token.is_empty() {
        return Ok(0);
    }
    token
        .strip_prefix("o:")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| ValidationError::new("page_token", "is not a token from a previous call"))
}
