//! [`ServiceRuntime`]: what every service shares at run time — its bound listeners, Redis and
//! PostgreSQL pools, readiness probes, the admin HTTP server, and a gRPC server with
//! `grpc.health.v1` health and server reflection — plus the graceful drain on shutdown.
//!
//! A service builds one in `Application::build`, adds its own gRPC services and background tasks,
//! and calls [`ServiceRuntime::serve`] from `run_until_stopped`.
use std::{future::Future, net::SocketAddr, time::Duration};

use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::{
    auth::{ApiKeys, AuthLayer},
    error::RuntimeError,
    grpc_metrics::GrpcMetricsLayer,
    readiness::{self, Readiness},
    redis::RedisPool,
    settings::ApiAuthSettings,
    settings::CommonSettings,
};

/// A service's shared machinery. See the module documentation.
pub struct ServiceRuntime {
    settings: CommonSettings,
    redis: RedisPool,
    postgres: Option<PgPool>,
    readiness: Readiness,
    prometheus: PrometheusHandle,
    grpc_listener: TcpListener,
    admin_listener: TcpListener,
    cancel: CancellationToken,
    tasks: TaskTracker,
    api_keys: Option<ApiKeys>,
    /// Per named gRPC service, the dependencies it cannot work without (its gRPC health).
    needs: Vec<(&'static str, &'static [&'static str])>,
}

/// Binds `addr`; port 0 picks a free port (tests).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, RuntimeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| RuntimeError::Bind { addr, source })
}

impl ServiceRuntime {
    /// Binds the gRPC and admin listeners and creates the pools (without connecting).
    pub async fn build(settings: CommonSettings) -> Result<Self, RuntimeError> {
        let grpc_listener = bind(settings.grpc_addr).await?;
        let admin_listener = bind(settings.admin_addr).await?;
        let redis = RedisPool::new(&settings.redis)?;
        let postgres = settings
            .postgres
            .as_ref()
            .map(|pg| crate::postgres::pool(pg, settings.service))
            .transpose()?;
        let api_keys = match &settings.api_auth {
            ApiAuthSettings::Keys { file, .. } => {
                Some(ApiKeys::load(file).map_err(RuntimeError::ApiKeys)?)
            }
            ApiAuthSettings::Disabled | ApiAuthSettings::Unconfigured => None,
        };
        let mut dependencies = vec!["redis"];
        if postgres.is_some() {
            dependencies.push("postgres");
        }
        Ok(Self {
            readiness: Readiness::new(&dependencies),
            prometheus: crate::metrics::prometheus(),
            settings,
            redis,
            postgres,
            grpc_listener,
            admin_listener,
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
            api_keys,
            needs: Vec::new(),
        })
    }

    /// Declares that the named gRPC service cannot work without `dependencies`: its gRPC health
    /// answers `NOT_SERVING` while one of them is down, though the instance stays ready (the
    /// overall `""` health and `/readyz`; see [`crate::readiness`]).
    pub fn requires(&mut self, grpc_service: &'static str, dependencies: &'static [&'static str]) {
        self.needs.push((grpc_service, dependencies));
    }

    /// The settings this runtime was built from.
    pub fn settings(&self) -> &CommonSettings {
        &self.settings
    }

    /// The Redis pool.
    pub fn redis(&self) -> &RedisPool {
        &self.redis
    }

    /// The PostgreSQL pool, for services that declared they need one.
    pub fn postgres(&self) -> Option<&PgPool> {
        self.postgres.as_ref()
    }

    /// Readiness of this instance.
    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    /// The address the gRPC server listens on.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_listener
            .local_addr()
            .unwrap_or(self.settings.grpc_addr)
    }

    /// The address the admin HTTP server listens on.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_listener
            .local_addr()
            .unwrap_or(self.settings.admin_addr)
    }

