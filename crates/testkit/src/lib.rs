//! The integration-test harness every crate's `tests/` uses: real Redis and PostgreSQL, isolated per
//! test so tests run in parallel.
//!
//! - [`TestDatabase`]: a fresh PostgreSQL database per test (dropped afterwards).
//! - [`unique_prefix`]: a Redis key prefix per test.
//! - [`RedisServer`]: a `redis-server` of the test's own on a free port, for tests that stop or
//!   restart Redis.
//! - [`PostgresServer`]: a PostgreSQL of the test's own (initdb on a free port), for tests that stop
//!   and restart the database.
//! - [`SmtpServer`]: a real SMTP server (aiosmtpd) of the test's own that keeps what it receives.
//! - [`MotoServer`]: a real S3-compatible server (moto) of the test's own, stopped and restarted
//!   on its port for S3 outages.
//! - [`TcpGate`]: a relay in front of a real server, closed and opened again for an outage that
//!   leaves the server as it was.
//! - [`chromium`]: a headless Chromium driven over the DevTools protocol, for tests of what runs
//!   in a browser (skipped when none is installed, failed under `CI`).
//! - [`assert_eventually`]: poll with a deadline instead of sleeping.
//! - [`grpc_health`], [`http_get`]: what a probe or an operator would ask a running service.
//!
//! Environment: `NCY_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`) and `NCY_TEST_DATABASE_URL`
//! (an admin connection that may `CREATE DATABASE`, default `postgres://postgres@127.0.0.1:5432/postgres`).
#![allow(clippy::unwrap_used)]

pub mod chromium;
mod database;
mod gate;
mod moto_server;
mod otlp;
mod postgres_server;
mod process;
mod redis_server;
mod smtp_server;

use std::{future::Future, net::SocketAddr, time::Duration};

pub use database::TestDatabase;
pub use gate::TcpGate;
pub use moto_server::MotoServer;
pub use otlp::{OtlpReceiver, ReceivedSpan};
pub use postgres_server::PostgresServer;
pub use process::{ChildService, InProcess, StopSignal, assert_binary_lifecycle, run_to_exit};
pub use redis_server::{RedisCluster, RedisServer};
pub use smtp_server::{ReceivedEmail, SmtpServer, moto_server_bin};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// The shared Redis the tests use.
pub fn redis_url() -> String {
    std::env::var("NCY_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// An admin PostgreSQL URL (may create databases).
pub fn admin_database_url() -> String {
    std::env::var("NCY_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A Redis key prefix no other test uses, e.g. `t-1764210000-3f2a9c1b7d4e`: the Unix time it was
/// made, so `scripts/test-keys-gc.sh` (run by `make test`) can remove what earlier runs left in a
/// shared Redis without touching a run still going.
pub fn unique_prefix() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!(
        "t-{secs}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Polls `check` until it returns true, panicking with `what` after `timeout`.
pub async fn assert_eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut wait = Duration::from_millis(10);
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_millis(200));
    }
}

/// `grpc.health.v1.Health/Check` for `service` ("" = the whole server).
pub async fn grpc_health(addr: SocketAddr, service: &str) -> Result<ServingStatus, tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let reply = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await?;
    Ok(reply.into_inner().status())
}

/// Waits until the server's overall gRPC health is SERVING.
pub async fn wait_until_serving(addr: SocketAddr) {
    assert_eventually(
        &format!("{addr} gRPC health SERVING"),
        Duration::from_secs(20),
        || async move { matches!(grpc_health(addr, "").await, Ok(ServingStatus::Serving)) },
    )
    .await;
}

/// GET `http://{addr}{path}`, returning the status code and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let response = reqwest::get(format!("http://{addr}{path}")).await?;
    let status = response.status().as_u16();
    Ok((status, response.text().await?))
}

