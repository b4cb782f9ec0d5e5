//! `Stats`: this instance's counters and, with `all_instances`, every live instance's — the
//! snapshots the gateways report to ncy-runtime's instance registry
//! (`<p>:instances:realtime-gateway`) every report interval, so one call through a Kubernetes
//! Service shows which replica holds the connections.
use std::sync::atomic::{AtomicU64, Ordering};

use ncy_proto::realtime::v1 as pb;
use ncy_runtime::{InstanceRegistry, instances::Reported};
use prost::Message;

use crate::{error::GatewayError, gateway::Gateway};

/// This instance's counters now (`instances` empty).
pub fn snapshot(gw: &Gateway) -> pb::StatsResponse {
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    pb::StatsResponse {
        instance_id: gw.instance_id.clone(),
        started_at_ms: gw.started_at_ms,
        connections: gw.connections.load(Ordering::Relaxed) as u64,
        authenticated_connections: gw.authenticated.load(Ordering::Relaxed) as u64,
        rooms: gw.hub.room_count() as u64,
        messages_in: load(&gw.messages_in),
        messages_out: load(&gw.hub.messages_out),
        messages_published: load(&gw.messages_published),
        slow_client_disconnects: load(&gw.slow_client_disconnects),
        recovery_hits: load(&gw.hub.recovery_hits),
        recovery_misses: load(&gw.hub.recovery_misses),
        bus_connected: gw
            .hub
            .subscriber()
            .is_some_and(ncy_bus::Subscriber::connected),
        draining: gw.stop.is_cancelled(),
        instances: Vec::new(),
        reported_at_ms: chrono::Utc::now().timestamp_millis(),
    }
}

/// What this instance reports to the registry: its snapshot, protobuf-encoded.
pub fn report(gw: &Gateway) -> Vec<u8> {
    snapshot(gw).encode_to_vec()
}

/// Stats' answer: this instance's snapshot, plus every live instance's with `all_instances`.
pub async fn stats(
    gw: &Gateway,
    registry: &InstanceRegistry,
    req: &pb::StatsRequest,
) -> Result<pb::StatsResponse, GatewayError> {
    let mut own = snapshot(gw);
    if !req.all_instances {
        return Ok(own);
    }
    let mine = Reported {
        instance_id: own.instance_id.clone(),
        reported_at_ms: own.reported_at_ms,
        snapshot: own.clone(),
    };
    let listed = registry
        .view(mine, |bytes| pb::StatsResponse::decode(bytes).ok())
        .await?;
    own.instances = listed
        .into_iter()
        .map(|r| pb::StatsResponse {
            instance_id: r.instance_id,
            reported_at_ms: r.reported_at_ms,
            instances: Vec::new(),
            ..r.snapshot
        })
        .collect();
    Ok(own)
}
