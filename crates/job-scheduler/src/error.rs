//! The scheduler's errors and the one place they become gRPC statuses: bad input →
//! INVALID_ARGUMENT naming the field (proto field names), NOT_FOUND, FAILED_PRECONDITION, Redis
//! unreachable or not ready → UNAVAILABLE (retry with backoff), any other Redis answer → INTERNAL
//! (details logged, not leaked). Every RPC body returns `Result<_, SchedulerError>` and uses `?`;
//! the conversion below runs once, where the RPC answers.
//!
//! Why Redis errors are split: UNAVAILABLE tells clients to retry, which only helps when Redis was
//! down or busy for a moment. An error Redis answered to the command itself (a malformed argument,
//! a key of the wrong type) comes back the same on every retry; reported as UNAVAILABLE it would
//! have clients retry forever and page whoever watches Redis availability. The split is by error
//! kind and code (`QueueError::is_unavailable`), never by message text.
use ncy_queue::QueueError;
use ncy_types::ValidationError;
use tonic::Status;

/// What can go wrong serving a JobService call.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// The request was rejected before anything was written; names the field (as ncy-types or
    /// the engine name it: camelCase is turned into the proto field on the way out).
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The job engine refused or failed (its own bad input, a missing object, Redis).
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// No pub/sub subscription for the job events could be made in time.
    #[error("timed out subscribing to the job events")]
    SubscribeTimedOut,
    /// The engine has no connection to subscribe with (a Redis it cannot watch).
    #[error("watching needs a pub/sub connection")]
    NoPubSub,
    /// The pub/sub connection a watch was fed by broke.
    #[error("redis connection lost; watch again")]
    WatchLost,
    /// The instance is draining; the watch can go on at another one.
    #[error("the job scheduler is shutting down; watch again")]
    ShuttingDown,
    /// A watcher did not read its stream, and was dropped rather than hold up the others.
    #[error("the watcher did not keep up with the job's events")]
    WatcherTooSlow,
    /// A broken invariant of this service (the message is what clients have always been sent).
    #[error("{0}")]
    Internal(&'static str),
}

/// A Redis error met outside the engine's calls (the watch's pub/sub connection) is judged the
/// way the engine judges its own: by kind and code.
impl From<redis::RedisError> for SchedulerError {
    fn from(e: redis::RedisError) -> Self {
        Self::Queue(QueueError::Redis(e))
    }
}

impl From<SchedulerError> for Status {
    fn from(err: SchedulerError) -> Self {
        match err {
            SchedulerError::Invalid(v) | SchedulerError::Queue(QueueError::Invalid(v)) => {
                Status::invalid_argument(format!("{}: {}", proto_field(&v.field), v.message))
            }
            SchedulerError::Queue(e) => queue_status(e),
            e @ (SchedulerError::SubscribeTimedOut
            | SchedulerError::NoPubSub
            | SchedulerError::WatchLost
            | SchedulerError::ShuttingDown) => Status::unavailable(e.to_string()),
            e @ SchedulerError::WatcherTooSlow => Status::resource_exhausted(e.to_string()),
            SchedulerError::Internal(m) => {
                tracing::error!(error = m, "internal error");
                Status::internal(m)
            }
        }
    }
}

/// The status of an engine error other than bad input.
fn queue_status(err: QueueError) -> Status {
    match err {
        QueueError::Invalid(v) => SchedulerError::Invalid(v).into(),
        QueueError::NotFound(what) => Status::not_found(format!("{what} not found")),
        QueueError::FailedPrecondition(m) => Status::failed_precondition(m),
        QueueError::Redis(_) | QueueError::Pool(_) if err.is_unavailable() => {
            tracing::warn!(error = %err, "redis unavailable");
            Status::unavailable("redis is unavailable; retry with backoff")
        }
        QueueError::Redis(_) | QueueError::Pool(_) => {
            tracing::error!(error = %err, "redis refused a command");
            Status::internal("internal error")
        }
        QueueError::Corrupt(_) => {
            tracing::error!(error = %err, "corrupt job data");
            Status::internal("internal error")
        }
    }
}

