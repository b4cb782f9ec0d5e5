//! The worker's integration tests, one binary (`cargo test -p worker --test it <area>::`): jobs
//! driven through the queue against a worker in this process, on real Redis, PostgreSQL and SMTP.
mod database_outage;
mod email;
mod failover;
mod service;
mod support;
