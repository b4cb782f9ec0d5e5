//! The bodies of the operator RPCs on one job (RetryJob, PromoteJob, DeleteJob) and on one schedule
//! (TriggerSchedule, PauseSchedule, ResumeSchedule): the id or name is checked before any Redis
//! work (INVALID_ARGUMENT naming the field, nothing written), then one engine call. A missing job
//! or schedule is NOT_FOUND, a job in a state the action does not apply to FAILED_PRECONDITION
//! naming the state (see `error.rs`).
use ncy_proto::jobs::v1 as pb;
use ncy_queue::cron::check_name;
use ncy_queue::ids::parse_job_id;

use crate::api::JobApi;
use crate::convert;
use crate::error::SchedulerError;

type Result<T> = std::result::Result<T, SchedulerError>;

pub async fn retry_job(api: &JobApi, req: &pb::RetryJobRequest) -> Result<pb::RetryJobResponse> {
    parse_job_id(&req.job_id, "job_id")?;
    let rec = api.engine.retry_job(&req.job_id).await?;
    Ok(pb::RetryJobResponse {
        job: Some(convert::job(&rec)),
    })
}

pub async fn promote_job(
    api: &JobApi,
    req: &pb::PromoteJobRequest,
) -> Result<pb::PromoteJobResponse> {
    parse_job_id(&req.job_id, "job_id")?;
    let rec = api.engine.promote_job(&req.job_id).await?;
    Ok(pb::PromoteJobResponse {
        job: Some(convert::job(&rec)),
    })
}

pub async fn delete_job(api: &JobApi, req: &pb::DeleteJobRequest) -> Result<pb::DeleteJobResponse> {
    parse_job_id(&req.job_id, "job_id")?;
    let state = api.engine.delete_job(&req.job_id).await?;
    Ok(pb::DeleteJobResponse {
        state: convert::state(state) as i32,
    })
}

pub async fn trigger_schedule(
    api: &JobApi,
    req: &pb::TriggerScheduleRequest,
) -> Result<pb::TriggerScheduleResponse> {
    check_name(&req.name)?;
    let job_id = api.engine.trigger_schedule(&req.name).await?;
    Ok(pb::TriggerScheduleResponse { job_id })
}

pub async fn pause_schedule(
    api: &JobApi,
    req: &pb::PauseScheduleRequest,
) -> Result<pb::PauseScheduleResponse> {
    check_name(&req.name)?;
    let (view, changed) = api.engine.pause_schedule(&req.name).await?;
    Ok(pb::PauseScheduleResponse {
        changed,
        schedule: Some(convert::schedule(&view)),
    })
}

pub async fn resume_schedule(
    api: &JobApi,
    req: &pb::ResumeScheduleRequest,
) -> Result<pb::ResumeScheduleResponse> {
    check_name(&req.name)?;
    let (view, changed) = api.engine.resume_schedule(&req.name).await?;
    Ok(pb::ResumeScheduleResponse {
        changed,
        schedule: Some(convert::schedule(&view)),
    })
}
