//! Tokens of the bulk runs (RetryDeadLetters, PurgeDeadLetters, CleanJobs): opaque to clients,
//! checked in full before any Redis work, as ListJobs' page tokens are (`page_token.rs`).
//!
//! A token is the lowercase hex encoding of `|`-separated fields: the format and action
//! (`d1r`/`d1p` for a dead-letter retry/purge run, `c1` for a clean run), then the request the run
//! was started with, then what the first call fixed and where the next call starts:
//!
//! - dead letters: `d1r|<queue>|<type>|<owner>|<failed_before_ms>|<dry>|<until>|<after>`, `until`
//!   the newest entry when the run started (the run ends there, so it ends while new dead letters
//!   arrive), `after` the last entry examined (`-` before the first);
//! - clean: `c1|<queue>|<state>|<older_than_ms>|<type>|<owner>|<dry>|<cutoff_ms>|<at_ms>|<job>`,
//!   `cutoff_ms` the finish time the run stops at (now − `older_than_ms` at its first call) and
//!   `at_ms`/`job` the last job examined (`-|-` before the first).
//!
//! The request is in the token itself, so a token replayed with another selection (or another
//! action, or a dry run's token for a real run) differs from it and is refused with
//! INVALID_ARGUMENT naming `page_token`, as is one crafted, edited or from another version.
use ncy_queue::{CleanPosition, JobState, StreamId};
use ncy_types::ValidationError;

use crate::page_token::{hex, number, unhex};

/// Longest token accepted (a real one is at most about 500 characters).
const MAX_TOKEN: usize = 1024;

/// What a dead-letter run was started with; a token continues only the same run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterRun<'a> {
    /// `r` (retry) or `p` (purge).
    pub action: char,
    pub queue: &'a str,
    pub job_type: &'a str,
    pub owner: &'a str,
    pub failed_before_ms: i64,
    pub dry_run: bool,
}

/// Where a dead-letter run goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadLetterPosition {
    pub until: StreamId,
    pub after: Option<StreamId>,
}

/// What a clean run was started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanRun<'a> {
    pub queue: &'a str,
    pub state: JobState,
    pub older_than_ms: i64,
    pub job_type: &'a str,
    pub owner: &'a str,
    pub dry_run: bool,
}

/// Where a clean run goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanRunPosition {
    pub cutoff_ms: i64,
    pub after: Option<CleanPosition>,
}

impl DeadLetterRun<'_> {
    fn head(&self) -> String {
        format!(
            "d1{}|{}|{}|{}|{}|{}",
            self.action,
            self.queue,
            self.job_type,
            self.owner.to_ascii_lowercase(),
            self.failed_before_ms,
            u8::from(self.dry_run)
        )
    }

    /// The token continuing this run at `at`.
    pub fn encode(&self, at: DeadLetterPosition) -> String {
        let after = at.after.map_or_else(|| "-".to_owned(), |a| a.to_string());
        hex(&format!("{}|{}|{after}", self.head(), at.until))
    }

    /// Where this run continues: `None` for the empty token (a new run).
    pub fn decode(&self, token: &str) -> Result<Option<DeadLetterPosition>, ValidationError> {
        let Some(rest) = strip_head(token, &self.head())? else {
            return Ok(None);
        };
        let (until, after) = rest.split_once('|').ok_or_else(bad)?;
        let until = StreamId::parse(until).ok_or_else(bad)?;
        let after = match after {
            "-" => None,
            a => Some(StreamId::parse(a).filter(|a| *a <= until).ok_or_else(bad)?),
        };
        Ok(Some(DeadLetterPosition { until, after }))
    }
}

impl CleanRun<'_> {
    fn head(&self) -> String {
        format!(
            "c1|{}|{}|{}|{}|{}|{}",
            self.queue,
            self.state.as_str(),
            self.older_than_ms,
            self.job_type,
            self.owner.to_ascii_lowercase(),
            u8::from(self.dry_run)
        )
    }

    /// The token continuing this run at `at`.
    pub fn encode(&self, at: &CleanRunPosition) -> String {
        let after = at.after.as_ref().map_or_else(
            || "-|-".to_owned(),
            |p| format!("{}|{}", p.finished_at_ms, p.job_id),
        );
        hex(&format!("{}|{}|{after}", self.head(), at.cutoff_ms))
    }

    /// Where this run continues: `None` for the empty token (a new run).
    pub fn decode(&self, token: &str) -> Result<Option<CleanRunPosition>, ValidationError> {
        let Some(rest) = strip_head(token, &self.head())? else {
            return Ok(None);
        };
        let parts: Vec<&str> = rest.split('|').collect();
        let [cutoff, at, job] = parts[..] else {
            return Err(bad());
        };
        let cutoff_ms = number(cutoff).ok_or_else(bad)?;
        let after = match (at, job) {
            ("-", "-") => None,
            (at, job) => {
                let finished_at_ms: i64 = number(at).filter(|a| *a <= cutoff_ms).ok_or_else(bad)?;
                let queue = ncy_queue::ids::parse_job_id(job, "page_token").map_err(|_| bad())?;
                if queue.as_str() != self.queue {
                    return Err(bad());
                }
                Some(CleanPosition {
                    finished_at_ms,
                    job_id: job.to_owned(),
                })
            }
        };
        Ok(Some(CleanRunPosition { cutoff_ms, after }))
    }
}

