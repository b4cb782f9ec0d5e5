//! `Stats(all_instances)`: two gateways of one deployment, a browser on one of them only; each
//! gateway asked lists both, each with its own connections; the one stopped gracefully is gone at
//! once; without the flag nothing changes.
use ncy_proto::realtime::v1::{self as pb, realtime_service_client::RealtimeServiceClient};
use tonic::transport::Channel;

use crate::support::{Fixture, WAIT, Ws, stats};

/// Report interval of the gateways here, so the test waits for reports a short while.
const REPORT_MS: &str = "200";

async fn all(grpc: &RealtimeServiceClient<Channel>) -> pb::StatsResponse {
    grpc.clone()
        .stats(pb::StatsRequest {
            all_instances: true,
        })
        .await
        .unwrap()
        .into_inner()
}

fn ids(s: &pb::StatsResponse) -> Vec<&str> {
    s.instances.iter().map(|i| i.instance_id.as_str()).collect()
}

fn entry<'s>(s: &'s pb::StatsResponse, id: &str) -> &'s pb::StatsResponse {
    s.instances
        .iter()
        .find(|i| i.instance_id == id)
        .unwrap_or_else(|| panic!("{id} listed in {s:?}"))
}

/// Waits until `asked` lists exactly `expected` (any order given; listed sorted) and `ok` holds.
async fn listed(
    asked: &RealtimeServiceClient<Channel>,
    expected: &[&str],
    ok: impl Fn(&pb::StatsResponse) -> bool,
) -> pb::StatsResponse {
    let mut sorted = expected.to_vec();
    sorted.sort_unstable();
    let (ok, sorted) = (&ok, &sorted);
    ncy_testkit::assert_eventually(&format!("{sorted:?} listed"), WAIT, || async move {
        let s = all(asked).await;
        ids(&s) == *sorted && ok(&s)
    })
    .await;
    all(asked).await
}

#[tokio::test]
async fn every_instance_is_listed_with_its_own_connections_and_a_stopped_one_goes() {
    let fx = Fixture::new().await;
    // The anonymous browser stays for the whole test, however slow the machine.
    let env = [
        ("NCY_INSTANCE_REPORT_MS", REPORT_MS),
        ("NCY_WS_AUTH_TIMEOUT_MS", "600000"),
    ];
    let a = fx.start(&env).await;
    let b = fx.start(&env).await;
    // Two browsers on `a`, one of them signed in; none on `b`.
    let _signed_in = Ws::authed(a.ws(), &fx.token()).await;
    let _anonymous = Ws::connect(a.ws(), "").await;
    let (sa, sb) = (stats(&a.grpc).await, stats(&b.grpc).await);
    assert_eq!((sa.connections, sb.connections), (2, 0));
    assert!(
        sa.instances.is_empty() && sb.instances.is_empty(),
        "only with the flag"
    );
    let (ida, idb) = (sa.instance_id.clone(), sb.instance_id.clone());

    // Asked of `b`: `a` with its browsers (as last reported), `b` itself fresh and empty.
    let from_b = listed(&b.grpc, &[&ida, &idb], |s| entry(s, &ida).connections == 2).await;
    let (a_seen, b_seen) = (entry(&from_b, &ida), entry(&from_b, &idb));
    assert_eq!(a_seen.authenticated_connections, 1);
    assert_eq!(a_seen.started_at_ms, sa.started_at_ms);
    assert!(!a_seen.draining && a_seen.bus_connected);
    assert_eq!((b_seen.connections, b_seen.rooms), (0, 0));
    assert_eq!(
        b_seen.reported_at_ms, from_b.reported_at_ms,
        "b's entry is its fresh answer"
    );
    assert!(a_seen.reported_at_ms > 0 && a_seen.reported_at_ms <= from_b.reported_at_ms);
    assert!(
        from_b.instances.iter().all(|i| i.instances.is_empty()),
        "no nesting"
    );
    assert_eq!(
        (from_b.instance_id.as_str(), from_b.connections),
        (idb.as_str(), 0)
    );

    // Asked of `a`: the same two.
    let from_a = listed(&a.grpc, &[&ida, &idb], |_| true).await;
    assert_eq!(entry(&from_a, &ida).connections, 2);
    assert_eq!(entry(&from_a, &idb).connections, 0);

    // `a` drains: it removed itself when the drain started, so `b` lists only itself at once.
    a.stop().await;
    assert_eq!(ids(&all(&b.grpc).await), [idb.as_str()]);
    b.stop().await;
}