    /// Fires when the service starts draining; background tasks watch it and stop.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Runs a background task that the drain waits for (up to the grace period).
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(task);
    }

    /// Serves `routes` (the service's own gRPC services, named in `grpc_services` for health) plus
    /// health and reflection until `shutdown` completes, then drains: readiness and health turn
    /// not-serving, the gRPC server stops accepting and finishes in-flight calls, background tasks are
    /// cancelled and awaited — all within `NCY_SHUTDOWN_GRACE_SECS`.
    pub async fn serve(
        self,
        routes: Routes,
        grpc_services: &[&'static str],
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), RuntimeError> {
        let Self {
            settings,
            redis,
            postgres,
            readiness,
            prometheus,
            grpc_listener,
            admin_listener,
            cancel,
            tasks,
            api_keys,
            needs,
        } = self;
        let service = settings.service;
        let grace = settings.shutdown_grace;
        let auth = api_auth(&settings, api_keys, grpc_services, &cancel)?;

        let (reporter, health_service) = tonic_health::server::health_reporter();
        let health = HealthEntries::new(grpc_services, &needs, &readiness);
        health.sync(&reporter, &readiness, false).await;
        tokio::spawn(watch_health(
            readiness.clone(),
            reporter.clone(),
            health.clone(),
            cancel.clone(),
        ));
        readiness::spawn_probes(
            &readiness,
            Some((redis, settings.redis.clone())),
            postgres,
            &cancel,
        );
        tokio::spawn(crate::metrics::upkeep(
            prometheus.clone(),
            crate::metrics::UPKEEP_INTERVAL,
            cancel.clone(),
        ));

        let reflection_v1 = reflection(grpc_services).build_v1()?;
        let reflection_v1alpha = reflection(grpc_services).build_v1alpha()?;
        let routes = routes
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);

        let admin_cancel = CancellationToken::new();
        let admin = {
            let router = crate::admin::router(readiness.clone(), prometheus);
            let stop = admin_cancel.clone();
            tokio::spawn(async move {
                axum::serve(admin_listener, router)
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await
            })
        };

        // The gRPC server stops accepting when `drain` fires; in-flight calls then finish.
        let drain = CancellationToken::new();
        let server = {
            let drain = drain.clone();
            tonic::transport::Server::builder()
                .max_concurrent_streams(settings.grpc_limits.max_concurrent_streams)
                .timeout(settings.grpc_limits.request_timeout)
                .layer(
                    tower_http::trace::TraceLayer::new_for_grpc()
                        .make_span_with(crate::telemetry::grpc_server_span)
                        // Client errors (NOT_FOUND, INVALID_ARGUMENT…) are not server failures; services
                        // log their own internal errors with the cause chain.
                        .on_failure(
                            tower_http::trace::DefaultOnFailure::new().level(tracing::Level::DEBUG),
                        ),
                )
                .layer(GrpcMetricsLayer)
                .layer(crate::limits::SizeLimitStatusLayer)
                .layer(auth)
                .add_routes(routes)
                .serve_with_incoming_shutdown(
                    // tonic ignores its own `tcp_nodelay` setting for a listener passed in, so set
                    // it here: without it Nagle's algorithm holds small unary replies back.
                    TcpIncoming::from(grpc_listener)
                        .with_nodelay(Some(true))
                        .with_keepalive(Some(Duration::from_secs(60))),
                    drain.cancelled_owned(),
                )
        };
        tracing::info!(service, "serving");
        let mut server = std::pin::pin!(server);
        let mut shutdown = std::pin::pin!(shutdown);
        let result = tokio::select! {
            result = &mut server => result.map_err(RuntimeError::from),
            () = &mut shutdown => {
                tracing::info!(service, grace_secs = grace.as_secs(), "shutdown requested; draining");
                readiness.start_draining();
                health.sync(&reporter, &readiness, false).await;
                cancel.cancel();
                drain.cancel();
                let deadline = tokio::time::Instant::now() + grace;
                let served = match tokio::time::timeout_at(deadline, &mut server).await {
                    Ok(result) => result.map_err(RuntimeError::from),
                    Err(_) => {
                        tracing::warn!(service, "in-flight gRPC calls did not finish within the grace period");
                        Ok(())
                    }
                };
                tasks.close();
                if tokio::time::timeout_at(deadline, tasks.wait()).await.is_err() {
                    tracing::warn!(service, "background tasks did not finish within the grace period");
                }
                served
            }
        };
        cancel.cancel();
        admin_cancel.cancel();
        match tokio::time::timeout(Duration::from_secs(2), admin).await {
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "admin server stopped with an error"),
            Err(_) => tracing::warn!("admin server did not stop in time"),
            _ => {}
        }
        tracing::info!(service, "stopped");
        result
    }
}

