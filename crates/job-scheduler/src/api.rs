//! The `JobService` implementation: validates each request fully, then makes one engine call
//! (one Lua script per queue for writes).
//!
//! Each RPC is a thin wrapper over its body in [`rpc`] (operator actions on one job or schedule:
//! in [`control`]), which returns `Result<_, SchedulerError>`
//! and uses `?`; the error becomes a status once, by `From<SchedulerError> for Status`.
use std::sync::Arc;

use ncy_proto::jobs::v1 as pb;
use ncy_proto::jobs::v1::job_service_server::JobService;
use ncy_queue::Engine;
use ncy_types::jobs::QueueName;
use tonic::{Request, Response, Status, codegen::BoxStream};

use crate::error::SchedulerError;
use crate::watch::WatchHub;
use crate::{control, convert, history, queues, watch};

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

    /// The queues a request names: `name`, or every configured queue when it is empty.
    pub(crate) fn queues(&self, name: &str) -> Result<Vec<QueueName>, SchedulerError> {
        if name.is_empty() {
            Ok(QueueName::ALL.to_vec())
        } else {
            Ok(vec![convert::queue(name)?])
        }
    }
}

#[tonic::async_trait]
impl JobService for JobApi {
    async fn enqueue(&self, request: Request<pb::EnqueueRequest>) -> R<pb::EnqueueResponse> {
        Ok(Response::new(rpc::enqueue(self, request.get_ref()).await?))
    }

    async fn enqueue_bulk(
        &self,
        request: Request<pb::EnqueueBulkRequest>,
    ) -> R<pb::EnqueueBulkResponse> {
        Ok(Response::new(
            rpc::enqueue_bulk(self, request.get_ref()).await?,
        ))
    }

    async fn get_job(&self, request: Request<pb::GetJobRequest>) -> R<pb::GetJobResponse> {
        Ok(Response::new(rpc::get_job(self, request.get_ref()).await?))
    }

    async fn list_jobs(&self, request: Request<pb::ListJobsRequest>) -> R<pb::ListJobsResponse> {
        Ok(Response::new(
            rpc::list_jobs(self, request.get_ref()).await?,
        ))
    }

    async fn cancel_job(&self, request: Request<pb::CancelJobRequest>) -> R<pb::CancelJobResponse> {
        Ok(Response::new(
            rpc::cancel_job(self, request.get_ref()).await?,
        ))
    }

    async fn upsert_schedule(
        &self,
        request: Request<pb::UpsertScheduleRequest>,
    ) -> R<pb::UpsertScheduleResponse> {
        Ok(Response::new(
            rpc::upsert_schedule(self, request.get_ref()).await?,
        ))
    }

    async fn delete_schedule(
        &self,
        request: Request<pb::DeleteScheduleRequest>,
    ) -> R<pb::DeleteScheduleResponse> {
        Ok(Response::new(
            rpc::delete_schedule(self, request.get_ref()).await?,
        ))
    }

    async fn list_schedules(
        &self,
        request: Request<pb::ListSchedulesRequest>,
    ) -> R<pb::ListSchedulesResponse> {
        Ok(Response::new(
            rpc::list_schedules(self, request.get_ref()).await?,
        ))
    }

    async fn pause_queue(
        &self,
        request: Request<pb::PauseQueueRequest>,
    ) -> R<pb::PauseQueueResponse> {
        Ok(Response::new(
            queues::pause_queue(self, request.get_ref()).await?,
        ))
    }

    async fn resume_queue(
        &self,
        request: Request<pb::ResumeQueueRequest>,
    ) -> R<pb::ResumeQueueResponse> {
        Ok(Response::new(
            queues::resume_queue(self, request.get_ref()).await?,
        ))
    }

    async fn queue_stats(
        &self,
        request: Request<pb::QueueStatsRequest>,
    ) -> R<pb::QueueStatsResponse> {
        Ok(Response::new(
            queues::queue_stats(self, request.get_ref()).await?,
        ))
    }

    async fn list_dead_letters(
        &self,
        request: Request<pb::ListDeadLettersRequest>,
    ) -> R<pb::ListDeadLettersResponse> {
        Ok(Response::new(
            queues::list_dead_letters(self, request.get_ref()).await?,
        ))
    }

    async fn retry_dead_letter(
        &self,
        request: Request<pb::RetryDeadLetterRequest>,
    ) -> R<pb::RetryDeadLetterResponse> {
        Ok(Response::new(
            queues::retry_dead_letter(self, request.get_ref()).await?,
        ))
    }

