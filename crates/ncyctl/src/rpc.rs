//! What every gRPC command shares: connecting, turning a `tonic::Status` into a message and an exit
//! code, and printing answers as a human table or as JSON.
//!
//! JSON output is the canonical protobuf JSON mapping (field names as in the .proto, enums by name),
//! produced by reflection over the same descriptor set the servers advertise, so scripts see exactly
//! the contract and every new field appears without touching this CLI.
use std::sync::OnceLock;
use std::time::Duration;

use clap::Args;
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::{Interceptor, interceptor::InterceptedService};
use tonic::transport::Endpoint;

use crate::Outcome;

/// A connection to a service whose calls carry the API key.
pub type Channel = InterceptedService<tonic::transport::Channel, ApiKey>;

/// Adds `authorization: Bearer <key>` to every call when a key was given.
#[derive(Clone)]
pub struct ApiKey(Option<AsciiMetadataValue>);

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

/// Where a service is and how long to wait for it.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// gRPC address of the service (defaults per command group; see the env variable).
    #[arg(long, global = true)]
    pub addr: Option<String>,
    /// Give up on a call after this many seconds.
    #[arg(long, global = true, default_value_t = 10)]
    pub timeout_secs: u64,
    /// API key sent as `authorization: Bearer <key>` (prefer the variable: arguments show in `ps`).
    #[arg(long, global = true, env = "NCY_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

impl Target {
    /// Connects to `addr`, or to `env_var`'s value, or to `default`.
    pub async fn connect(&self, env_var: &str, default: &str) -> Result<Channel, Outcome> {
        let key = match self
            .api_key
            .as_deref()
            .map(str::trim)
            .filter(|k| !k.is_empty())
        {
            None => None,
            Some(key) => Some(
                MetadataValue::try_from(format!("Bearer {key}")).map_err(|_| {
                    eprintln!("ncyctl: --api-key / NCY_API_KEY must be printable ASCII");
                    Outcome::Failed
                })?,
            ),
        };
        let addr = self
            .addr
            .clone()
            .or_else(|| std::env::var(env_var).ok().filter(|v| !v.is_empty()))
            .unwrap_or_else(|| default.to_owned());
        let timeout = Duration::from_secs(self.timeout_secs.max(1));
        let endpoint = Endpoint::from_shared(addr.clone())
            .map_err(|e| {
                eprintln!("ncyctl: --addr {addr:?} is not a valid URL: {e}");
                Outcome::Failed
            })?
            .connect_timeout(timeout)
            .timeout(timeout);
        let channel = endpoint.connect().await.map_err(|e| {
            eprintln!(
                "ncyctl: service unavailable: cannot reach {addr}: {}",
                causes(&e)
            );
            Outcome::Unavailable
        })?;
        Ok(InterceptedService::new(channel, ApiKey(key)))
    }
}

/// `error: cause: cause…` — tonic's "transport error" alone does not say what went wrong
/// (connection refused, DNS, timeout); its sources do.
pub fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}

/// Prints why a call failed and picks the exit code: 69 when the service could not answer,
/// 1 when it answered "no" (bad argument, not found, precondition).
pub fn failed(status: tonic::Status) -> Outcome {
    use tonic::Code;
    let code = status.code();
    eprintln!("ncyctl: {}: {}", code_name(code), status.message());
    if code == tonic::Code::Unauthenticated {
        eprintln!("ncyctl: give an API key with NCY_API_KEY (or --api-key)");
    }
    match code {
        Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Internal => {
            Outcome::Unavailable
        }
        _ => Outcome::Failed,
    }
}

fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::InvalidArgument => "invalid argument",
        Code::NotFound => "not found",
        Code::AlreadyExists => "already exists",
        Code::FailedPrecondition => "failed precondition",
        Code::ResourceExhausted => "resource exhausted",
        Code::Unavailable => "service unavailable",
        Code::DeadlineExceeded => "timed out",
        Code::Unimplemented => "not implemented by this server",
        Code::PermissionDenied => "permission denied",
        Code::Unauthenticated => "unauthenticated",
        _ => "error",
    }
}

