//! From payload text to a checked, typed payload, with errors that name the field.
//!
//! Serde's own errors are rewritten to the same shape as the rule checks: the path comes from
//! `serde_path_to_error` (`payload.cc[1]`, `payload.reportType`), and "missing field `x`" or
//! "unknown field `x`" become errors on `payload.x` itself, so a client sees which field to fix.

use serde_json::Value;
use serde_path_to_error::{Path, Segment};

use super::payloads::JobData;
use super::{JobPayload, JobType, MAX_PAYLOAD_BYTES};
use crate::error::ValidationError;

/// The field every payload error is nested under.
const ROOT: &str = "payload";

/// Parses `payload_json` as the payload of `job_type` and checks its rules.
pub fn parse_payload(job_type: JobType, payload_json: &str) -> Result<JobPayload, ValidationError> {
    if payload_json.len() > MAX_PAYLOAD_BYTES {
        return Err(ValidationError::new(
            ROOT,
            format!(
                "must be at most {MAX_PAYLOAD_BYTES} bytes, got {}",
                payload_json.len()
            ),
        ));
    }
    let value: Value = serde_json::from_str(payload_json)
        .map_err(|e| ValidationError::new(ROOT, format!("is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ValidationError::new(ROOT, "must be a JSON object"));
    }
    JobPayload::decode(job_type, value)
}

/// Parses and checks `payload_json` as the payload of `job_type`, returning it in normal form
/// (defaults filled in, e.g. `data: {}` and `cc: []` of an email) ready to store on the job.
pub fn validate_payload(job_type: JobType, payload_json: &str) -> Result<Value, ValidationError> {
    let payload = parse_payload(job_type, payload_json)?;
    serde_json::to_value(&payload)
        .map_err(|e| ValidationError::new(ROOT, format!("cannot be encoded: {e}")))
}

/// Decodes `value` as `T` and checks `T`'s rules, every error nested under `payload`.
pub(super) fn typed<T: JobData>(value: Value) -> Result<T, ValidationError> {
    let data: T = serde_path_to_error::deserialize(value).map_err(from_serde)?;
    data.validate().map_err(|e| e.nested_under(ROOT))?;
    Ok(data)
}

fn from_serde(err: serde_path_to_error::Error<serde_json::Error>) -> ValidationError {
    let path = dotted(err.path());
    let message = err.into_inner().to_string();
    if let Some(name) = backquoted_after(&message, "missing field `") {
        return ValidationError::new(join(&path, name), "is required").nested_under(ROOT);
    }
    if let Some(name) = backquoted_after(&message, "unknown field `") {
        // serde_path_to_error may or may not have pushed the unknown key itself.
        let field = if path == name || path.ends_with(&format!(".{name}")) {
            path.clone()
        } else {
            join(&path, name)
        };
        let expected = message
            .split_once(", ")
            .map(|(_, rest)| format!("; {rest}"))
            .unwrap_or_default();
        return ValidationError::new(field, format!("is not a known field{expected}"))
            .nested_under(ROOT);
    }
    ValidationError::new(path, message).nested_under(ROOT)
}

/// The path as the client wrote it: `to`, `cc[1]`, `data.items[0].name`.
fn dotted(path: &Path) -> String {
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    out
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

fn backquoted_after<'a>(message: &'a str, marker: &str) -> Option<&'a str> {
    let (_, rest) = message.split_once(marker)?;
    rest.split_once('`').map(|(name, _)| name)
}
