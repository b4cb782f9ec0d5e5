//! The realtime gateway through its public interfaces: gRPC health and reflection, the admin port,
//! Stats, the WebSocket port refusing non-upgrade requests, metrics, the drain, and the
//! binary's configuration errors (a missing JWT secret) and SIGTERM.
use std::time::Duration;

use ncy_proto::realtime::v1::{StatsRequest, realtime_service_client::RealtimeServiceClient};
use ncy_testkit::{
    InProcess, TestDatabase, env_of, free_port, service_env, set_env, unique_prefix,
};
use realtime_gateway::{Application, Settings};

const SERVICE_NAME: &str = "ncy.realtime.v1.RealtimeService";
const SECRET: &str = "test-secret-test-secret-test-secret";

fn env(db_url: &str) -> Vec<(String, String)> {
    let mut env = service_env(&unique_prefix(), Some(db_url));
    set_env(&mut env, "JWT_SECRET", SECRET);
    set_env(&mut env, "NCY_WS_ADDR", "127.0.0.1:0");
    env
}

#[tokio::test]
async fn serves_health_reflection_and_admin_then_drains() -> anyhow::Result<()> {
    let db = TestDatabase::migrated().await?;
    let app = Application::build(Settings::load(&env_of(&env(&db.url)))?).await?;
    let addrs = app.local_addrs();
    let ws = addrs.websocket.expect("websocket listener");
    let running = InProcess::spawn(|stop| app.run_until_stopped(stop));

    ncy_testkit::assert_service_basics(addrs, &[SERVICE_NAME]).await;
    let mut client = RealtimeServiceClient::connect(format!("http://{}", addrs.grpc)).await?;
    let stats = client.stats(StatsRequest::default()).await?.into_inner();
    assert_eq!(stats.connections, 0);
    assert!(!stats.draining);
    // A plain GET (no upgrade) on /ws is refused; other paths are 404.
    let (code, body) = ncy_testkit::http_get(ws, "/ws").await?;
    assert!((400..500).contains(&code), "{code} {body}");
    assert_eq!(ncy_testkit::http_get(ws, "/other").await?.0, 404);
    let (code, js) = ncy_testkit::http_get(ws, "/client.js").await?;
    assert_eq!(code, 200);
    assert!(js.contains("export class RealtimeClient"), "{js}");
    let (_, metrics) = ncy_testkit::http_get(addrs.admin, "/metrics").await?;
    assert!(metrics.contains("ncy_realtime"), "{metrics}");

    running
        .stop(Duration::from_secs(10))
        .await
        .map_err(anyhow::Error::msg)?;
    assert!(
        ncy_testkit::grpc_health(addrs.grpc, "").await.is_err(),
        "gRPC port closed after drain"
    );
    assert!(
        ncy_testkit::http_get(ws, "/ws").await.is_err(),
        "WebSocket port closed after drain"
    );
    Ok(())
}

#[tokio::test]
async fn binary_exits_64_on_bad_config_and_0_on_sigterm() -> anyhow::Result<()> {
    let db = TestDatabase::migrated().await?;
    let mut env = env(&db.url);
    let port = free_port();
    set_env(&mut env, "NCY_GRPC_ADDR", &format!("127.0.0.1:{port}"));
    ncy_testkit::assert_binary_lifecycle(
        env!("CARGO_BIN_EXE_realtime-gateway"),
        &env,
        "JWT_SECRET",
        port,
    )
    .await;
    Ok(())
}
