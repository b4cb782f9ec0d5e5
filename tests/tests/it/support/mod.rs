//! What the end-to-end tests share: the job engine's stack (`jobs`), a browser on the realtime
//! gateway (`ws`), the report fixture (`report`) and the PromQL reading of the dashboard test
//! (`promql`), and `/metrics` read in a process whose services share one recorder (`metrics`).
pub mod jobs;
pub mod metrics;
pub mod promql;
pub mod report;
pub mod ws;
