//! The job vocabulary shared by job-scheduler, worker and ncyctl: queues, job types, option limits
//! and the payload schema of each type (in [`payloads`], checked by [`validate_payload`]).
//!
//! Queues and job types are the seed's BullMQ ones (email, notification, report, cleanup), with the
//! same wire names, so existing producers keep working.

mod catalog;
mod checks;
pub mod links;
mod parse;
pub mod payloads;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;

pub use catalog::{JobPayload, JobType};
pub use parse::{parse_payload, validate_payload};
// Every payload type (and its limits) is reachable as `ncy_types::jobs::<Name>`: a new type's payload
// needs no line here.
pub use payloads::*;

/// Highest job priority (0 is the lowest; the seed sends retries at 10).
pub const MAX_PRIORITY: u8 = 10;
/// Most attempts a job may be given.
pub const MAX_ATTEMPTS: u32 = 25;
/// Largest accepted payload, in bytes of JSON text.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;
/// Attempts when the producer does not say (the seed's default).
pub const DEFAULT_ATTEMPTS: u32 = 3;
/// First backoff delay when the producer does not say (the seed's default).
pub const DEFAULT_BACKOFF_DELAY_MS: u64 = 2_000;
/// Longest backoff delay [`Backoff::delay_ms`] returns, whatever the attempt: one day.
pub const MAX_BACKOFF_DELAY_MS: u64 = 24 * 60 * 60 * 1_000;
/// Default backoff: exponential from 2 s, as in the seed.
pub const DEFAULT_BACKOFF: Backoff = Backoff {
    kind: BackoffKind::Exponential,
    delay_ms: DEFAULT_BACKOFF_DELAY_MS,
};

/// The seed's queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueName {
    Email,
    Notification,
    Report,
    Cleanup,
}

impl QueueName {
    /// Every queue, in a fixed order.
    pub const ALL: [QueueName; 4] = [
        QueueName::Email,
        QueueName::Notification,
        QueueName::Report,
        QueueName::Cleanup,
    ];

    /// The wire name: `email`, `notification`, `report`, `cleanup`.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueName::Email => "email",
            QueueName::Notification => "notification",
            QueueName::Report => "report",
            QueueName::Cleanup => "cleanup",
        }
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AsRef<str> for QueueName {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl FromStr for QueueName {
    type Err = ValidationError;

    /// Parses a wire name; the error names the field `queue`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        QueueName::ALL
            .into_iter()
            .find(|q| q.as_str() == s)
            .ok_or_else(|| {
                ValidationError::new(
                    "queue",
                    format!(
                        "unknown queue {s:?}, expected one of email, notification, report, cleanup"
                    ),
                )
            })
    }
}

impl JobType {
    /// Whether a job of this type may be enqueued on `queue`: its default queue, or any for the
    /// engine's own types (`noop`, `sleep`, `fail`).
    pub fn allowed_on(self, queue: QueueName) -> bool {
        self.is_engine_type() || self.default_queue() == queue
    }

    /// The test-only types (`sleep`, `fail`) that exercise the engine; services accept them only
    /// when a setting enables them.
    pub fn is_test_only(self) -> bool {
        matches!(self, JobType::Sleep | JobType::Fail)
    }

    /// Types the job engine itself implements (no domain processor): `noop`, `sleep`, `fail`.
    pub fn is_engine_type(self) -> bool {
        matches!(self, JobType::Noop | JobType::Sleep | JobType::Fail)
    }
}

impl fmt::Display for JobType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobType {
    type Err = ValidationError;

    /// Parses a wire name; the error names the field `jobType`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobType::ALL
            .iter()
            .copied()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = JobType::ALL.iter().map(|t| t.as_str()).collect();
                ValidationError::new(
                    "jobType",
                    format!(
                        "unknown job type {s:?}, expected one of {}",
                        known.join(", ")
                    ),
                )
            })
    }
}

/// How the delay between attempts grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackoffKind {
    /// `delay`, `2·delay`, `4·delay`, …
    Exponential,
    /// `delay` every time.
    Fixed,
}

impl BackoffKind {
    /// Every kind, in a fixed order.
    pub const ALL: [BackoffKind; 2] = [BackoffKind::Exponential, BackoffKind::Fixed];

    /// The name in JSON and in the job's stored `backoff_kind`: `exponential`, `fixed`. The one
    /// spelling of a kind: serde's names are checked against it in the tests, and the job engine
    /// writes and reads this.
    pub fn as_str(self) -> &'static str {
        match self {
            BackoffKind::Exponential => "exponential",
            BackoffKind::Fixed => "fixed",
        }
    }
}

impl fmt::Display for BackoffKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BackoffKind {
    type Err = ValidationError;

    /// Parses a name written by [`BackoffKind::as_str`]; the error names the field `backoff.kind`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BackoffKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                ValidationError::new(
                    "backoff.kind",
                    format!("unknown backoff kind {s:?}, expected exponential or fixed"),
                )
            })
    }
}

/// Retry backoff of a job (jitter is added by the engine, not here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Backoff {
    pub kind: BackoffKind,
    pub delay_ms: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        DEFAULT_BACKOFF
    }
}

impl Backoff {
    /// Delay before retrying after failed attempt number `attempts_made` (1 for the first failure),
    /// capped at [`MAX_BACKOFF_DELAY_MS`].
    pub fn delay_ms(&self, attempts_made: u32) -> u64 {
        let delay = match self.kind {
            BackoffKind::Fixed => self.delay_ms,
            BackoffKind::Exponential => {
                let doublings = attempts_made.saturating_sub(1).min(63);
                self.delay_ms.saturating_mul(1u64 << doublings)
            }
        };
        delay.min(MAX_BACKOFF_DELAY_MS)
    }
}

/// Checks a requested priority (0..=10), naming the field `priority`.
pub fn check_priority(priority: i64) -> Result<u8, ValidationError> {
    u8::try_from(priority)
        .ok()
        .filter(|p| *p <= MAX_PRIORITY)
        .ok_or_else(|| {
            ValidationError::new("priority", format!("must be between 0 and {MAX_PRIORITY}"))
        })
}

/// Checks a requested attempt count: 0 means the default (3), else 1..=25; names `attempts`.
pub fn check_attempts(attempts: i64) -> Result<u32, ValidationError> {
    if attempts == 0 {
        return Ok(DEFAULT_ATTEMPTS);
    }
    u32::try_from(attempts)
        .ok()
        .filter(|a| (1..=MAX_ATTEMPTS).contains(a))
        .ok_or_else(|| {
            ValidationError::new("attempts", format!("must be between 1 and {MAX_ATTEMPTS}"))
        })
}

/// Checks a requested delay in milliseconds (not negative), naming the field `delayMs`.
pub fn check_delay_ms(delay_ms: i64) -> Result<u64, ValidationError> {
    u64::try_from(delay_ms).map_err(|_| ValidationError::new("delayMs", "must not be negative"))
}

/// The idempotency key a cron tick enqueues with, so any number of scheduler replicas fire it once.
pub fn cron_idempotency_key(schedule: &str, tick_ms: i64) -> String {
    format!("cron:{schedule}:{tick_ms}")
}

#[cfg(test)]
mod tests;
