//! The body of QueueHistory: jobs finished per minute, read from the day hashes the workers add
//! their counts to (see `ncy_queue`'s `history.rs`). `queue` empty means every configured queue
//! (as QueueStats); `minutes` 0 means 60. Both are checked before any Redis work
//! (INVALID_ARGUMENT naming the field).
use ncy_proto::jobs::v1 as pb;
use ncy_queue::MAX_HISTORY_MINUTES;
use ncy_types::ValidationError;

use crate::api::JobApi;
use crate::error::SchedulerError;

/// The window when the request leaves `minutes` at 0: the last hour.
const DEFAULT_MINUTES: u32 = 60;

pub async fn queue_history(
    api: &JobApi,
    req: &pb::QueueHistoryRequest,
) -> Result<pb::QueueHistoryResponse, SchedulerError> {
    let minutes = minutes(req.minutes)?;
    let queues = api.queues(&req.queue)?;
    let history = api.engine.history(&queues, minutes).await?;
    Ok(pb::QueueHistoryResponse {
        queues: history
            .into_iter()
            .map(|h| pb::QueueHistorySeries {
                queue: h.queue.as_str().to_owned(),
                points: h
                    .points
                    .into_iter()
                    .map(|p| pb::HistoryPoint {
                        minute_at_ms: p.minute_at_ms,
                        completed: p.completed,
                        failed: p.failed,
                    })
                    .collect(),
            })
            .collect(),
    })
}

/// `minutes`: 0 → [`DEFAULT_MINUTES`], else 1..=[`MAX_HISTORY_MINUTES`].
fn minutes(requested: i32) -> Result<u32, ValidationError> {
    match u32::try_from(requested) {
        Ok(0) => Ok(DEFAULT_MINUTES),
        Ok(n) if n <= MAX_HISTORY_MINUTES => Ok(n),
        _ => Err(ValidationError::new(
            "minutes",
            format!("must be between 0 (the last {DEFAULT_MINUTES}) and {MAX_HISTORY_MINUTES}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_default_to_an_hour_and_are_bounded_to_a_week() {
        assert_eq!(minutes(0).ok(), Some(60));
        assert_eq!(minutes(1).ok(), Some(1));
        assert_eq!(minutes(10_080).ok(), Some(10_080));
        for bad in [-1, 10_081, i32::MIN, i32::MAX] {
            let err = minutes(bad).expect_err("out of range");
            assert_eq!(err.field, "minutes");
        }
    }
}
