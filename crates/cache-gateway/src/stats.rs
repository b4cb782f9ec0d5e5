//! `Stats`: this instance's counters and, with `all_instances`, every live instance's — the
//! snapshots the gateways report to ncy-runtime's instance registry (`<p>:instances:cache-gateway`)
//! every report interval, so one call through a Kubernetes Service shows every replica.
use ncy_proto::cache::v1 as pb;
use ncy_runtime::{InstanceRegistry, instances::Reported};
use prost::Message;

use crate::{
    api::layer,
    cache::Core,
    error::CacheError,
    metrics::{Layer, Metrics},
    now_ms,
};

/// This instance's counters now (`instances` empty).
pub async fn snapshot(core: &Core) -> pb::StatsResponse {
    let m = &core.metrics;
    core.l1.sync().await;
    let layers = [Layer::L1, Layer::L2, Layer::L3]
        .into_iter()
        .map(|l| {
            let hits = Metrics::read(&m.layer_hits[l as usize]);
            let misses = Metrics::read(&m.layer_misses[l as usize]);
            let total = hits + misses;
            pb::LayerStats {
                layer: layer(l),
                hits,
                misses,
                hit_ratio: if total == 0 {
                    0.0
                } else {
                    hits as f64 / total as f64
                },
            }
        })
        .collect();
    pb::StatsResponse {
        instance_id: core.backplane.instance_id.clone(),
        started_at_ms: core.started_ms,
        layers,
        l1_entries: core.l1.entries(),
        l1_bytes: core.l1.bytes(),
        l1_capacity_bytes: core.l1.capacity(),
        loads: Metrics::read(&m.loads),
        load_errors: Metrics::read(&m.load_errors),
        coalesced_loads: Metrics::read(&m.coalesced),
        stale_served: Metrics::read(&m.stale_served),
        refresh_ahead: Metrics::read(&m.refresh_ahead),
        l2_available: core.l2.available(),
        backplane_connected: core.backplane.connected(),
        instances: Vec::new(),
        reported_at_ms: now_ms(),
    }
}

/// What this instance reports to the registry: its snapshot, protobuf-encoded.
pub async fn report(core: &Core) -> Vec<u8> {
    snapshot(core).await.encode_to_vec()
}

/// Stats' answer: this instance's snapshot, plus every live instance's with `all_instances`.
pub async fn stats(
    core: &Core,
    registry: &InstanceRegistry,
    req: &pb::StatsRequest,
) -> Result<pb::StatsResponse, CacheError> {
    let mut own = snapshot(core).await;
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
