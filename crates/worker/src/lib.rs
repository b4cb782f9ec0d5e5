//! worker: runs jobs from the Redis job queues (`ncy-queue`) with per-queue concurrency, the shared
//! rate limits, retries with backoff, a dead-letter queue with alerts, heartbeats and reclaim of
//! jobs abandoned by a dead worker, and a graceful drain.
//!
//! The service also serves gRPC health and reflection (no domain API) and `/metrics`. Processors
//! live in [`processors`] (every domain job type, plus `noop` and the test-only `sleep`/`fail`).
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ncy_queue::{Engine, EngineSettings};
use ncy_runtime::{
    CommonSettings, ConfigError, Env, LocalAddrs, RuntimeError, ServiceRuntime, ServiceSpec,
};
use ncy_types::jobs::QueueName;

pub mod alerts;
mod completer;
pub mod files;
pub mod job_updates;
pub mod notify;
pub mod outages;
pub mod outcome;
pub mod processors;
pub mod runner;

use alerts::Alerts;
use processors::Registry;
use runner::RunnerConfig;

/// Service name in logs, traces and metrics.
pub const SERVICE: &str = "worker";

const SPEC: ServiceSpec = ServiceSpec {
    name: SERVICE,
    default_grpc_addr: "0.0.0.0:50053",
    default_admin_addr: "0.0.0.0:9103",
    needs_postgres: true,
    default_runtime_threads: 0,
};

/// Longest `NCY_JOBS_OUTAGE_GRACE_SECS`: a day. Past that an outage is an incident for people,
/// and jobs should reach the dead-letter queue where operators see them.
const MAX_OUTAGE_GRACE_SECS: u64 = 86_400;

/// Settings of the worker.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The block every service shares.
    pub common: CommonSettings,
    /// Queues, limits, timeouts (shared with the scheduler).
    pub engine: EngineSettings,
    /// `NCY_WORKER_QUEUES`: the queues this worker serves (comma-separated; default all).
    pub queues: Vec<QueueName>,
    /// `NCY_WORKER_BATCH`: most jobs claimed by one fetch (default 32).
    pub batch: usize,
    /// `NCY_WORKER_BLOCK_MS`: longest blocking wait when idle (default 2000).
    pub block_ms: u64,
    /// `NCY_WORKER_HEARTBEAT_MS`: heartbeat period of in-flight jobs (default 1000).
    pub heartbeat: Duration,
    /// `NCY_WORKER_ALERT_USER_IDS`: users notified of each dead letter (default none).
    pub alert_user_ids: Vec<uuid::Uuid>,
    /// `NCY_WORKER_ID`: consumer name prefix (default: a random id per process).
    pub worker_id: String,
    /// `NCY_JOBS_OUTAGE_GRACE_SECS`: how long into a dependency's outage its jobs are postponed
    /// without using attempts (default 600; 0 never postpones; at most a day). See [`outages`].
    pub outage_grace: Duration,
    /// `NCY_JOBS_OUTAGE_MAX_DELAY_MS`: the longest a postponed job waits before it is tried again
    /// (default 30 000; 100–600 000): after the dependency is back, jobs resume within this.
    pub outage_max_delay: Duration,
    /// SMTP server, sender, templates (`send-email`, `send-welcome-email`).
    pub email: processors::email::EmailSettings,
    /// Default retentions of `cleanup-old-data`.
    pub cleanup: processors::cleanup::CleanupSettings,
    /// `NCY_WORKER_FILE_STORE`: where reports and backups go.
    pub files: files::FileStoreSettings,
    /// Report links.
    pub reports: processors::report::ReportSettings,
    /// pg_dump and how many backups to keep.
    pub backup: processors::backup::BackupSettings,
}

