//! The `cache-gateway` binary: load settings, start telemetry, serve until SIGTERM/SIGINT.
use std::process::ExitCode;

fn main() -> ExitCode {
    ncy_runtime::run_main(
        cache_gateway::SERVICE,
        cache_gateway::Settings::load,
        |s| &s.common,
        |settings| async move {
            // Handlers first: a SIGTERM during start-up or right after the port opens drains.
            let stop = ncy_runtime::shutdown::signal();
            cache_gateway::Application::build(settings)
                .await?
                .run_until_stopped(stop)
                .await
        },
    )
}
