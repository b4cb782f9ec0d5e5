//! What runs a job: the [`Processor`] trait, the context a processor gets (payload, attempt,
//! cancellation token, progress reporting), and the registry of processors by job type.
//!
//! The engine's own types: `noop` (always), and the test-only `sleep` and `fail` (when
//! `NCY_JOBS_TEST_JOB_TYPES` is on). The domain processors, one module each (email, notification,
//! report, cleanup, backup), are registered by [`register_domain`].
//!
//! A job whose type has no processor on this worker is failed NON-RETRYABLY into the dead-letter
//! queue with the error `no processor for job type "<t>" on this worker`: it is neither lost nor
//! looping, the operator sees it, and `RetryDeadLetter` runs it again once a worker has the processor.
//! (Leaving it for another worker would need per-type routing the queues do not have: jobs of one
//! queue share its streams.)
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use ncy_queue::{Engine, FetchedJob};
use ncy_types::jobs::QueueName;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub mod backup;
mod builtin;
pub mod cleanup;
pub mod email;
pub mod notification;
pub mod report;
pub mod templates;

use crate::Settings;
use crate::job_updates::{JobUpdates, Update};
use crate::notify::Notifier;
use ncy_runtime::RuntimeError;

pub use builtin::{FailProcessor, NoopProcessor, SleepProcessor};

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

/// The outcome of one attempt: an optional JSON result, or an error.
pub type JobResult = Result<Option<Value>, JobError>;

/// A boxed processor future.
pub type ProcessFuture = Pin<Box<dyn Future<Output = JobResult> + Send + 'static>>;

/// Runs jobs of one type.
pub trait Processor: Send + Sync + 'static {
    /// Runs one attempt. Should stop early (returning any error) when `ctx.cancel` fires.
    fn process(&self, ctx: JobContext) -> ProcessFuture;
}

/// What a processor gets.
#[derive(Clone)]
pub struct JobContext {
    pub job: FetchedJob,
    pub queue: QueueName,
    /// Payload as JSON.
    pub payload: Value,
    /// Fires when CancelJob asked this job to stop.
    pub cancel: CancellationToken,
    pub(crate) engine: Engine,
    pub(crate) consumer: String,
    pub(crate) updates: JobUpdates,
}

impl JobContext {
    /// Reports progress (0–100) with a message: stored on the job, streamed by WatchJob, and
    /// published to the owner's browser ([`crate::job_updates`]). Also notices a cancel request early.
    pub async fn progress(&self, percent: u8, message: &str) {
        match self
            .engine
            .progress(self.queue, &self.consumer, &self.job.id, percent, message)
            .await
        {
            Ok(Some(true)) => self.cancel.cancel(),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(job_id = %self.job.id, error = %e, "cannot report progress");
                return;
            }
        }
        let update = Update::Progress {
            percent: percent.min(100),
            message,
        };
        self.updates.publish(self.queue, &self.job, update).await;
    }
}

/// Processors by job type.
#[derive(Clone, Default)]
pub struct Registry {
    by_type: HashMap<String, Arc<dyn Processor>>,
}

impl Registry {
    /// The engine's own processors: `noop`, plus `sleep` and `fail` when `test_types`.
    pub fn builtin(test_types: bool) -> Self {
        let mut r = Self::default();
        r.register("noop", NoopProcessor);
        if test_types {
            r.register("sleep", SleepProcessor);
            r.register("fail", FailProcessor);
        }
        r
    }

    /// Adds (or replaces) the processor of `job_type`.
    pub fn register(&mut self, job_type: &str, p: impl Processor) {
        self.by_type.insert(job_type.to_owned(), Arc::new(p));
    }

    /// The processor of `job_type`, if this worker has one.
    pub fn get(&self, job_type: &str) -> Option<Arc<dyn Processor>> {
        self.by_type.get(job_type).cloned()
    }
}

/// Registers the domain processors (email, notification, report, cleanup, backup) with what they
/// need: their settings and the [`Notifier`]. Fails on a setting that can only be checked here.
pub fn register_domain(
    registry: &mut Registry,
    settings: &Settings,
    notifier: &Notifier,
) -> Result<(), RuntimeError> {
    // Email, notification, cleanup.
    let mailer = email::Mailer::new(&settings.email)
        .map_err(|e| RuntimeError::Io(std::io::Error::other(format!("NCY_SMTP_URL: {e}"))))?;
    let mailer = Arc::new(mailer);
    registry.register("send-email", email::SendEmailProcessor(mailer.clone()));
    registry.register("send-welcome-email", email::WelcomeEmailProcessor(mailer));
    registry.register(
        "send-notification",
        notification::NotificationProcessor {
            notifier: notifier.clone(),
        },
    );
    registry.register(
        "cleanup-old-data",
        cleanup::CleanupProcessor {
            settings: settings.cleanup,
            postgres: notifier.postgres.clone(),
        },
    );
    // Reports and backups: both write to the file store.
    let files = crate::files::FileStore::open(&settings.files)
        .map_err(|e| RuntimeError::Io(std::io::Error::other(e.to_string())))?;
    registry.register(
        "generate-report",
        report::ReportProcessor {
            settings: settings.reports.clone(),
            files: files.clone(),
            notifier: notifier.clone(),
        },
    );
    registry.register(
        "backup-database",
        backup::BackupProcessor {
            settings: settings.backup.clone(),
            files,
            database_url: settings.common.postgres.as_ref().map(|p| p.url.clone()),
        },
    );
    Ok(())
}
