//! Presence answers only what the caller may see: `broadcast` (every socket of every organization)
//! records no presence and refuses to answer, a room is answered only to its members, and one
//! answer lists at most `NCY_PRESENCE_MAX_USERS` users, with the total — over WebSocket and gRPC.
use ncy_proto::realtime::v1 as pb;
use ncy_testkit::assert_eventually;
use ncy_types::KeySpace;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{Fixture, WAIT, Ws, token_of};

/// Whether the presence hash of `room` exists in the fixture's Redis key space.
async fn presence_key_exists(fx: &Fixture, room: &str) -> bool {
    let key = KeySpace::new(fx.prefix.clone())
        .unwrap()
        .room(room)
        .presence();
    let client = redis::Client::open(fx.redis_url.as_str()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("EXISTS")
        .arg(&key)
        .query_async::<i64>(&mut c)
        .await
        .unwrap()
        == 1
}

/// Asks `room`'s presence over the socket; the `presence` or `error` frame answering it.
async fn ask(ws: &mut Ws, room: &str) -> Value {
    ws.send(json!({"type": "presence", "room": room})).await;
    loop {
        let v = ws.recv().await.unwrap();
        if v["type"] == "presence" || v["type"] == "error" {
            return v;
        }
    }
}

#[tokio::test]
async fn broadcast_has_no_presence_and_rooms_answer_only_their_members() {
    let fx = Fixture::new().await;
    // A heartbeat every second, so the test can see one happen.
    let mut gw = fx.start(&[("NCY_PRESENCE_TTL_SECS", "3")]).await;
    let mut member = Ws::authed(gw.ws(), &fx.token()).await;
    let outsider_token = token_of(fx.outsider, fx.other_org);
    let mut outsider = Ws::authed(gw.ws(), &outsider_token).await;

    // Both sockets are in `broadcast`, yet nobody learns who else is online through it.
    let answer = ask(&mut outsider, "broadcast").await;
    assert_eq!(
        (&answer["type"], &answer["code"]),
        (&json!("error"), &json!("forbidden")),
        "{answer}"
    );
    let err = gw
        .grpc
        .presence(pb::PresenceRequest {
            room: "broadcast".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().starts_with("room"), "{}", err.message());

    // Nor through the rooms of the other organization or of another user.
    for room in [format!("org:{}", fx.org), format!("user:{}", fx.user)] {
        let answer = ask(&mut outsider, &room).await;
        assert_eq!(answer["code"], "forbidden", "{room}: {answer}");
    }
    // A member of a room is answered.
    let own = format!("user:{}", fx.user);
    let answer = ask(&mut member, &own).await;
    assert_eq!(
        answer["users"][0]["userId"],
        fx.user.to_string(),
        "{answer}"
    );
    let joined_at = answer["users"][0]["lastSeenAt"].as_i64().unwrap();

    // No presence is written for `broadcast`: not when joining, not by the heartbeat (which has run
    // once the user's own room shows a later time).
    let grpc = gw.grpc.clone();
    assert_eventually("a presence heartbeat ran", WAIT, || {
        let mut grpc = grpc.clone();
        let room = own.clone();
        async move {
            let r = grpc
                .presence(pb::PresenceRequest {
                    room,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            r.users
                .first()
                .is_some_and(|u| u.last_seen_at_ms > joined_at)
        }
    })
    .await;
    assert!(presence_key_exists(&fx, &own).await);
    assert!(!presence_key_exists(&fx, "broadcast").await);
    gw.stop().await;
}

#[tokio::test]
async fn a_presence_answer_lists_at_most_the_configured_users_with_the_total() {
    let fx = Fixture::new().await;
    let gw = fx.start(&[("NCY_PRESENCE_MAX_USERS", "2")]).await;
    // Three more members of the organization; every one of the four is online in `org:<id>`.
    let mut users = vec![fx.user];
    for _ in 0..3 {
        users.push(fx.add_user(fx.org).await);
    }
    let mut sockets = Vec::new();
    for id in &users {
        sockets.push(Ws::authed(gw.ws(), &token_of(*id, fx.org)).await);
    }
    let mut sorted: Vec<String> = users.iter().map(Uuid::to_string).collect();
    sorted.sort();
    let room = format!("org:{}", fx.org);

    let answer = ask(&mut sockets[0], &room).await;
    let listed: Vec<&str> = answer["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["userId"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [sorted[0].as_str(), sorted[1].as_str()], "{answer}");
    assert_eq!(
        (&answer["total"], &answer["truncated"]),
        (&json!(4), &json!(true)),
        "{answer}"
    );

    // gRPC pages are capped the same way, whatever the page size asked; paging reaches everyone.
    let mut grpc = gw.grpc.clone();
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let r = grpc
            .presence(pb::PresenceRequest {
                room: room.clone(),
                page_size: 1000,
                page_token,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(r.users.len() <= 2, "{r:?}");
        assert_eq!(r.total, 4, "every page counts everyone online");
        seen.extend(r.users.into_iter().map(|u| u.user_id));
        if r.next_page_token.is_empty() {
            break;
        }
        page_token = r.next_page_token;
    }
    assert_eq!(seen, sorted);

    // A room within the cap is not truncated.
    let own = format!("user:{}", users[0]);
    let answer = ask(&mut sockets[0], &own).await;
    assert_eq!(
        (&answer["total"], &answer["truncated"]),
        (&json!(1), &json!(false)),
        "{answer}"
    );
    gw.stop().await;
}
