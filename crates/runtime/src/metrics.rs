//! The process-wide Prometheus recorder behind every service's `/metrics`.
//!
//! One recorder per process (the `metrics` facade is global); several services started in one test
//! process share it, which is harmless because every series carries its own labels.
use std::{sync::OnceLock, time::Duration};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

/// Latency buckets (seconds) shared by every `*_duration_seconds` histogram: 0.1 ms to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The handle that renders `/metrics`, installing the global recorder on first use.
pub fn prometheus() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(LATENCY_BUCKETS)
                .map(PrometheusBuilder::build_recorder)
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            describe();
            handle
        })
        .clone()
}

/// How often a service folds pending histogram samples into their buckets (see [`upkeep`]).
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Folds the histogram samples recorded since the last fold into their buckets every `every`,
/// until `cancel` fires.
///
/// The recorder keeps every histogram sample until something drains it; only a scrape of
/// `/metrics` did. An instance nobody scraped (a laptop, a cluster without Prometheus, a scraper
/// that is down) grew by 16 bytes (value and time) per timed operation, without bound: hundreds
/// of MB an hour for a busy cache-gateway. Every service runs this from `ServiceRuntime::serve`.
pub async fn upkeep(handle: PrometheusHandle, every: Duration, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => handle.run_upkeep(),
        }
    }
}

fn describe() {
    metrics::describe_gauge!(
        "ncy_dependency_up",
        "1 when the named dependency (redis, postgres) answers its probe"
    );
    metrics::describe_counter!(
        "grpc_server_handled_total",
        "gRPC calls handled, by method and status code"
    );
    metrics::describe_histogram!(
        "grpc_server_handling_seconds",
        metrics::Unit::Seconds,
        "gRPC call latency from request to response headers, by method"
    );
}
