//! The engine's own job types: `noop` (benchmarks, smoke tests), and the test-only `sleep` (a long
//! job that reports progress and honours cancellation) and `fail` (fails, non-retryably if asked, or
//! panics — how tests check that a panicking processor fails the job and the worker goes on).
use std::time::Duration;

use ncy_types::jobs::{FailJobData, JobType, SleepJobData};
use serde::de::IgnoredAny;
use serde_json::json;

use super::{JobContext, JobError, JobResult, Processor};

/// `noop`: succeeds at once, whatever its payload (which it does not look at).
#[derive(Debug, Clone, Copy)]
pub struct NoopProcessor;

impl Processor for NoopProcessor {
    const JOB_TYPE: JobType = JobType::Noop;
    type Payload = IgnoredAny;

    async fn process(&self, _ctx: JobContext, _payload: IgnoredAny) -> JobResult {
        Ok(None)
    }
}

/// `sleep {ms}`: waits in ten steps, reporting progress after each, stopping when cancelled.
#[derive(Debug, Clone, Copy)]
pub struct SleepProcessor;

impl Processor for SleepProcessor {
    const JOB_TYPE: JobType = JobType::Sleep;
    type Payload = SleepJobData;

    async fn process(&self, ctx: JobContext, data: SleepJobData) -> JobResult {
        let step = Duration::from_millis(data.ms / 10);
        for i in 1..=10u8 {
            tokio::select! {
                () = ctx.cancel.cancelled() => return Err(JobError::fatal("cancelled")),
                () = tokio::time::sleep(step) => {}
            }
            ctx.progress(i * 10, &format!("slept {}%", i * 10)).await;
        }
        Ok(Some(json!({"sleptMs": data.ms})))
    }
}

/// `fail {message, retryable, panic, failAttempts}`.
#[derive(Debug, Clone, Copy)]
pub struct FailProcessor;

impl Processor for FailProcessor {
    const JOB_TYPE: JobType = JobType::Fail;
    type Payload = FailJobData;

    async fn process(&self, ctx: JobContext, data: FailJobData) -> JobResult {
        if data.fail_attempts.is_some_and(|n| ctx.job.attempt > n) {
            return Ok(Some(json!({"succeededOnAttempt": ctx.job.attempt})));
        }
        let message = data
            .message
            .unwrap_or_else(|| "failed on purpose".to_owned());
        if data.panic == Some(true) {
            panic!("{message}");
        }
        if data.retryable == Some(false) {
            Err(JobError::fatal(message))
        } else {
            Err(JobError::retryable(message))
        }
    }
}