impl Settings {
    /// Reads settings from `env`.
    pub fn load(env: &Env) -> Result<Self, ConfigError> {
        let queues = match env.get("NCY_WORKER_QUEUES") {
            None => QueueName::ALL.to_vec(),
            Some(list) => list
                .split(',')
                .map(|q| q.trim().parse::<QueueName>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ConfigError::new("NCY_WORKER_QUEUES", e.message))?,
        };
        let alert_user_ids = env
            .get("NCY_WORKER_ALERT_USER_IDS")
            .map(|list| {
                list.split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| s.trim().parse::<uuid::Uuid>())
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()
            .map_err(|_| {
                ConfigError::new(
                    "NCY_WORKER_ALERT_USER_IDS",
                    "expected comma-separated UUIDs",
                )
            })?
            .unwrap_or_default();
        let engine = EngineSettings::load(env)?;
        let batch: usize = env.parse_or("NCY_WORKER_BATCH", 32, "a number 1–1000")?;
        if !(1..=1000).contains(&batch) {
            return Err(ConfigError::new(
                "NCY_WORKER_BATCH",
                "must be between 1 and 1000",
            ));
        }
        let heartbeat_ms: u64 = env.parse_or("NCY_WORKER_HEARTBEAT_MS", 1000, "milliseconds")?;
        if heartbeat_ms == 0
            || heartbeat_ms * 2
                > u64::try_from(engine.visibility_timeout.as_millis()).unwrap_or(u64::MAX)
        {
            return Err(ConfigError::new(
                "NCY_WORKER_HEARTBEAT_MS",
                "must be above 0 and at most half of NCY_JOBS_VISIBILITY_TIMEOUT_MS",
            ));
        }
        let grace_secs: u64 = env.parse_or("NCY_JOBS_OUTAGE_GRACE_SECS", 600, "seconds")?;
        if grace_secs > MAX_OUTAGE_GRACE_SECS {
            return Err(ConfigError::new(
                "NCY_JOBS_OUTAGE_GRACE_SECS",
                format!("must be between 0 and {MAX_OUTAGE_GRACE_SECS} seconds"),
            ));
        }
        let max_delay_ms: u64 =
            env.parse_or("NCY_JOBS_OUTAGE_MAX_DELAY_MS", 30_000, "milliseconds")?;
        if !(100..=600_000).contains(&max_delay_ms) {
            return Err(ConfigError::new(
                "NCY_JOBS_OUTAGE_MAX_DELAY_MS",
                "must be between 100 and 600000 milliseconds",
            ));
        }
        Ok(Self {
            common: CommonSettings::load(SPEC, env)?,
            engine,
            queues,
            batch,
            block_ms: env.parse_or("NCY_WORKER_BLOCK_MS", 2000, "milliseconds")?,
            heartbeat: Duration::from_millis(heartbeat_ms),
            alert_user_ids,
            worker_id: env
                .get("NCY_WORKER_ID")
                .unwrap_or_else(|| format!("worker-{}", uuid::Uuid::new_v4().simple())),
            outage_grace: Duration::from_secs(grace_secs),
            outage_max_delay: Duration::from_millis(max_delay_ms),
            email: processors::email::EmailSettings::load(env)?,
            cleanup: processors::cleanup::CleanupSettings::load(env)?,
            files: files::FileStoreSettings::load(env)?,
            reports: processors::report::ReportSettings::load(env)?,
            backup: processors::backup::BackupSettings::load(env)?,
        })
    }
}

/// A built, not yet running, worker.
pub struct Application {
    runtime: ServiceRuntime,
    settings: Settings,
    engine: Engine,
    registry: Registry,
    notifier: notify::Notifier,
}

impl Application {
    /// Binds the listeners and prepares the pools; does not wait for Redis or PostgreSQL.
    pub async fn build(settings: Settings) -> Result<Self, RuntimeError> {
        let runtime = ServiceRuntime::build(settings.common.clone()).await?;
        let engine = Engine::for_service(
            runtime.redis().clone(),
            &settings.common.redis,
            settings.engine.clone(),
        );
        let notifier = notify::Notifier {
            postgres: runtime.postgres().cloned(),
            bus: ncy_bus::BusPublisher::new(
                runtime.redis().clone(),
                settings.common.redis.keys.clone(),
            ),
        };
        let mut registry = Registry::builtin(settings.engine.test_job_types);
        processors::register_domain(&mut registry, &settings, &notifier)?;
        Ok(Self {
            runtime,
            settings,
            engine,
            registry,
            notifier,
        })
    }

    /// Adds (or replaces) the processor of `P::JOB_TYPE`: for tests and embedders.
    pub fn register<P: processors::Processor>(&mut self, processor: P) {
        self.registry.register(processor);
    }

    /// Where this instance listens.
    pub fn local_addrs(&self) -> LocalAddrs {
        self.runtime.local_addrs()
    }

