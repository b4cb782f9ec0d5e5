//! Delivery across instances: two gateways on one Redis, subscriptions only for rooms with local
//! members, recovery after a disconnect (hit and miss), no duplicates or reordering while
//! recovering under load, a slow consumer cut off while others keep receiving (and its 4008 when it
//! reads again after the cut), and the drain (1012; upgrades refused with 503 meanwhile). What
//! happens when Redis fails is in `bus_failures`.
use ncy_proto::realtime::v1::{self as pb, realtime_service_client::RealtimeServiceClient};
use ncy_testkit::assert_eventually;
use serde_json::json;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::support::{Fixture, WAIT, Ws, numsub, send_project, stats, stats_until};

fn channel(fx: &Fixture) -> String {
    ncy_types::KeySpace::new(&fx.prefix)
        .unwrap()
        .room(&format!("project:{}", fx.project))
        .channel()
}

#[tokio::test]
async fn a_message_sent_on_one_instance_reaches_a_client_on_the_other_and_only_members_subscribe() {
    let fx = Fixture::new().await;
    let gw1 = fx.start(&[]).await;
    let mut gw2 = fx.start(&[]).await;
    let room = format!("project:{}", fx.project);
    assert_eq!(numsub(&fx.redis_url, &channel(&fx)).await, 0);
    let mut ws = Ws::authed(gw1.ws(), &fx.token()).await;
    ws.send(json!({"type": "join_project", "projectId": fx.project}))
        .await;
    ws.until("joined").await;
    // Only gw1 has a member: exactly one subscription to the room's channel.
    assert_eq!(numsub(&fx.redis_url, &channel(&fx)).await, 1);
    for i in 1..=3 {
        send_project(&mut gw2, fx.project, i).await;
    }
    let got = ws.messages(&room, 3).await;
    let is: Vec<_> = got
        .iter()
        .map(|m| m["data"]["i"].as_u64().unwrap())
        .collect();
    assert_eq!(is, [1, 2, 3]);
    let offsets: Vec<_> = got.iter().map(|m| m["offset"].as_u64().unwrap()).collect();
    assert_eq!(offsets, [1, 2, 3]);
    ws.send(json!({"type": "leave_project", "projectId": fx.project}))
        .await;
    ws.until("left").await;
    let url = fx.redis_url.clone();
    let ch = channel(&fx);
    assert_eventually("room unsubscribed after its last member left", WAIT, || {
        let (url, ch) = (url.clone(), ch.clone());
        async move { numsub(&url, &ch).await == 0 }
    })
    .await;
    gw1.stop().await;
    gw2.stop().await;
}

#[tokio::test]
async fn recovery_after_a_disconnect_hit_and_miss() {
    let fx = Fixture::new().await;
    let mut gw = fx.start(&[]).await;
    let room = format!("project:{}", fx.project);
    let mut ws = Ws::authed(gw.ws(), &fx.token()).await;
    ws.send(json!({"type": "join_project", "projectId": fx.project}))
        .await;
    ws.until("joined").await;
    for i in 1..=3 {
        send_project(&mut gw, fx.project, i).await;
    }
    let seen = ws.messages(&room, 3).await;
    let epoch = seen[2]["epoch"].as_str().unwrap().to_owned();
    drop(ws);
    for i in 4..=6 {
        send_project(&mut gw, fx.project, i).await;
    }
    let mut ws = Ws::authed(gw.ws(), &fx.token()).await;
    ws.send(json!({"type": "join_project", "projectId": fx.project,
                   "since": {"offset": 3, "epoch": epoch}}))
        .await;
    let joined = ws.until("joined").await;
    assert_eq!(joined["recovered"], true, "{joined}");
    send_project(&mut gw, fx.project, 7).await;
    let got = ws.messages(&room, 4).await;
    let offsets: Vec<_> = got.iter().map(|m| m["offset"].as_u64().unwrap()).collect();
    assert_eq!(offsets, [4, 5, 6, 7]);

    let mut other = Ws::authed(gw.ws(), &fx.token()).await;
    other
        .send(json!({"type": "join_project", "projectId": fx.project,
                     "since": {"offset": 3, "epoch": "not-the-epoch"}}))
        .await;
    let joined = other.until("joined").await;
    assert_eq!(joined["recovered"], false, "{joined}");
    assert_eq!(joined["offset"], 7);
    send_project(&mut gw, fx.project, 8).await;
    assert_eq!(other.messages(&room, 1).await[0]["offset"], 8);
    let stats = stats(&gw.grpc).await;
    assert_eq!((stats.recovery_hits, stats.recovery_misses), (1, 1));
    gw.stop().await;
}