/// The contracts, by reflection. `None` only if the descriptor set built into this binary were corrupt.
fn pool() -> Option<&'static DescriptorPool> {
    static POOL: OnceLock<Option<DescriptorPool>> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(ncy_proto::FILE_DESCRIPTOR_SET).ok())
        .as_ref()
}

/// Parses protobuf JSON (the canonical mapping; proto field names accepted) into `T`, whose full
/// protobuf name is `full_name`.
pub fn from_json<T: prost::Message + Default>(text: &str, full_name: &str) -> Result<T, String> {
    let descriptor = pool()
        .and_then(|p| p.get_message_by_name(full_name))
        .ok_or_else(|| format!("unknown message {full_name}"))?;
    let mut de = serde_json::Deserializer::from_str(text);
    let dynamic = DynamicMessage::deserialize(descriptor, &mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    dynamic.transcode_to::<T>().map_err(|e| e.to_string())
}

/// The canonical JSON of `message`, whose full protobuf name is `full_name`
/// (e.g. `ncy.jobs.v1.Job`).
pub fn to_json(message: &impl prost::Message, full_name: &str) -> serde_json::Value {
    let Some(descriptor) = pool().and_then(|p| p.get_message_by_name(full_name)) else {
        return serde_json::json!({ "error": format!("unknown message {full_name}") });
    };
    let bytes = message.encode_to_vec();
    let Ok(dynamic) = DynamicMessage::decode(descriptor, bytes.as_slice()) else {
        return serde_json::json!({ "error": format!("cannot decode {full_name}") });
    };
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .stringify_64_bit_integers(false)
        .skip_default_fields(false);
    let mut out = serde_json::Serializer::new(Vec::new());
    match dynamic.serialize_with_options(&mut out, &options) {
        Ok(()) => serde_json::from_slice(&out.into_inner()).unwrap_or(serde_json::Value::Null),
        Err(e) => serde_json::json!({ "error": e.to_string() }),
    }
}

/// Prints `message` as one JSON line.
pub fn print_json(message: &impl prost::Message, full_name: &str) {
    println!("{}", to_json(message, full_name));
}

/// A table with the house style, ready for rows.
pub fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_BORDERS_ONLY)
        .set_header(header.to_vec());
    table
}

/// A Unix-ms timestamp as UTC RFC 3339 to the second, or `-` when unset.
pub fn time(ms: i64) -> String {
    if ms <= 0 {
        return "-".to_owned();
    }
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// Shortens free text (payloads, errors) for a table cell.
pub fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_uses_proto_names_and_enum_names() {
        let job = ncy_proto::jobs::v1::Job {
            id: "email:1".into(),
            state: ncy_proto::jobs::v1::JobState::Dead as i32,
            created_at_ms: 1_700_000_000_000,
            ..Default::default()
        };
        let json = to_json(&job, "ncy.jobs.v1.Job");
        assert_eq!(json["id"], "email:1");
        assert_eq!(json["state"], "JOB_STATE_DEAD");
        assert_eq!(json["created_at_ms"], 1_700_000_000_000_i64);
    }

    #[test]
    fn json_lines_parse_into_requests() {
        let request: ncy_proto::jobs::v1::EnqueueRequest = from_json(
            r#"{"queue":"email","job_type":"send-email","payload_json":"{}","priority":3}"#,
            "ncy.jobs.v1.EnqueueRequest",
        )
        .expect("valid line");
        assert_eq!(request.queue, "email");
        assert_eq!(request.priority, 3);
        let err = from_json::<ncy_proto::jobs::v1::EnqueueRequest>(
            r#"{"queue":"email","bogus":1}"#,
            "ncy.jobs.v1.EnqueueRequest",
        )
        .expect_err("unknown field");
        assert!(err.contains("bogus"), "{err}");
    }

    #[test]
    fn clip_keeps_short_text_and_marks_cut_text() {
        assert_eq!(clip("abc", 5), "abc");
        assert_eq!(clip("abcdef", 4), "abc…");
    }
}