/// ncy-types names JSON fields in camelCase (`payload.to`, `jobType`, `delayMs`); the gRPC contract
/// names them by proto field (`payload_json.to`, `job_type`, `delay_ms`).
pub fn proto_field(field: &str) -> String {
    let (head, rest) = match field.find(['.', '[']) {
        Some(i) => field.split_at(i),
        None => (field, ""),
    };
    let head = match head {
        "payload" => "payload_json".to_owned(),
        other => {
            let mut out = String::new();
            for c in other.chars() {
                if c.is_ascii_uppercase() {
                    out.push('_');
                    out.push(c.to_ascii_lowercase());
                } else {
                    out.push(c);
                }
            }
            out
        }
    };
    format!("{head}{rest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(e: impl Into<SchedulerError>) -> Status {
        Status::from(e.into())
    }

    #[test]
    fn redis_answers_to_the_request_are_not_unavailable() {
        let refused = QueueError::Redis(redis::make_extension_error(
            "ERR".into(),
            Some("Invalid stream ID specified as stream command argument".into()),
        ));
        let refused = status(refused);
        assert_eq!(refused.code(), tonic::Code::Internal);
        assert_eq!(refused.message(), "internal error");
        let wrong_type = QueueError::Redis(redis::make_extension_error("WRONGTYPE".into(), None));
        assert_eq!(status(wrong_type).code(), tonic::Code::Internal);
        let down = redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        ));
        let down = status(down);
        assert_eq!(down.code(), tonic::Code::Unavailable);
        assert_eq!(down.message(), "redis is unavailable; retry with backoff");
        let loading = QueueError::Redis(redis::make_extension_error("LOADING".into(), None));
        assert_eq!(status(loading).code(), tonic::Code::Unavailable);
        assert_eq!(
            status(QueueError::Pool(ncy_runtime::RuntimeError::Redis(
                "timed out".into()
            )))
            .code(),
            tonic::Code::Unavailable
        );
    }

    #[test]
    fn every_error_keeps_its_code_and_message() {
        let invalid = status(ValidationError::new("payload.to", "is required"));
        assert_eq!(invalid.code(), tonic::Code::InvalidArgument);
        assert_eq!(invalid.message(), "payload_json.to: is required");
        let engine_invalid = status(QueueError::Invalid(ValidationError::new("delayMs", "bad")));
        assert_eq!(engine_invalid.code(), tonic::Code::InvalidArgument);
        assert_eq!(engine_invalid.message(), "delay_ms: bad");
        let missing = status(QueueError::NotFound("job email.1".into()));
        assert_eq!(missing.code(), tonic::Code::NotFound);
        assert_eq!(missing.message(), "job email.1 not found");
        let state = status(QueueError::FailedPrecondition("job is completed".into()));
        assert_eq!(state.code(), tonic::Code::FailedPrecondition);
        assert_eq!(state.message(), "job is completed");
        let corrupt = status(QueueError::Corrupt("hash".into()));
        assert_eq!(corrupt.code(), tonic::Code::Internal);
        assert_eq!(corrupt.message(), "internal error");
        for (e, code, message) in [
            (
                SchedulerError::SubscribeTimedOut,
                tonic::Code::Unavailable,
                "timed out subscribing to the job events",
            ),
            (
                SchedulerError::NoPubSub,
                tonic::Code::Unavailable,
                "watching needs a pub/sub connection",
            ),
            (
                SchedulerError::WatchLost,
                tonic::Code::Unavailable,
                "redis connection lost; watch again",
            ),
            (
                SchedulerError::ShuttingDown,
                tonic::Code::Unavailable,
                "the job scheduler is shutting down; watch again",
            ),
            (
                SchedulerError::WatcherTooSlow,
                tonic::Code::ResourceExhausted,
                "the watcher did not keep up with the job's events",
            ),
            (
                SchedulerError::Internal("empty enqueue reply"),
                tonic::Code::Internal,
                "empty enqueue reply",
            ),
        ] {
            let s = status(e);
            assert_eq!((s.code(), s.message()), (code, message));
        }
    }

    #[test]
    fn fields_use_proto_names() {
        assert_eq!(proto_field("payload.to"), "payload_json.to");
        assert_eq!(proto_field("payload"), "payload_json");
        assert_eq!(proto_field("jobType"), "job_type");
        assert_eq!(proto_field("delayMs"), "delay_ms");
        assert_eq!(proto_field("payload.cc[1]"), "payload_json.cc[1]");
        assert_eq!(proto_field("jobs[2].payload.to"), "jobs[2].payload.to");
    }
}
