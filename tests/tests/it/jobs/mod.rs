//! The job engine end to end: job-scheduler (gRPC) and workers in this process on the real Redis
//! and PostgreSQL. One test per behaviour of the job engine that needs a worker, a module per area.
mod control;
mod failures;
mod queues;
mod watch;

use std::time::Duration;

/// How long a job may take to reach the state a test waits for.
const T: Duration = Duration::from_secs(20);
