//! realtime-gateway: the WebSocket server browsers connect to (JWT auth, user/org/project rooms,
//! presence, recovery after reconnect, fan-out across instances) and `ncy.realtime.v1.RealtimeService`
//! for internal services.
//!
//! Layout: [`settings`] (environment), `auth` (JWT), `protocol` (frames), `ws` (upgrade: Origin,
//! cap, drain), `connection` (one socket's reader and writer), `hub` (local rooms and fan-out),
//! `sessions` (sockets by user), `access` (who may be in which room; revocation), `control`
//! (server-side commands to sockets, across instances), `api` (gRPC), `error` (statuses, close
//! codes, error frames), `metrics`. Each instance reports its `Stats` to ncy-runtime's instance
//! registry, so that any one answers `Stats(all_instances)` for all. The room bus itself —
//! publish script, history, subscriber, presence — is the `ncy-bus` crate, shared with publishers
//! outside the gateway.
use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize},
    },
};

use ncy_bus::{BusPublisher, History, Presence, Subscriber, SubscriberConfig};
use ncy_proto::realtime::v1::realtime_service_server::RealtimeServiceServer;
use ncy_runtime::{LocalAddrs, RuntimeError, ServiceRuntime};
use tokio::net::TcpListener;
use tonic::server::NamedService;

mod access;
mod api;
mod auth;
mod connection;
mod control;
pub mod error;
mod gateway;
mod hub;
mod metrics;
mod presence_writes;
mod protocol;
mod sessions;
mod settings;
mod ws;

/// Public for fuzzing only (`fuzz/fuzz_targets/ws_frame.rs`, `jwt_claims.rs`): the client-frame
/// types `connection` parses every text frame into, and the JWT verifier. Not an API for other crates.
#[doc(hidden)]
pub use auth::{Identity, Verifier};
#[doc(hidden)]
pub use protocol::{ClientFrame, Position};
pub use settings::{JwtSettings, Limits, Settings};

/// Service name in logs, traces and metrics.
pub const SERVICE: &str = "realtime-gateway";

/// A built, not yet running, realtime gateway.
pub struct Application {
    runtime: ServiceRuntime,
    ws_listener: TcpListener,
    settings: Settings,
}

impl Application {
    /// Binds the gRPC, admin and WebSocket listeners; does not wait for Redis or PostgreSQL.
    pub async fn build(settings: Settings) -> Result<Self, RuntimeError> {
        let runtime = ServiceRuntime::build(settings.common.clone()).await?;
        let ws_listener = ncy_runtime::service::bind(settings.ws_addr).await?;
        Ok(Self {
            runtime,
            ws_listener,
            settings,
        })
    }

    /// Where this instance listens, WebSocket included.
    pub fn local_addrs(&self) -> LocalAddrs {
        LocalAddrs {
            websocket: self.ws_listener.local_addr().ok(),
            ..self.runtime.local_addrs()
        }
    }