    async fn delete_dead_letter(
        &self,
        request: Request<pb::DeleteDeadLetterRequest>,
    ) -> R<pb::DeleteDeadLetterResponse> {
        Ok(Response::new(
            queues::delete_dead_letter(self, request.get_ref()).await?,
        ))
    }

    async fn retry_job(&self, request: Request<pb::RetryJobRequest>) -> R<pb::RetryJobResponse> {
        Ok(Response::new(
            control::retry_job(self, request.get_ref()).await?,
        ))
    }

    async fn promote_job(
        &self,
        request: Request<pb::PromoteJobRequest>,
    ) -> R<pb::PromoteJobResponse> {
        Ok(Response::new(
            control::promote_job(self, request.get_ref()).await?,
        ))
    }

    async fn delete_job(&self, request: Request<pb::DeleteJobRequest>) -> R<pb::DeleteJobResponse> {
        Ok(Response::new(
            control::delete_job(self, request.get_ref()).await?,
        ))
    }

    async fn trigger_schedule(
        &self,
        request: Request<pb::TriggerScheduleRequest>,
    ) -> R<pb::TriggerScheduleResponse> {
        Ok(Response::new(
            control::trigger_schedule(self, request.get_ref()).await?,
        ))
    }

    async fn pause_schedule(
        &self,
        request: Request<pb::PauseScheduleRequest>,
    ) -> R<pb::PauseScheduleResponse> {
        Ok(Response::new(
            control::pause_schedule(self, request.get_ref()).await?,
        ))
    }

    async fn resume_schedule(
        &self,
        request: Request<pb::ResumeScheduleRequest>,
    ) -> R<pb::ResumeScheduleResponse> {
        Ok(Response::new(
            control::resume_schedule(self, request.get_ref()).await?,
        ))
    }

    async fn queue_history(
        &self,
        request: Request<pb::QueueHistoryRequest>,
    ) -> R<pb::QueueHistoryResponse> {
        Ok(Response::new(
            history::queue_history(self, request.get_ref()).await?,
        ))
    }

    async fn retry_dead_letters(
        &self,
        request: Request<pb::RetryDeadLettersRequest>,
    ) -> R<pb::RetryDeadLettersResponse> {
        Ok(Response::new(
            crate::bulk::retry_dead_letters(self, request.get_ref()).await?,
        ))
    }

    async fn purge_dead_letters(
        &self,
        request: Request<pb::PurgeDeadLettersRequest>,
    ) -> R<pb::PurgeDeadLettersResponse> {
        Ok(Response::new(
            crate::bulk::purge_dead_letters(self, request.get_ref()).await?,
        ))
    }

