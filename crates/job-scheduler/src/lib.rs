//! job-scheduler: the gRPC API (`ncy.jobs.v1.JobService`) to enqueue, schedule, inspect and manage
//! background jobs on the Redis job engine.
//!
//! This crate is the service shell: settings, boot, gRPC with health and reflection, drain. The job
//! engine arrives with its own issue; until then every JobService RPC answers `UNIMPLEMENTED`
//! (tonic's default stubs), never a fake success.
use std::future::Future;

use ncy_proto::jobs::v1::job_service_server::{JobService, JobServiceServer};
use ncy_runtime::{
    CommonSettings, ConfigError, Env, LocalAddrs, RuntimeError, ServiceRuntime, ServiceSpec,
};
use tonic::server::NamedService;

/// Service name in logs, traces and metrics.
pub const SERVICE: &str = "job-scheduler";

const SPEC: ServiceSpec = ServiceSpec {
    name: SERVICE,
    default_grpc_addr: "0.0.0.0:50052",
    default_admin_addr: "0.0.0.0:9102",
    needs_postgres: false,
};

/// Largest gRPC message accepted: a bulk enqueue of payloads up to 1 MiB each, bounded.
const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// Settings of the job scheduler.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The block every service shares.
    pub common: CommonSettings,
}

impl Settings {
    /// Reads settings from `env`.
    pub fn load(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            common: CommonSettings::load(SPEC, env)?,
        })
    }
}

/// The `JobService` implementation.
#[derive(Debug, Default)]
struct JobApi;

#[tonic::async_trait]
impl JobService for JobApi {}

/// A built, not yet running, job scheduler.
pub struct Application {
    runtime: ServiceRuntime,
}

impl Application {
    /// Binds the listeners and prepares the Redis pool; does not wait for Redis.
    pub async fn build(settings: Settings) -> Result<Self, RuntimeError> {
        Ok(Self {
            runtime: ServiceRuntime::build(settings.common).await?,
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
        let api = JobServiceServer::new(JobApi)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let routes = tonic::service::Routes::new(api);
        self.runtime
            .serve(routes, &[JobServiceServer::<JobApi>::NAME], shutdown)
            .await
    }
}
