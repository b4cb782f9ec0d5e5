//! What the end-to-end tests share: the four services together (`backbone`), the job engine's
//! stack (`jobs`), the email stack (`email`), a browser on the realtime gateway (`ws`), the report
//! fixture (`report`), the PromQL reading of the dashboard test (`promql`), and `/metrics` read in
//! a process whose services share one recorder (`metrics`).
pub mod backbone;
pub mod email;
pub mod jobs;
pub mod metrics;
pub mod promql;
pub mod report;
pub mod ws;

use std::time::Duration;

use ncy_testkit::InProcess;

/// Stops a service started in this process; an error if it does not drain within 15 s.
pub async fn stop(p: InProcess) -> anyhow::Result<()> {
    p.stop(Duration::from_secs(15))
        .await
        .map_err(anyhow::Error::msg)
}
