//! The `JobService` implementation: validates each request fully, then makes one engine call
//! (one Lua script per queue for writes).
use std::collections::BTreeMap;
use std::sync::Arc;

use ncy_proto::jobs::v1 as pb;
use ncy_proto::jobs::v1::job_service_server::JobService;
use ncy_queue::Engine;
use ncy_types::ValidationError;
use ncy_types::jobs::QueueName;
use tonic::{Request, Response, Status, codegen::BoxStream};

use crate::error::{invalid, status};
use crate::watch::WatchHub;
use crate::{convert, page_token, schedules, watch};

/// Most jobs in one EnqueueBulk.
const MAX_BULK: usize = 1000;
/// Longest cancel reason.
const MAX_REASON: usize = 1024;

/// The JobService over the engine.
#[derive(Debug, Clone)]
pub struct JobApi {
    pub engine: Engine,
    /// The shared WatchJob subscriptions of this instance.
    pub watches: Arc<WatchHub>,
}

type R<T> = Result<Response<T>, Status>;

impl JobApi {
    fn test_types(&self) -> bool {
        self.engine.settings().test_job_types
    }

    fn queues(&self, name: &str) -> Result<Vec<QueueName>, Status> {
        if name.is_empty() {
            Ok(QueueName::ALL.to_vec())
        } else {
            Ok(vec![convert::queue(name).map_err(invalid)?])
        }
    }
}

#[tonic::async_trait]
impl JobService for JobApi {
    async fn enqueue(&self, request: Request<pb::EnqueueRequest>) -> R<pb::EnqueueResponse> {
        let valid = convert::enqueue(request.get_ref(), self.test_types()).map_err(invalid)?;
        let out = self
            .engine
            .enqueue(valid.queue, &[valid.job])
            .await
            .map_err(status)?;
        let first = out
            .into_iter()
            .next()
            .ok_or_else(|| Status::internal("empty enqueue reply"))?;
        Ok(Response::new(pb::EnqueueResponse {
            job_id: first.job_id,
            deduplicated: first.deduplicated,
            state: first
                .state
                .map(convert::state)
                .unwrap_or(pb::JobState::Unspecified) as i32,
        }))
    }

    async fn enqueue_bulk(
        &self,
        request: Request<pb::EnqueueBulkRequest>,
    ) -> R<pb::EnqueueBulkResponse> {
        let jobs = &request.get_ref().jobs;
        if jobs.is_empty() || jobs.len() > MAX_BULK {
            return Err(invalid(ValidationError::new(
                "jobs",
                "must hold 1 to 1000 jobs",
            )));
        }
        // Validate everything first: all or nothing.
        let mut by_queue: BTreeMap<QueueName, Vec<(usize, ncy_queue::NewJob)>> = BTreeMap::new();
        for (i, req) in jobs.iter().enumerate() {
            let v = convert::enqueue(req, self.test_types()).map_err(|e| {
                invalid(ValidationError::new(
                    format!("jobs[{i}].{}", crate::error::proto_field(&e.field)),
                    e.message,
                ))
            })?;
            by_queue.entry(v.queue).or_default().push((i, v.job));
        }
        let mut results = vec![pb::EnqueueResult::default(); jobs.len()];
        for (queue, items) in by_queue {
            let batch: Vec<ncy_queue::NewJob> = items.iter().map(|(_, j)| j.clone()).collect();
            let out = self.engine.enqueue(queue, &batch).await.map_err(status)?;
            for ((i, _), e) in items.iter().zip(out) {
                results[*i] = pb::EnqueueResult {
                    job_id: e.job_id,
                    deduplicated: e.deduplicated,
                    state: e
                        .state
                        .map(convert::state)
                        .unwrap_or(pb::JobState::Unspecified) as i32,
                };
            }
        }
        Ok(Response::new(pb::EnqueueBulkResponse { results }))
    }

    async fn get_job(&self, request: Request<pb::GetJobRequest>) -> R<pb::GetJobResponse> {
        let id = &request.get_ref().job_id;
        ncy_queue::ids::parse_job_id(id, "job_id").map_err(invalid)?;
        let rec = self.engine.get_job(id).await.map_err(status)?;
        Ok(Response::new(pb::GetJobResponse {
            job: Some(convert::job(&rec)),
        }))
    }

