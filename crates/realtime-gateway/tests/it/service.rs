//! The realtime gateway through its public interfaces: gRPC health and reflection, the admin port,
//! Stats, the WebSocket port refusing non-upgrade requests, metrics, the drain, and the
//! binary's configuration errors (a missing JWT secret) and SIGTERM, and the memory trim after a
//! burst of connections.
use std::time::Duration;

use crate::support::{Fixture, Ws};

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

/// `ncy_memory_trims_total`, summed over its labels.
async fn trims(admin: std::net::SocketAddr) -> u64 {
    let (_, text) = ncy_testkit::http_get(admin, "/metrics").await.unwrap();
    text.lines()
        .filter(|l| l.starts_with("ncy_memory_trims_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// A burst of sockets opened then closed is followed, once it is over, by a request to the
/// allocator to return what their handshakes freed; the gateway keeps serving.
#[tokio::test]
async fn a_burst_of_connections_is_followed_by_a_memory_trim() {
    let fx = Fixture::new().await;
    let gw = fx.start(&[]).await;
    let admin = gw.addrs.admin;
    let before = trims(admin).await;
    let mut sockets = Vec::new();
    for _ in 0..80 {
        sockets.push(Ws::connect(gw.ws(), "").await);
    }
    drop(sockets);
    ncy_testkit::assert_eventually(
        "ncy_memory_trims_total grows after the burst",
        Duration::from_secs(10),
        || async { trims(admin).await > before },
    )
    .await;
    let mut ws = Ws::authed(gw.ws(), &fx.token()).await;
    ws.send(serde_json::json!({"type": "ping"})).await;
    ws.until("pong").await;
    gw.stop().await;
}
