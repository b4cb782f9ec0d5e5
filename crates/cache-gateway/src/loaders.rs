//! Loaders: how L3 (PostgreSQL) is read, as configuration — kind → SQL returning one JSON
//! document for an id. The defaults (user, org, org_members, project, project_tasks) are compiled
//! in from `loaders.toml`; `NCY_CACHE_LOADERS_FILE` adds kinds or replaces defaults, so a
//! deployment adds a kind without a code change.
//!
//! Each loader also says which tags its entries carry: fixed templates (`user:{id}`) and tags
//! read from the loaded document (`/*/userId` → `user:<each member>`), which is how a user change
//! drops the member lists and task lists that contain the user.
//!
//! A kind is the key family of its entries (`{kind}:{id}`), and those families are loader-backed:
//! only loads write them (Set refuses them, see `validate.rs`). So a kind may not name a family
//! another owner writes (ncy-types' `KEY_FAMILIES`: `realtime`, `session`, `cache`, `api`, …): a
//! `realtime` loader would overwrite the realtime gateway's keys. The file is refused at start.
//!
//! Every kind is also an entity InvalidateEntity takes by name (`entities.rs`) and a
//! `key_pattern` label of the cache metrics (`metrics.rs`).
use std::{collections::HashMap, path::Path, sync::Arc, time::Duration};

use ncy_types::keys::{KeyFamily, Owner};
use serde::Deserialize;
use serde_json::Value;
use sqlx::PgPool;

use crate::error::CacheError;

const DEFAULTS: &str = include_str!("loaders.toml");
/// Most tags one loaded entry may carry (keeps entries and their checks small).
const MAX_TAGS: usize = 256;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    loaders: HashMap<String, LoaderConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoaderConfig {
    sql: String,
    ttl_seconds: Option<u64>,
    #[serde(default)]
    id: IdFormat,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    tag_paths: Vec<TagPath>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum IdFormat {
    #[default]
    Uuid,
    Text,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TagPath {
    path: String,
    tag: String,
}

/// One loader.
#[derive(Debug)]
pub struct Loader {
    /// Its kind (the key family).
    pub kind: String,
    sql: String,
    /// TTL of its entries.
    pub ttl: Duration,
    id: IdFormat,
    tags: Vec<String>,
    tag_paths: Vec<TagPath>,
}

/// A loaded document and the tags it carries.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// JSON text.
    pub value: String,
    /// Tags.
    pub tags: Vec<String>,
}

/// Every configured loader.
#[derive(Debug, Clone)]
pub struct Loaders {
    map: Arc<HashMap<String, Arc<Loader>>>,
}

impl Loaders {
    /// The defaults plus `file`, if given.
    pub fn load(file: Option<&Path>, default_ttl: Duration) -> Result<Self, String> {
        let mut configs = parse(DEFAULTS).map_err(|e| format!("built-in loaders: {e}"))?;
        if let Some(path) = file {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            configs.extend(parse(&text).map_err(|e| format!("{}: {e}", path.display()))?);
        }
        let mut map = HashMap::new();
        for (kind, c) in configs {
            if !valid_kind(&kind) {
                return Err(format!(
                    "loader kind {kind:?} must match [a-z][a-z0-9_]{{0,63}}"
                ));
            }
            if let Some(family) = KeyFamily::plain(&kind).filter(|f| f.owner != Owner::CacheLoaders)
            {
                return Err(format!(
                    "loader kind {kind:?} names a key family owned by {}",
                    family.owner.describe()
                ));
            }
            let loader = Loader {
                kind: kind.clone(),
                sql: c.sql,
                ttl: c.ttl_seconds.map_or(default_ttl, Duration::from_secs),
                id: c.id,
                tags: c.tags,
                tag_paths: c.tag_paths,
            };
            map.insert(kind, Arc::new(loader));
        }
        Ok(Self { map: Arc::new(map) })
    }

    /// The loader of `kind`, or INVALID_ARGUMENT naming `kind`.
    pub fn get(&self, kind: &str) -> Result<Arc<Loader>, CacheError> {
        if !valid_kind(kind) {
            return Err(CacheError::invalid(
                "kind",
                "must match [a-z][a-z0-9_]{0,63}",
            ));
        }
        self.find(kind)
            .ok_or_else(|| CacheError::invalid("kind", format!("unknown loader kind {kind:?}")))
    }

    /// The loader of `kind`, if there is one.
    pub fn find(&self, kind: &str) -> Option<Arc<Loader>> {
        self.map.get(kind).cloned()
    }

    /// Whether `family` is the kind of a loader, so only loads write its keys.
    pub fn backs(&self, family: &str) -> bool {
        self.map.contains_key(family)
    }

    /// Every kind: the defaults' and the loaders file's (operator-controlled, so a bounded set).
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }
}

