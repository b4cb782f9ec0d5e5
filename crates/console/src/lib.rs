//! The operator web console: server-rendered pages over the services' gRPC APIs, for the person
//! who opens it at 3 a.m. during an incident.
//!
//! It talks to the services only through their gRPC APIs (`upstream.rs`), never to Redis or
//! PostgreSQL, so it works against any deployment and any number of replicas; it holds no state
//! of its own (sessions are signed cookies), so any number of console replicas can run too.
//!
//! Pages (`pages/`): the overview of every queue (live over Server-Sent Events, `live.rs`) with
//! throughput charts, a queue's jobs by state (filtered by type, owner and payload text) with bulk
//! actions, one job (live) with its actions, the dead letters, the recurring
//! schedules, the cache-gateway (stats, key lookup, invalidation) and the realtime-gateway
//! (stats, presence, a test message, disconnecting a user). Every read works without JavaScript; `static/console.js` only makes pages live and
//! asks to confirm actions.
//!
//! Access: users and roles come from `NCY_CONSOLE_USERS_FILE` (`users.rs`); a signed session
//! cookie (`session.rs`) is checked in front of every page (`access.rs`), every state-changing
//! request must come from a console page (`csrf.rs`), and every action needs the `operator`
//! role and is audited (`target = "audit"`). Sign-in attempts are limited per name and per
//! address across every replica through the cache-gateway (`login_limit.rs`). **A session cookie copied from a browser stays valid
//! until its idle timeout runs out**: there is no server-side revocation list in this slice (see
//! `session.rs` for what does end a session).
//!
//! Ops: the standard admin port (`NCY_ADMIN_ADDR`: `/healthz`, `/readyz`, `/metrics`) from
//! ncy-runtime's pieces. The console does not use `ServiceRuntime`, which binds a gRPC listener
//! and probes Redis: the console has no gRPC API and must not depend on Redis. It is ready once
//! listening and not draining — a service it calls being down is shown on the pages (503) rather
//! than taking the console out of its load balancer.
#![forbid(unsafe_code)]

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::DefaultBodyLimit,
    middleware::{from_fn, from_fn_with_state},
    routing::{get, post},
};
use ncy_runtime::{RuntimeError, readiness::Readiness, service::bind};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::sync::CancellationToken;

pub mod access;
pub mod assets;
pub mod boot;
pub mod csrf;
pub mod error;
pub mod live;
pub mod login_limit;
pub mod middleware;
pub mod pages;
pub mod session;
pub mod settings;
pub mod upstream;
pub mod users;

pub use error::ConsoleError;
pub use settings::{SERVICE, Settings};

/// Password verifications allowed at once (each is ~20 MB and tens of ms of argon2).
pub const LOGIN_CONCURRENCY: usize = 2;

/// Largest request body: the forms are a few fields.
const MAX_BODY_BYTES: usize = 16 * 1024;

/// What every handler shares.
pub struct AppState {
    jobs: upstream::JobsClient,
    cache: upstream::CacheClient,
    realtime: upstream::RealtimeClient,
    users: users::Users,
    sessions: session::SessionKey,
    login_permits: Semaphore,
    overview: Arc<live::OverviewHub>,
    /// The overview charts' history, fetched at most once a minute.
    history: pages::history::HistoryCache,
    /// Fires when the console drains: live streams and the poller stop.
    cancel: CancellationToken,
}

/// Where a console listens.
#[derive(Debug, Clone, Copy)]
pub struct ConsoleAddrs {
    /// The pages (`NCY_CONSOLE_ADDR`).
    pub http: SocketAddr,
    /// `/healthz`, `/readyz`, `/metrics` (`NCY_ADMIN_ADDR`).
    pub admin: SocketAddr,
}

/// A built, not yet running, console.
pub struct Application {
    listener: TcpListener,
    admin_listener: TcpListener,
    grace: Duration,
    state: Arc<AppState>,
}

