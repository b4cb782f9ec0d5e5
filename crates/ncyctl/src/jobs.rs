//! `ncyctl queues|jobs`: the job-scheduler's `JobService`, for people on call. The actions on
//! one job (retry, promote, delete) are in `jobs_control.rs`, `jobs clean` in `jobs_clean.rs`,
//! `ncyctl dlq` in `dead_letters.rs`, `ncyctl schedules` in `schedules.rs`.
use crate::rpc::Channel;
use clap::{Args, Subcommand, ValueEnum};
use ncy_proto::jobs::v1::{self as pb, JobState, job_service_client::JobServiceClient};

use crate::Outcome;
use crate::jobs_control;
use crate::jobs_history;
use crate::rpc::{Target, clip, failed, print_json, table, time};

const ADDR_ENV: &str = "NCY_SCHEDULER_ADDR";
const DEFAULT_ADDR: &str = "http://127.0.0.1:50052";

pub(crate) async fn client(target: &Target) -> Result<JobServiceClient<Channel>, Outcome> {
    Ok(JobServiceClient::new(
        target.connect(ADDR_ENV, DEFAULT_ADDR).await?,
    ))
}

/// `ncyctl queues …` (no subcommand: the stats table).
#[derive(Debug, Args)]
pub struct QueuesArgs {
    #[command(subcommand)]
    command: Option<QueuesCommand>,
    /// Only this queue.
    #[arg(long)]
    queue: Option<String>,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, Subcommand)]
enum QueuesCommand {
    /// Stop workers from starting jobs of a queue (running jobs finish).
    Pause { queue: String },
    /// Let workers start jobs of a paused queue again.
    Resume { queue: String },
    /// Jobs completed and attempts failed per minute (one queue or all).
    History(jobs_history::HistoryArgs),
}

