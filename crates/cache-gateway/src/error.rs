//! The crate's one error type and its single mapping to gRPC statuses.
//!
//! Bad input becomes `INVALID_ARGUMENT` whose message starts with the field; a dead Redis or a
//! failing loader becomes `UNAVAILABLE`; internal details are logged here, not sent to clients.
//!
//! Redis failures keep their typed source (`redis::RedisError`, the runtime's pool error), so the
//! logs carry the whole chain and the split between "Redis is unhealthy" and "Redis refused this
//! command" is made once, by error kind ([`crate::l2::is_outage`]), never by message text.
use std::sync::Arc;

use ncy_types::ValidationError;

/// What can go wrong serving a cache request. `Clone`, so one failed batched read answers every
/// request in the batch with the same error.
#[derive(Debug, Clone, thiserror::Error)]
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
    /// Redis is unhealthy: it did not answer, or answered that it serves no one right now
    /// (UNAVAILABLE; counted by the L2 breaker).
    #[error("redis unavailable: {0}")]
    Redis(#[source] redis::RedisError),
    /// No pooled connection to Redis could be had (UNAVAILABLE; counted by the L2 breaker).
    #[error("redis unavailable: {0}")]
    Pool(#[source] Arc<ncy_runtime::RuntimeError>),
    /// Redis was not asked, or did not answer in time: the circuit is open, a call or the wait
    /// for a connection timed out, the read coalescer is gone (UNAVAILABLE).
    #[error("redis unavailable: {0}")]
    Unavailable(&'static str),
    /// Redis refused this one command for the data it touched (WRONGTYPE on a key holding a hash,
    /// a script error): corrupt data, INTERNAL, and not counted by the breaker that every caller
    /// shares (see `l2::is_outage`).
    #[error("redis refused the command: {0}")]
    RedisRefused(#[source] redis::RedisError),
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
/// another type, a failing script) is `RedisRefused`, and leaves the breaker that every caller
/// shares alone (see `l2::is_outage`).
impl From<redis::RedisError> for CacheError {
    fn from(e: redis::RedisError) -> Self {
        if crate::l2::is_outage(&e) {
            Self::Redis(e)
        } else {
            Self::RedisRefused(e)
        }
    }
}

impl From<ncy_runtime::RuntimeError> for CacheError {
    fn from(e: ncy_runtime::RuntimeError) -> Self {
        Self::Pool(Arc::new(e))
    }
}

impl From<CacheError> for tonic::Status {
    fn from(e: CacheError) -> Self {
        match e {
            CacheError::Invalid(v) => tonic::Status::invalid_argument(v.to_string()),
            CacheError::NotFound(what) => tonic::Status::not_found(what),
            CacheError::FailedPrecondition(m) => tonic::Status::failed_precondition(m),
            e @ (CacheError::Redis(_) | CacheError::Pool(_) | CacheError::Unavailable(_)) => {
                tracing::debug!(error = %e, "redis unavailable");
                tonic::Status::unavailable("redis unavailable")
            }
            e @ CacheError::RedisRefused(_) => {
                tracing::error!(error = %e, "internal error");
                tonic::Status::internal("internal error")
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

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    fn server(code: &str) -> redis::RedisError {
        redis::make_extension_error(code.to_owned(), Some("detail".to_owned()))
    }

    #[test]
    fn redis_errors_keep_their_source_and_their_status() {
        let down = CacheError::from(redis::RedisError::from(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        assert!(
            matches!(&down, CacheError::Redis(e) if e.is_io_error()),
            "{down:?}"
        );
        assert!(down.source().is_some());
        let status = tonic::Status::from(down);
        assert_eq!(
            (status.code(), status.message()),
            (tonic::Code::Unavailable, "redis unavailable")
        );

        let refused = CacheError::from(server("WRONGTYPE"));
        assert!(
            matches!(&refused, CacheError::RedisRefused(e) if e.code() == Some("WRONGTYPE")),
            "{refused:?}"
        );
        let status = tonic::Status::from(refused);
        assert_eq!(
            (status.code(), status.message()),
            (tonic::Code::Internal, "internal error")
        );

        let pool = CacheError::from(ncy_runtime::RuntimeError::Redis("timed out".into()));
        assert!(pool.source().is_some());
        for e in [pool, CacheError::Unavailable("circuit open")] {
            let status = tonic::Status::from(e);
            assert_eq!(
                (status.code(), status.message()),
                (tonic::Code::Unavailable, "redis unavailable")
            );
        }
    }
}