#[tokio::test]
async fn recovering_while_messages_flow_gives_each_offset_once_in_order() {
    let fx = Fixture::new().await;
    let gw = fx.start(&[]).await;
    let room = format!("project:{}", fx.project);
    let epoch = tick(&mut gw.grpc.clone(), fx.project, 0).await.epoch;
    let total = 150u64;
    let publisher = tokio::spawn(publish_ticks(gw.grpc.clone(), fx.project, 2..=total));
    let mut ws = Ws::authed(gw.ws(), &fx.token()).await;
    ws.send(json!({"type": "join_project", "projectId": fx.project,
                   "since": {"offset": 1, "epoch": epoch}}))
        .await;
    assert_eq!(ws.until("joined").await["recovered"], true);
    let got = ws
        .messages(&room, usize::try_from(total - 1).unwrap())
        .await;
    let offsets: Vec<u64> = got.iter().map(|m| m["offset"].as_u64().unwrap()).collect();
    assert_eq!(offsets, (2..=total).collect::<Vec<_>>());
    publisher.await.unwrap();
    gw.stop().await;
}

/// Publishes a `tick` to the project room for each `i` (data `i`), one after the other; returns
/// the last offset.
async fn publish_ticks(
    mut grpc: RealtimeServiceClient<Channel>,
    project: Uuid,
    ticks: std::ops::RangeInclusive<u64>,
) -> u64 {
    let mut last = 0;
    for i in ticks {
        last = tick(&mut grpc, project, i).await.offset;
    }
    last
}

/// Publishes one `tick` (data `i`) to the project room; returns where it landed.
async fn tick(
    grpc: &mut RealtimeServiceClient<Channel>,
    project: Uuid,
    i: u64,
) -> pb::RoomDelivery {
    grpc.send_to_project(pb::SendToProjectRequest {
        project_id: project.to_string(),
        event: "tick".into(),
        data_json: i.to_string(),
        idempotency_key: String::new(),
    })
    .await
    .unwrap()
    .into_inner()
    .delivery
    .unwrap()
}

/// A room that already has a member here is joined from the instance's own position (no history
/// read): every message after the offset in `joined` arrives once, in order, while messages flow.
#[tokio::test]
async fn joining_a_live_room_while_messages_flow_misses_and_doubles_nothing() {
    let fx = Fixture::new().await;
    let mut gw = fx.start(&[]).await;
    let room = format!("project:{}", fx.project);
    let mut first = Ws::authed(gw.ws(), &fx.token()).await;
    first
        .send(json!({"type": "join_project", "projectId": fx.project}))
        .await;
    first.until("joined").await;
    send_project(&mut gw, fx.project, 0).await;
    first.messages(&room, 1).await;
    let publisher = tokio::spawn(publish_ticks(gw.grpc.clone(), fx.project, 1..=400));
    let mut late = Ws::authed(gw.ws(), &fx.token()).await;
    late.send(json!({"type": "join_project", "projectId": fx.project}))
        .await;
    let joined = late.until("joined").await;
    assert_eq!(joined["room"], room.as_str());
    let from = joined["offset"].as_u64().unwrap();
    let last = publisher.await.unwrap();
    assert!(
        from < last,
        "joined at {from}, the publisher ended at {last}"
    );
    let got = late
        .messages(&room, usize::try_from(last - from).unwrap())
        .await;
    let offsets: Vec<u64> = got.iter().map(|m| m["offset"].as_u64().unwrap()).collect();
    assert_eq!(offsets, (from + 1..=last).collect::<Vec<_>>());
    // Nothing more (a duplicate) follows: the next message is the next offset.
    let next = send_project(&mut gw, fx.project, 999).await;
    assert_eq!(late.messages(&room, 1).await[0]["offset"], next);
    assert_eq!(next, last + 1);
    gw.stop().await;
}

#[tokio::test]
async fn a_slow_client_is_closed_4008_while_others_keep_receiving() {
    let fx = Fixture::new().await;
    // The slow client reads again only after the fast one got every message: on a loaded machine that
    // can take longer than the default close timeout, after which it would see 1006, not 4008.
    let mut gw = fx
        .start(&[
            ("NCY_WS_OUTBOUND_QUEUE", "4"),
            ("NCY_MAX_DATA_BYTES", "200000"),
            ("NCY_WS_CLOSE_TIMEOUT_MS", "60000"),
        ])
        .await;
    let room = format!("project:{}", fx.project);
    let mut slow = Ws::authed(gw.ws(), &fx.token()).await;
    slow.send(json!({"type": "join_project", "projectId": fx.project}))
        .await;
    slow.until("joined").await;
    let mut fast = Ws::authed(gw.ws(), &fx.token()).await;
    fast.send(json!({"type": "join_project", "projectId": fx.project}))
        .await;
    fast.until("joined").await;
    let big = json!({"pad": "y".repeat(100_000)}).to_string();
    let count = 150;
    let mut grpc = gw.grpc.clone();
    let project = fx.project;
    let publisher = tokio::spawn(async move {
        for _ in 0..count {
            grpc.send_to_project(pb::SendToProjectRequest {
                project_id: project.to_string(),
                event: "big".into(),
                data_json: big.clone(),
                idempotency_key: String::new(),
            })
            .await
            .unwrap();
        }
    });
    let got = fast.messages(&room, count).await;
    assert_eq!(got.len(), count);
    publisher.await.unwrap();
    stats_until(&gw.grpc, "the slow client was cut off", |s| {
        s.slow_client_disconnects == 1
    })
    .await;
    assert_eq!(slow.close_code().await, Some(4008));
    send_project(&mut gw, fx.project, 1).await;
    assert_eq!(fast.until("message").await["event"], "tick");
    gw.stop().await;
}

