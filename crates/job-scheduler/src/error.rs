//! The one place engine errors become gRPC statuses: bad input → INVALID_ARGUMENT naming the field
//! (proto field names), NOT_FOUND, FAILED_PRECONDITION, Redis unreachable or not ready →
//! UNAVAILABLE (retry with backoff), any other Redis answer → INTERNAL (details logged, not leaked).
//!
//! Why Redis errors are split: UNAVAILABLE tells clients to retry, which only helps when Redis was
//! down or busy for a moment. An error Redis answered to the command itself (a malformed argument,
//! a key of the wrong type) comes back the same on every retry; reported as UNAVAILABLE it would
//! have clients retry forever and page whoever watches Redis availability. The split is by error
//! kind and code (`QueueError::is_unavailable`), never by message text.
use ncy_queue::QueueError;
use ncy_types::ValidationError;
use tonic::Status;

/// Converts an engine error into the status a client sees.
pub fn status(err: QueueError) -> Status {
    match err {
        QueueError::Invalid(v) => invalid(v),
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

/// INVALID_ARGUMENT whose message starts with the proto field path.
pub fn invalid(v: ValidationError) -> Status {
    Status::invalid_argument(format!("{}: {}", proto_field(&v.field), v.message))
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

    #[test]
    fn redis_answers_to_the_request_are_not_unavailable() {
        let refused = QueueError::Redis(redis::make_extension_error(
            "ERR".into(),
            Some("Invalid stream ID specified as stream command argument".into()),
        ));
        assert_eq!(status(refused).code(), tonic::Code::Internal);
        let wrong_type = QueueError::Redis(redis::make_extension_error("WRONGTYPE".into(), None));
        assert_eq!(status(wrong_type).code(), tonic::Code::Internal);
        let down = QueueError::Redis(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        )));
        let down = status(down);
        assert_eq!(down.code(), tonic::Code::Unavailable);
        assert_eq!(down.message(), "redis is unavailable; retry with backoff");
        let loading = QueueError::Redis(redis::make_extension_error("LOADING".into(), None));
        assert_eq!(status(loading).code(), tonic::Code::Unavailable);
        assert_eq!(
            status(QueueError::Pool("timed out".into())).code(),
            tonic::Code::Unavailable
        );
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
