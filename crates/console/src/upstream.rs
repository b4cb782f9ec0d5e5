//! The services the console talks to (job-scheduler, cache-gateway, realtime-gateway), only through their gRPC APIs, like any internal client: it
//! works against any deployment and any number of replicas, and never touches Redis or
//! PostgreSQL itself.
//!
//! Every call carries the console's API key (`NCY_CONSOLE_API_KEY`) when one is set. A failed call
//! is counted in `console_upstream_errors_total{service, code}` and becomes a
//! [`ConsoleError::Upstream`], which `error.rs` turns into a page.
use std::time::Duration;

use ncy_proto::cache::v1::cache_service_client::CacheServiceClient;
use ncy_proto::jobs::v1::job_service_client::JobServiceClient;
use ncy_proto::realtime::v1::realtime_service_client::RealtimeServiceClient;
use secrecy::{ExposeSecret, SecretString};
use tonic::metadata::AsciiMetadataValue;
use tonic::service::{Interceptor, interceptor::InterceptedService};
use tonic::transport::{Channel, Endpoint};

use crate::error::{ConsoleError, code_name};

/// The job-scheduler's name in pages, logs and metrics.
pub const JOB_SCHEDULER: &str = "job-scheduler";
/// The cache-gateway's name in pages, logs and metrics.
pub const CACHE_GATEWAY: &str = "cache-gateway";
/// The realtime-gateway's name in pages, logs and metrics.
pub const REALTIME_GATEWAY: &str = "realtime-gateway";

/// How long a unary call may take before the page says the service is unavailable.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Adds `authorization: Bearer <key>` to every call when the console has a key.
#[derive(Clone)]
pub struct ApiKey(Option<AsciiMetadataValue>);

impl ApiKey {
    /// The header for `key`; `None` when the key is not printable ASCII (settings refuse that).
    pub fn new(key: Option<&SecretString>) -> Option<Self> {
        match key {
            None => Some(Self(None)),
            Some(key) => {
                let mut value =
                    AsciiMetadataValue::try_from(format!("Bearer {}", key.expose_secret())).ok()?;
                value.set_sensitive(true);
                Some(Self(Some(value)))
            }
        }
    }
}

impl Interceptor for ApiKey {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A JobService client whose calls carry the key. Cheap to clone (one shared HTTP/2 channel).
pub type JobsClient = JobServiceClient<InterceptedService<Channel, ApiKey>>;

/// A CacheService client whose calls carry the key.
pub type CacheClient = CacheServiceClient<InterceptedService<Channel, ApiKey>>;

/// A RealtimeService client whose calls carry the key.
pub type RealtimeClient = RealtimeServiceClient<InterceptedService<Channel, ApiKey>>;

/// A channel to `url` that connects on first use (the console starts while a service is down,
/// and says so on the pages).
fn channel(url: &str) -> Result<Channel, tonic::transport::Error> {
    Ok(Endpoint::from_shared(url.to_owned())?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(CALL_TIMEOUT)
        .tcp_keepalive(Some(Duration::from_secs(60)))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(false)
        .connect_lazy())
}

/// A client of the job-scheduler at `url`.
pub fn jobs_client(url: &str, key: ApiKey) -> Result<JobsClient, tonic::transport::Error> {
    Ok(JobServiceClient::with_interceptor(channel(url)?, key))
}

/// A client of the cache-gateway at `url`.
pub fn cache_client(url: &str, key: ApiKey) -> Result<CacheClient, tonic::transport::Error> {
    Ok(CacheServiceClient::with_interceptor(channel(url)?, key))
}

/// A client of the realtime-gateway at `url`.
pub fn realtime_client(url: &str, key: ApiKey) -> Result<RealtimeClient, tonic::transport::Error> {
    Ok(RealtimeServiceClient::with_interceptor(channel(url)?, key))
}

/// The body of a job-scheduler answer, or the error page it leads to (counted).
pub fn jobs<T>(answer: Result<tonic::Response<T>, tonic::Status>) -> Result<T, ConsoleError> {
    answer_of(JOB_SCHEDULER, answer)
}

/// The body of a cache-gateway answer, or the error page it leads to (counted).
pub fn cache<T>(answer: Result<tonic::Response<T>, tonic::Status>) -> Result<T, ConsoleError> {
    answer_of(CACHE_GATEWAY, answer)
}

/// The body of a realtime-gateway answer, or the error page it leads to (counted).
pub fn realtime<T>(answer: Result<tonic::Response<T>, tonic::Status>) -> Result<T, ConsoleError> {
    answer_of(REALTIME_GATEWAY, answer)
}

fn answer_of<T>(
    service: &'static str,
    answer: Result<tonic::Response<T>, tonic::Status>,
) -> Result<T, ConsoleError> {
    answer
        .map(tonic::Response::into_inner)
        .map_err(|status| failed(service, status))
}

/// Counts and logs a failed call to `service`.
pub fn failed(service: &'static str, status: tonic::Status) -> ConsoleError {
    let code = code_name(status.code());
    metrics::counter!("console_upstream_errors_total", "service" => service, "code" => code)
        .increment(1);
    tracing::debug!(
        service,
        code,
        message = status.message(),
        "upstream call failed"
    );
    ConsoleError::Upstream { service, status }
}
