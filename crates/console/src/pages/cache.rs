//! The cache-gateway, `/cache?key=…`: every instance's `Stats` in one table (through
//! `all_instances`, see [`super::instances`]) and the answering instance's in detail (hits and
//! misses per layer, L1 size, loads), a key lookup through `Get` (which layer answered, TTL, size, the value
//! shown escaped and cut to [`VALUE_LIMIT`]), and for operators the three invalidations —
//! by entity (kind + id), by tag, by key pattern — each audited and answering with a redirect back
//! and a message (`?done=pattern&count=3`).
use std::sync::Arc;

use askama::Template;
use axum::{
    Extension, Form,
    extract::{Query, State, rejection::FormRejection},
    response::{Html, Redirect},
};
use ncy_proto::cache::v1::{
    CacheLayer, GetRequest, InvalidateEntityRequest, InvalidatePatternRequest,
    InvalidateTagRequest, StatsRequest,
};
use serde::Deserialize;

use super::instances::{self, InstanceRow};
use super::{Nav, render, time};
use crate::{
    AppState,
    access::{CurrentUser, Subject},
    error::ConsoleError,
    upstream,
};

/// The most of a value the page shows (bytes of its JSON text).
pub const VALUE_LIMIT: usize = 4096;

/// The query of the cache page.
#[derive(Debug, Default, Deserialize)]
pub struct CacheQuery {
    key: Option<String>,
    done: Option<String>,
    count: Option<u64>,
}

/// One layer's counters.
pub struct LayerRow {
    name: &'static str,
    hits: u64,
    misses: u64,
    hit_ratio: String,
}

/// What `Get` answered for the key looked up.
pub struct Lookup {
    key: String,
    found: bool,
    layer: &'static str,
    stale: bool,
    ttl: Option<String>,
    size: usize,
    value: String,
    truncated: bool,
}

#[derive(Template)]
#[template(path = "cache.html")]
struct CachePage {
    nav: Nav,
    may_act: bool,
    instance_id: String,
    started_at: String,
    layers: Vec<LayerRow>,
    counters: Vec<(&'static str, String)>,
    instance_columns: &'static [&'static str],
    instance_rows: Vec<InstanceRow>,
    instances_note: Option<&'static str>,
    key: String,
    lookup: Option<Lookup>,
    flash: Option<String>,
}

/// A layer as an operator reads it.
fn layer_name(layer: i32) -> &'static str {
    match CacheLayer::try_from(layer) {
        Ok(CacheLayer::L1) => "L1 (in-process)",
        Ok(CacheLayer::L2) => "L2 (Redis)",
        Ok(CacheLayer::L3) => "L3 (loader)",
        _ => "—",
    }
}

/// `text` cut to at most `max` bytes on a character boundary; whether it was cut.
pub fn truncate(text: &str, max: usize) -> (String, bool) {
    if text.len() <= max {
        return (text.to_owned(), false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (text[..end].to_owned(), true)
}

/// A remaining TTL as an operator reads it: `1 h 2 min 5 s`, or milliseconds under a second.
fn ttl(ms: i64) -> String {
    if ms < 1000 {
        return format!("{ms} ms");
    }
    let secs = ms / 1000;
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s} s"),
        (0, _) => format!("{m} min {s} s"),
        _ => format!("{h} h {m} min {s} s"),
    }
}

/// The message of a finished invalidation.
fn flash(done: Option<&str>, count: Option<u64>) -> Option<String> {
    let n = count.unwrap_or(0);
    match done? {
        "entity" => Some(format!("Entity invalidated: {n} key(s) deleted.")),
        "tag" => Some("Tag invalidated: every entry carrying it is dropped.".to_owned()),
        "pattern" => Some(format!("Pattern invalidated: {n} key(s) removed.")),
        _ => None,
    }
}

/// `GET /cache`.
pub async fn page(
    State(app): State<Arc<AppState>>,
    Extension(user): Extension<CurrentUser>,
    Query(query): Query<CacheQuery>,
) -> Result<Html<String>, ConsoleError> {
    let (stats, instances_note) = instances::with_fallback(
        app.cache.clone().stats(StatsRequest {
            all_instances: true,
        }),
        app.cache.clone().stats(StatsRequest::default()),
        upstream::cache,
    )
    .await?;
    let instance_rows = instances::cache_rows(&stats);
    let key = query.key.unwrap_or_default().trim().to_owned();
    let lookup = if key.is_empty() {
        None
    } else {
        let got = upstream::cache(
            app.cache
                .clone()
                .get(GetRequest {
                    key: key.clone(),
                    api: None,
                })
                .await,
        )?;
        let (value, truncated) = truncate(&got.value_json, VALUE_LIMIT);
        Some(Lookup {
            key: got.key,
            found: got.found,
            layer: layer_name(got.layer),
            stale: got.stale,
            ttl: (got.ttl_remaining_ms > 0).then(|| ttl(got.ttl_remaining_ms)),
            size: got.value_json.len(),
            value,
            truncated,
        })
    };
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_owned();
    let counters = vec![
        ("L1 entries", stats.l1_entries.to_string()),
        ("L1 bytes", stats.l1_bytes.to_string()),
        ("L1 capacity (bytes)", stats.l1_capacity_bytes.to_string()),
        ("Loads", stats.loads.to_string()),
        ("Load errors", stats.load_errors.to_string()),
        ("Coalesced loads", stats.coalesced_loads.to_string()),
        ("Stale served", stats.stale_served.to_string()),
        ("Refresh-ahead", stats.refresh_ahead.to_string()),
        ("L2 (Redis) available", yes_no(stats.l2_available)),
        ("Backplane connected", yes_no(stats.backplane_connected)),
    ];
    render(&CachePage {
        nav: Nav::for_user("cache", &user),
        may_act: user.may_act(),
        instance_id: stats.instance_id,
        started_at: time(stats.started_at_ms),
        layers: stats
            .layers
            .iter()
            .map(|l| LayerRow {
                name: layer_name(l.layer),
                hits: l.hits,
                misses: l.misses,
                hit_ratio: format!("{:.1} %", l.hit_ratio * 100.0),
            })
            .collect(),
        counters,
        instance_columns: instances::CACHE_COLUMNS,
        instance_rows,
        instances_note,
        key,
        lookup,
        flash: flash(query.done.as_deref(), query.count),
    })
}

