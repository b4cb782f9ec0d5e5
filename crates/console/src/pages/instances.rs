//! Every instance of a gateway on one page: the Cache and Realtime pages ask the gateway for
//! `Stats` with `all_instances`, which answers its own numbers and the last snapshot each live
//! replica reported to the instance registry (every few seconds). When the registry cannot be read
//! (the gateway answers UNAVAILABLE while its Redis is down), the page falls back to the answering
//! instance alone and says so, rather than showing nothing during the incident it is opened for.
use std::future::Future;

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

/// The rows of the cache-gateway's instances: the registry's, or the answering one alone.
pub fn cache_rows(stats: &cache::StatsResponse) -> Vec<InstanceRow> {
    let now = now_ms();
    let ratio = |s: &cache::StatsResponse, layer: cache::CacheLayer| {
        s.layers
            .iter()
            .find(|l| l.layer == layer as i32)
            .map_or_else(
                || "—".to_owned(),
                |l| format!("{:.1} %", l.hit_ratio * 100.0),
            )
    };
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
fn rows<S>(own: &S, instances: &[S], row: impl Fn(&S) -> InstanceRow) -> Vec<InstanceRow> {
    if instances.is_empty() {
        return vec![row(own)];
    }
    instances.iter().map(row).collect()
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
