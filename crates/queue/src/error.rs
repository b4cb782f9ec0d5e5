//! The job engine's errors: what callers can act on (bad input, missing job, wrong state, Redis down).
use ncy_types::ValidationError;

/// An error of the job engine.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Input rejected before anything was written; the field is named.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// No such job, schedule or dead letter (or removed by retention).
    #[error("{0} not found")]
    NotFound(String),
    /// The object's state forbids the operation.
    #[error("{0}")]
    FailedPrecondition(String),
    /// Redis failed or is unreachable.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// No connection could be had from the pool.
    #[error("redis pool: {0}")]
    Pool(String),
    /// Redis held something this version cannot read (never trusted blindly, never a panic).
    #[error("corrupt data in redis: {0}")]
    Corrupt(String),
}

impl From<ncy_runtime::RuntimeError> for QueueError {
    fn from(e: ncy_runtime::RuntimeError) -> Self {
        QueueError::Pool(e.to_string())
    }
}

impl QueueError {
    /// Whether Redis lost the consumer group (e.g. restarted without persistence), so the caller
    /// re-creates the groups and carries on.
    pub fn is_no_group(&self) -> bool {
        matches!(self, QueueError::Redis(e) if e.to_string().contains("NOGROUP"))
    }
}

/// Shorthand.
pub type Result<T, E = QueueError> = std::result::Result<T, E>;
