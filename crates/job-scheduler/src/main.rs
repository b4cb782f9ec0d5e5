//! The `job-scheduler` binary: load settings, start telemetry, serve until SIGTERM/SIGINT.
use std::process::ExitCode;

fn main() -> ExitCode {
    ncy_runtime::run_main(
        job_scheduler::SERVICE,
        job_scheduler::Settings::load,
        |s| &s.common,
        |settings| async move {
            // Handlers first: a SIGTERM during start-up or right after the port opens drains.
            let stop = ncy_runtime::shutdown::signal();
            job_scheduler::Application::build(settings)
                .await?
                .run_until_stopped(stop)
                .await
        },
    )
}
