//! `ncyctl realtime stats [--all-instances]`: the counters of the instance answering, or a table
//! of every live instance — which one holds the connections (each reports its counters every few
//! seconds; see `Stats` in realtime.proto).
use ncy_proto::realtime::v1::{self as pb, realtime_service_client::RealtimeServiceClient};

use crate::rpc::{Channel, print_json, table, time};

pub async fn run(
    client: &mut RealtimeServiceClient<Channel>,
    all_instances: bool,
    json: bool,
) -> Result<(), tonic::Status> {
    let r = client
        .stats(pb::StatsRequest { all_instances })
        .await?
        .into_inner();
    if json {
        print_json(&r, "ncy.realtime.v1.StatsResponse");
    } else if all_instances {
        print_instances(&r);
    } else {
        print_one(&r);
    }
    Ok(())
}

fn print_one(r: &pb::StatsResponse) {
    println!(
        "instance {} (since {}){}",
        r.instance_id,
        time(r.started_at_ms),
        if r.draining { " DRAINING" } else { "" }
    );
    println!(
        "connections {} ({} authenticated), rooms {}",
        r.connections, r.authenticated_connections, r.rooms
    );
    println!(
        "messages in {}, out {}, published {}; slow-client disconnects {}",
        r.messages_in, r.messages_out, r.messages_published, r.slow_client_disconnects
    );
    println!(
        "recovery hits {}, misses {}; bus {}",
        r.recovery_hits,
        r.recovery_misses,
        if r.bus_connected {
            "connected"
        } else {
            "DISCONNECTED"
        }
    );
}

/// One row per live instance; `*` marks the one that answered.
fn print_instances(r: &pb::StatsResponse) {
    let mut t = table(&[
        "INSTANCE",
        "STARTED",
        "REPORTED",
        "CONNECTIONS",
        "AUTHENTICATED",
        "ROOMS",
        "IN",
        "OUT",
        "PUBLISHED",
        "SLOW CLIENTS",
        "BUS",
        "STATE",
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
            s.connections.to_string(),
            s.authenticated_connections.to_string(),
            s.rooms.to_string(),
            s.messages_in.to_string(),
            s.messages_out.to_string(),
            s.messages_published.to_string(),
            s.slow_client_disconnects.to_string(),
            (if s.bus_connected { "ok" } else { "DOWN" }).to_owned(),
            (if s.draining { "draining" } else { "serving" }).to_owned(),
        ]);
    }
    let connections: u64 = r.instances.iter().map(|s| s.connections).sum();
    println!(
        "{} live realtime-gateway instance(s), {connections} connection(s) in all; * answered",
        r.instances.len()
    );
    println!("{t}");
}
