//! The engine's own job types: `noop` (benchmarks, smoke tests), and the test-only `sleep` (a long
//! job that reports progress and honours cancellation) and `fail` (fails, non-retryably if asked, or
//! panics — how tests check that a panicking processor fails the job and the worker goes on).
use std::time::Duration;

use ncy_types::jobs::{FailJobData, SleepJobData};
use serde_json::json;

use super::{JobContext, JobError, ProcessFuture, Processor};

/// `noop`: succeeds at once.
#[derive(Debug, Clone, Copy)]
pub struct NoopProcessor;

impl Processor for NoopProcessor {
    fn process(&self, _ctx: JobContext) -> ProcessFuture {
        Box::pin(async { Ok(None) })
    }
}

/// `sleep {ms}`: waits in ten steps, reporting progress after each, stopping when cancelled.
#[derive(Debug, Clone, Copy)]
pub struct SleepProcessor;

impl Processor for SleepProcessor {
    fn process(&self, ctx: JobContext) -> ProcessFuture {
        Box::pin(async move {
            let data: SleepJobData = serde_json::from_value(ctx.payload.clone())
                .map_err(|e| JobError::fatal(format!("bad sleep payload: {e}")))?;
            let step = Duration::from_millis(data.ms / 10);
            for i in 1..=10u8 {
                tokio::select! {
                    () = ctx.cancel.cancelled() => return Err(JobError::fatal("cancelled")),
                    () = tokio::time::sleep(step) => {}
                }
                ctx.progress(i * 10, &format!("slept {}%", i * 10)).await;
            }
            Ok(Some(json!({"sleptMs": data.ms})))
        })
    }
}

/// `fail {message, retryable, panic, failAttempts}`.
#[derive(Debug, Clone, Copy)]
pub struct FailProcessor;

impl Processor for FailProcessor {
    fn process(&self, ctx: JobContext) -> ProcessFuture {
        Box::pin(async move {
            let data: FailJobData = serde_json::from_value(ctx.payload.clone())
                .map_err(|e| JobError::fatal(format!("bad fail payload: {e}")))?;
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
        })
    }
}
