//! The bodies of the bulk operator RPCs: RetryDeadLetters, PurgeDeadLetters and CleanJobs. The
//! whole request (selection, limit, token) is checked before any Redis work, so a bad one changes
//! nothing (INVALID_ARGUMENT naming the field path); then one bounded engine call per RPC
//! (`dead_bulk.rs`, `clean.rs` in ncy-queue), its position carried in a run token
//! (`run_token.rs`).
use ncy_proto::jobs::v1 as pb;
use ncy_queue::{
    CleanSlice, DeadLetterAction, DeadLetterFilter, DeadLetterSlice, JobFilter, JobState, now_ms,
};
use ncy_types::ValidationError;
use ncy_types::jobs::{JobType, QueueName};

use crate::api::JobApi;
use crate::convert;
use crate::error::SchedulerError;
use crate::run_token::{CleanRun, CleanRunPosition, DeadLetterPosition, DeadLetterRun};

type Result<T> = std::result::Result<T, SchedulerError>;

/// Entries a call examines when `limit` is 0.
const DEFAULT_LIMIT: usize = 500;
/// Most entries a call examines.
const MAX_LIMIT: usize = 1000;

/// `limit`: 0 → 500, capped at 1000, negative refused.
fn limit(n: i32) -> std::result::Result<usize, ValidationError> {
    match n {
        n if n < 0 => Err(ValidationError::new("limit", "must not be negative")),
        0 => Ok(DEFAULT_LIMIT),
        n => Ok(usize::try_from(n).unwrap_or(MAX_LIMIT).min(MAX_LIMIT)),
    }
}

/// A known job type's wire name (any queue: it then matches nothing there), `None` when empty.
fn known_type(
    name: &str,
    field: &str,
    test_types: bool,
) -> std::result::Result<Option<String>, ValidationError> {
    if name.is_empty() {
        return Ok(None);
    }
    name.parse::<JobType>()
        .ok()
        .filter(|t| test_types || !t.is_test_only())
        .map(|t| Some(t.as_str().to_owned()))
        .ok_or_else(|| ValidationError::new(field, format!("unknown job type {name:?}")))
}

/// A UUID in its canonical lowercase form, `None` when empty.
fn owner(id: &str, field: &str) -> std::result::Result<Option<String>, ValidationError> {
    if id.is_empty() {
        return Ok(None);
    }
    Ok(Some(ncy_types::parse_uuid(field, id)?.to_string()))
}

/// A validated dead-letter selection.
struct Selection {
    queue: QueueName,
    filter: DeadLetterFilter,
}

fn selection(
    sel: Option<&pb::DeadLetterSelection>,
    test_types: bool,
) -> std::result::Result<Selection, ValidationError> {
    let default = pb::DeadLetterSelection::default();
    let sel = sel.unwrap_or(&default);
    if sel.queue.is_empty() {
        return Err(ValidationError::new("selection.queue", "is required"));
    }
    let queue = convert::queue(&sel.queue)
        .map_err(|e| ValidationError::new("selection.queue", e.message))?;
    let job_type = known_type(&sel.job_type, "selection.job_type", test_types)?;
    let owner_user_id = owner(&sel.owner_user_id, "selection.owner_user_id")?;
    if sel.failed_before_ms < 0 {
        return Err(ValidationError::new(
            "selection.failed_before_ms",
            "must not be negative",
        ));
    }
    Ok(Selection {
        queue,
        filter: DeadLetterFilter {
            job_type,
            owner_user_id,
            failed_before_ms: (sel.failed_before_ms > 0).then_some(sel.failed_before_ms),
        },
    })
}

/// What one call of a dead-letter run did, for either RPC's answer.
struct DeadLetterCall {
    done: u32,
    examined: u32,
    next_page_token: String,
    job_ids: Vec<String>,
}

/// RetryDeadLetters and PurgeDeadLetters: one bounded slice of a run.
async fn dead_letter_call(
    api: &JobApi,
    action: DeadLetterAction,
    sel: Option<&pb::DeadLetterSelection>,
    limit_n: i32,
    token: &str,
    dry_run: bool,
) -> Result<DeadLetterCall> {
    let test_types = api.engine.settings().test_job_types;
    let Selection { queue, filter } = selection(sel, test_types)?;
    let limit = limit(limit_n)?;
    let run = DeadLetterRun {
        action: match action {
            DeadLetterAction::Retry => 'r',
            DeadLetterAction::Delete => 'p',
        },
        queue: queue.as_str(),
        job_type: filter.job_type.as_deref().unwrap_or(""),
        owner: filter.owner_user_id.as_deref().unwrap_or(""),
        failed_before_ms: filter.failed_before_ms.unwrap_or(0),
        dry_run,
    };
    let at = match run.decode(token)? {
        Some(at) => at,
        None => match api.engine.newest_dead_letter(queue).await? {
            Some(until) => DeadLetterPosition { until, after: None },
            // Nothing to walk: the run is over at once.
            None => {
                return Ok(DeadLetterCall {
                    done: 0,
                    examined: 0,
                    next_page_token: String::new(),
                    job_ids: Vec::new(),
                });
            }
        },
    };
    let batch = api
        .engine
        .act_on_dead_letters(
            queue,
            &filter,
            action,
            DeadLetterSlice {
                after: at.after,
                until: at.until,
                limit,
                dry_run,
            },
        )
        .await?;
    Ok(DeadLetterCall {
        done: u32::try_from(batch.done).unwrap_or(u32::MAX),
        examined: u32::try_from(batch.examined).unwrap_or(u32::MAX),
        next_page_token: batch
            .next
            .map(|after| {
                run.encode(DeadLetterPosition {
                    until: at.until,
                    after: Some(after),
                })
            })
            .unwrap_or_default(),
        job_ids: batch.job_ids,
    })
}