/// A client that stopped reading is cut off while its buffers are full: the server leaves its
/// rooms at once, and its close frame waits behind the data it has not read. When it reads again
/// it gets that data and then 4008, not a connection that just ends (1006). The close timeout is
/// raised so the test does not depend on how soon it reads again.
#[tokio::test]
async fn a_slow_consumer_reading_again_after_the_cut_gets_4008() {
    let fx = Fixture::new().await;
    let gw = fx
        .start(&[
            ("NCY_WS_OUTBOUND_QUEUE", "4"),
            ("NCY_MAX_DATA_BYTES", "200000"),
            ("NCY_WS_CLOSE_TIMEOUT_MS", "60000"),
        ])
        .await;
    let mut slow = Ws::authed(gw.ws(), &fx.token()).await;
    slow.send(json!({"type": "join_project", "projectId": fx.project}))
        .await;
    slow.until("joined").await;
    // From here on the client reads nothing until it has been cut off.
    let big = json!({"pad": "s".repeat(100_000)}).to_string();
    let mut grpc = gw.grpc.clone();
    let mut sent = 0;
    while stats(&grpc).await.slow_client_disconnects == 0 {
        assert!(
            sent < 1_000,
            "100 MB published and the client was not cut off"
        );
        for _ in 0..10 {
            grpc.send_to_project(pb::SendToProjectRequest {
                project_id: fx.project.to_string(),
                event: "big".into(),
                data_json: big.clone(),
                idempotency_key: String::new(),
            })
            .await
            .unwrap();
        }
        sent += 10;
    }
    // The server has given up on it: it is in no room any more (it was the only socket).
    stats_until(&grpc, "the slow socket left its rooms", |s| s.rooms == 0).await;
    assert_eq!(slow.close_code().await, Some(4008));
    gw.stop().await;
}

/// While an instance drains, its listener stays open and refuses upgrades with HTTP 503 and
/// `Retry-After` until the last socket is gone; then it closes. The open socket here keeps the drain
/// going until it answers its 1012.
#[tokio::test]
async fn a_draining_instance_answers_upgrades_503_with_retry_after() {
    let fx = Fixture::new().await;
    let gw = fx
        .start(&[
            ("NCY_WS_CLOSE_TIMEOUT_MS", "60000"),
            ("NCY_SHUTDOWN_GRACE_SECS", "60"),
        ])
        .await;
    let addr = gw.ws();
    let mut ws = Ws::authed(addr, &fx.token()).await;
    let stopping = tokio::spawn(gw.running.stop(std::time::Duration::from_secs(60)));
    assert_eventually(
        "an upgrade is refused with 503 and Retry-After",
        WAIT,
        || async move {
            match tokio_tungstenite::connect_async(format!("ws://{addr}/ws")).await {
                // Before the drain started: not what is looked for (dropped at once).
                Ok(_) => false,
                Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                    resp.status() == 503 && resp.headers().get("retry-after").is_some()
                }
                // The listener is closed: the drain ended, or had not kept it open.
                Err(_) => false,
            }
        },
    )
    .await;
    assert_eq!(ws.close_code().await, Some(1012));
    drop(ws);
    stopping.await.unwrap().unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener closes once the drain is over"
    );
}

#[tokio::test]
async fn drain_closes_1012_and_clients_recover_on_another_instance() {
    let fx = Fixture::new().await;
    let mut gw1 = fx.start(&[]).await;
    let mut gw2 = fx.start(&[]).await;
    let room = format!("project:{}", fx.project);
    let mut ws = Ws::authed(gw1.ws(), &fx.token()).await;
    ws.send(json!({"type": "join_project", "projectId": fx.project}))
        .await;
    ws.until("joined").await;
    send_project(&mut gw1, fx.project, 1).await;
    let last = ws.messages(&room, 1).await.remove(0);
    let stopping = tokio::spawn(gw1.running.stop(std::time::Duration::from_secs(15)));
    assert_eq!(ws.close_code().await, Some(1012));
    stopping.await.unwrap().unwrap();
    send_project(&mut gw2, fx.project, 2).await;
    let mut ws = Ws::authed(gw2.ws(), &fx.token()).await;
    ws.send(json!({"type": "join_project", "projectId": fx.project,
                   "since": {"offset": last["offset"], "epoch": last["epoch"]}}))
        .await;
    assert_eq!(ws.until("joined").await["recovered"], true);
    assert_eq!(ws.messages(&room, 1).await[0]["data"]["i"], 2);
    gw2.stop().await;
}