    /// Serves until `shutdown` completes, then drains within the grace period: sockets get close
    /// code 1012 ("going away" — reconnect elsewhere and recover from history), and the WebSocket
    /// listener answers upgrades with HTTP 503 and `Retry-After` until the last one is gone.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), RuntimeError> {
        let Self {
            mut runtime,
            ws_listener,
            settings,
        } = self;
        metrics::describe();
        metrics::connections(0);
        metrics::rooms(0);
        let limits = settings.limits.clone();
        let keys = settings.common.redis.keys.clone();
        let redis = runtime.redis().clone();
        let db = runtime
            .postgres()
            .cloned()
            .ok_or_else(|| RuntimeError::Postgres("DATABASE_URL is required".into()))?;
        let client = settings.common.redis.dedicated_client()?;
        let history = History::new(redis.clone(), keys.clone());
        let hub = Arc::new(hub::Hub::new(history));
        let instance_id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let stop = runtime.shutdown_token();
        let deliver_hub = hub.clone();
        let control_client = client.clone();
        let (subscriber, sub_task) = Subscriber::start(
            client,
            redis.clone(),
            keys.clone(),
            SubscriberConfig {
                instance_id: instance_id.clone(),
                probe_interval: limits.bus_probe,
            },
            Arc::new(move |m| deliver_hub.deliver(m)),
            stop.clone(),
        );
        hub.set_subscriber(subscriber);
        runtime.spawn(async move {
            let _ = sub_task.await;
        });
        let gw = Arc::new(gateway::Gateway {
            verifier: auth::Verifier::new(&settings.jwt),
            frontend_url: settings.frontend_url.clone(),
            hub: hub.clone(),
            publisher: BusPublisher::new(redis.clone(), keys.clone())
                .with_history(limits.history_len, limits.history_ttl)
                .with_dedup_window(limits.dedup_window),
            presence: Presence::new(redis.clone(), keys.clone(), limits.presence_ttl),
            presence_writes: presence_writes::PresenceWrites::start(Presence::new(
                redis.clone(),
                keys.clone(),
                limits.presence_ttl,
            )),
            redis,
            keys,
            db,
            membership: gateway::Gateway::membership_cache(limits.membership_cache),
            sessions: sessions::Sessions::default(),
            access_epoch: AtomicU64::new(0),
            instance_id,
            started_at_ms: chrono::Utc::now().timestamp_millis(),
            stop: stop.clone(),
            connections: AtomicUsize::new(0),
            all_closed: tokio::sync::Notify::new(),
            authenticated: AtomicUsize::new(0),
            next_conn_id: AtomicU64::new(1),
            messages_in: AtomicU64::new(0),
            messages_published: AtomicU64::new(0),
            slow_client_disconnects: AtomicU64::new(0),
            churn: Arc::default(),
            limits,
        });
        runtime.spawn(presence_heartbeat(gw.clone()));
        runtime.spawn(access::listen(
            gw.clone(),
            settings.access_notify_channel.clone(),
        ));
        runtime.spawn(access::backstop(gw.clone(), gw.limits.access_recheck));
        runtime.spawn(control::listen(gw.clone(), control_client));
        if settings.memory_trim {
            runtime.spawn(ncy_runtime::memory::trim_after_bursts(
                gw.churn.clone(),
                stop.clone(),
            ));
        }
        runtime.spawn(ws::serve(
            ws_listener,
            gw.clone(),
            settings.common.shutdown_grace,
        ));
        runtime.report_instance(gw.instance_id.clone(), {
            let gw = gw.clone();
            move || std::future::ready(api::stats::report(&gw))
        });
        let api = api::RealtimeApi::new(gw, runtime.instances());
        let routes = tonic::service::Routes::new(RealtimeServiceServer::new(api));
        // Publish, presence and the control commands all go through Redis; browsers' sockets stay
        // served (and the instance ready) while it is down.
        runtime.requires(RealtimeServiceServer::<api::RealtimeApi>::NAME, &["redis"]);
        runtime
            .serve(
                routes,
                &[RealtimeServiceServer::<api::RealtimeApi>::NAME],
                shutdown,
            )
            .await
    }
}

/// Refreshes the presence entries of every local membership, a third of the TTL apart.
async fn presence_heartbeat(gw: Arc<gateway::Gateway>) {
    let mut tick = tokio::time::interval(gw.limits.presence_ttl / 3);
    loop {
        tokio::select! {
            () = gw.stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let entries: Vec<(String, String, String)> = gw
            .hub
            .memberships()
            .into_iter()
            .filter(|(room, _, _)| presence_writes::recorded(room))
            .map(|(room, user, id)| (room, user, format!("{}-{id}", gw.instance_id)))
            .collect();
        for chunk in entries.chunks(1000) {
            if let Err(e) = gw.presence.refresh(chunk).await {
                tracing::debug!(error = %e, "presence heartbeat failed");
                break;
            }
        }
    }
}
