//! A tower layer recording `grpc_server_handled_total{method,code}` and
//! `grpc_server_handling_seconds{method}` for every gRPC call the server answers.
//!
//! The status code is read from the response headers, where tonic puts it for every error
//! ("trailers-only" responses); a response without it is a success whose status travels in the
//! trailers, counted as `OK`.
use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{Arc, LazyLock, RwLock},
    task::{Context, Poll},
    time::Instant,
};

use metrics::{Counter, Histogram};

use tower::{Layer, Service};

/// Layer that wraps a gRPC server's routes with [`GrpcMetrics`].
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcMetricsLayer;

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner }
    }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> Service<http::Request<B>> for GrpcMetrics<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let handles = method_handles(request.uri().path());
        let started = Instant::now();
        let future = self.inner.call(request);
        Box::pin(async move {
            let result = future.await;
            let code = match &result {
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map_or("OK", code_name),
                Err(_) => "INTERNAL",
            };
            if code == "OK" {
                handles.ok.increment(1);
            } else {
                metrics::counter!("grpc_server_handled_total", "method" => handles.method.clone(), "code" => code)
                    .increment(1);
            }
            handles.seconds.record(started.elapsed().as_secs_f64());
            result
        })
    }
}

/// The metric handles of one method, resolved once: the hot path then skips building label sets and
/// the registry lookup on every call.
struct MethodHandles {
    method: String,
    ok: Counter,
    seconds: Histogram,
}

/// The methods a server can answer besides the NCY RPCs: health and reflection.
const STANDARD_METHODS: [&str; 4] = [
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// The `method` label of `path`: the path of an NCY RPC or a standard method, `unknown` for anything
/// else, so a caller sending garbage paths cannot add series to `/metrics`.
fn method_label(path: &str) -> &str {
    if ncy_proto::required_scope(path).is_some() || STANDARD_METHODS.contains(&path) {
        path
    } else {
        "unknown"
    }
}

/// Handles per method label, made on first use; the labels are a fixed set (see [`method_label`]).
fn method_handles(path: &str) -> Arc<MethodHandles> {
    static HANDLES: LazyLock<RwLock<HashMap<String, Arc<MethodHandles>>>> =
        LazyLock::new(|| RwLock::new(HashMap::new()));
    let label = method_label(path);
    if let Ok(map) = HANDLES.read()
        && let Some(handles) = map.get(label)
    {
        return handles.clone();
    }
    let method = label.to_owned();
    let handles = Arc::new(MethodHandles {
        ok: metrics::counter!("grpc_server_handled_total", "method" => method.clone(), "code" => "OK"),
        seconds: metrics::histogram!("grpc_server_handling_seconds", "method" => method.clone()),
        method,
    });
    if let Ok(mut map) = HANDLES.write() {
        map.insert(label.to_owned(), handles.clone());
    }
    handles
}

fn code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_methods_get_a_label_of_their_own() {
        assert_eq!(
            method_label("/ncy.jobs.v1.JobService/Enqueue"),
            "/ncy.jobs.v1.JobService/Enqueue"
        );
        assert_eq!(
            method_label("/grpc.health.v1.Health/Check"),
            "/grpc.health.v1.Health/Check"
        );
        for garbage in [
            "/x/y",
            "/ncy.jobs.v1.JobService/Nope",
            "",
            "/grpc.health.v1.Health/X",
        ] {
            assert_eq!(method_label(garbage), "unknown", "{garbage}");
        }
    }
}
