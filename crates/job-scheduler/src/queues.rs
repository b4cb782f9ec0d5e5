//! The queue-level RPC bodies: pause and resume a queue, its statistics, and its dead letters one
//! at a time (list across queues newest first, retry, delete). The bulk dead-letter runs are in
//! `bulk.rs`.
use std::collections::BTreeMap;

use ncy_proto::jobs::v1 as pb;
use ncy_types::ValidationError;
use ncy_types::jobs::QueueName;

use crate::api::JobApi;
use crate::convert;
use crate::error::SchedulerError;

type Result<T> = std::result::Result<T, SchedulerError>;

pub async fn pause_queue(
    api: &JobApi,
    req: &pb::PauseQueueRequest,
) -> Result<pb::PauseQueueResponse> {
    let queue = convert::queue(&req.queue)?;
    let changed = api.engine.pause(queue).await?;
    Ok(pb::PauseQueueResponse { changed })
}

pub async fn resume_queue(
    api: &JobApi,
    req: &pb::ResumeQueueRequest,
) -> Result<pb::ResumeQueueResponse> {
    let queue = convert::queue(&req.queue)?;
    let changed = api.engine.resume(queue).await?;
    Ok(pb::ResumeQueueResponse { changed })
}

pub async fn queue_stats(
    api: &JobApi,
    req: &pb::QueueStatsRequest,
) -> Result<pb::QueueStatsResponse> {
    let mut queues = Vec::new();
    for queue in api.queues(&req.queue)? {
        let s = api.engine.stats(queue).await?;
        let settings = api.engine.queue_settings(queue);
        queues.push(pb::QueueSummary {
            queue: s.queue,
            paused: s.paused,
            waiting: s.waiting,
            delayed: s.delayed,
            active: s.active,
            completed: s.completed,
            failed: s.failed,
            cancelled: s.cancelled,
            dead_letters: s.dead_letters,
            rate_limit: settings.rate_limit.map(|l| pb::RateLimit {
                max_jobs: i32::try_from(l.max).unwrap_or(i32::MAX),
                window_ms: i64::try_from(l.window_ms).unwrap_or(i64::MAX),
                limited: s.retry_after_ms > 0,
                retry_after_ms: s.retry_after_ms,
            }),
            concurrency_per_worker: i32::try_from(settings.concurrency).unwrap_or(i32::MAX),
            workers: i32::try_from(s.workers).unwrap_or(i32::MAX),
            oldest_waiting_at_ms: s.oldest_waiting_at_ms,
        });
    }
    Ok(pb::QueueStatsResponse { queues })
}

pub async fn list_dead_letters(
    api: &JobApi,
    req: &pb::ListDeadLettersRequest,
) -> Result<pb::ListDeadLettersResponse> {
    let queues = api.queues(&req.queue)?;
    let size = convert::page_size(req.page_size)?;
    // Token: `queue=entry` cursors (exclusive) per queue already paged, comma-separated.
    let mut cursors: BTreeMap<QueueName, String> = BTreeMap::new();
    if !req.page_token.is_empty() {
        for part in req.page_token.split(',') {
            let bad = || ValidationError::new("page_token", "is malformed");
            let (q, entry) = part.split_once('=').ok_or_else(bad)?;
            let q: QueueName = q.parse().map_err(|_| bad())?;
            ncy_queue::ids::parse_dead_letter_id(&format!("{q}.{entry}"), "page_token")?;
            cursors.insert(q, entry.to_owned());
        }
    }
    let mut all = Vec::new();
    for q in &queues {
        let letters = api
            .engine
            .dead_letters(*q, cursors.get(q).map(String::as_str), size + 1)
            .await?;
        all.extend(letters.into_iter().map(|l| (*q, l)));
    }
    all.sort_by(|a, b| {
        b.1.failed_at_ms
            .cmp(&a.1.failed_at_ms)
            .then(b.1.id.cmp(&a.1.id))
    });
    let more = all.len() > size;
    all.truncate(size);
    for (q, l) in &all {
        if let Ok((_, entry)) = ncy_queue::ids::parse_dead_letter_id(&l.id, "id") {
            cursors.insert(*q, entry);
        }
    }
    let next = if more {
        cursors
            .iter()
            .map(|(q, e)| format!("{q}={e}"))
            .collect::<Vec<_>>()
            .join(",")
    } else {
        String::new()
    };
    Ok(pb::ListDeadLettersResponse {
        dead_letters: all.iter().map(|(_, l)| convert::dead_letter(l)).collect(),
        next_page_token: next,
    })
}

pub async fn retry_dead_letter(
    api: &JobApi,
    req: &pb::RetryDeadLetterRequest,
) -> Result<pb::RetryDeadLetterResponse> {
    ncy_queue::ids::parse_dead_letter_id(&req.dead_letter_id, "dead_letter_id")?;
    let job_id = api.engine.retry_dead_letter(&req.dead_letter_id).await?;
    Ok(pb::RetryDeadLetterResponse { job_id })
}

pub async fn delete_dead_letter(
    api: &JobApi,
    req: &pb::DeleteDeadLetterRequest,
) -> Result<pb::DeleteDeadLetterResponse> {
    ncy_queue::ids::parse_dead_letter_id(&req.dead_letter_id, "dead_letter_id")?;
    api.engine.delete_dead_letter(&req.dead_letter_id).await?;
    Ok(pb::DeleteDeadLetterResponse {})
}
