//! The small HTTP admin port every service has: `/metrics` (Prometheus), `/healthz` (liveness: the
//! process answers) and `/readyz` (readiness: dependencies up and not draining; 503 otherwise).
use axum::{Json, Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::readiness::Readiness;

#[derive(Clone)]
struct AdminState {
    readiness: Readiness,
    prometheus: PrometheusHandle,
}

/// The admin router.
pub fn router(readiness: Readiness, prometheus: PrometheusHandle) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(AdminState {
            readiness,
            prometheus,
        })
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    let code = if state.readiness.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(state.readiness.report()))
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    state.prometheus.run_upkeep();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.prometheus.render(),
    )
}