/// The entity form.
#[derive(Debug, Default, Deserialize)]
pub struct EntityForm {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    id: String,
}

/// The tag form.
#[derive(Debug, Default, Deserialize)]
pub struct TagForm {
    #[serde(default)]
    tag: String,
}

/// The pattern form.
#[derive(Debug, Default, Deserialize)]
pub struct PatternForm {
    #[serde(default)]
    pattern: String,
}

/// A required form field, trimmed; a 400 naming it when empty.
pub fn required(field: &str, value: &str) -> Result<String, ConsoleError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(ConsoleError::BadRequest(format!("{field} is required.")));
    }
    Ok(value.to_owned())
}

/// Checks the role and the field, audits a refusal, runs `call`, audits its outcome and
/// redirects back with `done` and the count it returned.
async fn invalidation<F>(
    user: &CurrentUser,
    action: &'static str,
    target: &str,
    field: Result<String, ConsoleError>,
    done: &str,
    call: F,
) -> Result<Redirect, ConsoleError>
where
    F: std::future::Future<Output = Result<Option<u64>, ConsoleError>>,
{
    let subject = Subject {
        target: Some(target),
        ..Subject::default()
    };
    user.require_operator(action, &subject)?;
    user.audit_failure(action, &subject, field)?;
    let count = user.audit_failure(action, &subject, call.await)?;
    let outcome = count.map_or_else(
        || "invalidated".to_owned(),
        |n| format!("invalidated: {n} deleted"),
    );
    user.audit(action, &subject, &outcome);
    let to = match count {
        Some(n) => format!("/cache?done={done}&count={n}"),
        None => format!("/cache?done={done}"),
    };
    Ok(Redirect::to(&to))
}

/// `POST /cache/invalidate/entity`.
pub async fn invalidate_entity(
    State(app): State<Arc<AppState>>,
    Extension(user): Extension<CurrentUser>,
    form: Result<Form<EntityForm>, FormRejection>,
) -> Result<Redirect, ConsoleError> {
    let form = form.map(|f| f.0).unwrap_or_default();
    let (kind, id) = (form.kind.trim().to_owned(), form.id.trim().to_owned());
    let target = format!("entity:{kind}:{id}");
    let field = required("kind", &kind).and_then(|_| required("id", &id));
    let mut cache = app.cache.clone();
    invalidation(
        &user,
        "invalidate_entity",
        &target,
        field,
        "entity",
        async move {
            let r = upstream::cache(
                cache
                    .invalidate_entity(InvalidateEntityRequest {
                        entity_type: 0,
                        id,
                        kind,
                    })
                    .await,
            )?;
            Ok(Some(r.deleted_keys.len() as u64))
        },
    )
    .await
}

/// `POST /cache/invalidate/tag`.
pub async fn invalidate_tag(
    State(app): State<Arc<AppState>>,
    Extension(user): Extension<CurrentUser>,
    form: Result<Form<TagForm>, FormRejection>,
) -> Result<Redirect, ConsoleError> {
    let tag = form.map(|f| f.0).unwrap_or_default().tag.trim().to_owned();
    let target = format!("tag:{tag}");
    let field = required("tag", &tag);
    let mut cache = app.cache.clone();
    invalidation(&user, "invalidate_tag", &target, field, "tag", async move {
        upstream::cache(cache.invalidate_tag(InvalidateTagRequest { tag }).await)?;
        Ok(None)
    })
    .await
}

/// `POST /cache/invalidate/pattern`.
pub async fn invalidate_pattern(
    State(app): State<Arc<AppState>>,
    Extension(user): Extension<CurrentUser>,
    form: Result<Form<PatternForm>, FormRejection>,
) -> Result<Redirect, ConsoleError> {
    let pattern = form
        .map(|f| f.0)
        .unwrap_or_default()
        .pattern
        .trim()
        .to_owned();
    let target = format!("pattern:{pattern}");
    let field = required("pattern", &pattern);
    let mut cache = app.cache.clone();
    invalidation(
        &user,
        "invalidate_pattern",
        &target,
        field,
        "pattern",
        async move {
            let r = upstream::cache(
                cache
                    .invalidate_pattern(InvalidatePatternRequest {
                        pattern,
                        dry_run: false,
                    })
                    .await,
            )?;
            Ok(Some(r.removed))
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("abc", 3), ("abc".to_owned(), false));
        assert_eq!(truncate("aé", 2), ("a".to_owned(), true));
        assert_eq!(
            flash(Some("pattern"), Some(3)).as_deref(),
            Some("Pattern invalidated: 3 key(s) removed.")
        );
        assert_eq!(flash(Some("<b>"), None), None);
        assert_eq!(ttl(999), "999 ms");
        assert_eq!(ttl(600_407), "10 min 0 s");
        assert_eq!(ttl(3_725_000), "1 h 2 min 5 s");
    }
}
