//! The job types, one line each: variant, wire name, default queue, payload type. Everything this
//! crate needs per type — the [`JobType`] enum and [`JobType::ALL`], `as_str`, `default_queue`,
//! the [`JobPayload`] variant and the payload's parsing — is generated from that line, so adding a
//! type here is its payload struct (in `payloads.rs`, with `impl JobData`) and one line below.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::QueueName;
use super::parse::typed;
use super::payloads::{
    BackupJobData, CleanupJobData, EmailJobData, FailJobData, NoopJobData, NotificationJobData,
    ReportJobData, SleepJobData, WelcomeEmailData,
};
use crate::error::ValidationError;

macro_rules! job_types {
    ($($(#[$doc:meta])* $variant:ident, $wire:literal, $queue:ident, $payload:ty;)+) => {
        /// The seed's job types, plus the engine's own (`noop`, and the test-only `sleep` and
        /// `fail`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum JobType {
            $($(#[$doc])* #[serde(rename = $wire)] $variant,)+
        }

        impl JobType {
            /// Every job type, in a fixed order.
            pub const ALL: &'static [JobType] = &[$(JobType::$variant,)+];

            /// The wire name, e.g. `send-email`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(JobType::$variant => $wire,)+
                }
            }

            /// The queue a job of this type goes to when the producer does not name one.
            pub fn default_queue(self) -> QueueName {
                match self {
                    $(JobType::$variant => QueueName::$queue,)+
                }
            }
        }

        /// A checked payload of one job type.
        #[derive(Debug, Clone, PartialEq, Serialize)]
        #[serde(untagged)]
        pub enum JobPayload {
            $($(#[$doc])* $variant($payload),)+
        }

        impl JobPayload {
            /// The job type this payload belongs to.
            pub fn job_type(&self) -> JobType {
                match self {
                    $(JobPayload::$variant(_) => JobType::$variant,)+
                }
            }

            /// Decodes `value` as the payload of `job_type` (errors name the field's path) and
            /// checks the payload's rules.
            pub(super) fn decode(job_type: JobType, value: Value) -> Result<Self, ValidationError> {
                Ok(match job_type {
                    $(JobType::$variant => JobPayload::$variant(typed::<$payload>(value)?),)+
                })
            }
        }
    };
}

job_types! {
    SendEmail, "send-email", Email, EmailJobData;
    SendWelcomeEmail, "send-welcome-email", Email, WelcomeEmailData;
    SendNotification, "send-notification", Notification, NotificationJobData;
    GenerateReport, "generate-report", Report, ReportJobData;
    CleanupOldData, "cleanup-old-data", Cleanup, CleanupJobData;
    BackupDatabase, "backup-database", Cleanup, BackupJobData;
    /// The engine's own: does nothing; takes any JSON object.
    Noop, "noop", Email, NoopJobData;
    /// Test-only: sleeps `ms` (honouring cancellation). Accepted only where test types are enabled.
    Sleep, "sleep", Email, SleepJobData;
    /// Test-only: fails (or panics) as its payload says. Accepted only where test types are enabled.
    Fail, "fail", Email, FailJobData;
}