fn bad() -> ValidationError {
    ValidationError::new(
        "page_token",
        "is not a token from a previous call of this run (same selection, dry_run and action)",
    )
}

/// The fields after `head` in `token`, `None` for the empty token.
fn strip_head(token: &str, head: &str) -> Result<Option<String>, ValidationError> {
    if token.is_empty() {
        return Ok(None);
    }
    if token.len() > MAX_TOKEN {
        return Err(bad());
    }
    let text = unhex(token).ok_or_else(bad)?;
    let rest = text
        .strip_prefix(head)
        .and_then(|r| r.strip_prefix('|'))
        .ok_or_else(bad)?;
    Ok(Some(rest.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(action: char, job_type: &'static str) -> DeadLetterRun<'static> {
        DeadLetterRun {
            action,
            queue: "email",
            job_type,
            owner: "",
            failed_before_ms: 0,
            dry_run: false,
        }
    }

    #[test]
    fn dead_letter_tokens_continue_only_their_run() {
        let at = DeadLetterPosition {
            until: StreamId { ms: 9, seq: 1 },
            after: Some(StreamId { ms: 5, seq: 0 }),
        };
        let t = run('r', "send-email").encode(at);
        assert_eq!(run('r', "send-email").decode(&t), Ok(Some(at)));
        assert_eq!(run('r', "send-email").decode(""), Ok(None));
        for other in [
            run('p', "send-email"),
            run('r', ""),
            DeadLetterRun {
                dry_run: true,
                ..run('r', "send-email")
            },
            DeadLetterRun {
                failed_before_ms: 1,
                ..run('r', "send-email")
            },
            DeadLetterRun {
                queue: "report",
                ..run('r', "send-email")
            },
        ] {
            assert_eq!(other.decode(&t).expect_err("other run").field, "page_token");
        }
        let r = run('r', "");
        for forged in [
            "zz".to_owned(),
            "ab".repeat(600),
            hex("d1r|email||||0|9-1|-"),
            hex("d1r|email|||0|0|9-1|10-0"),
            hex("d1r|email|||0|0|9-1|5-0|x"),
            hex("d1r|email|||0|0|09-1|-"),
            hex("d2r|email|||0|0|9-1|-"),
            hex("d1r|email|||0|0|9-1|-").to_uppercase(),
        ] {
            assert_eq!(r.decode(&forged).expect_err(&forged).field, "page_token");
        }
        assert!(r.decode(&hex("d1r|email|||0|0|9-1|-")).is_ok());
    }

    #[test]
    fn clean_tokens_continue_only_their_run() {
        let run = CleanRun {
            queue: "email",
            state: JobState::Completed,
            older_than_ms: 1000,
            job_type: "",
            owner: "",
            dry_run: true,
        };
        let at = CleanRunPosition {
            cutoff_ms: 50,
            after: Some(CleanPosition {
                finished_at_ms: 40,
                job_id: "email.0123456789abcdef0123456789abcdef".into(),
            }),
        };
        let t = run.encode(&at);
        assert_eq!(run.decode(&t), Ok(Some(at)));
        let start = CleanRunPosition {
            cutoff_ms: 50,
            after: None,
        };
        assert_eq!(run.decode(&run.encode(&start)), Ok(Some(start)));
        let dead = CleanRun {
            state: JobState::Dead,
            ..run.clone()
        };
        assert!(dead.decode(&t).is_err());
        let head = "c1|email|completed|1000|||1";
        for forged in [
            format!("{head}|50|60|email.0123456789abcdef0123456789abcdef"),
            format!("{head}|50|40|report.0123456789abcdef0123456789abcdef"),
            format!("{head}|50|40|email.xyz"),
            format!("{head}|-5|-|-"),
            format!("{head}|50|-"),
        ] {
            assert_eq!(
                run.decode(&hex(&forged)).expect_err(&forged).field,
                "page_token"
            );
        }
    }
}
