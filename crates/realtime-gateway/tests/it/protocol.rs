//! The browser protocol after authentication on one gateway: authorized joins and presence,
//! frame/rate/Origin/connection limits and bad frames, and the gRPC API's validation, domain events
//! and stats.
use ncy_proto::realtime::v1 as pb;
use serde_json::json;

use crate::support::{FRONTEND, Fixture, Ws, send_project, stats, stats_until, token_of};

#[tokio::test]
async fn joins_are_authorized_and_presence_lists_users() {
    let fx = Fixture::new().await;
    let mut gw = fx.start(&[]).await;
    let room = format!("project:{}", fx.project);
    let mut member = Ws::authed(gw.ws(), &fx.token()).await;
    let outsider_token = token_of(fx.outsider, fx.other_org);
    let mut outsider = Ws::authed(gw.ws(), &outsider_token).await;

    outsider
        .send(json!({"type": "join_project", "projectId": fx.project}))
        .await;
    assert_eq!(outsider.until("error").await["code"], "forbidden");
    outsider
        .send(json!({"type": "join_project", "projectId": uuid::Uuid::new_v4()}))
        .await;
    assert_eq!(outsider.until("error").await["code"], "forbidden");
    member
        .send(json!({"type": "join_project", "projectId": fx.project}))
        .await;
    let joined = member.until("joined").await;
    assert_eq!(joined["room"], room);

    send_project(&mut gw, fx.project, 1).await;
    assert_eq!(member.messages(&room, 1).await[0]["data"]["i"], 1);
    // The outsider got nothing of the project: its next frame is the answer to its ping.
    outsider.send(json!({"type": "ping"})).await;
    assert_eq!(outsider.recv().await.unwrap()["type"], "pong");
    outsider
        .send(json!({"type": "presence", "room": room}))
        .await;
    assert_eq!(outsider.until("error").await["code"], "forbidden");

    member.send(json!({"type": "presence", "room": room})).await;
    let p = member.until("presence").await;
    assert_eq!(p["users"][0]["userId"], fx.user.to_string());
    assert_eq!(p["users"][0]["connections"], 1);
    gw.grpc
        .user_status_changed(pb::UserStatusChangedRequest {
            user_id: fx.user.to_string(),
            status: pb::UserStatus::Busy as i32,
            idempotency_key: String::new(),
        })
        .await
        .unwrap();
    let status = member.until("message").await;
    assert_eq!(status["event"], "user_status_changed");
    assert_eq!(status["data"]["status"], "busy");
    let r = gw
        .grpc
        .presence(pb::PresenceRequest {
            room: room.clone(),
            page_size: 0,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.users.len(), 1);
    assert_eq!(r.users[0].user_id, fx.user.to_string());
    assert_eq!(r.users[0].status, pb::UserStatus::Busy as i32);

    member
        .send(json!({"type": "leave_project", "projectId": fx.project}))
        .await;
    member.until("left").await;
    let r = gw
        .grpc
        .presence(pb::PresenceRequest {
            room,
            page_size: 0,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.users.is_empty(), "{r:?}");
    gw.stop().await;
}

#[tokio::test]
async fn limits_frame_size_bad_frames_rate_origin_and_cap() {
    let fx = Fixture::new().await;
    let gw = fx
        .start(&[
            ("NCY_WS_COMMANDS_PER_SEC", "5"),
            ("NCY_WS_MAX_CONNECTIONS", "3"),
        ])
        .await;
    // Bad frames: error frame, connection kept.
    let mut ws = Ws::authed(gw.ws(), &fx.token()).await;
    ws.send(json!({"type": "no_such_thing"})).await;
    assert_eq!(ws.until("error").await["code"], "bad_request");
    ws.stream.send_text("not json at all").await;
    assert_eq!(ws.until("error").await["code"], "bad_request");
    // Rate limit: a burst beyond 5/s gets rate_limited.
    for _ in 0..12 {
        ws.send(json!({"type": "ping"})).await;
    }
    let mut limited = false;
    for _ in 0..12 {
        let v = ws.recv().await.unwrap();
        if v["code"] == "rate_limited" {
            limited = true;
        }
    }
    assert!(limited, "a burst above the rate is limited");
    // Frame over 64 KiB: 1009.
    let big = "x".repeat(70 * 1024);
    ws.send(json!({"type": "ping", "pad": big})).await;
    assert_eq!(ws.close_code().await, Some(1009));
    drop(ws);
    stats_until(&gw.grpc, "the closed socket is released", |s| {
        s.connections == 0
    })
    .await;

    // Origin.
    assert_eq!(
        Ws::connect_origin(gw.ws(), "http://evil.example")
            .await
            .err(),
        Some(403)
    );
    let ok = Ws::connect_origin(gw.ws(), FRONTEND).await;
    assert!(ok.is_ok());
    // Connection cap of 3: ok + 2 more, then 503.
    let a = Ws::connect(gw.ws(), "").await;
    let b = Ws::connect(gw.ws(), "").await;
    let over = Ws::connect_origin(gw.ws(), FRONTEND).await;
    assert_eq!(over.err(), Some(503));
    drop((ok, a, b));
    gw.stop().await;
}

trait SendText {
    async fn send_text(&mut self, t: &str);
}

impl SendText
    for tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>
{
    async fn send_text(&mut self, t: &str) {
        use futures_util::SinkExt;
        self.send(tokio_tungstenite::tungstenite::Message::Text(
            t.to_owned().into(),
        ))
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn grpc_validates_input_and_raises_domain_events() {
    let fx = Fixture::new().await;
    let mut gw = fx.start(&[]).await;
    let err = gw
        .grpc
        .send_to_user(pb::SendToUserRequest {
            user_id: "42".into(),
            event: "e".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().starts_with("user_id"), "{}", err.message());
    let err = gw
        .grpc
        .send_to_project(pb::SendToProjectRequest {
            project_id: fx.project.to_string(),
            event: "e".into(),
            data_json: "{oops".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(err.message().starts_with("data_json"), "{}", err.message());
    let err = gw
        .grpc
        .broadcast(pb::BroadcastRequest {
            event: "has space".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(err.message().starts_with("event"), "{}", err.message());
    let err = gw
        .grpc
        .presence(pb::PresenceRequest {
            room: "team:1".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(err.message().starts_with("room"), "{}", err.message());

    // Domain events.
    let task = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO tasks (id, project_id, assignee_id, title) VALUES ($1, $2, $3, 'Ship it')",
    )
    .bind(task)
    .bind(fx.project)
    .bind(fx.user)
    .execute(&fx.pool)
    .await
    .unwrap();
    let mut ws = Ws::authed(gw.ws(), &fx.token()).await;
    ws.send(json!({"type": "join_project", "projectId": fx.project}))
        .await;
    ws.until("joined").await;
    let r = gw
        .grpc
        .task_updated(pb::TaskUpdatedRequest {
            task_id: task.to_string(),
            updated_by: fx.outsider.to_string(),
            changes_json: r#"{"status":"done"}"#.into(),
            idempotency_key: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.project_id, fx.project.to_string());
    assert_eq!(r.notified_user_id, fx.user.to_string());
    let mut got = [ws.until("message").await, ws.until("message").await];
    got.sort_by_key(|m| m["event"].as_str().unwrap().to_owned());
    assert_eq!(got[0]["event"], "notification");
    assert_eq!(got[0]["data"]["type"], "TASK_UPDATED");
    assert_eq!(got[0]["data"]["message"], "Task \"Ship it\" was updated");
    assert_eq!(got[1]["event"], "task_updated");
    assert_eq!(got[1]["data"]["changes"]["status"], "done");
    assert_eq!(got[1]["data"]["taskId"], task.to_string());

    let r = gw
        .grpc
        .project_created(pb::ProjectCreatedRequest {
            project_id: fx.project.to_string(),
            created_by: fx.user.to_string(),
            idempotency_key: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.organization_id, fx.org.to_string());
    let m = ws.until("message").await;
    assert_eq!(
        (m["event"].as_str(), m["data"]["name"].as_str()),
        (Some("project_created"), Some("Apollo"))
    );
    let missing = gw
        .grpc
        .task_updated(pb::TaskUpdatedRequest {
            task_id: uuid::Uuid::new_v4().to_string(),
            updated_by: fx.user.to_string(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let stats = stats(&gw.grpc).await;
    assert_eq!(stats.connections, 1);
    assert!(stats.bus_connected && stats.messages_published >= 3 && stats.messages_out >= 3);
    let _ = send_project(&mut gw, fx.project, 9).await;
    gw.stop().await;
}
