//! Logs and traces: `tracing` with JSON (or text) logs, OpenTelemetry OTLP export when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, and W3C trace-context propagation through gRPC metadata
//! and through the jobs (a job keeps the `traceparent` it was enqueued under; its attempts are
//! children of it). JSON log lines inside an exported span carry its `trace_id` and `span_id`
//! ([`crate::log_trace_ids`]).
use std::collections::HashMap;

use opentelemetry::{
    Context, global,
    propagation::{Extractor, Injector},
    trace::{TraceContextExt as _, TracerProvider as _},
};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{propagation::TraceContextPropagator, trace::SdkTracerProvider};
use std::sync::atomic::{AtomicBool, Ordering};

use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{
    EnvFilter, Layer, filter::LevelFilter, layer::SubscriberExt, util::SubscriberInitExt,
};

use crate::settings::{LogFormat, TelemetrySettings};

/// Whether spans are exported (an OpenTelemetry provider is installed). Without export, the per-call
/// span is a DEBUG span, so a production log level (INFO) skips building it on the hot path.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Keeps the trace exporter alive; dropping it flushes pending spans.
#[must_use = "dropping the guard stops trace export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("telemetry: flushing spans failed: {e}");
        }
    }
}

/// Installs the global subscriber. Safe to call more than once (later calls keep the first subscriber),
/// which matters for tests that start several services in one process.
pub fn init(service: &'static str, settings: &TelemetrySettings) -> TelemetryGuard {
    let provider = settings.otlp_endpoint.as_deref().and_then(|endpoint| {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build();
        match exporter {
            Ok(exporter) => Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(
                        opentelemetry_sdk::Resource::builder()
                            .with_service_name(service)
                            .build(),
                    )
                    .build(),
            ),
            Err(e) => {
                eprintln!("telemetry: OTLP exporter for {endpoint} not started: {e}");
                None
            }
        }
    });
    install(service, settings, provider)
}

/// Installs the global subscriber exporting spans through `provider` (when given). [`init`] builds
/// the provider from settings; tests pass one with an in-memory exporter.
pub fn install(
    service: &'static str,
    settings: &TelemetrySettings,
    provider: Option<SdkTracerProvider>,
) -> TelemetryGuard {
    global::set_text_map_propagator(TraceContextPropagator::new());
    let filter =
        EnvFilter::try_new(&settings.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    // RUST_LOG filters the log output only: spans are exported at INFO and above whatever the log
    // level, so `RUST_LOG=warn` does not silently switch tracing off.
    let logs = match settings.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .map_event_format(crate::log_trace_ids::WithTraceIds)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer().boxed(),
    };
    let otel = provider.as_ref().map(|p| {
        EXPORTING.store(true, Ordering::Relaxed);
        global::set_tracer_provider(p.clone());
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer(service))
            .with_filter(LevelFilter::INFO)
    });
    let _already_set = tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(otel)
        .try_init();
    TelemetryGuard { provider }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// The span for one incoming gRPC call, child of the caller's trace when `traceparent` is present.
/// When spans are not exported it is a DEBUG span (free unless `RUST_LOG` asks for debug).
pub fn grpc_server_span<B>(request: &http::Request<B>) -> tracing::Span {
    if !EXPORTING.load(Ordering::Relaxed) {
        return tracing::debug_span!("grpc.server", rpc.method = %request.uri().path(), api.key = tracing::field::Empty);
    }
    let parent: Context =
        global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(request.headers())));
    let path = request.uri().path();
    let span = tracing::info_span!("grpc.server", otel.kind = "server", otel.name = %path, rpc.method = %path, api.key = tracing::field::Empty);
    if let Err(e) = span.set_parent(parent) {
        tracing::debug!(error = %e, "could not attach remote trace context");
    }
    span
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// A tonic client interceptor that sends the current span's trace context (`traceparent`) along.
#[allow(clippy::result_large_err)] // the signature tonic's `Interceptor` requires
pub fn propagate_trace<T>(
    mut request: tonic::Request<T>,
) -> Result<tonic::Request<T>, tonic::Status> {
    let context = tracing::Span::current().context();
    global::get_text_map_propagator(|p| {
        p.inject_context(&context, &mut MetadataInjector(request.metadata_mut()))
    });
    Ok(request)
}

/// The W3C `traceparent` of the current span, when spans are exported and its context is valid
/// and sampled; `None` otherwise (then nothing is stored with a job, so it costs nothing).
pub fn current_traceparent() -> Option<String> {
    if !EXPORTING.load(Ordering::Relaxed) {
        return None;
    }
    let context = tracing::Span::current().context();
    let span = context.span();
    let sc = span.span_context();
    (sc.is_valid() && sc.is_sampled()).then(|| {
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        )
    })
}

/// Makes `span` a child of the remote context in `traceparent` (as stored with a job). A value
/// that does not parse leaves the span where it is: a job's trace is never worth failing it.
pub fn set_remote_parent(span: &tracing::Span, traceparent: &str) {
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let parent: Context = global::get_text_map_propagator(|p| p.extract(&carrier));
    if !parent.span().span_context().is_valid() {
        tracing::debug!(traceparent, "stored trace context does not parse; ignored");
        return;
    }
    if let Err(e) = span.set_parent(parent) {
        tracing::debug!(error = %e, "could not attach the stored trace context");
    }
}
