//! The worker loop of one queue: fetch in batches up to the free concurrency, run each job in its
//! own task, record the outcome ([`crate::outcome`]), heartbeat the in-flight jobs, reclaim
//! abandoned ones.
//!
//! Why this shape:
//! - Idle, the loop parks in `XREADGROUP BLOCK` on a dedicated connection (no polling); the entry it
//!   reads is activated by the next fetch script call.
//! - Busy, one fetch claims as many jobs as there are free slots (COUNT n) in one round trip.
//! - A job's slot is free as soon as its processor returns; its outcome goes to the runner's
//!   completer, which records everything that finished meanwhile in one script call (group
//!   commit, `completer.rs`), so the next fetch and the last completions travel side by side.
//! - A job is acknowledged only by the complete/fail script after its processor returned, so a
//!   SIGKILL leaves it pending; another worker's reclaim (XAUTOCLAIM after the visibility timeout)
//!   runs it again. The heartbeat keeps a long job's entry fresh so it is not stolen while alive.
//! - Every Redis error is retried with backoff: a Redis restart never ends the loop; a lost consumer
//!   group (`NOGROUP`) is re-created.
//! - A processor's panic is caught in its job's task (`catch_unwind`): it becomes a retryable
//!   failure and the worker goes on.
//! - An attempt that failed because a dependency is down is postponed without using an attempt
//!   while the outage is younger than the grace period ([`crate::outages`]).
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use metrics::SharedString;
use ncy_queue::{Engine, Fetched, FetchedJob, HeldJob, Preclaimed};
use ncy_types::jobs::{JobType, QueueName};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::alerts::Alerts;
use crate::completer::Completer;
use crate::job_updates::JobUpdates;
use crate::outages::Outages;
use crate::outcome::{record, tell_owner};
use crate::processors::{JobContext, JobError, Registry};

/// Where a runner reports outcomes: dead-letter alerts, job updates to the owner's browser, and
/// dependency outages (shared by the process's runners).
#[derive(Clone, Debug)]
pub struct Sinks {
    pub alerts: Alerts,
    pub updates: JobUpdates,
    pub outages: Arc<Outages>,
}

/// Knobs of a runner.
#[derive(Clone, Debug)]
pub struct RunnerConfig {
    pub queue: QueueName,
    pub consumer: String,
    pub concurrency: usize,
    pub batch: usize,
    pub block_ms: u64,
    pub heartbeat: Duration,
    pub reclaim_every: Duration,
}

/// A job this runner is running, by id: what its heartbeat sends and how to stop it.
#[derive(Debug)]
struct Running {
    /// The priority band whose stream holds its entry.
    band: u8,
    /// Its stream entry id.
    entry: String,
    /// Fires when CancelJob asks it to stop (delivered by the heartbeat).
    cancel: CancellationToken,
}

type InFlight = Arc<Mutex<HashMap<String, Running>>>;