/// `ncyctl jobs …`
#[derive(Debug, Args)]
pub struct JobsArgs {
    #[command(subcommand)]
    command: JobsCommand,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum StateArg {
    Waiting,
    Delayed,
    Active,
    Completed,
    Failed,
    Dead,
    Cancelled,
}

impl From<StateArg> for JobState {
    fn from(s: StateArg) -> Self {
        match s {
            StateArg::Waiting => JobState::Waiting,
            StateArg::Delayed => JobState::Delayed,
            StateArg::Active => JobState::Active,
            StateArg::Completed => JobState::Completed,
            StateArg::Failed => JobState::Failed,
            StateArg::Dead => JobState::Dead,
            StateArg::Cancelled => JobState::Cancelled,
        }
    }
}

#[derive(Debug, Subcommand)]
enum JobsCommand {
    /// Enqueue one job.
    Enqueue {
        #[arg(long)]
        queue: String,
        /// Job type, e.g. send-email.
        #[arg(long = "type")]
        job_type: String,
        /// Payload as JSON text.
        #[arg(long, default_value = "{}")]
        payload: String,
        #[arg(long, default_value_t = 0)]
        priority: i32,
        #[arg(long, default_value_t = 0)]
        delay_ms: i64,
        /// Max attempts (0: the default, 3).
        #[arg(long, default_value_t = 0)]
        attempts: i32,
        #[arg(long, default_value = "")]
        idempotency_key: String,
        /// Owner user id (UUID), who may watch the job from the browser.
        #[arg(long, default_value = "")]
        owner: String,
    },
    /// Enqueue many jobs from a file of JSON lines, each an EnqueueRequest in protobuf JSON
    /// (`{"queue":"email","job_type":"send-email","payload_json":"{…}"}`).
    EnqueueBulk {
        /// The file; `-` reads standard input.
        file: String,
    },
    /// List the jobs of a queue in one state: waiting in run order, delayed/failed soonest due first,
    /// active oldest first, completed/dead/cancelled newest first. With --type, --owner or
    /// --payload-contains a page may hold fewer jobs than --page-size (even none) while more
    /// follow: go on while a `more: --page-token …` line is printed, with the same filters.
    List {
        #[arg(long)]
        queue: String,
        #[arg(long, value_enum)]
        state: StateArg,
        #[arg(long, default_value_t = 50)]
        page_size: i32,
        #[arg(long, default_value = "")]
        page_token: String,
        /// Only jobs of this type (a wire name such as send-email).
        #[arg(long = "type", default_value = "")]
        job_type: String,
        /// Only jobs this user owns (a UUID).
        #[arg(long, default_value = "")]
        owner: String,
        /// Only jobs whose payload JSON contains this text (case-sensitive, up to 256 bytes).
        #[arg(long, default_value = "")]
        payload_contains: String,
    },
    /// Show one job.
    Get { job_id: String },
    /// Cancel a waiting or delayed job, or ask a running one to stop.
    Cancel {
        job_id: String,
        #[arg(long, default_value = "cancelled by an operator")]
        reason: String,
    },
    /// Run a failed job now (its retry backoff skipped), or re-enqueue a dead job from its
    /// dead-letter entry as a new job (priority 10, one attempt).
    Retry { job_id: String },
    /// Run a delayed job now.
    Promote { job_id: String },
    /// Remove a job that is not running (waiting, delayed, failed or finished); a waiting one never
    /// runs. Its dead letter, if any, stays.
    Delete { job_id: String },
    /// Follow a job's progress until it finishes (a progress bar; JSON lines with --json).
    Watch { job_id: String },
    /// Delete the records of a queue's finished jobs in one state (completed, dead or cancelled)
    /// older than --older-than, oldest first; prints how many (dead letters stay).
    Clean(crate::jobs_clean::CleanArgs),
}

pub async fn queues(args: QueuesArgs, json: bool) -> Outcome {
    let mut client = match client(&args.target).await {
        Ok(c) => c,
        Err(outcome) => return outcome,
    };
    match args.command {
        Some(QueuesCommand::History(history)) => {
            jobs_history::history(&mut client, history, json).await
        }
        Some(QueuesCommand::Pause { queue }) => {
            match client
                .pause_queue(pb::PauseQueueRequest {
                    queue: queue.clone(),
                })
                .await
            {
                Ok(r) => report_change(json, &queue, "paused", r.into_inner().changed),
                Err(s) => failed(s),
            }
        }
        Some(QueuesCommand::Resume { queue }) => {
            match client
                .resume_queue(pb::ResumeQueueRequest {
                    queue: queue.clone(),
                })
                .await
            {
                Ok(r) => report_change(json, &queue, "resumed", r.into_inner().changed),
                Err(s) => failed(s),
            }
        }
        None => {
            let request = pb::QueueStatsRequest {
                queue: args.queue.unwrap_or_default(),
            };
            let stats = match client.queue_stats(request).await {
                Ok(r) => r.into_inner(),
                Err(s) => return failed(s),
            };
            if json {
                print_json(&stats, "ncy.jobs.v1.QueueStatsResponse");
                return Outcome::Ok;
            }
            let mut t = table(&[
                "QUEUE",
                "PAUSED",
                "WAITING",
                "DELAYED",
                "ACTIVE",
                "COMPLETED",
                "FAILED",
                "DEAD",
                "WORKERS",
                "RATE LIMIT",
                "OLDEST WAITING",
            ]);
            for q in &stats.queues {
                let limit = q.rate_limit.as_ref().map_or("-".to_owned(), |r| {
                    let limited = if r.limited { " (limited)" } else { "" };
                    format!("{}/{}s{limited}", r.max_jobs, r.window_ms / 1000)
                });
                t.add_row(vec![
                    q.queue.clone(),
                    if q.paused { "yes" } else { "no" }.to_owned(),
                    q.waiting.to_string(),
                    q.delayed.to_string(),
                    q.active.to_string(),
                    q.completed.to_string(),
                    q.failed.to_string(),
                    q.dead_letters.to_string(),
                    q.workers.to_string(),
                    limit,
                    time(q.oldest_waiting_at_ms),
                ]);
            }
            println!("{t}");
            Outcome::Ok
        }
    }
}

fn report_change(json: bool, queue: &str, verb: &str, changed: bool) -> Outcome {
    if json {
        println!(
            "{}",
            serde_json::json!({ "queue": queue, "changed": changed })
        );
    } else if changed {
        println!("{queue}: {verb}");
    } else {
        println!("{queue}: already {verb}");
    }
    Outcome::Ok
}

pub async fn jobs(args: JobsArgs, json: bool) -> Outcome {
    let mut client = match client(&args.target).await {
        Ok(c) => c,
        Err(outcome) => return outcome,
    };
    match args.command {
        JobsCommand::Enqueue {
            queue,
            job_type,
            payload,
            priority,
            delay_ms,
            attempts,
            idempotency_key,
            owner,
        } => {
            let request = pb::EnqueueRequest {
                queue,
                job_type,
                payload_json: payload,
                priority,
                delay_ms,
                attempts,
                idempotency_key,
                owner_user_id: owner,
                ..Default::default()
            };
            match client.enqueue(request).await {
                Ok(r) => {
                    let r = r.into_inner();
                    if json {
                        print_json(&r, "ncy.jobs.v1.EnqueueResponse");
                    } else if r.deduplicated {
                        println!("{} (already enqueued with this idempotency key)", r.job_id);
                    } else {
                        println!("{}", r.job_id);
                    }
                    Outcome::Ok
                }
                Err(s) => failed(s),
            }
        }
        JobsCommand::EnqueueBulk { file } => {
            crate::jobs_bulk::enqueue_bulk(&mut client, &file, json).await
        }
        JobsCommand::List {
            queue,
            state,
            page_size,
            page_token,
            job_type,
            owner,
            payload_contains,
        } => {
            let request = pb::ListJobsRequest {
                queue,
                state: JobState::from(state) as i32,
                page_size,
                page_token,
                job_type,
                owner_user_id: owner,
                payload_contains,
            };
            match client.list_jobs(request).await {
                Ok(r) => {
                    let r = r.into_inner();
                    if json {
                        print_json(&r, "ncy.jobs.v1.ListJobsResponse");
                        return Outcome::Ok;
                    }
                    let mut t = table(&[
                        "ID", "TYPE", "STATE", "PRIO", "ATTEMPTS", "PROGRESS", "CREATED", "ERROR",
                    ]);
                    for j in &r.jobs {
                        t.add_row(vec![
                            j.id.clone(),
                            j.job_type.clone(),
                            state_name(j.state),
                            j.priority.to_string(),
                            format!("{}/{}", j.attempts_made, j.max_attempts),
                            format!("{}%", j.progress),
                            time(j.created_at_ms),
                            clip(&j.last_error, 40),
                        ]);
                    }
                    println!("{t}");
                    if !r.next_page_token.is_empty() {
                        println!("more: --page-token {}", r.next_page_token);
                    }
                    Outcome::Ok
                }
                Err(s) => failed(s),
            }
        }
        JobsCommand::Get { job_id } => match get_job(&mut client, &job_id).await {
            Ok(job) => {
                if json {
                    print_json(&job, "ncy.jobs.v1.Job");
                } else {
                    print_job(&job);
                }
                Outcome::Ok
            }
            Err(outcome) => outcome,
        },
        JobsCommand::Cancel { job_id, reason } => {
            match client
                .cancel_job(pb::CancelJobRequest { job_id, reason })
                .await
            {
                Ok(r) => {
                    let r = r.into_inner();
                    if json {
                        print_json(&r, "ncy.jobs.v1.CancelJobResponse");
                    } else if let Some(job) = &r.job {
                        println!("{}: {}", job.id, state_name(job.state));
                    }
                    Outcome::Ok
                }
                Err(s) => failed(s),
            }
        }
        JobsCommand::Retry { job_id } => jobs_control::retry(&mut client, job_id, json).await,
        JobsCommand::Promote { job_id } => jobs_control::promote(&mut client, job_id, json).await,
        JobsCommand::Delete { job_id } => jobs_control::delete(&mut client, job_id, json).await,
        JobsCommand::Watch { job_id } => crate::jobs_watch::watch(&mut client, job_id, json).await,
        JobsCommand::Clean(args) => crate::jobs_clean::clean(&mut client, args, json).await,
    }
}

async fn get_job(client: &mut JobServiceClient<Channel>, job_id: &str) -> Result<pb::Job, Outcome> {
    let reply = client
        .get_job(pb::GetJobRequest {
            job_id: job_id.to_owned(),
        })
        .await
        .map_err(failed)?;
    reply.into_inner().job.ok_or_else(|| {
        eprintln!("ncyctl: the server answered without the job");
        Outcome::Failed
    })
}

fn print_job(job: &pb::Job) {
    let rows = [
        ("id", job.id.clone()),
        ("queue", job.queue.clone()),
        ("type", job.job_type.clone()),
        ("state", state_name(job.state)),
        ("priority", job.priority.to_string()),
        (
            "attempts",
            format!("{}/{}", job.attempts_made, job.max_attempts),
        ),
        (
            "progress",
            format!("{}% {}", job.progress, job.progress_message)
                .trim_end()
                .to_owned(),
        ),
        ("payload", job.payload_json.clone()),
        ("result", job.result_json.clone()),
        ("last error", job.last_error.clone()),
        ("created", time(job.created_at_ms)),
        ("due", time(job.due_at_ms)),
        ("started", time(job.started_at_ms)),
        ("finished", time(job.finished_at_ms)),
        ("dead letter", job.dead_letter_id.clone()),
    ];
    for (name, value) in rows {
        if !value.is_empty() {
            println!("{name:<12} {value}");
        }
    }
}

/// `JOB_STATE_WAITING` → `waiting`.
pub fn state_name(state: i32) -> String {
    JobState::try_from(state)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("JOB_STATE_")
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|_| state.to_string())
}
