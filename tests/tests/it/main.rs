//! The end-to-end tests, one binary (`cargo test -p ncy-e2e --test it <area>::`): the four services
//! started in this process, together or a few at a time, against the real Redis and PostgreSQL
//! (and, where a test needs one of its own, SMTP, S3, a Redis Cluster, a PostgreSQL it stops).
//!
//! One process means one metrics recorder (every service's `/metrics` renders the same series, to
//! which every test adds) and one set of environment variables (so no test sets any: each passes
//! its settings to `Settings::load`). A test reads its own instance through `/readyz`, gRPC health
//! or the API, and a shared series only as present, as a delta, or on labels it alone produces.
mod api_auth;
mod dashboard_metrics;
mod job_progress;
mod jobs;
mod jobs_cluster;
mod outages;
mod processors_backup;
mod processors_data;
mod processors_email;
mod processors_email_outage;
mod processors_report;
mod processors_report_faults;
mod processors_s3;
mod stack;
mod support;
mod traces_off;
