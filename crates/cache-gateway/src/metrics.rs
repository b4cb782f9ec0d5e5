//! Metrics with the seed's names: `cache_hits_total{cache_layer,key_pattern}`,
//! `cache_misses_total{cache_layer,key_pattern}` and
//! `cache_operation_duration_seconds{operation,cache_layer}`, plus this instance's own counters for
//! the `Stats` RPC.
//!
//! Handles are resolved once at start for every key family, so the hot path does a hash lookup
//! and an atomic add instead of building a label set per request.
use std::{
    collections::HashMap,
    sync::atomic::{AtomicU64, Ordering},
    time::Instant,
};

use metrics::{Counter, Histogram};

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
/// Every value `KeySpace::key_pattern` can return.
const PATTERNS: [&str; 16] = [
    "user",
    "user_sessions",
    "org",
    "org_members",
    "project",
    "project_tasks",
    "api",
    "rate_limit",
    "session",
    "realtime",
    "cache_tag",
    "cache_lease",
    "queue",
    "cron",
    "room",
    "other",
];
/// Operations timed by `cache_operation_duration_seconds`.
pub const OPERATIONS: [&str; 5] = ["get", "set", "delete", "mget", "get_or_load"];
const OP_LAYERS: [&str; 4] = ["l1", "l2", "l3", "none"];

/// Pre-resolved handles and the per-instance counters.
pub struct Metrics {
    hits: HashMap<&'static str, [Counter; 3]>,
    misses: HashMap<&'static str, [Counter; 3]>,
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
    /// Registers every series once.
    pub fn new() -> Self {
        metrics::describe_counter!(
            "cache_hits_total",
            "Reads answered, by layer and key family"
        );
        metrics::describe_counter!("cache_misses_total", "Reads a layer could not answer");
        metrics::describe_histogram!(
            "cache_operation_duration_seconds",
            "Cache operation latency by the layer that answered"
        );
        let per_layer = |name: &'static str, pattern: &'static str| {
            LAYERS.map(
                |layer| metrics::counter!(name, "cache_layer" => layer, "key_pattern" => pattern),
            )
        };
        Self {
            hits: PATTERNS
                .iter()
                .map(|p| (*p, per_layer("cache_hits_total", p)))
                .collect(),
            misses: PATTERNS
                .iter()
                .map(|p| (*p, per_layer("cache_misses_total", p)))
                .collect(),
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

    /// A hit in `layer` for a key of family `pattern`.
    pub fn hit(&self, layer: Layer, pattern: &str) {
        self.layer_hits[layer as usize].fetch_add(1, Ordering::Relaxed);
        if let Some(c) = self.hits.get(pattern).or_else(|| self.hits.get("other")) {
            c[layer as usize].increment(1);
        }
    }

    /// A miss in `layer` for a key of family `pattern`.
    pub fn miss(&self, layer: Layer, pattern: &str) {
        self.layer_misses[layer as usize].fetch_add(1, Ordering::Relaxed);
        if let Some(c) = self
            .misses
            .get(pattern)
            .or_else(|| self.misses.get("other"))
        {
            c[layer as usize].increment(1);
        }
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

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
