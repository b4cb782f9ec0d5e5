//! `ncyctl dlq …` (also `ncyctl dead-letters …`): a queue's dead letters — list, retry or delete
//! one, and `retry-all` / `purge` for every dead letter matching a selection (job type, owner,
//! failed before), through RetryDeadLetters / PurgeDeadLetters. A bulk command calls until the run's
//! token is empty (each call examines at most `--limit` entries) and prints the totals: a line, or
//! with `--json` one summary object. A failure part-way says on stderr what was already done and
//! exits as every command does (`rpc::failed`).
use clap::{Args, Subcommand};
use ncy_proto::jobs::v1::{self as pb, job_service_client::JobServiceClient};

use crate::Outcome;
use crate::jobs::client;
use crate::rpc::{Channel, Target, clip, failed, print_json, table, time};

/// `ncyctl dlq …`
#[derive(Debug, Args)]
pub struct DlqArgs {
    #[command(subcommand)]
    command: DlqCommand,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// List dead letters, newest first.
    List {
        /// Only this queue (empty: all queues).
        #[arg(long, default_value = "")]
        queue: String,
        #[arg(long, default_value_t = 50)]
        page_size: i32,
        #[arg(long, default_value = "")]
        page_token: String,
    },
    /// Re-enqueue a dead letter as a new job (priority 10, one attempt).
    Retry { dead_letter_id: String },
    /// Drop a dead letter for good.
    Delete { dead_letter_id: String },
    /// Retry every dead letter of a queue matching the selection, oldest first, each as a new job
    /// (priority 10, one attempt); prints how many, and the new jobs' ids with --json.
    RetryAll(BulkArgs),
    /// Delete every dead letter of a queue matching the selection (the DEAD jobs stay).
    Purge(BulkArgs),
}

/// Which dead letters `retry-all` and `purge` take, and how.
#[derive(Debug, Args)]
pub struct BulkArgs {
    /// The queue.
    #[arg(long)]
    queue: String,
    /// Only dead letters of this job type (a wire name such as send-email).
    #[arg(long = "type", default_value = "")]
    job_type: String,
    /// Only dead letters of jobs this user owns (a UUID).
    #[arg(long, default_value = "")]
    owner: String,
    /// Only dead letters that failed before this time (Unix epoch ms).
    #[arg(long, default_value_t = 0)]
    failed_before_ms: i64,
    /// Count what would be done, change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Entries examined per call (0: the server's default, 500; at most 1000).
    #[arg(long, default_value_t = 0)]
    limit: i32,
}

async fn retry_dead_letter(
    client: &mut JobServiceClient<Channel>,
    dead_letter_id: String,
    json: bool,
) -> Outcome {
    match client
        .retry_dead_letter(pb::RetryDeadLetterRequest { dead_letter_id })
        .await
    {
        Ok(r) => {
            let r = r.into_inner();
            if json {
                print_json(&r, "ncy.jobs.v1.RetryDeadLetterResponse");
            } else {
                println!("{}", r.job_id);
            }
            Outcome::Ok
        }
        Err(s) => failed(s),
    }
}

