//! The bus's error type: what a caller can act on (bad input vs. Redis unavailable).
use ncy_types::ValidationError;

/// Errors of the room bus.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The caller's input is invalid (names the field); nothing was published.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// Redis could not be reached or answered with an error.
    #[error("redis: {0}")]
    Redis(String),
    /// Redis returned something the bus does not understand (never panics on it).
    #[error("unexpected reply from redis: {0}")]
    Protocol(String),
}

impl From<redis::RedisError> for BusError {
    fn from(e: redis::RedisError) -> Self {
        Self::Redis(e.to_string())
    }
}

impl From<ncy_runtime::RuntimeError> for BusError {
    fn from(e: ncy_runtime::RuntimeError) -> Self {
        Self::Redis(e.to_string())
    }
}