fn parse(text: &str) -> Result<HashMap<String, LoaderConfig>, String> {
    toml::from_str::<File>(text)
        .map(|f| f.loaders)
        .map_err(|e| e.to_string())
}

fn valid_kind(kind: &str) -> bool {
    let mut chars = kind.chars();
    kind.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl Loader {
    /// Validates and normalises `id` for this kind (INVALID_ARGUMENT naming `id`).
    pub fn normalize_id(&self, id: &str) -> Result<String, CacheError> {
        match self.id {
            IdFormat::Uuid => Ok(ncy_types::parse_uuid("id", id)?.to_string()),
            IdFormat::Text => {
                if id.is_empty() || id.len() > 256 {
                    return Err(CacheError::invalid("id", "must be 1 to 256 bytes"));
                }
                if id.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(CacheError::invalid("id", "must not contain whitespace"));
                }
                Ok(id.to_owned())
            }
        }
    }

    /// Runs the query: `Ok(None)` when the row does not exist.
    pub async fn run(&self, pool: &PgPool, id: &str) -> Result<Option<Loaded>, CacheError> {
        let row: Option<Option<String>> = sqlx::query_scalar(&self.sql)
            .bind(id)
            .fetch_optional(pool)
            .await
            .map_err(|e| CacheError::Loader {
                kind: self.kind.clone(),
                message: e.to_string(),
            })?;
        let Some(Some(value)) = row else {
            return Ok(None);
        };
        let mut tags: Vec<String> = self.tags.iter().map(|t| t.replace("{id}", id)).collect();
        if !self.tag_paths.is_empty()
            && let Ok(doc) = serde_json::from_str::<Value>(&value)
        {
            for tp in &self.tag_paths {
                let segments: Vec<&str> = tp.path.split('/').filter(|s| !s.is_empty()).collect();
                collect(&doc, &segments, &mut |v| {
                    tags.push(format!("{}:{v}", tp.tag))
                });
            }
        }
        tags.sort();
        tags.dedup();
        tags.truncate(MAX_TAGS);
        Ok(Some(Loaded { value, tags }))
    }
}

/// Calls `out` with every string at `path` in `doc` (`*` = every array item or object value).
fn collect(doc: &Value, path: &[&str], out: &mut dyn FnMut(&str)) {
    let Some((head, rest)) = path.split_first() else {
        if let Value::String(s) = doc {
            out(s);
        }
        return;
    };
    match (*head, doc) {
        ("*", Value::Array(items)) => items.iter().for_each(|i| collect(i, rest, out)),
        ("*", Value::Object(map)) => map.values().for_each(|i| collect(i, rest, out)),
        (name, Value::Object(map)) => {
            if let Some(v) = map.get(name) {
                collect(v, rest, out);
            }
        }
        (index, Value::Array(items)) => {
            if let Some(v) = index.parse::<usize>().ok().and_then(|i| items.get(i)) {
                collect(v, rest, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_parse_and_kinds_validate() {
        let l = Loaders::load(None, Duration::from_secs(60)).expect("defaults");
        for kind in ["user", "org", "org_members", "project", "project_tasks"] {
            assert!(l.get(kind).is_ok(), "{kind}");
        }
        assert!(l.get("nope").is_err());
        assert!(l.get("Bad").is_err());
        assert!(l.backs("user") && l.backs("project_tasks") && !l.backs("api"));
    }

    #[test]
    fn tag_paths_walk_arrays() {
        let doc = json!([{"userId": "a"}, {"userId": "b"}, {"assignee": {"id": "c"}}, {"assignee": null}]);
        let mut found = Vec::new();
        collect(&doc, &["*", "userId"], &mut |v| found.push(v.to_owned()));
        collect(&doc, &["*", "assignee", "id"], &mut |v| {
            found.push(v.to_owned())
        });
        assert_eq!(found, ["a", "b", "c"]);
    }
}
