//! Every instance of a gateway on one page: the Cache and Realtime pages ask the gateway for
//! `Stats` with `all_instances`, which answers its own numbers and the last snapshot each live
//! replica reported to the instance registry (every few seconds). When the registry cannot be read
//! (the gateway answers UNAVAILABLE while its Redis is down), the page falls back to the answering
//! instance alone and says so, rather than showing nothing during the incident it is opened for.
//!
//! The overview shows a narrower table of the same instances, live (`live.rs`): the hit ratio of
//! each cache layer, and each realtime instance's connections, rooms and messages out per second,
//! a rate the poller works out from two snapshots of the instance ([`MessageRates`]).
use std::{collections::HashMap, future::Future};

use ncy_proto::cache::v1 as cache;
use ncy_proto::realtime::v1 as realtime;

use super::time;
use crate::error::ConsoleError;

/// Why the page shows only the answering instance.
pub const REGISTRY_UNREADABLE: &str = "Only the instance that answered is shown: it could not read the \
     other instances' reports (is its Redis reachable?).";

/// One row of an instances table; `cells` in the order of the page's header.
pub struct InstanceRow {
    pub instance_id: String,
    /// The instance that answered this page (its numbers are fresh).
    pub answered: bool,
    pub started: String,
    /// How old its numbers are: `now` for the answering one, else `4 s ago`.
    pub reported: String,
    pub cells: Vec<String>,
}

/// `all` (the answer with `all_instances`), or when that fails with UNAVAILABLE the answer of
/// `own` and the reason, through `upstream` for the error page of anything else.
pub async fn with_fallback<T, A, O>(
    all: A,
    own: O,
    upstream: fn(Result<tonic::Response<T>, tonic::Status>) -> Result<T, ConsoleError>,
) -> Result<(T, Option<&'static str>), ConsoleError>
where
    A: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    O: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    match all.await {
        Err(status) if status.code() == tonic::Code::Unavailable => {
            Ok((upstream(own.await)?, Some(REGISTRY_UNREADABLE)))
        }
        answer => Ok((upstream(answer)?, None)),
    }
}

