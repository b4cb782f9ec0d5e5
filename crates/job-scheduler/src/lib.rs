//! job-scheduler: the gRPC API (`ncy.jobs.v1.JobService`) to enqueue, schedule, inspect and manage
//! background jobs on the Redis job engine (`ncy-queue`).
//!
//! Besides the API, each replica runs: the delayed-job promoter of every queue (one active per
//! queue across all replicas and workers, by lease), the cron evaluator (every replica; each tick
//! is enqueued once thanks to its idempotency key), and a maintenance loop (retention sweep and the
//! `queue_size` / `queue_dead_letters` gauges).
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ncy_proto::jobs::v1::job_service_server::JobServiceServer;
use ncy_queue::cron::MissedRunPolicy;
use ncy_queue::{Engine, EngineSettings};
use ncy_runtime::{
    CommonSettings, ConfigError, Env, LocalAddrs, RuntimeError, ServiceRuntime, ServiceSpec,
};
use ncy_types::jobs::QueueName;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;

pub mod api;
pub mod bulk;
pub mod control;
pub mod convert;
pub mod error;
pub mod history;
pub mod page_token;
pub mod queues;
pub mod run_token;
pub mod schedules;
pub mod watch;

pub use api::JobApi;
use watch::WatchHub;

/// Service name in logs, traces and metrics.
pub const SERVICE: &str = "job-scheduler";

const SPEC: ServiceSpec = ServiceSpec {
    name: SERVICE,
    default_grpc_addr: "0.0.0.0:50052",
    default_admin_addr: "0.0.0.0:9102",
    needs_postgres: false,
    default_runtime_threads: 0,
};

/// Largest gRPC message accepted: a bulk enqueue of payloads up to 1 MiB each, bounded.
const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// Settings of the job scheduler.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The block every service shares.
    pub common: CommonSettings,
    /// Queues, limits, timeouts (shared with the worker).
    pub engine: EngineSettings,
    /// `NCY_CRON_ENABLED` (default true): evaluate schedules on this replica.
    pub cron_enabled: bool,
    /// `NCY_CRON_MISSED_RUN_POLICY`: `fire_once` (default) or `skip`.
    pub missed_run_policy: MissedRunPolicy,
    /// `NCY_CRON_INSTALL_DEFAULTS` (default true): install the seed's schedules when absent.
    pub install_default_schedules: bool,
    /// `NCY_JOBS_MAINTENANCE_SECS` (default 5): retention sweep and gauges period.
    pub maintenance_every: Duration,
}

impl Settings {
    /// Reads settings from `env`.
    pub fn load(env: &Env) -> Result<Self, ConfigError> {
        let policy = match env
            .get("NCY_CRON_MISSED_RUN_POLICY")
            .as_deref()
            .map(str::trim)
        {
            None | Some("fire_once") => MissedRunPolicy::FireOnce,
            Some("skip") => MissedRunPolicy::Skip,
            Some(other) => {
                return Err(ConfigError::new(
                    "NCY_CRON_MISSED_RUN_POLICY",
                    format!("expected fire_once or skip, got {other:?}"),
                ));
            }
        };
        Ok(Self {
            common: CommonSettings::load(SPEC, env)?,
            engine: EngineSettings::load(env)?,
            cron_enabled: env.bool_or("NCY_CRON_ENABLED", true)?,
            missed_run_policy: policy,
            install_default_schedules: env.bool_or("NCY_CRON_INSTALL_DEFAULTS", true)?,
            maintenance_every: env.secs_or("NCY_JOBS_MAINTENANCE_SECS", 5, 3600)?,
        })
    }
}

/// A built, not yet running, job scheduler.
pub struct Application {
    runtime: ServiceRuntime,
    settings: Settings,
    engine: Engine,
}

impl Application {
    /// Binds the listeners and prepares the Redis pool; does not wait for Redis.
    pub async fn build(settings: Settings) -> Result<Self, RuntimeError> {
        let runtime = ServiceRuntime::build(settings.common.clone()).await?;
        let engine = Engine::for_service(
            runtime.redis().clone(),
            &settings.common.redis,
            settings.engine.clone(),
        );
        Ok(Self {
            runtime,
            settings,
            engine,
        })
    }

    /// Where this instance listens.
    pub fn local_addrs(&self) -> LocalAddrs {
        self.runtime.local_addrs()
    }

    /// Serves until `shutdown` completes, then drains within the grace period.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), RuntimeError> {
        let Self {
            mut runtime,
            settings,
            engine,
        } = self;
        let cancel = runtime.shutdown_token();
        let holder = format!("{SERVICE}-{}", uuid::Uuid::new_v4().simple());
        for queue in QueueName::ALL {
            runtime.spawn(
                engine
                    .clone()
                    .run_promoter(queue, holder.clone(), cancel.clone()),
            );
        }
        if settings.cron_enabled {
            let engine = engine.clone();
            let cancel = cancel.clone();
            let install = settings.install_default_schedules;
            let policy = settings.missed_run_policy;
            runtime.spawn(async move {
                if install {
                    install_defaults(&engine, &cancel).await;
                }
                engine.run_cron(policy, cancel).await;
            });
        }
        runtime.spawn(maintenance(
            engine.clone(),
            settings.maintenance_every,
            cancel.clone(),
        ));
        let api = JobServiceServer::new(JobApi {
            engine,
            watches: Arc::new(WatchHub::ending_on(cancel)),
        })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let routes = tonic::service::Routes::new(api);
        // Every RPC reads or writes the queues in Redis: while Redis is down the service answers
        // UNAVAILABLE and its health entry says so; the instance stays ready (no replica would do
        // better).
        runtime.requires(JobServiceServer::<JobApi>::NAME, &["redis"]);
        runtime
            .serve(routes, &[JobServiceServer::<JobApi>::NAME], shutdown)
            .await
    }
}

/// Installs the seed's schedules when absent, retrying while Redis is down.
async fn install_defaults(engine: &Engine, cancel: &CancellationToken) {
    for def in schedules::defaults() {
        loop {
            match engine.install_schedule(def.clone()).await {
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, schedule = %def.name, "cannot install default schedule yet");
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }
}

/// Creates consumer groups, sweeps retention and publishes the queue gauges periodically.
async fn maintenance(engine: Engine, every: Duration, cancel: CancellationToken) {
    loop {
        for queue in QueueName::ALL {
            let q = queue.as_str();
            if let Err(e) = engine.ensure_groups(queue).await {
                tracing::debug!(error = %e, queue = q, "maintenance: groups");
                continue;
            }
            if let Err(e) = engine.sweep(queue).await {
                tracing::debug!(error = %e, queue = q, "maintenance: sweep");
            }
            if let Ok(s) = engine.stats(queue).await {
                for (state, n) in [
                    ("waiting", s.waiting),
                    ("delayed", s.delayed),
                    ("active", s.active),
                    ("completed", s.completed),
                    ("failed", s.failed),
                    ("cancelled", s.cancelled),
                    ("dead", s.dead_letters),
                ] {
                    metrics::gauge!("queue_size", "queue" => q, "state" => state).set(n as f64);
                }
                metrics::gauge!("queue_dead_letters", "queue" => q).set(s.dead_letters as f64);
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}