    async fn list_jobs(&self, request: Request<pb::ListJobsRequest>) -> R<pb::ListJobsResponse> {
        let req = request.get_ref();
        let queue = convert::queue(&req.queue).map_err(invalid)?;
        let state = convert::engine_state(req.state).map_err(invalid)?;
        let size = convert::page_size(req.page_size).map_err(invalid)?;
        let from = page_token::decode(&req.page_token, queue, state).map_err(invalid)?;
        let page = self
            .engine
            .list_jobs(queue, state, size, from)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListJobsResponse {
            jobs: page.jobs.iter().map(convert::job).collect(),
            next_page_token: page
                .next
                .map(|c| page_token::encode(queue, state, c))
                .unwrap_or_default(),
        }))
    }

    async fn cancel_job(&self, request: Request<pb::CancelJobRequest>) -> R<pb::CancelJobResponse> {
        let req = request.get_ref();
        ncy_queue::ids::parse_job_id(&req.job_id, "job_id").map_err(invalid)?;
        if req.reason.len() > MAX_REASON {
            return Err(invalid(ValidationError::new(
                "reason",
                "must be at most 1 KiB",
            )));
        }
        let rec = self
            .engine
            .cancel_job(&req.job_id, &req.reason)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::CancelJobResponse {
            job: Some(convert::job(&rec)),
        }))
    }

    async fn upsert_schedule(
        &self,
        request: Request<pb::UpsertScheduleRequest>,
    ) -> R<pb::UpsertScheduleResponse> {
        let def = schedules::definition(request.get_ref(), self.test_types()).map_err(invalid)?;
        let (view, created) = self.engine.upsert_schedule(def).await.map_err(status)?;
        Ok(Response::new(pb::UpsertScheduleResponse {
            schedule: Some(convert::schedule(&view)),
            created,
        }))
    }

    async fn delete_schedule(
        &self,
        request: Request<pb::DeleteScheduleRequest>,
    ) -> R<pb::DeleteScheduleResponse> {
        let name = &request.get_ref().name;
        ncy_queue::cron::check_name(name).map_err(invalid)?;
        self.engine.delete_schedule(name).await.map_err(status)?;
        Ok(Response::new(pb::DeleteScheduleResponse {}))
    }

    async fn list_schedules(
        &self,
        request: Request<pb::ListSchedulesRequest>,
    ) -> R<pb::ListSchedulesResponse> {
        let req = request.get_ref();
        let filter = if req.queue.is_empty() {
            None
        } else {
            Some(convert::queue(&req.queue).map_err(invalid)?)
        };
        let size = convert::page_size(req.page_size).map_err(invalid)?;
        let offset = schedules::offset(&req.page_token).map_err(invalid)?;
        let all: Vec<_> = self
            .engine
            .schedules()
            .await
            .map_err(status)?
            .into_iter()
            .filter(|v| filter.is_none_or(|q| v.def.queue == q))
            .collect();
        let page: Vec<pb::Schedule> = all
            .iter()
            .skip(offset)
            .take(size)
            .map(convert::schedule)
            .collect();
        let next = if offset + size < all.len() {
            format!("o:{}", offset + size)
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListSchedulesResponse {
            schedules: page,
            next_page_token: next,
        }))
    }

    async fn pause_queue(
        &self,
        request: Request<pb::PauseQueueRequest>,
    ) -> R<pb::PauseQueueResponse> {
        let queue = convert::queue(&request.get_ref().queue).map_err(invalid)?;
        let changed = self.engine.pause(queue).await.map_err(status)?;
        Ok(Response::new(pb::PauseQueueResponse { changed }))
    }

    async fn resume_queue(
        &self,
        request: Request<pb::ResumeQueueRequest>,
    ) -> R<pb::ResumeQueueResponse> {
        let queue = convert::queue(&request.get_ref().queue).map_err(invalid)?;
        let changed = self.engine.resume(queue).await.map_err(status)?;
        Ok(Response::new(pb::ResumeQueueResponse { changed }))
    }

    async fn queue_stats(
        &self,
        request: Request<pb::QueueStatsRequest>,
    ) -> R<pb::QueueStatsResponse> {
        let mut queues = Vec::new();
        for queue in self.queues(&request.get_ref().queue)? {
            let s = self.engine.stats(queue).await.map_err(status)?;
            let settings = self.engine.queue_settings(queue);
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
        Ok(Response::new(pb::QueueStatsResponse { queues }))
    }

    async fn list_dead_letters(
        &self,
        request: Request<pb::ListDeadLettersRequest>,
    ) -> R<pb::ListDeadLettersResponse> {
        let req = request.get_ref();
        let queues = self.queues(&req.queue)?;
        let size = convert::page_size(req.page_size).map_err(invalid)?;
        // Token: `queue=entry` cursors (exclusive) per queue already paged, comma-separated.
        let mut cursors: BTreeMap<QueueName, String> = BTreeMap::new();
        if !req.page_token.is_empty() {
            for part in req.page_token.split(',') {
                let bad = || invalid(ValidationError::new("page_token", "is malformed"));
                let (q, entry) = part.split_once('=').ok_or_else(bad)?;
                let q: QueueName = q.parse().map_err(|_| bad())?;
                ncy_queue::ids::parse_dead_letter_id(&format!("{q}.{entry}"), "page_token")
                    .map_err(invalid)?;
                cursors.insert(q, entry.to_owned());
            }
        }
        let mut all = Vec::new();
        for q in &queues {
            let letters = self
                .engine
                .dead_letters(*q, cursors.get(q).map(String::as_str), size + 1)
                .await
                .map_err(status)?;
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
        Ok(Response::new(pb::ListDeadLettersResponse {
            dead_letters: all.iter().map(|(_, l)| convert::dead_letter(l)).collect(),
            next_page_token: next,
        }))
    }

    async fn retry_dead_letter(
        &self,
        request: Request<pb::RetryDeadLetterRequest>,
    ) -> R<pb::RetryDeadLetterResponse> {
        let id = &request.get_ref().dead_letter_id;
        ncy_queue::ids::parse_dead_letter_id(id, "dead_letter_id").map_err(invalid)?;
        let job_id = self.engine.retry_dead_letter(id).await.map_err(status)?;
        Ok(Response::new(pb::RetryDeadLetterResponse { job_id }))
    }

    async fn delete_dead_letter(
        &self,
        request: Request<pb::DeleteDeadLetterRequest>,
    ) -> R<pb::DeleteDeadLetterResponse> {
        let id = &request.get_ref().dead_letter_id;
        ncy_queue::ids::parse_dead_letter_id(id, "dead_letter_id").map_err(invalid)?;
        self.engine.delete_dead_letter(id).await.map_err(status)?;
        Ok(Response::new(pb::DeleteDeadLetterResponse {}))
    }

    async fn watch_job(&self, request: Request<pb::WatchJobRequest>) -> R<BoxStream<pb::JobEvent>> {
        let rx = watch::watch(
            &self.watches,
            self.engine.clone(),
            request.into_inner().job_id,
        )
        .await?;
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
