//! realtime-gateway: the WebSocket server browsers connect to (JWT auth, user/org/project rooms,
//! presence, recovery after reconnect, fan-out across instances) and `ncy.realtime.v1.RealtimeService`
//! for internal services.
//!
//! This crate is the service shell: settings (including JWT verification keys, checked at start),
//! boot, gRPC with health and reflection, and drain. The WebSocket protocol and the room bus arrive
//! with their own issue: until then the WebSocket port answers `501 Not Implemented` and every
//! RealtimeService RPC answers `UNIMPLEMENTED`, never a fake success.
use std::future::Future;

use axum::{Json, Router, http::StatusCode};
use ncy_proto::realtime::v1::realtime_service_server::{RealtimeService, RealtimeServiceServer};
use ncy_runtime::{LocalAddrs, RuntimeError, ServiceRuntime};
use tokio::net::TcpListener;
use tonic::server::NamedService;

mod settings;

pub use settings::{JwtSettings, Settings};

/// Service name in logs, traces and metrics.
pub const SERVICE: &str = "realtime-gateway";

/// The `RealtimeService` implementation.
#[derive(Debug, Default)]
struct RealtimeApi;

#[tonic::async_trait]
impl RealtimeService for RealtimeApi {}

/// A built, not yet running, realtime gateway.
pub struct Application {
    runtime: ServiceRuntime,
    ws_listener: TcpListener,
}

impl Application {
    /// Binds the gRPC, admin and WebSocket listeners; does not wait for Redis or PostgreSQL.
    pub async fn build(settings: Settings) -> Result<Self, RuntimeError> {
        let runtime = ServiceRuntime::build(settings.common).await?;
        let ws_listener = ncy_runtime::service::bind(settings.ws_addr).await?;
        Ok(Self {
            runtime,
            ws_listener,
        })
    }

    /// Where this instance listens, WebSocket included.
    pub fn local_addrs(&self) -> LocalAddrs {
        LocalAddrs {
            websocket: self.ws_listener.local_addr().ok(),
            ..self.runtime.local_addrs()
        }
    }

    /// Serves until `shutdown` completes, then drains within the grace period.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), RuntimeError> {
        let Self {
            runtime,
            ws_listener,
        } = self;
        let stop = runtime.shutdown_token();
        let not_yet = Router::new().fallback(|| async {
            (
                StatusCode::NOT_IMPLEMENTED,
                Json(serde_json::json!({
                    "error": "not_implemented",
                    "message": "the WebSocket protocol is not implemented in this version"
                })),
            )
        });
        runtime.spawn(async move {
            if let Err(e) = axum::serve(ws_listener, not_yet)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
            {
                tracing::warn!(error = %e, "websocket listener stopped with an error");
            }
        });
        let routes = tonic::service::Routes::new(RealtimeServiceServer::new(RealtimeApi));
        runtime
            .serve(
                routes,
                &[RealtimeServiceServer::<RealtimeApi>::NAME],
                shutdown,
            )
            .await
    }
}
