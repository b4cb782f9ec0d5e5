//! The browser protocol on one gateway: authentication (HS256, RS256, every rejection), timeouts
//! and refresh, authorized joins, presence, frame/rate/origin/connection limits, bad frames, and
//! the gRPC API's sends, validation and domain events.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{FRONTEND, Fixture, Ws, hs_token, now, send_project};
use ncy_proto::realtime::v1 as pb;
use serde_json::json;

#[tokio::test]
async fn authenticate_joins_user_org_and_broadcast_and_delivers_sends() {
    let fx = Fixture::new().await;
    let mut gw = fx.start(&[]).await;
    let mut ws = Ws::connect(gw.ws(), "").await;
    ws.send(json!({"type": "authenticate", "token": fx.token()}))
        .await;
    let mut joined = Vec::new();
    let auth = loop {
        let v = ws.recv().await.unwrap();
        match v["type"].as_str() {
            Some("joined") => joined.push(v["room"].as_str().unwrap().to_owned()),
            Some("authenticated") => break v,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(auth["userId"], fx.user.to_string());
    joined.sort();
    let mut want = vec![
        "broadcast".to_owned(),
        format!("org:{}", fx.org),
        format!("user:{}", fx.user),
    ];
    want.sort();
    assert_eq!(joined, want);

    let d = gw
        .grpc
        .send_to_user(pb::SendToUserRequest {
            user_id: fx.user.to_string(),
            event: "notification".into(),
            data_json: r#"{"n":12345678901234567}"#.into(),
            idempotency_key: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .delivery
        .unwrap();
    let m = ws.until("message").await;
    assert_eq!(m["room"], format!("user:{}", fx.user));
    assert_eq!(m["event"], "notification");
    assert_eq!(m["data"]["n"], json!(12_345_678_901_234_567_u64));
    assert_eq!(m["offset"], d.offset);
    assert_eq!(m["epoch"], d.epoch);
    assert_eq!(m["ts"], d.published_at_ms);

    gw.grpc
        .send_to_organization(pb::SendToOrganizationRequest {
            organization_id: fx.org.to_string(),
            event: "org_news".into(),
            data_json: "{}".into(),
            idempotency_key: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(ws.until("message").await["event"], "org_news");
    let first = gw
        .grpc
        .broadcast(pb::BroadcastRequest {
            event: "hello".into(),
            data_json: String::new(),
            idempotency_key: "k1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .delivery
        .unwrap();
    let again = gw
        .grpc
        .broadcast(pb::BroadcastRequest {
            event: "hello".into(),
            data_json: String::new(),
            idempotency_key: "k1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .delivery
        .unwrap();
    assert!(again.deduplicated && !first.deduplicated);
    assert_eq!(again.offset, first.offset);
    let m = ws.until("message").await;
    assert_eq!(
        (m["room"].as_str(), m["data"].clone()),
        (Some("broadcast"), json!(null))
    );
    // The deduplicated repeat was not delivered: the next message is a fresh one.
    gw.grpc
        .broadcast(pb::BroadcastRequest {
            event: "after".into(),
            data_json: String::new(),
            idempotency_key: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(ws.until("message").await["event"], "after");
    gw.stop().await;
}

#[tokio::test]
async fn token_in_query_authenticates() {
    let fx = Fixture::new().await;
    let gw = fx.start(&[]).await;
    let mut ws = Ws::connect(gw.ws(), &format!("?token={}", fx.token())).await;
    assert_eq!(
        ws.until("authenticated").await["userId"],
        fx.user.to_string()
    );
    gw.stop().await;
}

#[tokio::test]
async fn bad_tokens_get_authentication_failed_and_close_4003() {
    let fx = Fixture::new().await;
    let gw = fx
        .start(&[
            ("NCY_JWT_AUDIENCE", "ncy-web"),
            ("NCY_JWT_ISSUER", "ncy-auth"),
        ])
        .await;
    let good = json!({"userId": fx.user, "organizationId": fx.org, "exp": now() + 3600,
                      "aud": "ncy-web", "iss": "ncy-auth"});
    let with = |k: &str, v: serde_json::Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };
    // `alg: none`: header {"alg":"none"}, no signature.
    let b64 = |s: &str| {
        use base64_url_like::encode;
        encode(s.as_bytes())
    };
    let none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&good.to_string())
    );
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &good,
        &jsonwebtoken::EncodingKey::from_secret(b"another-secret-another-secret-xx"),
    )
    .unwrap();
    let cases = [
        ("garbage", "not.a.jwt".to_owned()),
        ("alg none", none),
        ("forged", forged),
        ("expired", hs_token(&with("exp", json!(now() - 10)))),
        ("not yet valid", hs_token(&with("nbf", json!(now() + 600)))),
        ("wrong audience", hs_token(&with("aud", json!("other")))),
        ("wrong issuer", hs_token(&with("iss", json!("evil")))),
        (
            "no user",
            hs_token(&json!({"exp": now() + 60, "aud": "ncy-web", "iss": "ncy-auth"})),
        ),
    ];
    for (what, token) in cases {
        let mut ws = Ws::connect(gw.ws(), "").await;
        ws.send(json!({"type": "authenticate", "token": token}))
            .await;
        let v = ws.recv().await.unwrap();
        assert_eq!(v["type"], "authentication_failed", "{what}: {v}");
        assert_eq!(ws.close_code().await, Some(4003), "{what}");
    }
    // The good token works on the same gateway.
    Ws::authed(gw.ws(), &hs_token(&good)).await;
    gw.stop().await;
}

/// Minimal base64url without padding, so the test needs no extra crate.
mod base64_url_like {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    pub fn encode(input: &[u8]) -> String {
        let mut out = String::new();
        for chunk in input.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            let chars = chunk.len() + 1;
            for i in 0..chars {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }
}

#[tokio::test]
async fn unauthenticated_sockets_are_closed_after_the_timeout_and_processed_nothing() {
    let fx = Fixture::new().await;
    let gw = fx.start(&[("NCY_WS_AUTH_TIMEOUT_MS", "500")]).await;
    let mut ws = Ws::connect(gw.ws(), "").await;
    ws.send(json!({"type": "join_project", "projectId": fx.project}))
        .await;
    let v = ws.recv().await.unwrap();
    assert_eq!(
        (v["type"].as_str(), v["code"].as_str()),
        (Some("error"), Some("unauthenticated"))
    );
    assert_eq!(ws.close_code().await, Some(4001));
    gw.stop().await;
}

#[tokio::test]
async fn expired_token_closes_4004_unless_refreshed() {
    let fx = Fixture::new().await;
    let gw = fx.start(&[]).await;
    let short = |secs: i64| hs_token(&json!({"userId": fx.user, "exp": now() + secs}));
    let mut ws = Ws::authed(gw.ws(), &short(2)).await;
    assert_eq!(ws.close_code().await, Some(4004));

    let old_exp = now() + 2;
    let mut ws = Ws::authed(
        gw.ws(),
        &hs_token(&json!({"userId": fx.user, "exp": old_exp})),
    )
    .await;
    ws.send(json!({"type": "refresh", "token": short(3600)}))
        .await;
    assert!(ws.until("refreshed").await["exp"].as_i64().unwrap() > old_exp);
    // A token for someone else is refused, the connection stays.
    let other = hs_token(&json!({"userId": fx.outsider, "exp": now() + 3600}));
    ws.send(json!({"type": "refresh", "token": other})).await;
    assert_eq!(ws.until("error").await["code"], "refresh_failed");
    // Past the old expiry the socket still answers.
    while now() <= old_exp + 1 {
        ws.send(json!({"type": "ping"})).await;
        ws.until("pong").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ws.send(json!({"type": "ping"})).await;
    ws.until("pong").await;
    gw.stop().await;
}

#[tokio::test]
async fn rs256_tokens_verify_with_the_public_key_and_hs256_is_refused() {
    let fx = Fixture::new().await;
    let dir = tempfile_dir();
    let private = dir.join("test-only-private.pem");
    let public = dir.join("test-only-public.pem");
    let ok = std::process::Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&private)
        .arg("2048")
        .output()
        .unwrap()
        .status
        .success()
        && std::process::Command::new("openssl")
            .args(["rsa", "-pubout", "-in"])
            .arg(&private)
            .arg("-out")
            .arg(&public)
            .output()
            .unwrap()
            .status
            .success();
    assert!(ok, "openssl could not generate a test RSA key");
    let gw = fx
        .start(&[
            ("NCY_JWT_ALGORITHM", "RS256"),
            ("NCY_JWT_PUBLIC_KEY_FILE", public.to_str().unwrap()),
        ])
        .await;
    let claims = json!({"userId": fx.user, "exp": now() + 3600});
    let rs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(&std::fs::read(&private).unwrap()).unwrap(),
    )
    .unwrap();
    Ws::authed(gw.ws(), &rs).await;
    let mut ws = Ws::connect(gw.ws(), "").await;
    ws.send(json!({"type": "authenticate", "token": hs_token(&claims)}))
        .await;
    assert_eq!(ws.recv().await.unwrap()["type"], "authentication_failed");
    assert_eq!(ws.close_code().await, Some(4003));
    gw.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ncy-rt-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn joins_are_authorized_and_presence_lists_users() {
    let fx = Fixture::new().await;
    let mut gw = fx.start(&[]).await;
    let room = format!("project:{}", fx.project);
    let mut member = Ws::authed(gw.ws(), &fx.token()).await;
    let outsider_token = hs_token(
        &json!({"userId": fx.outsider, "organizationId": fx.other_org, "exp": now() + 3600}),
    );
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
    let mut grpc = gw.grpc.clone();
    ncy_testkit::assert_eventually("the closed socket is released", common::WAIT, || {
        let mut grpc = grpc.clone();
        async move {
            grpc.stats(pb::StatsRequest {})
                .await
                .is_ok_and(|s| s.into_inner().connections == 0)
        }
    })
    .await;
    let _ = grpc.stats(pb::StatsRequest {}).await;

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
    let stats = gw
        .grpc
        .stats(pb::StatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.connections, 1);
    assert!(stats.bus_connected && stats.messages_published >= 3 && stats.messages_out >= 3);
    let _ = send_project(&mut gw, fx.project, 9).await;
    gw.stop().await;
}
