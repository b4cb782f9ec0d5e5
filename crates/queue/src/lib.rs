//! ncy-queue: the job engine shared by job-scheduler and worker, on Redis Streams.
//!
//! Layout per queue `Q` (all under the hash tag `{<p>:q:Q}`, see `ncy_types::QueueKeys`): one stream
//! per priority band (0–10) with the consumer group `workers`, a hash per job, sorted sets for
//! delayed/retrying, active, completed, dead and cancelled jobs, a dead-letter stream, idempotency
//! keys with a TTL, a pause flag, a sliding-log rate limiter, a promoter lease, and an events stream
//! plus pub/sub channel. Every state change is one Lua script (`scripts/*.lua`) in that one slot, so
//! the engine runs on Redis Cluster and no transition is ever half-applied.
#![forbid(unsafe_code)]

mod admin;
mod clean;
mod client;
pub mod config;
mod consumer;
pub mod cron;
mod cron_expr;
mod dead_bulk;
mod engine;
pub mod error;
mod history;
pub mod ids;
pub mod job;
mod job_control;
pub mod listing;
mod promoter;
mod schedule_control;
mod scripts;

pub use admin::{DeadLetter, PurgeCounts, QueueStats};
pub use clean::{CleanBatch, CleanPosition, CleanSlice};
pub use config::{EngineSettings, QueueSettings, RateLimit};
pub use consumer::{FailOutcome, Fetched, Finish, Finished, HeldJob, Preclaimed};
pub use dead_bulk::{DeadLetterAction, DeadLetterBatch, DeadLetterFilter, DeadLetterSlice};
pub use engine::{BANDS, Engine, GROUP};
pub use error::QueueError;
pub use history::{HISTORY_TTL_SECS, HistoryPoint, MAX_HISTORY_MINUTES, QueueHistory};
pub use job::{Enqueued, FetchedJob, JobEventMessage, JobRecord, JobState, NewJob, now_ms};
pub use listing::{Cursor, FILTERED_SCAN_BUDGET, JobFilter, JobPage, StreamId};
