//! A gRPC call that carries W3C `traceparent` metadata is served inside a span of the caller's trace,
//! and that span is exported. Its own test binary, not a module of `it`: `telemetry::install` sets
//! the process-global subscriber, propagator and tracer provider, once for the life of the process
//! (a second install keeps the first). Beside other tests it would pass only if it installed
//! first, and every other test's spans and logs would go through its exporter from then on.
use std::time::Duration;

use ncy_runtime::{CommonSettings, ServiceRuntime, ServiceSpec, telemetry};
use ncy_testkit::{InProcess, env_of, service_env, unique_prefix};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN_ID: &str = "00f067aa0ba902b7";

#[tokio::test]
async fn incoming_traceparent_continues_the_callers_trace() -> anyhow::Result<()> {
    let spec = ServiceSpec {
        name: "tracing-test",
        default_grpc_addr: "127.0.0.1:0",
        default_admin_addr: "127.0.0.1:0",
        needs_postgres: false,
        default_runtime_threads: 0,
    };
    let settings = CommonSettings::load(spec, &env_of(&service_env(&unique_prefix(), None)))?;
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let _guard = telemetry::install("tracing-test", &settings.telemetry, Some(provider.clone()));

    let runtime = ServiceRuntime::build(settings).await?;
    let addr = runtime.local_addrs().grpc;
    let running = InProcess::serving(addr, |stop| {
        runtime.serve(tonic::service::Routes::default(), &[], stop)
    })
    .await;

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01").parse()?,
    );
    HealthClient::new(channel).check(request).await?;

    running
        .stop(Duration::from_secs(10))
        .await
        .map_err(anyhow::Error::msg)?;
    provider.force_flush()?;
    let spans = exporter.get_finished_spans()?;
    let served = spans
        .iter()
        .find(|s| s.span_context.trace_id().to_string() == TRACE_ID)
        .unwrap_or_else(|| {
            panic!(
                "no span in the caller's trace among {:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        });
    assert_eq!(served.name, "/grpc.health.v1.Health/Check");
    assert_eq!(served.parent_span_id.to_string(), PARENT_SPAN_ID);
    Ok(())
}