    /// Runs the queues and serves health until `shutdown` completes, then drains: no more fetching,
    /// in-flight jobs finish within the grace period, the rest is left to be reclaimed.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), RuntimeError> {
        let Self {
            runtime,
            settings,
            engine,
            registry,
            notifier,
        } = self;
        let stop = runtime.shutdown_token();
        let alerts = Alerts {
            recipients: settings.alert_user_ids.clone(),
            notifier: notifier.clone(),
        };
        let sinks = runner::Sinks {
            alerts,
            updates: job_updates::JobUpdates {
                bus: notifier.bus.clone(),
            },
            outages: Arc::new(outages::Outages::new(
                settings.outage_grace,
                settings.outage_max_delay,
            )),
        };
        runtime.spawn(sinks.outages.clone().sweep_until(stop.clone()));
        // The runners, so the last history flush comes after their last finished job.
        let runners = tokio_util::task::TaskTracker::new();
        let visibility = settings.engine.visibility_timeout;
        for queue in &settings.queues {
            let queue = *queue;
            let cfg = RunnerConfig {
                queue,
                consumer: format!("{}-{}", settings.worker_id, queue.as_str()),
                concurrency: usize::try_from(engine.queue_settings(queue).concurrency).unwrap_or(1),
                batch: settings.batch,
                block_ms: settings.block_ms,
                heartbeat: settings.heartbeat,
                reclaim_every: visibility / 2,
            };
            let (eng, registry, sinks, halt) = (
                engine.clone(),
                registry.clone(),
                sinks.clone(),
                stop.clone(),
            );
            runtime.spawn(runners.track_future(async move {
                let (engine, stop) = (eng, halt);
                // Groups first (retrying while Redis is down), then the loop.
                while let Err(e) = engine.ensure_groups(queue).await {
                    tracing::warn!(queue = queue.as_str(), error = %e, "cannot create consumer groups yet");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                }
                runner::run(engine, registry, sinks, cfg, stop).await;
            }));
            runtime.spawn(engine.clone().run_promoter(
                queue,
                format!("{}-promoter", settings.worker_id),
                stop.clone(),
            ));
        }
        runners.close();
        runtime.spawn(flush_history(
            engine.clone(),
            settings.engine.history_flush,
            runners,
            stop.clone(),
        ));
        runtime
            .serve(tonic::service::Routes::default(), &[], shutdown)
            .await
    }
}

/// Adds the jobs finished per minute to the queue history every `every`, and once more at the
/// drain, after the runners have recorded their last outcomes (a SIGKILL loses what was not sent).
async fn flush_history(
    engine: Engine,
    every: Duration,
    runners: tokio_util::task::TaskTracker,
    stop: tokio_util::sync::CancellationToken,
) {
    engine.flush_history_every(every, stop).await;
    runners.wait().await;
    if let Err(e) = engine.flush_history().await {
        tracing::warn!(error = %e, "the last queue history counts could not be added; they are lost");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let required = [
            ("REDIS_URL", "redis://127.0.0.1:6379"),
            (
                "DATABASE_URL",
                "postgres://postgres@127.0.0.1:5432/postgres",
            ),
        ];
        Settings::load(&Env::from_pairs(
            required.into_iter().chain(pairs.iter().copied()),
        ))
    }

    #[test]
    fn the_outage_grace_defaults_to_ten_minutes_and_is_bounded() {
        let s = load(&[]).expect("defaults");
        assert_eq!(s.outage_grace, Duration::from_secs(600));
        let off = load(&[("NCY_JOBS_OUTAGE_GRACE_SECS", "0")]).expect("0 turns it off");
        assert_eq!(off.outage_grace, Duration::ZERO);
        for bad in ["86401", "-1", "ten"] {
            let err = load(&[("NCY_JOBS_OUTAGE_GRACE_SECS", bad)]).expect_err(bad);
            assert_eq!(err.var, "NCY_JOBS_OUTAGE_GRACE_SECS", "{err}");
        }
    }

    #[test]
    fn the_outage_max_delay_defaults_to_thirty_seconds_and_is_bounded() {
        let s = load(&[]).expect("defaults");
        assert_eq!(s.outage_max_delay, Duration::from_secs(30));
        let fast = load(&[("NCY_JOBS_OUTAGE_MAX_DELAY_MS", "100")]).expect("the lower bound");
        assert_eq!(fast.outage_max_delay, Duration::from_millis(100));
        for bad in ["99", "600001", "-1", "soon"] {
            let err = load(&[("NCY_JOBS_OUTAGE_MAX_DELAY_MS", bad)]).expect_err(bad);
            assert_eq!(err.var, "NCY_JOBS_OUTAGE_MAX_DELAY_MS", "{err}");
        }
    }
}
