//! cache-gateway: the multi-layer read-through cache (L1 in-process, L2 Redis, L3 PostgreSQL
//! loaders), rate limiter and session store behind `ncy.cache.v1.CacheService`.
//!
//! This crate is the service shell: settings, boot, gRPC with health and reflection, drain. The
//! cache itself arrives with its own issue; until then every CacheService RPC answers
//! `UNIMPLEMENTED` (tonic's default stubs), never a fake success.
use std::future::Future;

use ncy_proto::cache::v1::cache_service_server::{CacheService, CacheServiceServer};
use ncy_runtime::{
    CommonSettings, ConfigError, Env, LocalAddrs, RuntimeError, ServiceRuntime, ServiceSpec,
};
use tonic::server::NamedService;

/// Service name in logs, traces and metrics.
pub const SERVICE: &str = "cache-gateway";

const SPEC: ServiceSpec = ServiceSpec {
    name: SERVICE,
    default_grpc_addr: "0.0.0.0:50051",
    default_admin_addr: "0.0.0.0:9101",
    needs_postgres: true,
};

/// Largest gRPC message accepted: the 4 MiB maximum value plus headroom for MGet/Set envelopes.
const MAX_MESSAGE_BYTES: usize = 8 << 20;

/// Settings of the cache gateway.
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

/// The `CacheService` implementation.
#[derive(Debug, Default)]
struct CacheApi;

#[tonic::async_trait]
impl CacheService for CacheApi {}

/// A built, not yet running, cache gateway.
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

    /// Serves until `shutdown` completes, then drains within the grace period.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), RuntimeError> {
        let api = CacheServiceServer::new(CacheApi)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let routes = tonic::service::Routes::new(api);
        self.runtime
            .serve(routes, &[CacheServiceServer::<CacheApi>::NAME], shutdown)
            .await
    }
}