impl Application {
    /// Binds the listeners and prepares the gRPC client (which connects on first use).
    pub async fn build(settings: Settings) -> Result<Self, RuntimeError> {
        let listener = bind(settings.addr).await?;
        let admin_listener = bind(settings.admin_addr).await?;
        let key = upstream::ApiKey::new(settings.api_key.as_ref()).ok_or_else(|| {
            RuntimeError::ApiKeys("NCY_CONSOLE_API_KEY is not printable ASCII".to_owned())
        })?;
        let jobs = upstream::jobs_client(&settings.jobs_url, key.clone())?;
        let cache = upstream::cache_client(&settings.cache_url, key.clone())?;
        let realtime = upstream::realtime_client(&settings.realtime_url, key)?;
        let cancel = CancellationToken::new();
        let state = AppState {
            overview: Arc::new(live::OverviewHub::new(
                jobs.clone(),
                cache.clone(),
                realtime.clone(),
                cancel.clone(),
            )),
            jobs,
            cache,
            realtime,
            users: users::Users::new(settings.users_file, settings.users),
            sessions: session::SessionKey::new(
                settings.session_secret,
                settings.session_idle,
                settings.secure_cookie,
            ),
            login_permits: Semaphore::new(LOGIN_CONCURRENCY),
            history: pages::history::HistoryCache::default(),
            cancel,
        };
        Ok(Self {
            listener,
            admin_listener,
            grace: settings.shutdown_grace,
            state: Arc::new(state),
        })
    }

    /// Where this instance listens.
    pub fn local_addrs(&self) -> ConsoleAddrs {
        ConsoleAddrs {
            http: self
                .listener
                .local_addr()
                .unwrap_or(([0, 0, 0, 0], 0).into()),
            admin: self
                .admin_listener
                .local_addr()
                .unwrap_or(([0, 0, 0, 0], 0).into()),
        }
    }

    /// The overview poller of this instance (how many QueueStats calls it made).
    pub fn overview(&self) -> Arc<live::OverviewHub> {
        self.state.overview.clone()
    }

    /// Serves until `shutdown` completes, then drains: not ready, no new connections, live
    /// streams ended, in-flight requests finished — within `NCY_SHUTDOWN_GRACE_SECS`.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), RuntimeError> {
        let Self {
            listener,
            admin_listener,
            grace,
            state,
        } = self;
        let cancel = state.cancel.clone();
        let readiness = Readiness::new(&[]);
        let prometheus = ncy_runtime::metrics::prometheus();
        describe_metrics();
        tokio::spawn(ncy_runtime::metrics::upkeep(
            prometheus.clone(),
            ncy_runtime::metrics::UPKEEP_INTERVAL,
            cancel.clone(),
        ));
        let admin_stop = CancellationToken::new();
        let admin = tokio::spawn(
            axum::serve(
                admin_listener,
                ncy_runtime::admin::router(readiness.clone(), prometheus),
            )
            .with_graceful_shutdown(admin_stop.clone().cancelled_owned())
            .into_future(),
        );
        let drain = CancellationToken::new();
        let addr = listener.local_addr().ok();
        let server = axum::serve(
            listener,
            router(state).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(drain.clone().cancelled_owned())
        .into_future();
        tracing::info!(service = SERVICE, addr = ?addr, "serving the console");
        let mut server = std::pin::pin!(server);
        let mut shutdown = std::pin::pin!(shutdown);
        let result = tokio::select! {
            result = &mut server => result.map_err(RuntimeError::Io),
            () = &mut shutdown => {
                tracing::info!(service = SERVICE, grace_secs = grace.as_secs(), "shutdown requested; draining");
                readiness.start_draining();
                cancel.cancel();
                drain.cancel();
                match tokio::time::timeout(grace, &mut server).await {
                    Ok(result) => result.map_err(RuntimeError::Io),
                    Err(_) => {
                        tracing::warn!(service = SERVICE, "requests did not finish within the grace period");
                        Ok(())
                    }
                }
            }
        };
        cancel.cancel();
        admin_stop.cancel();
        match tokio::time::timeout(Duration::from_secs(2), admin).await {
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "admin server stopped with an error"),
            Err(_) => tracing::warn!("admin server did not stop in time"),
            _ => {}
        }
        tracing::info!(service = SERVICE, "stopped");
        result
    }
}

