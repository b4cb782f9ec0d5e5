//! `ncyctl jobs retry|promote|delete` and `ncyctl schedules trigger|pause|resume`: the operator
//! actions on one job or one schedule (RetryJob, PromoteJob, DeleteJob, TriggerSchedule,
//! PauseSchedule, ResumeSchedule). Each prints one line, or the answer as JSON with `--json`;
//! errors exit as every command's do (`rpc::failed`: 1, or 69 when the server cannot be reached).
use ncy_proto::jobs::v1::{self as pb, JobState, job_service_client::JobServiceClient};

use crate::Outcome;
use crate::jobs::state_name;
use crate::rpc::{Channel, failed, print_json};

type Client = JobServiceClient<Channel>;

/// RetryJob: a failed job runs now; a dead one is re-enqueued from its dead letter as a new job,
/// whose id is printed.
pub async fn retry(client: &mut Client, job_id: String, json: bool) -> Outcome {
    let reply = match client.retry_job(pb::RetryJobRequest { job_id }).await {
        Ok(r) => r.into_inner(),
        Err(s) => return failed(s),
    };
    if json {
        print_json(&reply, "ncy.jobs.v1.RetryJobResponse");
    } else if let Some(job) = &reply.job {
        if job.retried_from_dead_letter_id.is_empty() {
            println!("{}: {}", job.id, state_name(job.state));
        } else {
            println!(
                "{}: {} (new job from dead letter {})",
                job.id,
                state_name(job.state),
                job.retried_from_dead_letter_id
            );
        }
    }
    Outcome::Ok
}

/// PromoteJob: a delayed job runs now.
pub async fn promote(client: &mut Client, job_id: String, json: bool) -> Outcome {
    let reply = match client.promote_job(pb::PromoteJobRequest { job_id }).await {
        Ok(r) => r.into_inner(),
        Err(s) => return failed(s),
    };
    if json {
        print_json(&reply, "ncy.jobs.v1.PromoteJobResponse");
    } else if let Some(job) = &reply.job {
        println!("{}: {}", job.id, state_name(job.state));
    }
    Outcome::Ok
}

/// DeleteJob: a job that is not running is removed.
pub async fn delete(client: &mut Client, job_id: String, json: bool) -> Outcome {
    let reply = match client
        .delete_job(pb::DeleteJobRequest {
            job_id: job_id.clone(),
        })
        .await
    {
        Ok(r) => r.into_inner(),
        Err(s) => return failed(s),
    };
    if json {
        let state = JobState::try_from(reply.state)
            .map(|s| s.as_str_name().to_owned())
            .unwrap_or_else(|_| reply.state.to_string());
        println!(
            "{}",
            serde_json::json!({ "deleted": job_id, "state": state })
        );
    } else {
        println!("deleted {job_id} (was {})", state_name(reply.state));
    }
    Outcome::Ok
}

/// TriggerSchedule: the schedule's job is enqueued now; its id is printed.
pub async fn trigger(client: &mut Client, name: String, json: bool) -> Outcome {
    match client
        .trigger_schedule(pb::TriggerScheduleRequest { name })
        .await
    {
        Ok(r) => {
            let r = r.into_inner();
            if json {
                print_json(&r, "ncy.jobs.v1.TriggerScheduleResponse");
            } else {
                println!("{}", r.job_id);
            }
            Outcome::Ok
        }
        Err(s) => failed(s),
    }
}

/// PauseSchedule (`pause` true) or ResumeSchedule.
pub async fn pause(client: &mut Client, name: String, pause: bool, json: bool) -> Outcome {
    let (changed, verb) = if pause {
        match client
            .pause_schedule(pb::PauseScheduleRequest { name: name.clone() })
            .await
        {
            Ok(r) => {
                let r = r.into_inner();
                if json {
                    print_json(&r, "ncy.jobs.v1.PauseScheduleResponse");
                    return Outcome::Ok;
                }
                (r.changed, "paused")
            }
            Err(s) => return failed(s),
        }
    } else {
        match client
            .resume_schedule(pb::ResumeScheduleRequest { name: name.clone() })
            .await
        {
            Ok(r) => {
                let r = r.into_inner();
                if json {
                    print_json(&r, "ncy.jobs.v1.ResumeScheduleResponse");
                    return Outcome::Ok;
                }
                (r.changed, "resumed")
            }
            Err(s) => return failed(s),
        }
    };
    if changed {
        println!("{name}: {verb}");
    } else {
        println!("{name}: already {verb}");
    }
    Outcome::Ok
}
