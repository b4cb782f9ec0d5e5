//! How the `ncy-console` process boots: what `ncy_runtime::run_main` does for the other services
//! (bad settings: one line on stderr naming the variable, exit 64; then the async runtime,
//! telemetry, serve until SIGTERM/SIGINT), from the console's own settings — `run_main` takes the
//! shared settings block, which requires `REDIS_URL`, and the console has no Redis.
use std::process::ExitCode;

use ncy_runtime::{Env, settings::CONFIG_EXIT_CODE};

use crate::{Application, SERVICE, Settings};

/// Loads settings from the process environment and serves until SIGTERM/SIGINT.
pub fn serve_process() -> ExitCode {
    let settings = match Settings::load(&Env::process()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{SERVICE}: configuration error: {e}");
            return ExitCode::from(CONFIG_EXIT_CODE);
        }
    };
    let mut builder = match settings.runtime_threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        0 => tokio::runtime::Builder::new_multi_thread(),
        n => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{SERVICE}: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let _telemetry = ncy_runtime::telemetry::init(SERVICE, &settings.telemetry);
        // Handlers first: a SIGTERM during start-up or right after the port opens drains.
        let stop = ncy_runtime::shutdown::signal();
        let served = match Application::build(settings).await {
            Ok(app) => app.run_until_stopped(stop).await,
            Err(e) => Err(e),
        };
        match served {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "{SERVICE} failed");
                eprintln!("{SERVICE}: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
