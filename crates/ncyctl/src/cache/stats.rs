//! `ncyctl cache stats [--all-instances]`: the counters of the instance answering, or a table of
//! every live instance (each reports its counters every few seconds; see `Stats` in cache.proto).
use ncy_proto::cache::v1::{self as pb, cache_service_client::CacheServiceClient};

use super::layer;
use crate::Outcome;
use crate::rpc::{Channel, failed, print_json, table, time};

pub async fn run(
    client: &mut CacheServiceClient<Channel>,
    all_instances: bool,
    json: bool,
) -> Result<(), Outcome> {
    let r = client
        .stats(pb::StatsRequest { all_instances })
        .await
        .map_err(failed)?
        .into_inner();
    if json {
        print_json(&r, "ncy.cache.v1.StatsResponse");
    } else if all_instances {
        print_instances(&r);
    } else {
        print_one(&r);
    }
    Ok(())
}

fn print_one(r: &pb::StatsResponse) {
    let mut t = table(&["LAYER", "HITS", "MISSES", "HIT RATIO"]);
    for l in &r.layers {
        t.add_row(vec![
            layer(l.layer),
            l.hits.to_string(),
            l.misses.to_string(),
            format!("{:.1}%", l.hit_ratio * 100.0),
        ]);
    }
    println!(
        "instance {} (since {})",
        r.instance_id,
        time(r.started_at_ms)
    );
    println!("{t}");
    println!(
        "L1 {} entries, {} of {} bytes; loads {} (errors {}, coalesced {}, refresh-ahead {}); stale served {}",
        r.l1_entries,
        r.l1_bytes,
        r.l1_capacity_bytes,
        r.loads,
        r.load_errors,
        r.coalesced_loads,
        r.refresh_ahead,
        r.stale_served
    );
    println!(
        "Redis {}; backplane {}",
        if r.l2_available {
            "available"
        } else {
            "UNAVAILABLE"
        },
        if r.backplane_connected {
            "connected"
        } else {
            "DISCONNECTED"
        }
    );
}

/// The hit ratio of `layer` in `s`, as a percentage, or `-` without reads.
fn ratio(s: &pb::StatsResponse, wanted: pb::CacheLayer) -> String {
    s.layers
        .iter()
        .find(|l| l.layer == wanted as i32)
        .filter(|l| l.hits + l.misses > 0)
        .map_or_else(
            || "-".to_owned(),
            |l| format!("{:.1}%", l.hit_ratio * 100.0),
        )
}

/// One row per live instance; `*` marks the one that answered.
fn print_instances(r: &pb::StatsResponse) {
    let mut t = table(&[
        "INSTANCE",
        "STARTED",
        "REPORTED",
        "L1 HIT",
        "L2 HIT",
        "L1 ENTRIES",
        "L1 BYTES",
        "LOADS",
        "LOAD ERRORS",
        "STALE",
        "REDIS",
        "BACKPLANE",
    ]);
    for s in &r.instances {
        let me = if s.instance_id == r.instance_id {
            " *"
        } else {
            ""
        };
        t.add_row(vec![
            format!("{}{me}", s.instance_id),
            time(s.started_at_ms),
            time(s.reported_at_ms),
            ratio(s, pb::CacheLayer::L1),
            ratio(s, pb::CacheLayer::L2),
            s.l1_entries.to_string(),
            format!("{} / {}", s.l1_bytes, s.l1_capacity_bytes),
            s.loads.to_string(),
            s.load_errors.to_string(),
            s.stale_served.to_string(),
            (if s.l2_available { "ok" } else { "DOWN" }).to_owned(),
            (if s.backplane_connected { "ok" } else { "DOWN" }).to_owned(),
        ]);
    }
    println!(
        "{} live cache-gateway instance(s); * answered",
        r.instances.len()
    );
    println!("{t}");
}
