//! The worker's integration tests, one binary (`cargo test -p worker --test it <area>::`): jobs
//! driven through the queue against a worker in this process, on real Redis, PostgreSQL and SMTP.
//! `service.rs` stays a binary of its own: `assert_service_basics` reads the process-wide gauge
//! `ncy_dependency_up`, which the outage tests here set to 0.
mod database_outage;
mod email;
mod failover;
mod support;
