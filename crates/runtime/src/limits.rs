//! What one gRPC connection or request may cost a server, set on purpose in one place.
//!
//! - `NCY_GRPC_MAX_CONCURRENT_STREAMS` (256): HTTP/2 streams one connection may have open at once —
//!   the per-connection concurrency limit. It also bounds the long-lived streams (`GetStream`,
//!   `WatchJob`) a single connection can hold; a client needing more opens more connections.
//! - `NCY_GRPC_REQUEST_TIMEOUT_SECS` (30): the longest a handler may take to answer (its reply, or the
//!   start of its reply stream); a caller's shorter `grpc-timeout` wins. Streams already answering
//!   are not cut.
//! - Message sizes stay per service, each with its reason next to it: the cache gateway 8 MiB (a
//!   4 MiB value plus envelope), the job scheduler 16 MiB (bulk enqueue), the realtime gateway 4 MiB.
//!
//! A request over the size limit is answered `RESOURCE_EXHAUSTED` with tonic's message naming the
//! limit, as gRPC's own servers do; tonic answers `OUT_OF_RANGE`, which no NCY RPC uses for anything
//! else, so [`SizeLimitStatus`] rewrites that code (read from the status, never from the text).
//!
//! The same layer adds `grpc-retry-pushback-ms: 1000` to every `UNAVAILABLE` answer: in NCY it only
//! ever means a dependency (Redis, PostgreSQL) is down for a moment, and gRPC clients with a retry
//! policy wait the pushback before trying again instead of retrying at once into the outage.
use std::time::Duration;

use tower::{Layer, Service};

use crate::settings::{ConfigError, Env};

/// See the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcLimits {
    /// `NCY_GRPC_MAX_CONCURRENT_STREAMS`.
    pub max_concurrent_streams: u32,
    /// `NCY_GRPC_REQUEST_TIMEOUT_SECS`.
    pub request_timeout: Duration,
}

impl GrpcLimits {
    pub(crate) fn load(env: &Env) -> Result<Self, ConfigError> {
        let streams: u32 = env.parse_or(
            "NCY_GRPC_MAX_CONCURRENT_STREAMS",
            256,
            "a number of streams",
        )?;
        if !(1..=10_000).contains(&streams) {
            return Err(ConfigError::new(
                "NCY_GRPC_MAX_CONCURRENT_STREAMS",
                format!("must be between 1 and 10000, got {streams}"),
            ));
        }
        Ok(Self {
            max_concurrent_streams: streams,
            request_timeout: env.secs_or("NCY_GRPC_REQUEST_TIMEOUT_SECS", 30, 3600)?,
        })
    }
}

const OUT_OF_RANGE: &str = "11";
const RESOURCE_EXHAUSTED: http::HeaderValue = http::HeaderValue::from_static("8");
const UNAVAILABLE: &str = "14";
/// What an `UNAVAILABLE` answer tells a retrying client to wait (gRPC's retry pushback).
pub const RETRY_PUSHBACK_MS: &str = "1000";

/// Turns tonic's `OUT_OF_RANGE` for an oversized message into `RESOURCE_EXHAUSTED`, and adds the
/// retry pushback to `UNAVAILABLE` (see the module documentation).
#[derive(Debug, Clone, Copy, Default)]
pub struct SizeLimitStatusLayer;

impl<S> Layer<S> for SizeLimitStatusLayer {
    type Service = SizeLimitStatus<S>;
    fn layer(&self, inner: S) -> Self::Service {
        SizeLimitStatus { inner }
    }
}

/// See [`SizeLimitStatusLayer`].
#[derive(Debug, Clone)]
pub struct SizeLimitStatus<S> {
    inner: S,
}

impl<S, B, R> Service<http::Request<B>> for SizeLimitStatus<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let future = self.inner.call(request);
        Box::pin(async move {
            let mut response = future.await?;
            let headers = response.headers_mut();
            match headers.get("grpc-status").map(http::HeaderValue::as_bytes) {
                Some(code) if code == OUT_OF_RANGE.as_bytes() => {
                    headers.insert("grpc-status", RESOURCE_EXHAUSTED);
                }
                Some(code) if code == UNAVAILABLE.as_bytes() => {
                    headers
                        .entry("grpc-retry-pushback-ms")
                        .or_insert(http::HeaderValue::from_static(RETRY_PUSHBACK_MS));
                }
                _ => {}
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_have_defaults_and_bounds() {
        let limits = GrpcLimits::load(&Env::from_pairs([("X", "y")])).expect("defaults");
        assert_eq!(limits.max_concurrent_streams, 256);
        assert_eq!(limits.request_timeout, Duration::from_secs(30));
        for bad in ["0", "10001", "many"] {
            let e = GrpcLimits::load(&Env::from_pairs([("NCY_GRPC_MAX_CONCURRENT_STREAMS", bad)]))
                .expect_err(bad);
            assert_eq!(e.var, "NCY_GRPC_MAX_CONCURRENT_STREAMS");
        }
    }
}
