//! The realtime gateway through its public interfaces: gRPC health and reflection, the admin port,
//! Stats, the WebSocket port refusing non-upgrade requests, metrics, the drain, and the
//! binary's configuration errors (a missing JWT secret) and SIGTERM, and the memory trim after a
//! burst of connections.
use std::time::Duration;

use ncy_proto::realtime::v1::{StatsRequest, realtime_service_client::RealtimeServiceClient};
use ncy_testkit::{InProcess, env_of, free_port, set_env};
use realtime_gateway::{Application, Settings};

use crate::support::{Fixture, WAIT, Ws, counter};

const SERVICE_NAME: &str = "ncy.realtime.v1.RealtimeService";
/// Trims after bursts, summed over `released`.
const TRIMS: &str = "ncy_memory_trims_total{";

#[tokio::test]
async fn serves_health_reflection_and_admin_then_drains() -> anyhow::Result<()> {
    let fx = Fixture::new().await;
    let app = Application::build(Settings::load(&env_of(&fx.env(&[])))?).await?;
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
    let fx = Fixture::new().await;
    let mut env = fx.env(&[]);
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

/// A burst of sockets opened then closed is followed, once it is over, by a request to the
/// allocator to return what their handshakes freed; the gateway keeps serving. The counter is the
/// process's, so only its growth is looked at; no other test here opens and closes the 32 sockets
/// (64 events) it takes for a gateway to trim.
#[tokio::test]
async fn a_burst_of_connections_is_followed_by_a_memory_trim() {
    let fx = Fixture::new().await;
    let gw = fx.start(&[]).await;
    let admin = gw.addrs.admin;
    let before = counter(admin, TRIMS).await;
    let mut sockets = Vec::new();
    for _ in 0..80 {
        sockets.push(Ws::connect(gw.ws(), "").await);
    }
    drop(sockets);
    ncy_testkit::assert_eventually(
        "ncy_memory_trims_total grows after the burst",
        WAIT,
        || async { counter(admin, TRIMS).await > before },
    )
    .await;
    let mut ws = Ws::authed(gw.ws(), &fx.token()).await;
    ws.send(serde_json::json!({"type": "ping"})).await;
    ws.until("pong").await;
    gw.stop().await;
}
