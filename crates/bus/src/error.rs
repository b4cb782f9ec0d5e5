//! The bus's error type: what a caller can act on (bad input vs. Redis unavailable).
//!
//! Redis and pool failures keep their typed source (`source()` is the `redis::RedisError` or the
//! runtime's pool error), so whoever logs one can tell a refused connection from a server reply by
//! kind and code, and sees the whole chain.
use ncy_types::ValidationError;

/// Errors of the room bus.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The caller's input is invalid (names the field); nothing was published.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// Redis could not be reached or answered with an error.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// No pooled Redis connection could be had.
    #[error("redis: {0}")]
    Pool(#[from] ncy_runtime::RuntimeError),
    /// Redis did not confirm a SUBSCRIBE or UNSUBSCRIBE in time (the connection went silent).
    #[error("redis: no subscription confirmation within 5 s")]
    SubscriptionTimedOut,
    /// The pub/sub connection was closed.
    #[error("redis: pub/sub connection closed")]
    PubSubClosed,
    /// The subscription's liveness probe did not come back.
    #[error("redis: subscription is silent (probe not received)")]
    ProbeLost,
    /// The subscriber's task has ended (the service is stopping).
    #[error("redis: subscriber stopped")]
    SubscriberStopped,
    /// Redis returned something the bus does not understand (never panics on it).
    #[error("unexpected reply from redis: {0}")]
    Protocol(String),
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn redis_errors_keep_their_typed_source() {
        let refused =
            redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let e = BusError::from(refused);
        let source = e
            .source()
            .and_then(|s| s.downcast_ref::<redis::RedisError>());
        assert!(source.is_some_and(redis::RedisError::is_io_error), "{e:?}");
        let refused = BusError::from(redis::make_extension_error("WRONGTYPE".into(), None));
        let code = refused
            .source()
            .and_then(|s| s.downcast_ref::<redis::RedisError>())
            .and_then(redis::RedisError::code);
        assert_eq!(code, Some("WRONGTYPE"));
    }
}
