//! The crate's one error type and its single mapping to gRPC statuses.
//!
//! Bad input becomes `INVALID_ARGUMENT` whose message starts with the field; a dead Redis or a
//! failing loader becomes `UNAVAILABLE`; internal details are logged here, not sent to clients.
use ncy_types::ValidationError;

/// What can go wrong serving a cache request.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The request was rejected; nothing was written.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with stored state (a session of another user).
    #[error("{0}")]
    FailedPrecondition(String),
    /// Redis is down, slow, or the circuit is open.
    #[error("redis unavailable: {0}")]
    Redis(String),
    /// A loader's query failed and no stale copy could be served.
    #[error("loader {kind} failed: {message}")]
    Loader {
        /// The loader kind.
        kind: String,
        /// The database error.
        message: String,
    },
    /// The scan did not finish before the request's deadline (this many keys were removed).
    #[error("deadline exceeded after removing {0} keys")]
    DeadlineExceeded(u64),
    /// A bug or corrupt data.
    #[error("internal: {0}")]
    Internal(String),
}

impl CacheError {
    /// Shorthand for a field error.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid(ValidationError::new(field, message))
    }
}

/// A Redis error is `Redis` (UNAVAILABLE, counted by the L2 breaker) only when it says Redis is
/// unhealthy; an error Redis answered about one command and the data it touched (a key holding
/// another type, a failing script) is corrupt data, `Internal`, and leaves the breaker that every
/// caller shares alone (see `l2::is_outage`).
impl From<redis::RedisError> for CacheError {
    fn from(e: redis::RedisError) -> Self {
        if crate::l2::is_outage(&e) {
            Self::Redis(e.to_string())
        } else {
            Self::Internal(format!("redis refused the command: {e}"))
        }
    }
}

impl From<CacheError> for tonic::Status {
    fn from(e: CacheError) -> Self {
        match e {
            CacheError::Invalid(v) => tonic::Status::invalid_argument(v.to_string()),
            CacheError::NotFound(what) => tonic::Status::not_found(what),
            CacheError::FailedPrecondition(m) => tonic::Status::failed_precondition(m),
            CacheError::Redis(m) => {
                tracing::debug!(error = %m, "redis unavailable");
                tonic::Status::unavailable("redis unavailable")
            }
            CacheError::Loader { kind, message } => {
                tracing::warn!(kind, error = %message, "loader failed");
                tonic::Status::unavailable(format!("loader {kind} failed"))
            }
            CacheError::DeadlineExceeded(n) => tonic::Status::deadline_exceeded(format!(
                "pattern scan did not finish in time; {n} keys removed so far"
            )),
            CacheError::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                tonic::Status::internal("internal error")
            }
        }
    }
}
