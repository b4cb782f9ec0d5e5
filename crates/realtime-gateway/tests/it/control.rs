//! Server-side control through gRPC, with two gateway instances sharing Redis: `DisconnectUser`
//! closes every socket of the user on both with 4010 and the reason, `UnsubscribeUser` takes the
//! user's sockets out of one room on both (`left` with reason `unsubscribed`); both validate their
//! input naming the field.
use futures_util::StreamExt;
use ncy_proto::realtime::v1 as pb;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{Fixture, Gateway, WAIT, Ws, hs_token, now, numsub, send_project, send_user};

/// Two instances whose control subscriptions are both up (a command sent earlier would be missed:
/// pub/sub keeps nothing).
async fn two_instances(fx: &Fixture) -> (Gateway, Gateway) {
    let (a, b) = (fx.start(&[]).await, fx.start(&[]).await);
    let channel = ncy_types::KeySpace::new(fx.prefix.clone())
        .unwrap()
        .realtime_control_channel();
    ncy_testkit::assert_eventually(
        "both instances subscribe the control channel",
        WAIT,
        || async { numsub(&fx.redis_url, &channel).await == 2 },
    )
    .await;
    (a, b)
}

/// Reads until the server's close frame: (code, reason).
async fn closed_with(ws: &mut Ws) -> (u16, String) {
    loop {
        let next = tokio::time::timeout(WAIT, ws.stream.next())
            .await
            .expect("timed out waiting for close");
        match next {
            Some(Ok(Message::Close(Some(f)))) => return (u16::from(f.code), f.reason.to_string()),
            Some(Ok(Message::Close(None))) | None | Some(Err(_)) => {
                panic!("closed without a frame")
            }
            Some(Ok(_)) => {}
        }
    }
}

fn invalid(status: tonic::Status, field: &str) {
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().starts_with(field), "{status:?}");
}

#[tokio::test]
async fn disconnect_user_closes_the_users_sockets_on_every_instance_with_4010() {
    let fx = Fixture::new().await;
    let (mut a, b) = two_instances(&fx).await;
    let mut on_a = Ws::authed(a.ws(), &fx.token()).await;
    let mut on_b = Ws::authed(b.ws(), &fx.token()).await;
    let other = hs_token(&json!({"userId": fx.outsider, "exp": now() + 3600}));
    let mut bystander = Ws::authed(b.ws(), &other).await;

    let r = a
        .grpc
        .disconnect_user(pb::DisconnectUserRequest {
            user_id: fx.user.to_string(),
            reason: "account suspended".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.local_connections, r.instances_reached), (1, 2));
    for ws in [&mut on_a, &mut on_b] {
        assert_eq!(
            closed_with(ws).await,
            (4010, "account suspended".to_owned())
        );
    }
    bystander.send(json!({"type": "ping"})).await;
    bystander.until("pong").await;

    // No reason: the close frame says who closed it. Nobody left to close here.
    let mut again = Ws::authed(b.ws(), &fx.token()).await;
    let r = a
        .grpc
        .disconnect_user(pb::DisconnectUserRequest {
            user_id: fx.user.to_string(),
            reason: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.local_connections, 0);
    assert_eq!(
        closed_with(&mut again).await,
        (4010, "disconnected_by_server".to_owned())
    );

    let (user, long) = (fx.user.to_string(), "x".repeat(121));
    for (user_id, reason, field) in [
        ("not-a-uuid", "", "user_id"),
        ("", "", "user_id"),
        (user.as_str(), long.as_str(), "reason"),
        (user.as_str(), "line\nbreak", "reason"),
    ] {
        let err = a
            .grpc
            .disconnect_user(pb::DisconnectUserRequest {
                user_id: user_id.into(),
                reason: reason.into(),
            })
            .await
            .expect_err(field);
        invalid(err, field);
    }
    bystander.send(json!({"type": "ping"})).await;
    bystander.until("pong").await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn unsubscribe_user_takes_the_users_sockets_out_of_a_room_on_every_instance() {
    let fx = Fixture::new().await;
    let (mut a, b) = two_instances(&fx).await;
    let room = format!("project:{}", fx.project);
    let mut on_a = Ws::authed(a.ws(), &fx.token()).await;
    let mut on_b = Ws::authed(b.ws(), &fx.token()).await;
    for ws in [&mut on_a, &mut on_b] {
        ws.send(json!({"type": "join_project", "projectId": fx.project}))
            .await;
        assert_eq!(ws.until("joined").await["room"], room);
    }

    let r = a
        .grpc
        .unsubscribe_user(pb::UnsubscribeUserRequest {
            user_id: fx.user.to_string(),
            room: room.to_uppercase().replace("PROJECT", "project"),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.local_connections, r.instances_reached), (1, 2));
    for ws in [&mut on_a, &mut on_b] {
        let left = ws.until("left").await;
        assert_eq!(
            left,
            json!({"type": "left", "room": room, "reason": "unsubscribed"})
        );
    }
    // Nothing more of the room; the socket is still open and in its other rooms.
    send_project(&mut a, fx.project, 1).await;
    send_user(&mut a, fx.user, "marker", None).await;
    for ws in [&mut on_a, &mut on_b] {
        let m = ws.until("message").await;
        assert_eq!(m["event"], "marker", "{m}");
    }
    // A room the user is not in: nothing to do, nobody told.
    let r = a
        .grpc
        .unsubscribe_user(pb::UnsubscribeUserRequest {
            user_id: fx.user.to_string(),
            room: room.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.local_connections, 0);
    // It may join again (UnsubscribeUser is not a ban).
    on_a.send(json!({"type": "join_project", "projectId": fx.project}))
        .await;
    assert_eq!(on_a.until("joined").await["room"], room);

    let user = fx.user.to_string();
    for (user_id, room, field) in [
        ("nope", "broadcast", "user_id"),
        (user.as_str(), "project:nope", "room"),
        (user.as_str(), "lobby", "room"),
        (user.as_str(), "", "room"),
    ] {
        let err = a
            .grpc
            .unsubscribe_user(pb::UnsubscribeUserRequest {
                user_id: user_id.into(),
                room: room.into(),
            })
            .await
            .expect_err(field);
        invalid(err, field);
    }
    a.stop().await;
    b.stop().await;
}
