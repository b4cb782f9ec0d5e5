//! Input rules of the cache API, each failure naming the field (`INVALID_ARGUMENT`), checked
//! before anything is written.
//!
//! Which keys a caller may name follows ncy-types' one list of key families (`KEY_FAMILIES`), so
//! one caller cannot break another service through the cache:
//! - families another owner writes — the realtime gateway's `realtime:` and `bus:`, the gateway's
//!   own `rate_limit:`, `session:`, `user_sessions:` (their RPCs only) and `cache:` (tag timestamps,
//!   leases), every service's instance registry `instances:` — are refused by every RPC that takes a key (Get, GetStream, Set, Delete, MGet), and
//!   InvalidatePattern neither accepts a pattern fixed on one of them nor deletes their keys when a
//!   broad pattern (`*`, `real*`) matches them. Hash-tagged families (queues, cron, rooms) start
//!   with `{` and so cannot be named by a cache key (always `<p>:<key>`) at all.
//! - loader-backed families — the kind of every loader, defaults (`user`, `org`, `org_members`,
//!   `project`, `project_tasks`) and the loaders file's alike — are read and deleted by key (a
//!   delete forces the next GetOrLoad to reload), but Set refuses them: GetOrLoad serves their
//!   entries as the database's truth, so a value a caller planted there would be served to every
//!   other caller as if it were the row. Only loads write them.
//!
//! Both refusals are `INVALID_ARGUMENT` naming the field (`key`, `keys[i]`, `pattern`) and the family.
//! Not `PERMISSION_DENIED`: no caller may make these calls, whoever it is, so there is no
//! permission to grant; the request is wrong in itself, as the contract already says of reserved
//! families. Not `FAILED_PRECONDITION`: no change of state would make it succeed.
use ncy_proto::cache::v1::ApiKey;
use ncy_types::{
    KeySpace,
    keys::{KeyFamily, family_name},
};
use serde::de::IgnoredAny;

use crate::{error::CacheError, loaders::Loaders};

/// Longest logical key.
pub const MAX_KEY_BYTES: usize = 1024;
/// Most tags on one entry.
pub const MAX_TAGS: usize = 32;
/// Longest tag.
pub const MAX_TAG_BYTES: usize = 256;
/// The family of `key` (logical) when callers may not name it: owned by another service or by
/// the gateway's own RPCs.
pub fn reserved_family(key: &str) -> Option<&'static KeyFamily> {
    KeyFamily::of_logical(key).filter(|f| !f.cache_readable())
}

/// Whether `key` (logical) belongs to a reserved family.
pub fn is_reserved(key: &str) -> bool {
    reserved_family(key).is_some()
}

/// The `INVALID_ARGUMENT` for a reserved family.
pub fn reserved(field: &str, family: &KeyFamily) -> CacheError {
    CacheError::invalid(
        field,
        format!(
            "the {:?} key family is reserved: it belongs to {}",
            family.name,
            family.owner.describe()
        ),
    )
}

/// A key Set may write: not of a loader-backed family (see the module docs). `key` was checked by
/// [`key`] already.
pub fn settable(field: &str, key: &str, loaders: &Loaders) -> Result<(), CacheError> {
    let family = family_name(key);
    let listed = KeyFamily::plain(family).is_some_and(|f| !f.cache_writable());
    if listed || loaders.backs(family) {
        return Err(CacheError::invalid(
            field,
            format!(
                "the {family:?} key family is loader-backed: only GetOrLoad writes it \
                 (Delete or InvalidateEntity it to force a reload)"
            ),
        ));
    }
    Ok(())
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
    if let Some(family) = reserved_family(key) {
        return Err(reserved(field, family));
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
            let logical = keys.logical(&full).unwrap_or_default().to_owned();
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
            "realtime:user_status",
            "bus:probe:x",
            "instances:cache-gateway",
        ] {
            assert!(key("key", bad).is_err(), "{bad}");
        }
        assert!(key("key", &"k".repeat(1025)).is_err());
    }

    #[test]
    fn loader_families_are_not_settable() {
        let loaders = Loaders::load(None, std::time::Duration::from_secs(60)).expect("defaults");
        for ok in ["report:1", "api:x:y", "users:1", "userx"] {
            assert!(settable("key", ok, &loaders).is_ok(), "{ok}");
        }
        for bad in ["user:1", "org_members:1", "project_tasks:1", "project"] {
            let err = settable("key", bad, &loaders).expect_err(bad);
            assert!(err.to_string().contains("loader-backed"), "{err}");
        }
    }

    #[test]
    fn ttls() {
        assert_eq!(ttl("ttl_seconds", None, 60, 100).ok(), Some(60));
        assert!(ttl("ttl_seconds", Some(0), 60, 100).is_err());
        assert!(ttl("ttl_seconds", Some(101), 60, 100).is_err());
    }
}