    async fn clean_jobs(&self, request: Request<pb::CleanJobsRequest>) -> R<pb::CleanJobsResponse> {
        Ok(Response::new(
            crate::bulk::clean_jobs(self, request.get_ref()).await?,
        ))
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

/// The RPC bodies.
mod rpc {
    use std::collections::BTreeMap;

    use ncy_proto::jobs::v1 as pb;
    use ncy_runtime::telemetry;
    use ncy_types::ValidationError;
    use ncy_types::jobs::QueueName;

    use super::{JobApi, MAX_BULK, MAX_REASON};
    use crate::error::{SchedulerError, proto_field};
    use crate::{convert, page_token, schedules};

    type Result<T> = std::result::Result<T, SchedulerError>;

    pub async fn enqueue(api: &JobApi, req: &pb::EnqueueRequest) -> Result<pb::EnqueueResponse> {
        let mut valid = convert::enqueue(req, api.test_types())?;
        // The call's span (continuing the caller's `traceparent`) when spans are exported.
        valid.job.trace = telemetry::current_traceparent().unwrap_or_default();
        let out = api.engine.enqueue(valid.queue, &[valid.job]).await?;
        let first = out
            .into_iter()
            .next()
            .ok_or(SchedulerError::Internal("empty enqueue reply"))?;
        Ok(pb::EnqueueResponse {
            job_id: first.job_id,
            deduplicated: first.deduplicated,
            state: first
                .state
                .map(convert::state)
                .unwrap_or(pb::JobState::Unspecified) as i32,
        })
    }

    pub async fn enqueue_bulk(
        api: &JobApi,
        req: &pb::EnqueueBulkRequest,
    ) -> Result<pb::EnqueueBulkResponse> {
        let jobs = &req.jobs;
        if jobs.is_empty() || jobs.len() > MAX_BULK {
            return Err(ValidationError::new("jobs", "must hold 1 to 1000 jobs").into());
        }
        // Validate everything first: all or nothing.
        let mut by_queue: BTreeMap<QueueName, Vec<(usize, ncy_queue::NewJob)>> = BTreeMap::new();
        let trace = telemetry::current_traceparent().unwrap_or_default();
        for (i, req) in jobs.iter().enumerate() {
            let mut v = convert::enqueue(req, api.test_types()).map_err(|e| {
                ValidationError::new(format!("jobs[{i}].{}", proto_field(&e.field)), e.message)
            })?;
            v.job.trace.clone_from(&trace);
            by_queue.entry(v.queue).or_default().push((i, v.job));
        }
        let mut results = vec![pb::EnqueueResult::default(); jobs.len()];
        for (queue, items) in by_queue {
            let batch: Vec<ncy_queue::NewJob> = items.iter().map(|(_, j)| j.clone()).collect();
            let out = api.engine.enqueue(queue, &batch).await?;
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
        Ok(pb::EnqueueBulkResponse { results })
    }

    pub async fn get_job(api: &JobApi, req: &pb::GetJobRequest) -> Result<pb::GetJobResponse> {
        ncy_queue::ids::parse_job_id(&req.job_id, "job_id")?;
        let rec = api.engine.get_job(&req.job_id).await?;
        Ok(pb::GetJobResponse {
            job: Some(convert::job(&rec)),
        })
    }

    pub async fn list_jobs(
        api: &JobApi,
        req: &pb::ListJobsRequest,
    ) -> Result<pb::ListJobsResponse> {
        let queue = convert::queue(&req.queue)?;
        let state = convert::engine_state(req.state)?;
        let size = convert::page_size(req.page_size)?;
        let filter = convert::job_filter(req, api.test_types())?;
        let from = page_token::decode(&req.page_token, queue, state)?;
        let page = api
            .engine
            .list_jobs_filtered(queue, state, size, from, &filter)
            .await?;
        Ok(pb::ListJobsResponse {
            jobs: page.jobs.iter().map(convert::job).collect(),
            next_page_token: page
                .next
                .map(|c| page_token::encode(queue, state, c))
                .unwrap_or_default(),
            examined: u32::try_from(page.examined).unwrap_or(u32::MAX),
        })
    }

    pub async fn cancel_job(
        api: &JobApi,
        req: &pb::CancelJobRequest,
    ) -> Result<pb::CancelJobResponse> {
        ncy_queue::ids::parse_job_id(&req.job_id, "job_id")?;
        if req.reason.len() > MAX_REASON {
            return Err(ValidationError::new("reason", "must be at most 1 KiB").into());
        }
        let rec = api.engine.cancel_job(&req.job_id, &req.reason).await?;
        Ok(pb::CancelJobResponse {
            job: Some(convert::job(&rec)),
        })
    }

    pub async fn upsert_schedule(
        api: &JobApi,
        req: &pb::UpsertScheduleRequest,
    ) -> Result<pb::UpsertScheduleResponse> {
        let def = schedules::definition(req, api.test_types())?;
        let (view, created) = api.engine.upsert_schedule(def).await?;
        Ok(pb::UpsertScheduleResponse {
            schedule: Some(convert::schedule(&view)),
            created,
        })
    }

    pub async fn delete_schedule(
        api: &JobApi,
        req: &pb::DeleteScheduleRequest,
    ) -> Result<pb::DeleteScheduleResponse> {
        ncy_queue::cron::check_name(&req.name)?;
        api.engine.delete_schedule(&req.name).await?;
        Ok(pb::DeleteScheduleResponse {})
    }

    pub async fn list_schedules(
        api: &JobApi,
        req: &pb::ListSchedulesRequest,
    ) -> Result<pb::ListSchedulesResponse> {
        let filter = if req.queue.is_empty() {
            None
        } else {
            Some(convert::queue(&req.queue)?)
        };
        let size = convert::page_size(req.page_size)?;
        let offset = schedules::offset(&req.page_token)?;
        let all: Vec<_> = api
            .engine
            .schedules()
            .await?
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
        Ok(pb::ListSchedulesResponse {
            schedules: page,
            next_page_token: next,
        })
    }
}
