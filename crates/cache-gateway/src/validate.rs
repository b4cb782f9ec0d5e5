//! Input rules of the cache API, each failure naming the field (`INVALID_ARGUMENT`), checked
//! before anything is written.
use ncy_proto::cache::v1::ApiKey;
use ncy_types::KeySpace;
use serde::de::IgnoredAny;

use crate::error::CacheError;

/// Longest logical key.
pub const MAX_KEY_BYTES: usize = 1024;
/// Most tags on one entry.
pub const MAX_TAGS: usize = 32;
/// Longest tag.
pub const MAX_TAG_BYTES: usize = 256;
/// Families only their own RPCs may touch. `cache:` holds the gateway's own tag timestamps and
/// leases, so clients may not write there either.
pub const RESERVED: [&str; 4] = ["rate_limit", "session", "user_sessions", "cache"];

fn family(key: &str) -> &str {
    key.split(':').next().unwrap_or_default()
}

/// Whether `key` (logical) belongs to a reserved family.
pub fn is_reserved(key: &str) -> bool {
    RESERVED.contains(&family(key))
}

/// A logical key: 1 to 1024 bytes, no whitespace or control characters, not reserved.
pub fn key(field: &str, key: &str) -> Result<(), CacheError> {
    if key.is_empty() {
        return Err(CacheError::invalid(field, "is required"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(CacheError::invalid(
            field,
            format!("must be at most {MAX_KEY_BYTES} bytes"),
        ));
    }
    if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(CacheError::invalid(
            field,
            "must not contain whitespace or control characters",
        ));
    }
    if is_reserved(key) {
        return Err(CacheError::invalid(
            field,
            format!("the {:?} key family is reserved", family(key)),
        ));
    }
    Ok(())
}

/// Resolves `key` xor `api` to (logical key, full key).
pub fn target(
    keys: &KeySpace,
    key_field: &str,
    logical: &str,
    api: Option<&ApiKey>,
) -> Result<(String, String), CacheError> {
    match (logical.is_empty(), api) {
        (false, Some(_)) => Err(CacheError::invalid(
            key_field,
            "set exactly one of key and api, not both",
        )),
        (true, None) => Err(CacheError::invalid(key_field, "is required (or set api)")),
        (false, None) => {
            key(key_field, logical)?;
            Ok((logical.to_owned(), keys.cache_key(logical)))
        }
        (true, Some(api)) => {
            let endpoint = &api.endpoint;
            if endpoint.is_empty() || endpoint.len() > 256 {
                return Err(CacheError::invalid(
                    "api.endpoint",
                    "must be 1 to 256 bytes",
                ));
            }
            if endpoint.chars().any(char::is_control) {
                return Err(CacheError::invalid(
                    "api.endpoint",
                    "must not contain control characters",
                ));
            }
            let params: serde_json::Value = if api.params_json.trim().is_empty() {
                serde_json::Value::Object(serde_json::Map::new())
            } else {
                serde_json::from_str(&api.params_json)
                    .map_err(|_| CacheError::invalid("api.params_json", "must be valid JSON"))?
            };
            let full = keys.api(endpoint, &params);
            let logical = full
                .get(keys.prefix().len() + 1..)
                .unwrap_or_default()
                .to_owned();
            Ok((logical, full))
        }
    }
}

/// JSON text of at most `max` bytes.
pub fn json(field: &str, text: &str, max: usize) -> Result<(), CacheError> {
    if text.len() > max {
        return Err(CacheError::invalid(
            field,
            format!("must be at most {max} bytes"),
        ));
    }
    serde_json::from_str::<IgnoredAny>(text)
        .map(|_| ())
        .map_err(|_| CacheError::invalid(field, "must be valid JSON"))
}

/// A TTL in seconds: absent → `default`; present → 1 to `max`.
pub fn ttl(field: &str, ttl: Option<i64>, default: u64, max: u64) -> Result<i64, CacheError> {
    let max = i64::try_from(max).unwrap_or(i64::MAX);
    match ttl {
        None => Ok(i64::try_from(default).unwrap_or(max)),
        Some(t) if (1..=max).contains(&t) => Ok(t),
        Some(_) => Err(CacheError::invalid(
            field,
            format!("must be between 1 and {max}"),
        )),
    }
}

/// Up to 32 tags of 1 to 256 bytes without whitespace.
pub fn tags(tags: &[String]) -> Result<(), CacheError> {
    if tags.len() > MAX_TAGS {
        return Err(CacheError::invalid(
            "tags",
            format!("at most {MAX_TAGS} tags"),
        ));
    }
    for (i, tag) in tags.iter().enumerate() {
        tag_text(&format!("tags[{i}]"), tag)?;
    }
    Ok(())
}

/// One tag.
pub fn tag_text(field: &str, tag: &str) -> Result<(), CacheError> {
    if tag.is_empty() || tag.len() > MAX_TAG_BYTES {
        return Err(CacheError::invalid(
            field,
            format!("must be 1 to {MAX_TAG_BYTES} bytes"),
        ));
    }
    if tag.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(CacheError::invalid(field, "must not contain whitespace"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(key("key", "user:1").is_ok());
        for bad in [
            "",
            "a b",
            "session:x",
            "rate_limit:a:b",
            "user_sessions:1",
            "cache:tag:x",
        ] {
            assert!(key("key", bad).is_err(), "{bad}");
        }
        assert!(key("key", &"k".repeat(1025)).is_err());
    }

    #[test]
    fn ttls() {
        assert_eq!(ttl("ttl_seconds", None, 60, 100).ok(), Some(60));
        assert!(ttl("ttl_seconds", Some(0), 60, 100).is_err());
        assert!(ttl("ttl_seconds", Some(101), 60, 100).is_err());
    }
}
