//! Why an attempt failed ([`JobError`]): retryable or not, and whether a dependency was down
//! ([`Dependency`]), which the runner turns into a postponement instead of a used attempt
//! ([`crate::outages`]). The constructors classify the errors of the crates processors call
//! (store, queue, file store) by their types, so each processor does not decide it again.

/// A service a job needs whose outage is not the job's fault. The names are the
/// `dependency` label of `queue_jobs_postponed_total`: a fixed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dependency {
    /// The SMTP server of the email processors.
    Smtp,
    /// The platform's PostgreSQL.
    Postgres,
    /// Redis (the queues themselves, the room bus).
    Redis,
    /// The file store of reports and backups when it is remote (S3): a local directory is
    /// never down, only misconfigured or full.
    ObjectStore,
}

impl Dependency {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Dependency::Smtp => "smtp",
            Dependency::Postgres => "postgres",
            Dependency::Redis => "redis",
            Dependency::ObjectStore => "object_store",
        }
    }
}

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    pub message: String,
    /// False: go to the dead-letter queue now, whatever attempts remain.
    pub retryable: bool,
    /// Set when the attempt failed because this dependency is down, not because of the job: while
    /// the outage is younger than the grace period the runner postpones the job without using an
    /// attempt ([`crate::outages`]); after it, this is an ordinary retryable failure.
    pub unavailable: Option<Dependency>,
}

impl JobError {
    /// A failure worth retrying (per the job's attempts and backoff).
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
            unavailable: None,
        }
    }

    /// A failure no retry can fix (bad data, unknown type).
    pub fn fatal(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
            unavailable: None,
        }
    }

    /// An outage of `dependency` (unreachable, not answering, refusing everyone for now): the job
    /// itself is fine and would succeed once the dependency is back.
    pub fn unavailable(dependency: Dependency, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
            unavailable: Some(dependency),
        }
    }

    /// A database error: an outage of PostgreSQL when [`ncy_store::StoreError::is_unavailable`]
    /// (told by the error's kind and SQLSTATE), else an ordinary retryable failure.
    pub fn database(message: impl Into<String>, e: &ncy_store::StoreError) -> Self {
        if e.is_unavailable() {
            Self::unavailable(Dependency::Postgres, message)
        } else {
            Self::retryable(message)
        }
    }

    /// A job engine (Redis) error: an outage of Redis when [`ncy_queue::QueueError::is_unavailable`],
    /// else an ordinary retryable failure.
    pub fn redis(message: impl Into<String>, e: &ncy_queue::QueueError) -> Self {
        if e.is_unavailable() {
            Self::unavailable(Dependency::Redis, message)
        } else {
            Self::retryable(message)
        }
    }

    /// A file store error, with its message (which names the store): an outage of the object
    /// store when [`crate::files::FileStoreError::is_unavailable`] (told by the cause's types),
    /// else an ordinary retryable failure.
    pub fn file_store(e: &crate::files::FileStoreError) -> Self {
        if e.is_unavailable() {
            Self::unavailable(Dependency::ObjectStore, e.to_string())
        } else {
            Self::retryable(e.to_string())
        }
    }
}
