//! Metrics with the seed's names: `cache_hits_total{cache_layer,key_pattern}`,
//! `cache_misses_total{cache_layer,key_pattern}` and
//! `cache_operation_duration_seconds{operation,cache_layer}`, plus this instance's own counters for
//! the `Stats` RPC.
//!
//! `key_pattern` is the family of the key, from a bounded set fixed at start: the plain families
//! of ncy-types' `KEY_FAMILIES` that callers may name (`api`, `user`, `org_members`, …, the same
//! list `validate.rs` guards), every loader kind (the loaders file is the operator's, so its kinds
//! are as bounded as the defaults), and `other` for everything else. A caller's own key
//! (`Set("report:1")`) is `other`: callers choose those families freely, and a label per family
//! would let them grow `/metrics` without limit.
//!
//! Handles are resolved once at start for every label, so the hot path does a hash lookup and an
//! atomic add instead of building a label set per request.
use std::{
    collections::HashMap,
    sync::atomic::{AtomicU64, Ordering},
    time::Instant,
};

use metrics::{Counter, Histogram};
use ncy_types::{
    KeySpace,
    keys::{KEY_FAMILIES, Layout, family_name},
};

use crate::loaders::Loaders;

/// A cache layer, as labelled in metrics and answered in responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// In-process.
    L1 = 0,
    /// Redis.
    L2 = 1,
    /// A loader.
    L3 = 2,
}

const LAYERS: [&str; 3] = ["l1", "l2", "l3"];
/// The label of keys outside every labelled family.
const OTHER: &str = "other";
/// Operations timed by `cache_operation_duration_seconds`.
pub const OPERATIONS: [&str; 5] = ["get", "set", "delete", "mget", "get_or_load"];
const OP_LAYERS: [&str; 4] = ["l1", "l2", "l3", "none"];

/// The hit and miss counters of one `key_pattern`, per layer.
pub struct KeySeries {
    hits: [Counter; 3],
    misses: [Counter; 3],
}

impl KeySeries {
    fn new(pattern: &str) -> Self {
        let per_layer = |name: &'static str| {
            LAYERS.map(|layer| {
                metrics::counter!(name, "cache_layer" => layer, "key_pattern" => pattern.to_owned())
            })
        };
        Self {
            hits: per_layer("cache_hits_total"),
            misses: per_layer("cache_misses_total"),
        }
    }
}

/// Pre-resolved handles and the per-instance counters.
pub struct Metrics {
    keys: KeySpace,
    /// By family: the labelled ones (see the module docs).
    families: HashMap<Box<str>, KeySeries>,
    other: KeySeries,
    durations: HashMap<&'static str, [Histogram; 4]>,
    /// Per-layer hit counts of this instance.
    pub layer_hits: [AtomicU64; 3],
    /// Per-layer miss counts of this instance.
    pub layer_misses: [AtomicU64; 3],
    /// Loader runs.
    pub loads: AtomicU64,
    /// Loader failures.
    pub load_errors: AtomicU64,
    /// Callers that joined another load.
    pub coalesced: AtomicU64,
    /// Stale answers.
    pub stale_served: AtomicU64,
    /// Background refreshes started.
    pub refresh_ahead: AtomicU64,
}

impl Metrics {
    /// Registers every series once: one `key_pattern` per labelled family of `keys` and per kind
    /// of `loaders`.
    pub fn new(keys: KeySpace, loaders: &Loaders) -> Self {
        metrics::describe_counter!(
            "cache_hits_total",
            "Reads answered, by layer and key family"
        );
        metrics::describe_counter!("cache_misses_total", "Reads a layer could not answer");
        metrics::describe_histogram!(
            "cache_operation_duration_seconds",
            "Cache operation latency by the layer that answered"
        );
        let named = KEY_FAMILIES
            .iter()
            .filter(|f| f.layout == Layout::Plain && f.cache_readable())
            .map(|f| f.name)
            .chain(loaders.kinds());
        Self {
            keys,
            families: named
                .map(|family| (Box::from(family), KeySeries::new(family)))
                .collect(),
            other: KeySeries::new(OTHER),
            durations: OPERATIONS
                .iter()
                .map(|op| {
                    (
                        *op,
                        OP_LAYERS.map(|layer| {
                            metrics::histogram!("cache_operation_duration_seconds",
                                "operation" => *op, "cache_layer" => layer)
                        }),
                    )
                })
                .collect(),
            layer_hits: Default::default(),
            layer_misses: Default::default(),
            loads: AtomicU64::new(0),
            load_errors: AtomicU64::new(0),
            coalesced: AtomicU64::new(0),
            stale_served: AtomicU64::new(0),
            refresh_ahead: AtomicU64::new(0),
        }
    }

    /// The series of full key `key`: its family's, or `other`.
    pub fn series(&self, key: &str) -> &KeySeries {
        self.keys
            .logical(key)
            .and_then(|logical| self.families.get(family_name(logical)))
            .unwrap_or(&self.other)
    }

    /// A hit in `layer` for a key of `series`.
    pub fn hit(&self, layer: Layer, series: &KeySeries) {
        self.layer_hits[layer as usize].fetch_add(1, Ordering::Relaxed);
        series.hits[layer as usize].increment(1);
    }

    /// A miss in `layer` for a key of `series`.
    pub fn miss(&self, layer: Layer, series: &KeySeries) {
        self.layer_misses[layer as usize].fetch_add(1, Ordering::Relaxed);
        series.misses[layer as usize].increment(1);
    }

    /// Records `operation`'s duration since `start`, labelled with the answering layer.
    pub fn timed(&self, operation: &str, layer: Option<Layer>, start: Instant) {
        if let Some(h) = self.durations.get(operation) {
            let i = layer.map_or(3, |l| l as usize);
            h[i].record(start.elapsed().as_secs_f64());
        }
    }

    /// A counter's value.
    pub fn read(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Adds one to `counter`.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::{io::Write, time::Duration};

    use super::*;

    #[test]
    fn labels_are_the_callers_readable_families_loader_kinds_and_other() {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        let kind = "[loaders.gadget]\nid = \"text\"\nsql = \"SELECT 1\"\n";
        file.write_all(kind.as_bytes()).expect("write");
        let loaders = Loaders::load(Some(file.path()), Duration::from_secs(60)).expect("loaders");
        let keys = KeySpace::new("ncy").expect("prefix");
        let m = Metrics::new(keys.clone(), &loaders);
        let label = |key: &str| {
            let series = m.series(key);
            if std::ptr::eq(series, &m.other) {
                return OTHER;
            }
            let named = m.families.iter().find(|(_, s)| std::ptr::eq(*s, series));
            named.map_or("?", |(name, _)| &**name)
        };
        assert_eq!(label(&keys.user("1")), "user");
        assert_eq!(label(&keys.project_tasks("1")), "project_tasks");
        assert_eq!(label(&keys.api("e", &serde_json::json!({}))), "api");
        assert_eq!(label(&keys.cache_key("gadget:g1")), "gadget");
        for other in [
            keys.cache_key("report:1"),
            keys.cache_key("gadgets:1"),
            keys.cache_key("other"),
            keys.session("1"),
            keys.cache_tag("user:1"),
            keys.queue("email").job("1"),
            "ncyx:user:1".to_owned(),
            String::new(),
        ] {
            assert_eq!(label(&other), OTHER, "{other}");
        }
    }
}
