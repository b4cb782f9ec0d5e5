//! What became of one attempt once its processor returned: recorded in Redis (completed, retried,
//! postponed, dead-lettered, cancelled), then told to the job's owner. Split from
//! [`crate::runner`], which calls `record` and `tell_owner` for every job it ran.
//!
//! [`Outcome`] is the `status` label of `queue_jobs_total{queue, job_type, status}`: the Grafana
//! dashboard and the alerts query its values, so [`Outcome::as_str`] is their one spelling.
use std::time::{Duration, Instant};

use ncy_queue::{Engine, FailOutcome, FetchedJob, Finish};
use tokio_util::sync::CancellationToken;

use crate::alerts;
use crate::completer::Completer;
use crate::job_updates::{JobUpdates, Update};
use crate::processors::JobResult;
use crate::runner::{RunnerConfig, Sinks};

/// What was recorded for one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The processor succeeded and the result is stored.
    Completed,
    /// The attempt failed and another one is scheduled per the job's backoff.
    Failed,
    /// A dependency was down: the job is due again later, the attempt given back.
    Postponed,
    /// The attempt failed for good (non-retryable, or the last attempt): a dead letter.
    Dead,
    /// CancelJob stopped the job.
    Cancelled,
    /// The job was no longer this worker's (reclaimed by another one): nothing recorded.
    Stale,
    /// Redis did not take the outcome within a minute: the job will be reclaimed and run again.
    Unrecorded,
}

impl Outcome {
    /// Every outcome, in a fixed order.
    pub const ALL: [Outcome; 7] = [
        Outcome::Completed,
        Outcome::Failed,
        Outcome::Postponed,
        Outcome::Dead,
        Outcome::Cancelled,
        Outcome::Stale,
        Outcome::Unrecorded,
    ];

    /// The `status` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Failed => "failed",
            Outcome::Postponed => "postponed",
            Outcome::Dead => "dead",
            Outcome::Cancelled => "cancelled",
            Outcome::Stale => "stale",
            Outcome::Unrecorded => "unrecorded",
        }
    }
}

/// Writes the outcome, retrying while Redis is unreachable (up to a minute; after that the entry is
/// left pending and another worker reclaims and re-runs the job — at least once, never lost).
/// A failure because a dependency is down is postponed while the outage is within its grace.
pub(crate) async fn record(
    engine: &Engine,
    completer: &Completer,
    sinks: &Sinks,
    cfg: &RunnerConfig,
    job: &FetchedJob,
    cancel: &CancellationToken,
    result: &JobResult,
) -> Outcome {
    let postpone = match result {
        Err(e) if !cancel.is_cancelled() => sinks.outages.postpone(e, Instant::now()),
        _ => None,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut delay = Duration::from_millis(50);
    loop {
        let attempt = match result {
            Ok(value) => {
                let text = value.as_ref().map(|v| v.to_string()).unwrap_or_default();
                completer
                    .finish(&job.id, Finish::Completed, text)
                    .await
                    .map(|ours| {
                        if ours {
                            Outcome::Completed
                        } else {
                            Outcome::Stale
                        }
                    })
            }
            Err(_) if cancel.is_cancelled() => completer
                .finish(
                    &job.id,
                    Finish::Cancelled,
                    "stopped by CancelJob".to_owned(),
                )
                .await
                .map(|ours| {
                    if ours {
                        Outcome::Cancelled
                    } else {
                        Outcome::Stale
                    }
                }),
            Err(e) => {
                let written = match postpone {
                    Some((_, wait)) => {
                        engine
                            .postpone(cfg.queue, &cfg.consumer, job, &e.message, wait)
                            .await
                    }
                    None => {
                        engine
                            .fail(cfg.queue, &cfg.consumer, job, &e.message, e.retryable)
                            .await
                    }
                };
                match written {
                    Ok(FailOutcome::Stale) => Ok(Outcome::Stale),
                    Ok(FailOutcome::Retry(_)) => Ok(Outcome::Failed),
                    Ok(FailOutcome::Postponed(_)) => {
                        let dependency = postpone.map_or("unknown", |(d, _)| d.as_str());
                        metrics::counter!("queue_jobs_postponed_total", "queue" => cfg.queue.as_str(), "dependency" => dependency)
                            .increment(1);
                        Ok(Outcome::Postponed)
                    }
                    Ok(FailOutcome::Dead(dead_id)) => {
                        alerts::dead_letter(&sinks.alerts, cfg.queue, job, &dead_id, &e.message)
                            .await;
                        Ok(Outcome::Dead)
                    }
                    Err(err) => Err(err.to_string()),
                }
            }
        };
        match attempt {
            Ok(outcome) => return outcome,
            Err(e) if Instant::now() < deadline => {
                tracing::warn!(job_id = %job.id, error = %e, "cannot record the outcome yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(e) => {
                tracing::error!(job_id = %job.id, error = %e, "giving up recording; the job will be reclaimed");
                return Outcome::Unrecorded;
            }
        }
    }
}

/// Tells the job's owner (if any) what became of this attempt, once it is recorded.
pub(crate) async fn tell_owner(
    updates: &JobUpdates,
    cfg: &RunnerConfig,
    job: &FetchedJob,
    outcome: Outcome,
    result: &JobResult,
) {
    let update = match (outcome, result) {
        (Outcome::Completed, Ok(value)) => Update::Completed {
            result: value.as_ref(),
        },
        (Outcome::Cancelled, _) => Update::Cancelled,
        (Outcome::Failed | Outcome::Postponed | Outcome::Dead, Err(e)) => Update::Failed {
            error: &e.message,
            will_retry: outcome != Outcome::Dead,
        },
        // Stale or unrecorded: another worker owns the job now.
        _ => return,
    };
    updates.publish(cfg.queue, job, update).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_labels_are_the_ones_dashboards_query() {
        let labels: Vec<&str> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(
            labels,
            [
                "completed",
                "failed",
                "postponed",
                "dead",
                "cancelled",
                "stale",
                "unrecorded"
            ]
        );
    }
}