pub async fn retry_dead_letters(
    api: &JobApi,
    req: &pb::RetryDeadLettersRequest,
) -> Result<pb::RetryDeadLettersResponse> {
    let call = dead_letter_call(
        api,
        DeadLetterAction::Retry,
        req.selection.as_ref(),
        req.limit,
        &req.page_token,
        req.dry_run,
    )
    .await?;
    Ok(pb::RetryDeadLettersResponse {
        retried: call.done,
        examined: call.examined,
        next_page_token: call.next_page_token,
        job_ids: call.job_ids,
    })
}

pub async fn purge_dead_letters(
    api: &JobApi,
    req: &pb::PurgeDeadLettersRequest,
) -> Result<pb::PurgeDeadLettersResponse> {
    let call = dead_letter_call(
        api,
        DeadLetterAction::Delete,
        req.selection.as_ref(),
        req.limit,
        &req.page_token,
        req.dry_run,
    )
    .await?;
    Ok(pb::PurgeDeadLettersResponse {
        deleted: call.done,
        examined: call.examined,
        next_page_token: call.next_page_token,
    })
}

pub async fn clean_jobs(api: &JobApi, req: &pb::CleanJobsRequest) -> Result<pb::CleanJobsResponse> {
    let test_types = api.engine.settings().test_job_types;
    if req.queue.is_empty() {
        return Err(ValidationError::new("queue", "is required").into());
    }
    let queue = convert::queue(&req.queue)?;
    let state = match pb::JobState::try_from(req.state) {
        Ok(pb::JobState::Completed) => JobState::Completed,
        Ok(pb::JobState::Dead) => JobState::Dead,
        Ok(pb::JobState::Cancelled) => JobState::Cancelled,
        _ => {
            return Err(
                ValidationError::new("state", "must be COMPLETED, DEAD or CANCELLED").into(),
            );
        }
    };
    if req.older_than_ms < 0 {
        return Err(ValidationError::new("older_than_ms", "must not be negative").into());
    }
    let job_type = known_type(&req.job_type, "job_type", test_types)?;
    let owner_user_id = owner(&req.owner_user_id, "owner_user_id")?;
    let limit = limit(req.limit)?;
    let run = CleanRun {
        queue: queue.as_str(),
        state,
        older_than_ms: req.older_than_ms,
        job_type: job_type.as_deref().unwrap_or(""),
        owner: owner_user_id.as_deref().unwrap_or(""),
        dry_run: req.dry_run,
    };
    let at = run.decode(&req.page_token)?.unwrap_or(CleanRunPosition {
        cutoff_ms: now_ms().saturating_sub(req.older_than_ms).max(0),
        after: None,
    });
    let filter = JobFilter {
        job_type: job_type.clone(),
        owner_user_id: owner_user_id.clone(),
        payload_contains: None,
    };
    let batch = api
        .engine
        .clean_finished(
            queue,
            &filter,
            &CleanSlice {
                state,
                cutoff_ms: at.cutoff_ms,
                after: at.after.clone(),
                limit,
                dry_run: req.dry_run,
            },
        )
        .await?;
    Ok(pb::CleanJobsResponse {
        deleted: u32::try_from(batch.deleted).unwrap_or(u32::MAX),
        examined: u32::try_from(batch.examined).unwrap_or(u32::MAX),
        next_page_token: batch
            .next
            .map(|after| {
                run.encode(&CleanRunPosition {
                    cutoff_ms: at.cutoff_ms,
                    after: Some(after),
                })
            })
            .unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_default_cap_and_refuse_negatives() {
        assert_eq!(limit(0), Ok(500));
        assert_eq!(limit(7), Ok(7));
        assert_eq!(limit(5000), Ok(1000));
        assert_eq!(limit(-1).expect_err("negative").field, "limit");
    }

    #[test]
    fn selections_name_the_field_path() {
        let sel = |f: fn(&mut pb::DeadLetterSelection)| {
            let mut s = pb::DeadLetterSelection {
                queue: "email".into(),
                ..Default::default()
            };
            f(&mut s);
            selection(Some(&s), false).err().map(|e| e.field)
        };
        assert_eq!(sel(|_| {}), None);
        assert_eq!(
            selection(None, false).err().map(|e| e.field).as_deref(),
            Some("selection.queue")
        );
        assert_eq!(
            sel(|s| s.queue = "nope".into()).as_deref(),
            Some("selection.queue")
        );
        assert_eq!(
            sel(|s| s.job_type = "nope".into()).as_deref(),
            Some("selection.job_type")
        );
        assert_eq!(
            sel(|s| s.owner_user_id = "x".into()).as_deref(),
            Some("selection.owner_user_id")
        );
        assert_eq!(
            sel(|s| s.failed_before_ms = -1).as_deref(),
            Some("selection.failed_before_ms")
        );
    }
}