/// Runs the queue until `stop`, then waits for in-flight jobs (the caller bounds the wait).
pub async fn run(
    engine: Engine,
    registry: Registry,
    sinks: Sinks,
    cfg: RunnerConfig,
    stop: CancellationToken,
) {
    let in_flight: InFlight = Arc::default();
    let beat_stop = CancellationToken::new();
    let beat = tokio::spawn(heartbeat(
        engine.clone(),
        cfg.clone(),
        in_flight.clone(),
        beat_stop.clone(),
    ));
    let (completer, completer_task) = Completer::start(engine.clone(), &cfg);
    let tracker = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(cfg.concurrency));
    let mut preclaimed: Vec<Preclaimed> = Vec::new();
    let mut blocking: Option<redis::aio::MultiplexedConnection> = None;
    let mut next_reclaim = Instant::now();
    let mut errors = 0u32;
    while !stop.is_cancelled() {
        let first = tokio::select! {
            () = stop.cancelled() => break,
            permit = slots.clone().acquire_owned() => match permit { Ok(p) => p, Err(_) => break },
        };
        let mut permits = vec![first];
        while permits.len() < cfg.batch {
            match slots.clone().try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        let reclaiming = Instant::now() >= next_reclaim;
        let got = if reclaiming {
            next_reclaim = Instant::now() + cfg.reclaim_every;
            engine
                .reclaim(cfg.queue, &cfg.consumer, permits.len())
                .await
                .map(Fetched::Jobs)
        } else {
            engine
                .fetch(cfg.queue, &cfg.consumer, permits.len(), &preclaimed)
                .await
        };
        let got = match got {
            Ok(got) => {
                if !reclaiming {
                    preclaimed.clear();
                }
                errors = 0;
                got
            }
            Err(e) => {
                drop(permits);
                errors = errors.saturating_add(1);
                if e.is_no_group() {
                    tracing::warn!(
                        queue = cfg.queue.as_str(),
                        "consumer group missing; re-creating"
                    );
                    let _ = engine.ensure_groups(cfg.queue).await;
                } else if errors == 1 || errors.is_multiple_of(50) {
                    tracing::warn!(queue = cfg.queue.as_str(), error = %e, "fetch failed; retrying");
                }
                blocking = None;
                pause(&stop, Duration::from_millis(50 * u64::from(errors.min(40)))).await;
                continue;
            }
        };
        match got {
            Fetched::Jobs(jobs) if !jobs.is_empty() => {
                for job in jobs {
                    let Some(permit) = permits.pop() else { break };
                    tracker.spawn(execute(
                        Runtime {
                            engine: engine.clone(),
                            registry: registry.clone(),
                            sinks: sinks.clone(),
                            cfg: cfg.clone(),
                            in_flight: in_flight.clone(),
                            completer: completer.clone(),
                        },
                        job,
                        permit,
                    ));
                }
            }
            Fetched::Jobs(_) if reclaiming => {}
            Fetched::Jobs(_) => {
                drop(permits);
                let wait_ms = cfg
                    .block_ms
                    .min(
                        u64::try_from(
                            next_reclaim
                                .saturating_duration_since(Instant::now())
                                .as_millis(),
                        )
                        .unwrap_or(0),
                    )
                    .max(1);
                if blocking.is_none() {
                    blocking = blocking_connection(&engine, &cfg).await;
                }
                let Some(conn) = blocking.as_mut() else {
                    pause(&stop, Duration::from_millis(wait_ms.min(200))).await;
                    continue;
                };
                tokio::select! {
                    () = stop.cancelled() => break,
                    read = engine.wait_for_jobs(conn, cfg.queue, &cfg.consumer, wait_ms) => match read {
                        Ok(entries) => preclaimed = entries,
                        Err(e) => {
                            if e.is_no_group() {
                                let _ = engine.ensure_groups(cfg.queue).await;
                            }
                            // Also after MOVED (a resharding): the next connection asks anew.
                            blocking = None;
                            pause(&stop, Duration::from_millis(100)).await;
                        }
                    },
                }
            }
            Fetched::Paused => {
                drop(permits);
                pause(&stop, Duration::from_millis(500)).await;
            }
            Fetched::RateLimited(ms) => {
                drop(permits);
                pause(&stop, Duration::from_millis(ms.clamp(1, 5_000))).await;
            }
        }
    }
    // Drain: fetch nothing more; in-flight jobs finish (heartbeats go on meanwhile). Entries read by a
    // blocking wait but not activated stay pending and are reclaimed by another worker.
    tracker.close();
    tracker.wait().await;
    drop(completer);
    let _ = completer_task.await;
    beat_stop.cancel();
    let _ = beat.await;
}

/// A dedicated connection for the blocking wait (on Redis Cluster, to the queue's primary), or
/// `None` when there is none yet (Redis down; the caller pauses and retries).
async fn blocking_connection(
    engine: &Engine,
    cfg: &RunnerConfig,
) -> Option<redis::aio::MultiplexedConnection> {
    let client = match engine.dedicated_client(cfg.queue).await {
        Ok(Some(client)) => client,
        Ok(None) => return None,
        Err(e) => {
            tracing::debug!(error = %e, "no node for the blocking connection yet");
            return None;
        }
    };
    let config = redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(Duration::from_millis(cfg.block_ms + 5_000)));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| tracing::debug!(error = %e, "blocking connection"))
        .ok()
}

async fn pause(stop: &CancellationToken, d: Duration) {
    tokio::select! {
        () = stop.cancelled() => {}
        () = tokio::time::sleep(d) => {}
    }
}

/// What a job task needs from its runner.
struct Runtime {
    engine: Engine,
    registry: Registry,
    sinks: Sinks,
    cfg: RunnerConfig,
    in_flight: InFlight,
    completer: Completer,
}