/// How long ago `at_ms` was, as of `now_ms`.
fn ago(now_ms: i64, at_ms: i64) -> String {
    if at_ms <= 0 {
        return "—".to_owned();
    }
    let secs = (now_ms - at_ms).max(0) / 1000;
    if secs < 120 {
        format!("{secs} s ago")
    } else {
        format!("{} min ago", secs / 60)
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

/// The hit ratio of `layer` in `s`, as a percentage (`—` when the instance has no such layer).
fn ratio(s: &cache::StatsResponse, layer: cache::CacheLayer) -> String {
    s.layers
        .iter()
        .find(|l| l.layer == layer as i32)
        .map_or_else(
            || "—".to_owned(),
            |l| format!("{:.1} %", l.hit_ratio * 100.0),
        )
}

/// The rows of the cache-gateway's instances: the registry's, or the answering one alone.
pub fn cache_rows(stats: &cache::StatsResponse) -> Vec<InstanceRow> {
    let now = now_ms();
    let row = |s: &cache::StatsResponse| {
        let answered = s.instance_id == stats.instance_id;
        let fill = if s.l1_capacity_bytes == 0 {
            "—".to_owned()
        } else {
            // Display only: the precision of f64 is more than enough for a percentage.
            #[allow(clippy::cast_precision_loss)]
            let pct = s.l1_bytes as f64 * 100.0 / s.l1_capacity_bytes as f64;
            format!("{pct:.1} %")
        };
        InstanceRow {
            instance_id: s.instance_id.clone(),
            answered,
            started: time(s.started_at_ms),
            reported: if answered {
                "now".to_owned()
            } else {
                ago(now, s.reported_at_ms)
            },
            cells: vec![
                ratio(s, cache::CacheLayer::L1),
                ratio(s, cache::CacheLayer::L2),
                ratio(s, cache::CacheLayer::L3),
                s.l1_entries.to_string(),
                fill,
                s.loads.to_string(),
                s.load_errors.to_string(),
                yes_no(s.l2_available),
                yes_no(s.backplane_connected),
            ],
        }
    };
    rows(stats, &stats.instances, row)
}

/// The header of [`cache_rows`]' cells.
pub const CACHE_COLUMNS: &[&str] = &[
    "L1 hit ratio",
    "L2 hit ratio",
    "L3 hit ratio",
    "L1 entries",
    "L1 full",
    "Loads",
    "Load errors",
    "Redis",
    "Backplane",
];

/// The rows of the realtime-gateway's instances: the registry's, or the answering one alone.
pub fn realtime_rows(stats: &realtime::StatsResponse) -> Vec<InstanceRow> {
    let now = now_ms();
    let row = |s: &realtime::StatsResponse| {
        let answered = s.instance_id == stats.instance_id;
        InstanceRow {
            instance_id: s.instance_id.clone(),
            answered,
            started: time(s.started_at_ms),
            reported: if answered {
                "now".to_owned()
            } else {
                ago(now, s.reported_at_ms)
            },
            cells: vec![
                s.connections.to_string(),
                s.authenticated_connections.to_string(),
                s.rooms.to_string(),
                s.messages_in.to_string(),
                s.messages_out.to_string(),
                s.messages_published.to_string(),
                s.slow_client_disconnects.to_string(),
                yes_no(s.bus_connected),
                yes_no(s.draining),
            ],
        }
    };
    rows(stats, &stats.instances, row)
}

/// The header of [`realtime_rows`]' cells.
pub const REALTIME_COLUMNS: &[&str] = &[
    "Connections",
    "Authenticated",
    "Rooms",
    "Messages in",
    "Messages out",
    "Published",
    "Slow clients closed",
    "Bus",
    "Draining",
];

/// The registry's instances in its order (the answering one's fresh numbers in its place), or the
/// answering one alone when the list is empty (no `all_instances`, or the fallback).
fn snapshots<'a, S>(own: &'a S, instances: &'a [S]) -> &'a [S] {
    if instances.is_empty() {
        std::slice::from_ref(own)
    } else {
        instances
    }
}

fn rows<S>(own: &S, instances: &[S], row: impl Fn(&S) -> InstanceRow) -> Vec<InstanceRow> {
    snapshots(own, instances).iter().map(row).collect()
}

/// A row of the overview's narrow tables: no start or report time (the overview is refreshed
/// every second; the gateway's own page has them).
fn overview_row(answering: &str, id: &str, cells: Vec<String>) -> InstanceRow {
    InstanceRow {
        instance_id: id.to_owned(),
        answered: id == answering,
        started: String::new(),
        reported: String::new(),
        cells,
    }
}

/// The overview's cache columns: `(key, header)`, the key naming each cell in the page.
pub const CACHE_OVERVIEW_COLUMNS: &[(&str, &str)] = &[
    ("l1", "L1 hit ratio"),
    ("l2", "L2 hit ratio"),
    ("l3", "L3 hit ratio"),
];

/// The overview's rows of the cache-gateway's instances: each layer's hit ratio.
pub fn cache_overview_rows(stats: &cache::StatsResponse) -> Vec<InstanceRow> {
    rows(stats, &stats.instances, |s| {
        overview_row(
            &stats.instance_id,
            &s.instance_id,
            vec![
                ratio(s, cache::CacheLayer::L1),
                ratio(s, cache::CacheLayer::L2),
                ratio(s, cache::CacheLayer::L3),
            ],
        )
    })
}

/// The overview's realtime columns: `(key, header)`.
pub const REALTIME_OVERVIEW_COLUMNS: &[(&str, &str)] = &[
    ("connections", "Connections"),
    ("rooms", "Rooms"),
    ("out_per_sec", "Messages out/s"),
];

/// The overview's rows of the realtime-gateway's instances: connections, rooms, and messages out
/// per second as `rates` has them (updated with this answer first).
pub fn realtime_overview_rows(
    stats: &realtime::StatsResponse,
    rates: &MessageRates,
) -> Vec<InstanceRow> {
    rows(stats, &stats.instances, |s| {
        overview_row(
            &stats.instance_id,
            &s.instance_id,
            vec![
                s.connections.to_string(),
                s.rooms.to_string(),
                rates.per_sec(&s.instance_id),
            ],
        )
    })
}

/// Messages out per second of each realtime instance, from the two latest snapshots of it that
/// differ in time. Another instance's snapshot changes only when it reports (every few seconds),
/// so a poll that sees the same snapshot again keeps the rate it had. Held by one poller for its
/// lifetime: a poller started later begins again with `—` rather than averaging over the time
/// nobody watched.
#[derive(Debug, Default)]
pub struct MessageRates {
    seen: HashMap<String, Seen>,
}

#[derive(Debug)]
struct Seen {
    at_ms: i64,
    messages_out: u64,
    per_sec: Option<f64>,
}

impl MessageRates {
    /// Takes the snapshots of one answer, received at `answered_at_ms` (the time of a snapshot
    /// that carries none), and forgets the instances it no longer lists.
    pub fn update(&mut self, stats: &realtime::StatsResponse, answered_at_ms: i64) {
        let listed = snapshots(stats, &stats.instances);
        self.seen
            .retain(|id, _| listed.iter().any(|s| &s.instance_id == id));
        for s in listed {
            let at_ms = if s.reported_at_ms > 0 {
                s.reported_at_ms
            } else {
                answered_at_ms
            };
            self.observe(&s.instance_id, at_ms, s.messages_out);
        }
    }

    fn observe(&mut self, id: &str, at_ms: i64, messages_out: u64) {
        let per_sec = match self.seen.get(id) {
            Some(last) if at_ms == last.at_ms && messages_out == last.messages_out => {
                return; // the same report again
            }
            Some(last) if at_ms > last.at_ms && messages_out >= last.messages_out => {
                // Display only: f64 holds any realistic count of messages exactly enough.
                #[allow(clippy::cast_precision_loss)]
                let rate = (messages_out - last.messages_out) as f64 * 1000.0
                    / (at_ms - last.at_ms) as f64;
                Some(rate)
            }
            // First sight, or a counter or clock that went back (a restart): start again.
            _ => None,
        };
        self.seen.insert(
            id.to_owned(),
            Seen {
                at_ms,
                messages_out,
                per_sec,
            },
        );
    }

    /// The rate of instance `id` as the page shows it: `—` until two snapshots were seen.
    pub fn per_sec(&self, id: &str) -> String {
        self.seen
            .get(id)
            .and_then(|s| s.per_sec)
            .map_or_else(|| "—".to_owned(), |r| format!("{r:.1}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_in_seconds_then_minutes() {
        assert_eq!(ago(10_000, 6_000), "4 s ago");
        assert_eq!(ago(10_000, 12_000), "0 s ago");
        assert_eq!(ago(1_000_000, 100_000), "15 min ago");
        assert_eq!(ago(1_000, 0), "—");
    }

    fn answer(id: &str) -> Result<tonic::Response<realtime::StatsResponse>, tonic::Status> {
        Ok(tonic::Response::new(realtime::StatsResponse {
            instance_id: id.to_owned(),
            ..Default::default()
        }))
    }

    #[tokio::test]
    async fn an_unreadable_registry_falls_back_to_the_answering_instance_with_a_note() {
        let (stats, note) = with_fallback(
            async { Err(tonic::Status::unavailable("registry")) },
            async { answer("own") },
            crate::upstream::realtime,
        )
        .await
        .expect("the fallback answers");
        assert_eq!(stats.instance_id, "own");
        assert_eq!(note, Some(REGISTRY_UNREADABLE));

        let (stats, note) = with_fallback(
            async { answer("all") },
            async { answer("own") },
            crate::upstream::realtime,
        )
        .await
        .expect("answers");
        assert_eq!((stats.instance_id.as_str(), note), ("all", None));

        let refused = with_fallback(
            async { Err(tonic::Status::permission_denied("scope")) },
            async { answer("own") },
            crate::upstream::realtime,
        )
        .await;
        assert!(refused.is_err(), "other errors are the page's error");
    }

    fn snapshot(id: &str, at_ms: i64, out: u64) -> realtime::StatsResponse {
        realtime::StatsResponse {
            instance_id: id.to_owned(),
            reported_at_ms: at_ms,
            messages_out: out,
            ..Default::default()
        }
    }

    /// One answer of instance `a` at `at_ms` listing `(id, reported_at_ms, messages_out)`.
    fn poll(rates: &mut MessageRates, at_ms: i64, listed: &[(&str, i64, u64)]) {
        let instances = listed
            .iter()
            .map(|(id, at, out)| snapshot(id, *at, *out))
            .collect();
        let answer = realtime::StatsResponse {
            instances,
            ..snapshot("a", at_ms, 0)
        };
        rates.update(&answer, at_ms);
    }

    #[test]
    fn messages_out_per_second_come_from_two_snapshots_of_an_instance() {
        let mut rates = MessageRates::default();
        poll(&mut rates, 10_000, &[("a", 10_000, 100), ("b", 9_000, 7)]);
        assert_eq!(rates.per_sec("a"), "—", "one snapshot is not a rate");
        assert_eq!(rates.per_sec("b"), "—");

        // a answers fresh each time; b's snapshot is the same until it reports again.
        poll(&mut rates, 12_000, &[("a", 12_000, 150), ("b", 9_000, 7)]);
        assert_eq!(rates.per_sec("a"), "25.0");
        assert_eq!(rates.per_sec("b"), "—");
        poll(&mut rates, 13_000, &[("a", 13_000, 150), ("b", 14_000, 17)]);
        assert_eq!(rates.per_sec("a"), "0.0");
        assert_eq!(rates.per_sec("b"), "2.0");
        poll(&mut rates, 14_000, &[("a", 14_000, 160), ("b", 14_000, 17)]);
        assert_eq!(rates.per_sec("b"), "2.0", "kept until b reports again");

        // b gone from the registry, then back with a counter that started again.
        poll(&mut rates, 15_000, &[("a", 15_000, 170)]);
        assert!(!rates.seen.contains_key("b"));
        poll(&mut rates, 16_000, &[("a", 16_000, 180), ("b", 16_000, 3)]);
        assert_eq!(rates.per_sec("b"), "—");
        poll(&mut rates, 17_000, &[("a", 17_000, 170)]);
        assert_eq!(
            rates.per_sec("a"),
            "—",
            "a counter that went back starts again"
        );
    }

    #[test]
    fn a_snapshot_without_a_time_is_timed_by_the_answer() {
        let mut rates = MessageRates::default();
        rates.update(&snapshot("old", 0, 10), 1_000);
        rates.update(&snapshot("old", 0, 30), 3_000);
        assert_eq!(rates.per_sec("old"), "10.0");
        let rows = realtime_overview_rows(&snapshot("old", 0, 30), &rates);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].cells, ["0", "0", "10.0"]);
    }

    #[test]
    fn the_overview_rows_name_every_instance_and_mark_the_answering_one() {
        let layer = |layer: cache::CacheLayer, hit_ratio: f64| cache::LayerStats {
            layer: layer as i32,
            hit_ratio,
            ..Default::default()
        };
        let instance = |id: &str, l1: f64| cache::StatsResponse {
            instance_id: id.to_owned(),
            layers: vec![
                layer(cache::CacheLayer::L1, l1),
                layer(cache::CacheLayer::L2, 0.5),
            ],
            ..Default::default()
        };
        let stats = cache::StatsResponse {
            instances: vec![instance("c-1", 1.0), instance("c-2", 0.25)],
            ..instance("c-2", 0.25)
        };
        let rows = cache_overview_rows(&stats);
        let shown: Vec<_> = rows
            .iter()
            .map(|r| (r.instance_id.as_str(), r.answered, r.cells.clone()))
            .collect();
        assert_eq!(
            shown,
            [
                (
                    "c-1",
                    false,
                    vec!["100.0 %".into(), "50.0 %".into(), "—".into()]
                ),
                (
                    "c-2",
                    true,
                    vec!["25.0 %".into(), "50.0 %".into(), "—".into()]
                ),
            ]
        );
    }

    #[test]
    fn without_a_registry_the_answering_instance_is_the_one_row() {
        let own = realtime::StatsResponse {
            instance_id: "rt-a".into(),
            connections: 3,
            ..Default::default()
        };
        let rows = realtime_rows(&own);
        assert_eq!(rows.len(), 1);
        assert!(rows[0].answered);
        assert_eq!(rows[0].reported, "now");
        assert_eq!(rows[0].cells[0], "3");
    }
}