pub async fn dlq(args: DlqArgs, json: bool) -> Outcome {
    let mut client = match client(&args.target).await {
        Ok(c) => c,
        Err(outcome) => return outcome,
    };
    match args.command {
        DlqCommand::List {
            queue,
            page_size,
            page_token,
        } => {
            let request = pb::ListDeadLettersRequest {
                queue,
                page_size,
                page_token,
            };
            match client.list_dead_letters(request).await {
                Ok(r) => {
                    let r = r.into_inner();
                    if json {
                        print_json(&r, "ncy.jobs.v1.ListDeadLettersResponse");
                        return Outcome::Ok;
                    }
                    let mut t =
                        table(&["ID", "QUEUE", "TYPE", "JOB", "ATTEMPTS", "FAILED", "ERROR"]);
                    for d in &r.dead_letters {
                        t.add_row(vec![
                            d.id.clone(),
                            d.queue.clone(),
                            d.job_type.clone(),
                            d.job_id.clone(),
                            d.attempts_made.to_string(),
                            time(d.failed_at_ms),
                            clip(&d.error, 50),
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
        DlqCommand::Retry { dead_letter_id } => {
            retry_dead_letter(&mut client, dead_letter_id, json).await
        }
        DlqCommand::RetryAll(args) => retry_all(&mut client, args, json).await,
        DlqCommand::Purge(args) => purge(&mut client, args, json).await,
        DlqCommand::Delete { dead_letter_id } => {
            match client
                .delete_dead_letter(pb::DeleteDeadLetterRequest {
                    dead_letter_id: dead_letter_id.clone(),
                })
                .await
            {
                Ok(_) => {
                    if json {
                        println!("{}", serde_json::json!({ "deleted": dead_letter_id }));
                    } else {
                        println!("deleted {dead_letter_id}");
                    }
                    Outcome::Ok
                }
                Err(s) => failed(s),
            }
        }
    }
}

impl BulkArgs {
    fn selection(&self) -> Option<pb::DeadLetterSelection> {
        Some(pb::DeadLetterSelection {
            queue: self.queue.clone(),
            job_type: self.job_type.clone(),
            owner_user_id: self.owner.clone(),
            failed_before_ms: self.failed_before_ms,
        })
    }

    /// Prints a run's totals; `verb` is what was done (`retried`, `deleted`).
    fn report(&self, verb: &str, done: u64, examined: u64, json: bool, job_ids: Option<&[String]>) {
        if json {
            let mut summary = serde_json::json!({
                "queue": self.queue,
                "dry_run": self.dry_run,
                verb: done,
                "examined": examined,
            });
            if let Some(ids) = job_ids {
                summary["job_ids"] = serde_json::json!(ids);
            }
            println!("{summary}");
        } else if self.dry_run {
            println!(
                "{}: would have {verb} {done} dead letters (dry run; {examined} examined)",
                self.queue
            );
        } else {
            println!(
                "{}: {verb} {done} dead letters ({examined} examined)",
                self.queue
            );
        }
    }
}

/// Says on stderr what a run had done before it failed.
fn partial(verb: &str, done: u64) {
    if done > 0 {
        eprintln!("ncyctl: {done} dead letters were {verb} before the failure");
    }
}

/// RetryDeadLetters until the run's token is empty.
async fn retry_all(client: &mut JobServiceClient<Channel>, args: BulkArgs, json: bool) -> Outcome {
    let (mut done, mut examined) = (0u64, 0u64);
    let mut job_ids = Vec::new();
    let mut token = String::new();
    loop {
        let request = pb::RetryDeadLettersRequest {
            selection: args.selection(),
            limit: args.limit,
            page_token: token,
            dry_run: args.dry_run,
        };
        let r = match client.retry_dead_letters(request).await {
            Ok(r) => r.into_inner(),
            Err(s) => {
                partial("retried", done);
                return failed(s);
            }
        };
        done += u64::from(r.retried);
        examined += u64::from(r.examined);
        job_ids.extend(r.job_ids);
        token = r.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    args.report("retried", done, examined, json, Some(&job_ids));
    Outcome::Ok
}

/// PurgeDeadLetters until the run's token is empty.
async fn purge(client: &mut JobServiceClient<Channel>, args: BulkArgs, json: bool) -> Outcome {
    let (mut done, mut examined) = (0u64, 0u64);
    let mut token = String::new();
    loop {
        let request = pb::PurgeDeadLettersRequest {
            selection: args.selection(),
            limit: args.limit,
            page_token: token,
            dry_run: args.dry_run,
        };
        let r = match client.purge_dead_letters(request).await {
            Ok(r) => r.into_inner(),
            Err(s) => {
                partial("deleted", done);
                return failed(s);
            }
        };
        done += u64::from(r.deleted);
        examined += u64::from(r.examined);
        token = r.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    args.report("deleted", done, examined, json, None);
    Outcome::Ok
}