/// The API-key check for this server: keys from the file (re-read while serving), or none when
/// authentication is disabled or the server has no RPCs of its own (the worker: health only). A
/// server with RPCs and no keys configured refuses to start.
fn api_auth(
    settings: &CommonSettings,
    keys: Option<ApiKeys>,
    grpc_services: &[&'static str],
    cancel: &CancellationToken,
) -> Result<AuthLayer, RuntimeError> {
    let service = settings.service;
    match (&settings.api_auth, keys) {
        (ApiAuthSettings::Keys { reload, .. }, Some(keys)) => {
            metrics::gauge!("ncy_api_auth_enabled").set(1.0);
            tokio::spawn(keys.clone().watch(*reload, cancel.clone()));
            Ok(AuthLayer::new(Some(keys)))
        }
        (ApiAuthSettings::Disabled, _) => {
            metrics::gauge!("ncy_api_auth_enabled").set(0.0);
            if !grpc_services.is_empty() {
                tracing::warn!(
                    service,
                    "API authentication is DISABLED (NCY_API_AUTH=disabled): any caller that reaches the gRPC port may call every RPC"
                );
            }
            Ok(AuthLayer::new(None))
        }
        _ if grpc_services.is_empty() => Ok(AuthLayer::new(None)),
        _ => Err(RuntimeError::ApiKeys(
            "no API keys configured: set NCY_API_KEYS_FILE to a keys file (SECURITY.md), \
             or NCY_API_AUTH=disabled on a laptop"
                .to_owned(),
        )),
    }
}

/// Reflection over every NCY descriptor, advertising only the services this server really serves
/// (plus health and reflection), so generic clients do not see another service's API here.
fn reflection(grpc_services: &[&'static str]) -> tonic_reflection::server::Builder<'static> {
    let mut builder = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(ncy_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .with_service_name("grpc.health.v1.Health")
        .with_service_name("grpc.reflection.v1.ServerReflection")
        .with_service_name("grpc.reflection.v1alpha.ServerReflection");
    for name in grpc_services {
        builder = builder.with_service_name(*name);
    }
    builder
}

/// What the gRPC health service reports: `""` (the whole server) follows readiness; each named
/// service also needs the dependencies declared with [`ServiceRuntime::requires`];
/// `ncy.dependency.<name>` says whether that dependency answers (for `ncyctl health`).
#[derive(Clone)]
struct HealthEntries {
    services: Vec<(&'static str, &'static [&'static str])>,
    dependencies: Vec<(&'static str, String)>,
}

/// The health name of a dependency's entry.
pub fn dependency_health_name(dependency: &str) -> String {
    format!("ncy.dependency.{dependency}")
}

impl HealthEntries {
    fn new(
        grpc_services: &[&'static str],
        needs: &[(&'static str, &'static [&'static str])],
        readiness: &Readiness,
    ) -> Self {
        let services = grpc_services
            .iter()
            .map(|name| {
                let deps = needs
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or(&[][..], |(_, d)| *d);
                (*name, deps)
            })
            .collect();
        let dependencies = readiness
            .dependencies()
            .into_iter()
            .map(|(name, _)| (name, dependency_health_name(name)))
            .collect();
        Self {
            services,
            dependencies,
        }
    }

    /// Sets every entry from `readiness`; with `serving` false, every service entry is
    /// `NOT_SERVING` whatever readiness says (the drain).
    async fn sync(&self, reporter: &HealthReporter, readiness: &Readiness, serving: bool) {
        let status = |ok: bool| {
            if ok {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            }
        };
        reporter
            .set_service_status("", status(serving && readiness.is_ready()))
            .await;
        for (name, deps) in &self.services {
            reporter
                .set_service_status(*name, status(serving && readiness.is_serving(deps)))
                .await;
        }
        let up = readiness.dependencies();
        for (dep, entry) in &self.dependencies {
            let ok = up.iter().any(|(n, u)| n == dep && *u);
            reporter.set_service_status(entry, status(ok)).await;
        }
    }
}

/// Mirrors readiness and dependency states into gRPC health until the drain starts.
async fn watch_health(
    readiness: Readiness,
    reporter: HealthReporter,
    health: HealthEntries,
    cancel: CancellationToken,
) {
    let mut changes = readiness.subscribe();
    loop {
        changes.borrow_and_update();
        health.sync(&reporter, &readiness, true).await;
        tokio::select! {
            () = cancel.cancelled() => return,
            changed = changes.changed() => if changed.is_err() { return },
        }
    }
}

/// Where a running service listens (port 0 in settings becomes the real port here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalAddrs {
    /// gRPC API, health and reflection.
    pub grpc: SocketAddr,
    /// `/metrics`, `/healthz`, `/readyz`.
    pub admin: SocketAddr,
    /// The browser WebSocket endpoint, for the realtime gateway.
    pub websocket: Option<SocketAddr>,
}

impl ServiceRuntime {
    /// The gRPC and admin addresses (no WebSocket).
    pub fn local_addrs(&self) -> LocalAddrs {
        LocalAddrs {
            grpc: self.grpc_addr(),
            admin: self.admin_addr(),
            websocket: None,
        }
    }
}
