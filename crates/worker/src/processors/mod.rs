//! What runs a job: the [`Processor`] trait (a job type, its typed payload, one attempt), the
//! context a processor gets (the job, its cancellation token, progress reporting), and the
//! [`Registry`] of processors by [`JobType`].
//!
//! The engine's own types: `noop` (always), and the test-only `sleep` and `fail` (when
//! `NCY_JOBS_TEST_JOB_TYPES` is on). The domain processors, one module each (email, notification,
//! report, cleanup, backup), are registered by [`register_domain`], one line each.
//!
//! Adding a job type: its [`JobType`] variant and payload struct in `ncy-types` (`jobs/mod.rs`,
//! `jobs/payloads.rs`, its arm in `jobs/parse.rs`), one processor module here implementing
//! [`Processor`] with that payload (`notification.rs` is the smallest), and one
//! `registry.register(…)` in [`register_domain`].
//!
//! A job whose type has no processor on this worker is failed NON-RETRYABLY into the dead-letter
//! queue with the error `no processor for job type "<t>" on this worker`: it is neither lost nor
//! looping, the operator sees it, and `RetryDeadLetter` runs it again once a worker has the processor.
//! (Leaving it for another worker would need per-type routing the queues do not have: jobs of one
//! queue share its streams.)
use std::future::Future;
use std::sync::Arc;

use ncy_queue::{Engine, FetchedJob};
use ncy_runtime::RuntimeError;
use ncy_types::jobs::{JobType, QueueName};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub mod backup;
mod builtin;
pub mod cleanup;
pub mod email;
mod error;
pub mod notification;
mod registry;
pub mod report;
pub mod templates;

use crate::Settings;
use crate::job_updates::{JobUpdates, Update};
use crate::notify::Notifier;

pub use builtin::{FailProcessor, NoopProcessor, SleepProcessor};
pub use error::{Dependency, JobError};
pub use registry::Registry;

/// The outcome of one attempt: an optional JSON result, or an error.
pub type JobResult = Result<Option<Value>, JobError>;

/// Runs jobs of one type. Registered with [`Registry::register`] under [`Processor::JOB_TYPE`];
/// the registry decodes each job's stored payload into [`Processor::Payload`] once, before
/// [`Processor::process`] runs, and a payload that does not decode fails the job non-retryably
/// (`bad <type> payload: …`) without reaching the processor.
pub trait Processor: Send + Sync + 'static {
    /// The job type this processor runs: its key in the [`Registry`].
    const JOB_TYPE: JobType;

    /// The job's payload: the type of `ncy_types::jobs::payloads` the scheduler validated it as.
    type Payload: DeserializeOwned + Send + 'static;

    /// Runs one attempt. Should stop early (returning any error) when `ctx.cancel` fires.
    fn process(
        &self,
        ctx: JobContext,
        payload: Self::Payload,
    ) -> impl Future<Output = JobResult> + Send;
}

/// What a processor gets besides its payload.
#[derive(Clone)]
pub struct JobContext {
    /// The job as fetched: id, attempt, owner (and the payload's stored text, already decoded).
    pub job: FetchedJob,
    pub queue: QueueName,
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

/// Registers the domain processors (email, notification, report, cleanup, backup) with what they
/// need: their settings and the [`Notifier`]. Fails on a setting that can only be checked here.
pub fn register_domain(
    registry: &mut Registry,
    settings: &Settings,
    notifier: &Notifier,
) -> Result<(), RuntimeError> {
    let mailer = email::Mailer::new(&settings.email)
        .map_err(|e| RuntimeError::Io(std::io::Error::other(format!("NCY_SMTP_URL: {e}"))))?;
    let mailer = Arc::new(mailer);
    // Reports and backups both write to the file store.
    let files = crate::files::FileStore::open(&settings.files)
        .map_err(|e| RuntimeError::Io(std::io::Error::other(e.to_string())))?;

    registry.register(email::SendEmailProcessor(mailer.clone()));
    registry.register(email::WelcomeEmailProcessor(mailer));
    registry.register(notification::NotificationProcessor {
        notifier: notifier.clone(),
    });
    registry.register(cleanup::CleanupProcessor {
        settings: settings.cleanup,
        postgres: notifier.postgres.clone(),
    });
    registry.register(report::ReportProcessor {
        settings: settings.reports.clone(),
        files: files.clone(),
        notifier: notifier.clone(),
    });
    registry.register(backup::BackupProcessor {
        settings: settings.backup.clone(),
        files,
        database_url: settings.common.postgres.as_ref().map(|p| p.url.clone()),
    });
    Ok(())
}
