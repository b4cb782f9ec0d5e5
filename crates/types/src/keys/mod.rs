//! Every Redis key of the design, built by one function each under a deployment prefix `<p>`.
//!
//! Services never `format!` a key themselves, so the layout lives in one place and several
//! deployments (and parallel tests, each with its own prefix) share one Redis without collisions.
//!
//! Layout:
//! - cache entries, the seed's names: `<p>:user:<id>`, `<p>:user_sessions:<id>`, `<p>:org:<id>`,
//!   `<p>:org_members:<id>`, `<p>:project:<id>`, `<p>:project_tasks:<id>`,
//!   `<p>:api:<endpoint>:<md5 of canonical JSON>`, `<p>:rate_limit:<kind>:<id>`, `<p>:session:<id>`,
//!   `<p>:realtime:<channel>`, and any client key `<p>:<key>`;
//! - cache coherence: `<p>:cache:tag:<tag>` (tag timestamp), `<p>:cache:lease:…` (load lease, in the
//!   slot of the key it guards), pub/sub channel `<p>:cache:inval`;
//! - job queues, all keys of queue `Q` tagged `{<p>:q:Q}` ([`QueueKeys`]); cron `{<p>:cron}`;
//! - realtime rooms, all keys of room `R` tagged `{<p>:room:R}` ([`RoomKeys`]);
//! - the instance registry, one hash per service: `<p>:instances:<service>`.
//!
//! Cache entries carry no hash tag on purpose: they spread over the cluster, and no script touches
//! two entries at once. Keys a script touches together share a tag, so it runs on one slot.
//!
//! Which service owns each family is listed once, in [`KEY_FAMILIES`] (`family.rs`).

mod cluster;
mod family;
mod queue;
mod room;

pub use cluster::{SLOT_COUNT, hash_slot, hash_tag};
pub use family::{KEY_FAMILIES, KeyFamily, Layout, Owner, entry_key, family_name};
pub use queue::{QUEUE_KEY_SUFFIXES, QueueKeys};
pub use room::RoomKeys;

use std::fmt::Display;

use serde_json::Value;

use crate::canonical::canonical_md5_hex;
use crate::error::ValidationError;

/// Longest accepted deployment prefix.
pub const MAX_PREFIX_LEN: usize = 64;

/// The key builders of one deployment, all under its prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeySpace {
    prefix: String,
}

impl KeySpace {
    /// A key space under `prefix`: 1 to 64 characters of `[A-Za-z0-9_.-]` (no braces or colons,
    /// which would change hash slots or make one deployment's keys look like another's).
    pub fn new(prefix: impl Into<String>) -> Result<Self, ValidationError> {
        let prefix = prefix.into();
        if prefix.is_empty() {
            return Err(ValidationError::new("prefix", "must not be empty"));
        }
        if prefix.len() > MAX_PREFIX_LEN {
            return Err(ValidationError::new(
                "prefix",
                format!("must be at most {MAX_PREFIX_LEN} characters"),
            ));
        }
        if let Some(bad) = prefix
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
        {
            return Err(ValidationError::new(
                "prefix",
                format!("must contain only letters, digits, '_', '.' and '-', found {bad:?}"),
            ));
        }
        Ok(Self { prefix })
    }

    /// The deployment prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Any cache key a client names through the cache API: `<p>:<key>`.
    pub fn cache_key(&self, key: &str) -> String {
        format!("{}:{key}", self.prefix)
    }