/// Runs one job in the slot `permit` holds, frees the slot, and records the outcome.
async fn execute(rt: Runtime, job: FetchedJob, permit: OwnedSemaphorePermit) {
    let Runtime {
        engine,
        registry,
        sinks,
        cfg,
        in_flight,
        completer,
    } = rt;
    let cancel = CancellationToken::new();
    if let Ok(mut m) = in_flight.lock() {
        let running = Running {
            band: job.band,
            entry: job.entry.clone(),
            cancel: cancel.clone(),
        };
        m.insert(job.id.clone(), running);
    }
    let started = Instant::now();
    // The stored type is text: one a worker of this version does not know has no processor either.
    let job_type = job.job_type.parse::<JobType>().ok();
    let result = match job_type.and_then(|t| registry.get(t)) {
        None => Err(JobError::fatal(format!(
            "no processor for job type {:?} on this worker",
            job.job_type
        ))),
        Some(processor) => {
            let ctx = JobContext {
                job: job.clone(),
                queue: cfg.queue,
                cancel: cancel.clone(),
                engine: engine.clone(),
                consumer: cfg.consumer.clone(),
                updates: sinks.updates.clone(),
            };
            // The panic is caught here, in the job's own task: a spawned task per processor
            // would cost a second task and a wake-up per job for the same isolation.
            let span = attempt_span(&job);
            let run = processor.start(ctx).instrument(span.clone());
            let result = match AssertUnwindSafe(run).catch_unwind().await {
                Ok(result) => result,
                Err(panic) => {
                    let msg = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_else(|| "unknown panic".to_owned());
                    tracing::error!(job_id = %job.id, panic = %msg, "processor panicked");
                    Err(JobError::retryable(format!("processor panicked: {msg}")))
                }
            };
            if let Err(e) = &result {
                span.record("otel.status_code", "error");
                span.record("error.message", e.message.as_str());
            }
            result
        }
    };
    drop(permit);
    let q = cfg.queue.as_str();
    let type_label: SharedString = match job_type {
        Some(t) => SharedString::const_str(t.as_str()),
        None => job.job_type.clone().into(),
    };
    metrics::histogram!("queue_job_duration_seconds", "queue" => q, "job_type" => type_label.clone())
        .record(started.elapsed().as_secs_f64());
    let outcome = record(&engine, &completer, &sinks, &cfg, &job, &cancel, &result).await;
    tell_owner(&sinks.updates, &cfg, &job, outcome, &result).await;
    metrics::counter!("queue_jobs_total", "queue" => q, "job_type" => type_label, "status" => outcome.as_str())
        .increment(1);
    if let Ok(mut m) = in_flight.lock() {
        m.remove(&job.id);
    }
}

/// The span of one attempt: a child of the context the job was enqueued under, so every attempt
/// (retries included) is a sibling in the trace that enqueued it, and the processor's own spans
/// (SMTP send, SQL insert) are its children. A job without a stored context gets no span.
fn attempt_span(job: &FetchedJob) -> tracing::Span {
    if job.trace.is_empty() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "job.attempt",
        otel.name = %format!("job {}", job.job_type),
        job.id = %job.id,
        job.r#type = %job.job_type,
        job.attempt = job.attempt,
        otel.status_code = tracing::field::Empty,
        error.message = tracing::field::Empty,
    );
    ncy_runtime::telemetry::set_remote_parent(&span, &job.trace);
    span
}

/// Keeps this consumer's in-flight entries fresh and delivers cancel requests.
async fn heartbeat(
    engine: Engine,
    cfg: RunnerConfig,
    in_flight: InFlight,
    stop: CancellationToken,
) {
    loop {
        let jobs: Vec<HeldJob> = in_flight
            .lock()
            .map(|m| {
                m.iter()
                    .map(|(id, r)| HeldJob {
                        job_id: id.clone(),
                        band: r.band,
                        entry: r.entry.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        match engine.heartbeat(cfg.queue, &cfg.consumer, &jobs).await {
            Ok(cancelled) => {
                if let Ok(m) = in_flight.lock() {
                    for id in cancelled {
                        if let Some(running) = m.get(&id) {
                            running.cancel.cancel();
                        }
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "heartbeat failed"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(cfg.heartbeat) => {}
        }
    }
}