/// Environment for a service under test: ports 0 (free ones), the shared Redis under a unique
/// prefix, and `database_url` when given. Add service-specific pairs on top.
pub fn service_env(prefix: &str, database_url: Option<&str>) -> Vec<(String, String)> {
    let mut env = vec![
        ("REDIS_URL".to_owned(), redis_url()),
        ("NCY_REDIS_PREFIX".to_owned(), prefix.to_owned()),
        ("NCY_GRPC_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
        ("NCY_ADMIN_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
        ("NCY_SHUTDOWN_GRACE_SECS".to_owned(), "5".to_owned()),
        ("RUST_LOG".to_owned(), "warn".to_owned()),
        // Tests of one service's behaviour call it without keys; the API-key tests set
        // NCY_API_KEYS_FILE instead (see `api_keys_env`).
        ("NCY_API_AUTH".to_owned(), "disabled".to_owned()),
    ];
    if let Some(url) = database_url {
        env.push(("DATABASE_URL".to_owned(), url.to_owned()));
    }
    env
}

/// Replaces or adds `key` in an environment list.
pub fn set_env(env: &mut Vec<(String, String)>, key: &str, value: &str) {
    env.retain(|(k, _)| k != key);
    env.push((key.to_owned(), value.to_owned()));
}

/// Builds an [`ncy_runtime::Env`] from pairs.
pub fn env_of(pairs: &[(String, String)]) -> ncy_runtime::Env {
    ncy_runtime::Env::from_pairs(pairs.iter().cloned())
}

/// A free TCP port on 127.0.0.1 (racy by nature; prefer binding port 0 where the code allows).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// The services a server lists through gRPC reflection (`grpc.reflection.v1`), as grpcurl would see.
pub async fn reflection_services(addr: SocketAddr) -> anyhow::Result<Vec<String>> {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let mut client = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await?
        .into_inner();
    let reply = replies
        .message()
        .await?
        .ok_or_else(|| anyhow::anyhow!("reflection closed the stream"))?;
    match reply.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            Ok(list.service.into_iter().map(|s| s.name).collect())
        }
        other => anyhow::bail!("unexpected reflection reply: {other:?}"),
    }
}

/// What every NCY service must offer, checked the way an operator or Kubernetes would: gRPC health
/// SERVING overall and for each named service, reflection listing them, `/healthz` 200, `/readyz` 200
/// with every dependency up, and `/metrics` in Prometheus text format.
pub async fn assert_service_basics(addrs: ncy_runtime::LocalAddrs, grpc_services: &[&str]) {
    wait_until_serving(addrs.grpc).await;
    for name in grpc_services {
        assert_eq!(
            grpc_health(addrs.grpc, name).await.unwrap(),
            ServingStatus::Serving,
            "health of {name}"
        );
    }
    let unknown = grpc_health(addrs.grpc, "no.such.Service")
        .await
        .expect_err("unknown service");
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    let listed = reflection_services(addrs.grpc).await.unwrap();
    for name in grpc_services.iter().chain(&["grpc.health.v1.Health"]) {
        assert!(
            listed.iter().any(|s| s == name),
            "reflection lists {name}: {listed:?}"
        );
    }
    for name in listed.iter().filter(|s| s.starts_with("ncy.")) {
        assert!(
            grpc_services.contains(&name.as_str()),
            "reflection advertises {name}, which this server does not serve"
        );
    }

    assert_eq!(http_get(addrs.admin, "/healthz").await.unwrap().0, 200);
    let (code, body) = http_get(addrs.admin, "/readyz").await.unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"ready\":true"), "{body}");
    // This instance's own view of Redis is in its readiness body; the gauge is process-wide (other
    // tests in the same binary may take a dependency down), so only its presence is checked.
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["checks"]["redis"]["status"], "up", "{body}");
    let (code, metrics) = http_get(addrs.admin, "/metrics").await.unwrap();
    assert_eq!(code, 200);
    assert!(
        metrics.contains("ncy_dependency_up{dependency=\"redis\"} "),
        "{metrics}"
    );
    // The health checks above went through the gRPC metrics layer: the OK and the NOT_FOUND calls
    // are counted (several services may share this process's recorder, so only presence is checked).
    for series in [
        "grpc_server_handled_total{method=\"/grpc.health.v1.Health/Check\",code=\"OK\"}",
        "grpc_server_handled_total{method=\"/grpc.health.v1.Health/Check\",code=\"NOT_FOUND\"}",
        "grpc_server_handling_seconds_count{method=\"/grpc.health.v1.Health/Check\"}",
    ] {
        assert!(
            metrics.contains(series),
            "{series} missing from:\n{metrics}"
        );
    }
}
