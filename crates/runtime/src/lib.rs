//! How an NCY service boots and runs: typed settings from the environment, telemetry (JSON logs,
//! OTLP traces, trace-context propagation over gRPC), the admin HTTP port (`/metrics`, `/healthz`,
//! `/readyz`), Redis and PostgreSQL pools with readiness probes, the gRPC server with health and
//! reflection, the graceful drain on SIGTERM, and the registry of a service's live instances.
//!
//! Services are libraries with a thin `main`: see [`run_main`].
use std::{future::Future, process::ExitCode};

pub mod admin;
pub mod auth;
pub mod error;
pub mod grpc_metrics;
pub mod instances;
pub mod limits;
mod log_trace_ids;
pub mod memory;
pub mod metrics;
pub mod postgres;
pub mod readiness;
pub mod redis;
pub mod service;
pub mod settings;
pub mod shutdown;
pub mod telemetry;

pub use error::RuntimeError;
pub use instances::InstanceRegistry;
pub use redis::{RedisConn, RedisNode, RedisPool};
pub use service::{LocalAddrs, ServiceRuntime};
pub use settings::{ApiAuthSettings, CommonSettings, ConfigError, Env, ServiceSpec};

/// The body of every service's `main`: load settings (a bad one prints one line naming the
/// variable and exits 64), start telemetry, then build and run the service until SIGTERM/SIGINT.
///
/// `common` picks the shared settings block out of the service's settings; `run` builds the
/// application and runs it until the given shutdown future completes.
pub fn run_main<S, F, Fut, E>(
    service: &'static str,
    load: impl FnOnce(&Env) -> Result<S, ConfigError>,
    common: impl Fn(&S) -> &CommonSettings,
    run: F,
) -> ExitCode
where
    F: FnOnce(S) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let settings = match load(&Env::process()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{service}: configuration error: {e}");
            return ExitCode::from(settings::CONFIG_EXIT_CODE);
        }
    };
    let runtime = match runtime_builder(common(&settings).runtime_threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{service}: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let _telemetry = telemetry::init(service, &common(&settings).telemetry);
        match run(settings).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "{service} failed");
                eprintln!("{service}: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// The scheduler for `threads` (see `NCY_RUNTIME_THREADS`): 1 → single-threaded, 0 → one worker
/// per CPU, n → n workers.
fn runtime_builder(threads: usize) -> tokio::runtime::Builder {
    match threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        0 => tokio::runtime::Builder::new_multi_thread(),
        n => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
    }
}
