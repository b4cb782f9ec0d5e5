//! worker: runs the job processors (email, notification, report, cleanup, backup) from the Redis job
//! queues with concurrency, rate limits, retries and a dead-letter queue.
//!
//! This crate is the service shell: settings, boot, gRPC health and reflection (the worker has no
//! domain API; operators and Kubernetes probe its health), metrics and drain. Job fetching and the
//! processors arrive with their own issues.
use std::future::Future;

use ncy_runtime::{
    CommonSettings, ConfigError, Env, LocalAddrs, RuntimeError, ServiceRuntime, ServiceSpec,
};

/// Service name in logs, traces and metrics.
pub const SERVICE: &str = "worker";

const SPEC: ServiceSpec = ServiceSpec {
    name: SERVICE,
    default_grpc_addr: "0.0.0.0:50053",
    default_admin_addr: "0.0.0.0:9103",
    needs_postgres: true,
};

/// Settings of the worker.
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

/// A built, not yet running, worker.
pub struct Application {
    runtime: ServiceRuntime,
}

impl Application {
    /// Binds the listeners and prepares the pools; does not wait for Redis or PostgreSQL.
    pub async fn build(settings: Settings) -> Result<Self, RuntimeError> {
        Ok(Self {
            runtime: ServiceRuntime::build(settings.common).await?,
        })
    }

    /// Where this instance listens.
    pub fn local_addrs(&self) -> LocalAddrs {
        self.runtime.local_addrs()
    }

    /// Serves health until `shutdown` completes, then drains within the grace period.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), RuntimeError> {
        self.runtime
            .serve(tonic::service::Routes::default(), &[], shutdown)
            .await
    }
}
