//! The processors of this worker by [`JobType`], and the one place where a job's stored payload
//! becomes the typed payload of its processor.
//!
//! Processors differ in their payload type, so the registry holds each behind an object-safe
//! adapter ([`ErasedProcessor`], implemented for every [`Processor`]): it decodes the job's stored
//! JSON into `P::Payload` and only then calls the processor, so no processor decodes JSON itself.
//! A payload that does not decode fails the job NON-retryably: the scheduler validated it at
//! enqueue, and no retry makes it decode. The error is `stored payload is not JSON: …` or
//! `bad <type> payload: …`, as the dead letters of earlier versions say.
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use ncy_types::jobs::JobType;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{
    FailProcessor, JobContext, JobError, JobResult, NoopProcessor, Processor, SleepProcessor,
};

/// One attempt of a processor, boxed: the registry's processors differ in type.
pub(crate) type ProcessFuture = Pin<Box<dyn Future<Output = JobResult> + Send + 'static>>;

/// A [`Processor`] whatever its payload type: what the runner calls.
pub(crate) trait ErasedProcessor: Send + Sync + 'static {
    /// Decodes the payload of `ctx.job` and runs one attempt with it.
    fn start(self: Arc<Self>, ctx: JobContext) -> ProcessFuture;
}

impl<P: Processor> ErasedProcessor for P {
    fn start(self: Arc<Self>, ctx: JobContext) -> ProcessFuture {
        Box::pin(async move {
            let payload = decode::<P::Payload>(P::JOB_TYPE, &ctx.job.data)?;
            self.process(ctx, payload).await
        })
    }
}

/// Decodes `data`, a job's stored payload, as the payload of `job_type`. In two steps, text to
/// JSON then JSON to the type, so that the two failures are told apart and worded without the
/// text's line and column, as they always were.
fn decode<T: DeserializeOwned>(job_type: JobType, data: &str) -> Result<T, JobError> {
    let value: Value = serde_json::from_str(data)
        .map_err(|e| JobError::fatal(format!("stored payload is not JSON: {e}")))?;
    serde_json::from_value(value)
        .map_err(|e| JobError::fatal(format!("bad {job_type} payload: {e}")))
}

/// Processors by job type.
#[derive(Clone, Default)]
pub struct Registry {
    by_type: HashMap<JobType, Arc<dyn ErasedProcessor>>,
}

impl Registry {
    /// The engine's own processors: `noop`, plus `sleep` and `fail` when `test_types`
    /// (`NCY_JOBS_TEST_JOB_TYPES`).
    pub fn builtin(test_types: bool) -> Self {
        let mut r = Self::default();
        r.register(NoopProcessor);
        if test_types {
            r.register(SleepProcessor);
            r.register(FailProcessor);
        }
        r
    }

    /// Adds (or replaces) the processor of `P::JOB_TYPE`.
    pub fn register<P: Processor>(&mut self, processor: P) {
        self.by_type.insert(P::JOB_TYPE, Arc::new(processor));
    }

    /// The job types this worker has a processor for, in [`JobType::ALL`] order.
    pub fn job_types(&self) -> Vec<JobType> {
        JobType::ALL
            .iter()
            .copied()
            .filter(|t| self.by_type.contains_key(t))
            .collect()
    }

    /// The processor of `job_type`, if this worker has one.
    pub(crate) fn get(&self, job_type: JobType) -> Option<Arc<dyn ErasedProcessor>> {
        self.by_type.get(&job_type).cloned()
    }
}

#[cfg(test)]
mod tests {
    use ncy_types::jobs::NotificationJobData;

    use super::*;

    #[test]
    fn a_payload_is_decoded_into_its_type_or_fails_for_good() {
        let ok: NotificationJobData = decode(
            JobType::SendNotification,
            r#"{"userId":"u","type":"T","message":"hi"}"#,
        )
        .expect("decodes");
        assert_eq!((ok.user_id.as_str(), ok.message.as_str()), ("u", "hi"));

        let bad = decode::<NotificationJobData>(JobType::SendNotification, r#"{"userId":"u"}"#)
            .expect_err("missing fields");
        assert_eq!(
            bad,
            JobError::fatal("bad send-notification payload: missing field `type`")
        );

        let text =
            decode::<NotificationJobData>(JobType::SendNotification, "{").expect_err("not JSON");
        assert!(!text.retryable);
        assert!(
            text.message.starts_with("stored payload is not JSON: "),
            "{}",
            text.message
        );
    }

    #[test]
    fn the_test_types_are_registered_only_when_enabled() {
        assert_eq!(Registry::builtin(false).job_types(), [JobType::Noop]);
        assert_eq!(
            Registry::builtin(true).job_types(),
            [JobType::Noop, JobType::Sleep, JobType::Fail]
        );
        let mut r = Registry::builtin(false);
        r.register(FailProcessor);
        assert!(r.get(JobType::Fail).is_some());
        assert!(r.get(JobType::Sleep).is_none());
    }
}
