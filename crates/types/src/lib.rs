//! ncy-types: the shared vocabulary of the NCY backbone — Redis key builders, id parsing, job
//! queues/types/payloads with field-naming validation, and the realtime envelope.
//!
//! Pure data and rules, no I/O: every service and library crate depends on it, so it stays small
//! and fast to build.

pub mod canonical;
pub mod error;
pub mod ids;
pub mod jobs;
pub mod keys;
pub mod realtime;

pub use canonical::{canonical_json, canonical_md5_hex};
pub use error::ValidationError;
pub use ids::parse_uuid;
pub use jobs::{
    Backoff, BackoffKind, JobPayload, JobType, MAX_ATTEMPTS, MAX_PAYLOAD_BYTES, MAX_PRIORITY,
    QueueName, parse_payload, validate_payload,
};
pub use keys::{KeySpace, QUEUE_KEY_SUFFIXES, QueueKeys, RoomKeys, hash_slot};
pub use realtime::{Envelope, Room};
