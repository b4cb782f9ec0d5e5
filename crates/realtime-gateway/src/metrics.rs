//! The gateway's Prometheus metrics (names listed in docs/operations.md#metrics), recorded through
//! the `metrics` facade that the runtime exports on `/metrics`.
use std::time::Duration;

use crate::error::CloseReason;

/// Describes the metrics once (idempotent).
pub fn describe() {
    metrics::describe_gauge!("ncy_realtime_connections", "Open WebSocket connections");
    metrics::describe_gauge!(
        "ncy_realtime_rooms",
        "Rooms with local members (each one Redis subscription)"
    );
    metrics::describe_counter!(
        "ncy_realtime_messages_in_total",
        "Frames received from clients"
    );
    metrics::describe_counter!(
        "ncy_realtime_messages_out_total",
        "Message frames queued to clients (one per socket per message)"
    );
    metrics::describe_counter!(
        "ncy_realtime_messages_published_total",
        "Messages published through this instance"
    );
    metrics::describe_histogram!(
        "ncy_realtime_fanout_seconds",
        metrics::Unit::Seconds,
        "Time to fan one bus message out to the local members' queues"
    );
    metrics::describe_counter!(
        "ncy_realtime_disconnects_total",
        "Closed connections by reason"
    );
    metrics::describe_counter!(
        "ncy_realtime_slow_consumer_closes_total",
        "Sockets closed because their outbound queue was full"
    );
    metrics::describe_counter!(
        "ncy_realtime_rooms_left_total",
        "Sockets the server took out of a room, by reason (revoked, unsubscribed)"
    );
    metrics::describe_counter!(
        "ncy_realtime_recovery_total",
        "Recovery requests by result (hit, miss)"
    );
}

/// Connection gauge.
pub fn connections(n: usize) {
    metrics::gauge!("ncy_realtime_connections").set(n as f64);
}

/// Rooms gauge.
pub fn rooms(n: usize) {
    metrics::gauge!("ncy_realtime_rooms").set(n as f64);
}

/// One inbound frame.
pub fn message_in() {
    metrics::counter!("ncy_realtime_messages_in_total").increment(1);
}

/// One publish through this instance.
pub fn published() {
    metrics::counter!("ncy_realtime_messages_published_total").increment(1);
}

/// One fan-out of `sent` frames.
pub fn fanout(sent: u64, took: Duration) {
    metrics::counter!("ncy_realtime_messages_out_total").increment(sent);
    metrics::histogram!("ncy_realtime_fanout_seconds").record(took.as_secs_f64());
}

/// One disconnect.
pub fn disconnect(reason: CloseReason) {
    metrics::counter!("ncy_realtime_disconnects_total", "reason" => reason.text()).increment(1);
}

/// One slow-consumer close.
pub fn slow_consumer() {
    metrics::counter!("ncy_realtime_slow_consumer_closes_total").increment(1);
}

/// One recovery answer.
pub fn recovery(hit: bool) {
    let result = if hit { "hit" } else { "miss" };
    metrics::counter!("ncy_realtime_recovery_total", "result" => result).increment(1);
}

/// The server took one socket out of one room (`left` with this reason).
pub fn room_left(reason: &'static str) {
    metrics::counter!("ncy_realtime_rooms_left_total", "reason" => reason).increment(1);
}
