//! The one place engine errors become gRPC statuses: bad input → INVALID_ARGUMENT naming the field
//! (proto field names), NOT_FOUND, FAILED_PRECONDITION, Redis trouble → UNAVAILABLE (details logged,
//! not leaked).
use ncy_queue::QueueError;
use ncy_types::ValidationError;
use tonic::Status;

/// Converts an engine error into the status a client sees.
pub fn status(err: QueueError) -> Status {
    match err {
        QueueError::Invalid(v) => invalid(v),
        QueueError::NotFound(what) => Status::not_found(format!("{what} not found")),
        QueueError::FailedPrecondition(m) => Status::failed_precondition(m),
        QueueError::Redis(_) | QueueError::Pool(_) => {
            tracing::warn!(error = %err, "redis unavailable");
            Status::unavailable("redis is unavailable; retry with backoff")
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
    fn fields_use_proto_names() {
        assert_eq!(proto_field("payload.to"), "payload_json.to");
        assert_eq!(proto_field("payload"), "payload_json");
        assert_eq!(proto_field("jobType"), "job_type");
        assert_eq!(proto_field("delayMs"), "delay_ms");
        assert_eq!(proto_field("payload.cc[1]"), "payload_json.cc[1]");
        assert_eq!(proto_field("jobs[2].payload.to"), "jobs[2].payload.to");
    }
}