    /// The logical key of a full cache key (the inverse of [`Self::cache_key`]); `None` for a key
    /// outside this key space's plain keys (another prefix, a hash-tagged key).
    pub fn logical<'k>(&self, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(self.prefix.as_str())?.strip_prefix(':')
    }

    /// `<p>:user:<id>`
    pub fn user(&self, id: impl Display) -> String {
        format!("{}:user:{id}", self.prefix)
    }

    /// `<p>:user_sessions:<user_id>`
    pub fn user_sessions(&self, user_id: impl Display) -> String {
        format!("{}:user_sessions:{user_id}", self.prefix)
    }

    /// `<p>:org:<id>`
    pub fn org(&self, id: impl Display) -> String {
        format!("{}:org:{id}", self.prefix)
    }

    /// `<p>:org_members:<org_id>`
    pub fn org_members(&self, org_id: impl Display) -> String {
        format!("{}:org_members:{org_id}", self.prefix)
    }

    /// `<p>:project:<id>`
    pub fn project(&self, id: impl Display) -> String {
        format!("{}:project:{id}", self.prefix)
    }

    /// `<p>:project_tasks:<project_id>`
    pub fn project_tasks(&self, project_id: impl Display) -> String {
        format!("{}:project_tasks:{project_id}", self.prefix)
    }

    /// `<p>:api:<endpoint>:<md5 hex of the canonical JSON of params>`: the same params in any key
    /// order give the same key.
    pub fn api(&self, endpoint: &str, params: &Value) -> String {
        format!(
            "{}:api:{endpoint}:{}",
            self.prefix,
            canonical_md5_hex(params)
        )
    }

    /// `<p>:rate_limit:<kind>:<id>`
    pub fn rate_limit(&self, kind: &str, id: impl Display) -> String {
        format!("{}:rate_limit:{kind}:{id}", self.prefix)
    }

    /// `<p>:session:<id>`
    pub fn session(&self, id: impl Display) -> String {
        format!("{}:session:{id}", self.prefix)
    }

    /// `<p>:realtime:<channel>`
    pub fn realtime(&self, channel: &str) -> String {
        format!("{}:realtime:{channel}", self.prefix)
    }

    /// `<p>:cache:tag:<tag>`: milliseconds of the tag's last invalidation.
    pub fn cache_tag(&self, tag: &str) -> String {
        format!("{}:cache:tag:{tag}", self.prefix)
    }

    /// The load lease guarding the full cache key `key` (as returned by the builders above).
    ///
    /// The lease sits in the same cluster slot as `key`, so "fill the entry if I still hold the
    /// lease" can be one script: an untagged key `K` gives `<p>:cache:lease:{K}`; a key with hash
    /// tag `T` gives `<p>:cache:lease:{T}:K`. A key with a stray `}` but no tag cannot be matched by a
    /// tag and gives `<p>:cache:lease:K` (distinct, but not co-located).
    pub fn cache_lease(&self, key: &str) -> String {
        match hash_tag(key) {
            Some(tag) => format!("{}:cache:lease:{{{tag}}}:{key}", self.prefix),
            None if !key.contains('}') => format!("{}:cache:lease:{{{key}}}", self.prefix),
            None => format!("{}:cache:lease:{key}", self.prefix),
        }
    }

    /// Pub/sub channel of the L1 invalidation backplane: `<p>:cache:inval`.
    pub fn cache_invalidation_channel(&self) -> String {
        format!("{}:cache:inval", self.prefix)
    }

    /// Hash of the live instances of `service` (instance id → its last reported snapshot), which
    /// each instance rewrites every report interval: `<p>:instances:<service>`. One key per service,
    /// so every command on it is single-key.
    pub fn instances(&self, service: &str) -> String {
        format!("{}:instances:{service}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ks() -> KeySpace {
        KeySpace::new("ncy").expect("valid prefix")
    }

    #[test]
    fn cache_keys_have_the_seed_names_under_the_prefix() {
        let k = ks();
        assert_eq!(k.prefix(), "ncy");
        assert_eq!(k.user("u1"), "ncy:user:u1");
        assert_eq!(k.user_sessions("u1"), "ncy:user_sessions:u1");
        assert_eq!(k.org("o1"), "ncy:org:o1");
        assert_eq!(k.org_members("o1"), "ncy:org_members:o1");
        assert_eq!(k.project("p1"), "ncy:project:p1");
        assert_eq!(k.project_tasks("p1"), "ncy:project_tasks:p1");
        assert_eq!(k.rate_limit("api", "1.2.3.4"), "ncy:rate_limit:api:1.2.3.4");
        assert_eq!(k.session("s1"), "ncy:session:s1");
        assert_eq!(k.realtime("chan"), "ncy:realtime:chan");
        assert_eq!(k.cache_key("user:u1"), k.user("u1"));
        assert_eq!(k.cache_tag("org:o1"), "ncy:cache:tag:org:o1");
        assert_eq!(k.cache_invalidation_channel(), "ncy:cache:inval");
        assert_eq!(k.instances("cache-gateway"), "ncy:instances:cache-gateway");
    }

    #[test]
    fn ids_may_be_uuids() {
        let id = uuid::Uuid::nil();
        assert_eq!(
            ks().user(id),
            "ncy:user:00000000-0000-0000-0000-000000000000"
        );
    }

    #[test]
    fn api_key_hashes_canonical_json() {
        let k = ks();
        let a: Value =
            serde_json::from_str(r#"{"page":2,"filter":{"status":"open","q":"x"}}"#).expect("json");
        let b: Value =
            serde_json::from_str(r#"{"filter":{"q":"x","status":"open"},"page":2}"#).expect("json");
        assert_eq!(k.api("tasks", &a), k.api("tasks", &b));
        // md5 of {"filter":{"q":"x","status":"open"},"page":2}, computed independently.
        assert_eq!(
            k.api("tasks", &a),
            "ncy:api:tasks:e7761c77e9a1420dab5d73d134793aa9"
        );
        assert_ne!(k.api("tasks", &a), k.api("tasks", &json!({"page": 3})));
        assert_ne!(k.api("tasks", &a), k.api("projects", &a));
    }

    #[test]
    fn prefix_validation() {
        for good in ["a", "ncy", "test-42_x.y", &"p".repeat(MAX_PREFIX_LEN)] {
            assert!(KeySpace::new(good).is_ok(), "{good}");
        }
        for bad in [
            String::new(),
            "p".repeat(MAX_PREFIX_LEN + 1),
            "a:b".into(),
            "{a}".into(),
            "a}".into(),
            "a b".into(),
            "é".into(),
            "a*".into(),
        ] {
            let err = KeySpace::new(bad.clone()).expect_err(&bad);
            assert_eq!(err.field, "prefix", "{bad}");
        }
    }

    #[test]
    fn different_prefixes_never_share_keys() {
        let a = KeySpace::new("a").expect("valid");
        let b = KeySpace::new("b").expect("valid");
        assert_ne!(a.user("1"), b.user("1"));
        assert_ne!(a.queue("email").job("1"), b.queue("email").job("1"));
        assert_ne!(a.room("broadcast").history(), b.room("broadcast").history());
    }

    #[test]
    fn lease_shares_the_slot_of_its_key() {
        let k = ks();
        let key = k.user("u1");
        assert_eq!(k.cache_lease(&key), "ncy:cache:lease:{ncy:user:u1}");
        assert_eq!(hash_slot(&k.cache_lease(&key)), hash_slot(&key));

        let tagged = "ncy:{t1}:x";
        assert_eq!(k.cache_lease(tagged), "ncy:cache:lease:{t1}:ncy:{t1}:x");
        assert_eq!(hash_slot(&k.cache_lease(tagged)), hash_slot(tagged));

        let open_only = "ncy:a{b";
        assert_eq!(hash_slot(&k.cache_lease(open_only)), hash_slot(open_only));

        let stray = "ncy:a{}b";
        assert_eq!(k.cache_lease(stray), "ncy:cache:lease:ncy:a{}b");
        assert_ne!(k.cache_lease("ncy:x"), k.cache_lease("ncy:y"));
    }

    #[test]
    fn logical_is_the_inverse_of_cache_key() {
        let k = ks();
        for logical in ["user:1", "report", "a:b:c", ""] {
            assert_eq!(k.logical(&k.cache_key(logical)), Some(logical));
        }
        assert_eq!(k.logical(&k.user("u1")), Some("user:u1"));
        for outside in ["ncyx:user:1", "other:user:1", "ncy", "{ncy:q:email}:job:1"] {
            assert_eq!(k.logical(outside), None, "{outside}");
        }
        assert_eq!(k.logical(&k.queue("email").job("1")), None);
    }
}