/// Every route of the console.
fn router(state: Arc<AppState>) -> Router {
    use pages::{bulk, cache, dead, job, job_actions, login, overview, queue, realtime, schedules};
    let signed_in = Router::new()
        .route("/", get(overview::page))
        .route("/queues/{queue}", get(queue::page))
        .route("/queues/{queue}/pause", post(queue::pause))
        .route("/queues/{queue}/resume", post(queue::resume))
        .route(
            "/queues/{queue}/bulk/{action}",
            get(bulk::confirm).post(bulk::run),
        )
        .route("/jobs/{id}", get(job::page))
        .route("/jobs/{id}/cancel", post(job_actions::cancel))
        .route("/jobs/{id}/retry", post(job_actions::retry))
        .route("/jobs/{id}/promote", post(job_actions::promote))
        .route("/jobs/{id}/delete", post(job_actions::delete))
        .route("/dead", get(dead::page))
        .route("/dead/{id}/retry", post(dead::retry))
        .route("/dead/{id}/delete", post(dead::delete))
        .route("/schedules", get(schedules::page))
        .route("/schedules/{name}/run", post(schedules::run))
        .route("/schedules/{name}/pause", post(schedules::pause))
        .route("/schedules/{name}/resume", post(schedules::resume))
        .route(
            "/schedules/new",
            get(schedules::form::new_form).post(schedules::form::create),
        )
        .route(
            "/schedules/{name}/edit",
            get(schedules::form::edit_form).post(schedules::form::update),
        )
        .route("/schedules/{name}/delete", post(schedules::form::delete))
        .route("/cache", get(cache::page))
        .route("/cache/invalidate/entity", post(cache::invalidate_entity))
        .route("/cache/invalidate/tag", post(cache::invalidate_tag))
        .route("/cache/invalidate/pattern", post(cache::invalidate_pattern))
        .route("/realtime", get(realtime::page))
        .route("/realtime/send", post(realtime::send))
        .route("/realtime/disconnect", post(realtime::disconnect))
        .route("/events/overview", get(live::overview_events))
        .route("/events/jobs/{id}", get(live::job_events))
        .route_layer(from_fn_with_state(state.clone(), access::require_session));
    let open = Router::new()
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/static/console.js", get(assets::script))
        .route("/static/console.css", get(assets::style));
    signed_in
        .merge(open)
        .fallback(not_found)
        .layer(from_fn(csrf::same_origin_writes))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(from_fn(middleware::security_headers))
        .layer(from_fn(middleware::track))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// The HELP lines of the console's own series in `/metrics`.
fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "console_http_requests_total",
        "Console HTTP requests by route template, method and status"
    );
    describe_histogram!(
        "console_http_request_duration_seconds",
        Unit::Seconds,
        "Console HTTP request latency to the response head, by route template and method"
    );
    describe_gauge!(
        "console_sse_clients",
        "Server-Sent Events streams open, by stream (overview, job)"
    );
    describe_gauge!(
        "console_overview_pollers",
        "Overview pollers running (0 or 1 per instance: 1 while someone listens)"
    );
    describe_counter!(
        "console_overview_polls_total",
        "QueueStats calls made by the overview poller"
    );
    describe_counter!(
        "console_upstream_errors_total",
        "Failed gRPC calls to the services, by service and status code"
    );
    describe_counter!(
        "console_logins_total",
        "Sign-ins by outcome (ok, refused, rate_limited)"
    );
    describe_counter!(
        "console_login_limit_unchecked_total",
        "Sign-in attempts let through unchecked because the cache-gateway's rate limiter could not be asked"
    );
    describe_counter!(
        "console_sessions_refused_total",
        "Session cookies refused, by reason"
    );
    describe_counter!(
        "console_csrf_refused_total",
        "State-changing requests refused as cross-site"
    );
    describe_counter!(
        "console_users_file_errors_total",
        "Times the users file could not be read or parsed while serving (the last good users kept)"
    );
}

async fn not_found() -> ConsoleError {
    ConsoleError::NotFound("There is no such page.".to_owned())
}
