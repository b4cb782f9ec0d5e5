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
    /// No connection could be had from the pool (the runtime's error, kept as the source).
    #[error("redis pool: {0}")]
    Pool(#[from] ncy_runtime::RuntimeError),
    /// Redis held something this version cannot read (never trusted blindly, never a panic).
    #[error("corrupt data in redis: {0}")]
    Corrupt(String),
}

impl QueueError {
    /// Whether Redis lost the consumer group (e.g. restarted without persistence), so the caller
    /// re-creates the groups and carries on. Told by the error code, in a pipeline's or a script's
    /// reply too.
    pub fn is_no_group(&self) -> bool {
        matches!(self, QueueError::Redis(e) if server_codes(e).iter().any(|c| c == "NOGROUP"))
    }

    /// Whether the failure is Redis being unreachable or not ready (retrying later can succeed):
    /// no connection, I/O error or timeout, a cluster moving or failing over, a server loading
    /// its data, busy with a script, out of memory, or having lost the consumer group. Told by
    /// the error's kind and code, never its text. Anything else Redis answered (a command it
    /// refused, a reply of the wrong type) is not: retrying the same request gets the same answer.
    pub fn is_unavailable(&self) -> bool {
        match self {
            QueueError::Pool(_) => true,
            QueueError::Redis(e) => redis_unavailable(e),
            _ => false,
        }
    }
}

/// Error codes Redis answers while unavailable for a moment: loading its data, a cluster moving,
/// failing over or down, busy with a script, out of memory, unable to persist, the consumer group
/// lost (re-created by the next maintenance pass).
const TRANSIENT_CODES: [&str; 11] = [
    "LOADING",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "MASTERDOWN",
    "MOVED",
    "ASK",
    "READONLY",
    "BUSY",
    "OOM",
    "MISCONF",
    "NOGROUP",
];

fn redis_unavailable(e: &redis::RedisError) -> bool {
    use redis::RetryMethod;
    if server_codes(e)
        .iter()
        .any(|c| TRANSIENT_CODES.contains(&c.as_str()))
    {
        return true;
    }
    match e.kind() {
        redis::ErrorKind::Io
        | redis::ErrorKind::ClusterConnectionNotFound
        | redis::ErrorKind::AuthenticationFailed => true,
        _ => !matches!(e.retry_method(), RetryMethod::NoRetry),
    }
}

/// The codes of the server errors in `e` (one, or one per failed command of a pipeline).
fn server_codes(e: &redis::RedisError) -> Vec<String> {
    let mut codes: Vec<String> = e.code().map(str::to_owned).into_iter().collect();
    if let Some(errors) = e.clone().into_server_errors() {
        codes.extend(errors.iter().map(|(_, s)| s.code().to_owned()));
    }
    codes
}

/// Shorthand.
pub type Result<T, E = QueueError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: &str, detail: &str) -> QueueError {
        QueueError::Redis(redis::make_extension_error(
            code.to_owned(),
            Some(detail.to_owned()),
        ))
    }

    #[test]
    fn unavailable_is_told_by_kind_and_code() {
        let io = redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        ));
        assert!(QueueError::Redis(io).is_unavailable());
        let timeout =
            redis::RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, "slow"));
        assert!(QueueError::Redis(timeout).is_unavailable());
        let pool = ncy_runtime::RuntimeError::Redis("no connection".into());
        assert!(QueueError::from(pool).is_unavailable());
        for code in [
            "LOADING",
            "TRYAGAIN",
            "CLUSTERDOWN",
            "MASTERDOWN",
            "BUSY",
            "NOGROUP",
        ] {
            assert!(server(code, "x").is_unavailable(), "{code}");
        }
        assert!(server("NOGROUP", "No such key").is_no_group());
        // Answers to the request itself: the same request fails the same way again.
        for code in ["ERR", "WRONGTYPE", "NOPERM", "EXECABORT", "CROSSSLOT"] {
            let e = server(
                code,
                "Invalid stream ID specified as stream command argument",
            );
            assert!(!e.is_unavailable(), "{code}");
            assert!(!e.is_no_group(), "{code}");
        }
        assert!(!QueueError::NotFound("job".into()).is_unavailable());
    }
}
