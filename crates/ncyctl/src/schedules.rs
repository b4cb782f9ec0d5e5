//! `ncyctl schedules list|set|delete|trigger|pause|resume`: the job-scheduler's recurring (cron)
//! jobs. Trigger, pause and resume are in `jobs_control.rs` with the other one-object actions.
use clap::{Args, Subcommand, ValueEnum};
use ncy_proto::jobs::v1 as pb;

use crate::Outcome;
use crate::jobs::client;
use crate::jobs_control;
use crate::rpc::{Target, failed, print_json, table, time};

/// `ncyctl schedules …`
#[derive(Debug, Args)]
pub struct SchedulesArgs {
    #[command(subcommand)]
    command: SchedulesCommand,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum MissedArg {
    FireOnce,
    Skip,
}

#[derive(Debug, Subcommand)]
enum SchedulesCommand {
    /// List recurring jobs.
    List {
        #[arg(long, default_value = "")]
        queue: String,
    },
    /// Create or replace a recurring job.
    Set {
        name: String,
        /// Cron expression, 5 fields (or 6 with seconds first), e.g. "0 2 * * *".
        #[arg(long)]
        cron: String,
        /// IANA time zone (default UTC).
        #[arg(long, default_value = "")]
        time_zone: String,
        #[arg(long)]
        queue: String,
        #[arg(long = "type")]
        job_type: String,
        #[arg(long, default_value = "{}")]
        payload: String,
        #[arg(long, default_value_t = 0)]
        priority: i32,
        #[arg(long, default_value_t = 0)]
        attempts: i32,
        /// Keep the definition but do not fire.
        #[arg(long)]
        disabled: bool,
        /// What to do about ticks missed while no scheduler ran (default: the server's setting).
        #[arg(long, value_enum)]
        missed: Option<MissedArg>,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Delete a recurring job.
    Delete { name: String },
    /// Enqueue a recurring job's job now, as a manual run beside its ticks.
    Trigger { name: String },
    /// Stop firing a recurring job's ticks (on every scheduler replica) until resumed.
    Pause { name: String },
    /// Fire a paused recurring job again, from its next tick on.
    Resume { name: String },
}

pub async fn schedules(args: SchedulesArgs, json: bool) -> Outcome {
    let mut client = match client(&args.target).await {
        Ok(c) => c,
        Err(outcome) => return outcome,
    };
    match args.command {
        SchedulesCommand::List { queue } => {
            let mut all = Vec::new();
            let mut page_token = String::new();
            loop {
                let request = pb::ListSchedulesRequest {
                    queue: queue.clone(),
                    page_size: 200,
                    page_token,
                };
                match client.list_schedules(request).await {
                    Ok(r) => {
                        let r = r.into_inner();
                        all.extend(r.schedules);
                        if r.next_page_token.is_empty() {
                            break;
                        }
                        page_token = r.next_page_token;
                    }
                    Err(s) => return failed(s),
                }
            }
            if json {
                let list = pb::ListSchedulesResponse {
                    schedules: all,
                    next_page_token: String::new(),
                };
                print_json(&list, "ncy.jobs.v1.ListSchedulesResponse");
                return Outcome::Ok;
            }
            let mut t = table(&[
                "NAME", "CRON", "TZ", "QUEUE", "TYPE", "ENABLED", "PAUSED", "NEXT RUN", "LAST RUN",
                "LAST JOB",
            ]);
            for s in &all {
                t.add_row(vec![
                    s.name.clone(),
                    s.cron.clone(),
                    if s.time_zone.is_empty() {
                        "UTC".to_owned()
                    } else {
                        s.time_zone.clone()
                    },
                    s.queue.clone(),
                    s.job_type.clone(),
                    if s.enabled { "yes" } else { "no" }.to_owned(),
                    if s.paused { "yes" } else { "no" }.to_owned(),
                    time(s.next_run_at_ms),
                    time(s.last_run_at_ms),
                    s.last_job_id.clone(),
                ]);
            }
            println!("{t}");
            Outcome::Ok
        }
        SchedulesCommand::Set {
            name,
            cron,
            time_zone,
            queue,
            job_type,
            payload,
            priority,
            attempts,
            disabled,
            missed,
            description,
        } => {
            let missed_run_policy = match missed {
                None => pb::MissedRunPolicy::Unspecified,
                Some(MissedArg::FireOnce) => pb::MissedRunPolicy::FireOnce,
                Some(MissedArg::Skip) => pb::MissedRunPolicy::Skip,
            };
            let request = pb::UpsertScheduleRequest {
                name,
                cron,
                time_zone,
                queue,
                job_type,
                payload_json: payload,
                options: Some(pb::JobOptions {
                    priority,
                    attempts,
                    backoff: None,
                }),
                enabled: Some(!disabled),
                missed_run_policy: missed_run_policy as i32,
                description,
            };
            match client.upsert_schedule(request).await {
                Ok(r) => {
                    let r = r.into_inner();
                    if json {
                        print_json(&r, "ncy.jobs.v1.UpsertScheduleResponse");
                    } else if let Some(s) = &r.schedule {
                        let verb = if r.created { "created" } else { "updated" };
                        println!("{} {verb}; next run {}", s.name, time(s.next_run_at_ms));
                    }
                    Outcome::Ok
                }
                Err(s) => failed(s),
            }
        }
        SchedulesCommand::Trigger { name } => jobs_control::trigger(&mut client, name, json).await,
        SchedulesCommand::Pause { name } => {
            jobs_control::pause(&mut client, name, true, json).await
        }
        SchedulesCommand::Resume { name } => {
            jobs_control::pause(&mut client, name, false, json).await
        }
        SchedulesCommand::Delete { name } => {
            match client
                .delete_schedule(pb::DeleteScheduleRequest { name: name.clone() })
                .await
            {
                Ok(_) => {
                    if json {
                        println!("{}", serde_json::json!({ "deleted": name }));
                    } else {
                        println!("deleted {name}");
                    }
                    Outcome::Ok
                }
                Err(s) => failed(s),
            }
        }
    }
}
