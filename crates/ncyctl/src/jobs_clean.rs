//! `ncyctl jobs clean`: deletes the records of a queue's finished jobs in one terminal state
//! through CleanJobs, calling until the run's token is empty (each call examines at most `--limit`
//! jobs) and printing the totals: a line, or with `--json` one summary object. The age is a
//! duration (`7d`, `12h`, `30m`, `45s`, `500ms`) or plain milliseconds. A failure part-way says on
//! stderr what was already deleted and exits as every command does (`rpc::failed`).
use clap::{Args, ValueEnum};
use ncy_proto::jobs::v1::{self as pb, JobState, job_service_client::JobServiceClient};

use crate::Outcome;
use crate::rpc::{Channel, failed};

/// The terminal states CleanJobs takes.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum FinishedState {
    Completed,
    Dead,
    Cancelled,
}

impl FinishedState {
    fn proto(self) -> JobState {
        match self {
            FinishedState::Completed => JobState::Completed,
            FinishedState::Dead => JobState::Dead,
            FinishedState::Cancelled => JobState::Cancelled,
        }
    }

    fn name(self) -> &'static str {
        match self {
            FinishedState::Completed => "completed",
            FinishedState::Dead => "dead",
            FinishedState::Cancelled => "cancelled",
        }
    }
}

/// `ncyctl jobs clean …`
#[derive(Debug, Args)]
pub struct CleanArgs {
    /// The queue.
    #[arg(long)]
    queue: String,
    /// Which finished jobs.
    #[arg(long, value_enum)]
    state: FinishedState,
    /// Only jobs that finished at least this long ago: 7d, 12h, 30m, 45s, 500ms or plain ms
    /// (0: any age).
    #[arg(long, default_value = "0", value_parser = parse_age)]
    older_than: i64,
    /// Only jobs of this type (a wire name such as send-email).
    #[arg(long = "type", default_value = "")]
    job_type: String,
    /// Only jobs this user owns (a UUID).
    #[arg(long, default_value = "")]
    owner: String,
    /// Count what would be deleted, change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Jobs examined per call (0: the server's default, 500; at most 1000).
    #[arg(long, default_value_t = 0)]
    limit: i32,
}

/// `7d`, `12h`, `30m`, `45s`, `500ms` or plain milliseconds, as milliseconds.
fn parse_age(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: i64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 7d, 12h, 30m, 45s or 500"))?;
    let per = match unit {
        "" | "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("{text:?}: the unit must be d, h, m, s or ms")),
    };
    n.checked_mul(per)
        .ok_or_else(|| format!("{text:?} is too long"))
}

pub async fn clean(client: &mut JobServiceClient<Channel>, args: CleanArgs, json: bool) -> Outcome {
    let (mut deleted, mut examined) = (0u64, 0u64);
    let mut token = String::new();
    loop {
        let request = pb::CleanJobsRequest {
            queue: args.queue.clone(),
            state: args.state.proto() as i32,
            older_than_ms: args.older_than,
            job_type: args.job_type.clone(),
            owner_user_id: args.owner.clone(),
            limit: args.limit,
            page_token: token,
            dry_run: args.dry_run,
        };
        let r = match client.clean_jobs(request).await {
            Ok(r) => r.into_inner(),
            Err(s) => {
                if deleted > 0 && !args.dry_run {
                    eprintln!("ncyctl: {deleted} jobs were deleted before the failure");
                }
                return failed(s);
            }
        };
        deleted += u64::from(r.deleted);
        examined += u64::from(r.examined);
        token = r.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    let state = args.state.name();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "queue": args.queue,
                "state": state,
                "dry_run": args.dry_run,
                "deleted": deleted,
                "examined": examined,
            })
        );
    } else if args.dry_run {
        println!(
            "{}: would have deleted {deleted} {state} jobs (dry run; {examined} examined)",
            args.queue
        );
    } else {
        println!(
            "{}: deleted {deleted} {state} jobs ({examined} examined)",
            args.queue
        );
    }
    Outcome::Ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_take_units_or_plain_milliseconds() {
        assert_eq!(parse_age("7d"), Ok(604_800_000));
        assert_eq!(parse_age("12h"), Ok(43_200_000));
        assert_eq!(parse_age("30m"), Ok(1_800_000));
        assert_eq!(parse_age("45s"), Ok(45_000));
        assert_eq!(parse_age("500ms"), Ok(500));
        assert_eq!(parse_age("1500"), Ok(1500));
        assert_eq!(parse_age("0"), Ok(0));
        for bad in ["", "d", "7w", "-1d", "1.5h", "99999999999999999999d"] {
            assert!(parse_age(bad).is_err(), "{bad}");
        }
    }
}
