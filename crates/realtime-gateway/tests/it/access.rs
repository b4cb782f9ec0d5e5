//! Tenant isolation over a socket's life: access withdrawn in PostgreSQL (membership removed,
//! project deleted or moved) takes the socket out of the room on every instance — `left` with reason
//! `revoked` and nothing more of it — through the change notifications, or the periodic re-check
//! when notifications are missed; a `refresh` naming another organization moves the `org:` room;
//! "not a member" is never cached, so a user just added may join at once.
use ncy_proto::realtime::v1 as pb;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{
    Fixture, Gateway, Ws, counter, hs_token, now, send_project, send_user, token_of,
};

/// Only the change notifications can revoke within a test's wait.
const NO_BACKSTOP: (&str, &str) = ("NCY_ACCESS_RECHECK_SECS", "3600");

/// The `/metrics` series of rooms left because access was withdrawn.
const REVOKED: &str = r#"ncy_realtime_rooms_left_total{reason="revoked"}"#;

/// Reads frames until `left` for every room of `rooms`; their reasons by room.
async fn lefts(ws: &mut Ws, rooms: &[String]) -> Vec<(String, Value)> {
    let mut got = Vec::new();
    while got.len() < rooms.len() {
        let v = ws.until("left").await;
        let room = v["room"].as_str().unwrap().to_owned();
        assert!(rooms.contains(&room), "unexpected {v}");
        got.push((room, v["reason"].clone()));
    }
    got.sort_by(|a, b| a.0.cmp(&b.0));
    got
}

async fn revoked(ws: &mut Ws, rooms: &[String]) {
    let mut want: Vec<_> = rooms
        .iter()
        .map(|r| (r.clone(), json!("revoked")))
        .collect();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(lefts(ws, rooms).await, want);
}

async fn join(ws: &mut Ws, project: Uuid) -> Value {
    ws.send(json!({"type": "join_project", "projectId": project}))
        .await;
    loop {
        let v = ws.recv().await.expect("open");
        if v["type"] == "joined" || v["type"] == "error" {
            return v;
        }
    }
}

async fn send_org(gw: &mut Gateway, org: Uuid, event: &str) {
    gw.grpc
        .send_to_organization(pb::SendToOrganizationRequest {
            organization_id: org.to_string(),
            event: event.into(),
            data_json: String::new(),
            idempotency_key: String::new(),
        })
        .await
        .unwrap();
}

/// The next message `ws` receives is `event` in `room` (so nothing else was delivered first).
async fn next_message_is(ws: &mut Ws, room: &str, event: &str) {
    let m = ws.until("message").await;
    assert_eq!(
        (m["room"].as_str(), m["event"].as_str()),
        (Some(room), Some(event)),
        "{m}"
    );
}

#[tokio::test]
async fn a_removed_member_leaves_the_org_and_project_rooms_on_every_instance() {
    let fx = Fixture::new().await;
    let mut a = fx.start(&[NO_BACKSTOP]).await;
    let b = fx.start(&[NO_BACKSTOP]).await;
    let revocations = counter(a.addrs.admin, REVOKED).await;
    let (project, org) = (format!("project:{}", fx.project), format!("org:{}", fx.org));
    let mut on_a = Ws::authed(a.ws(), &fx.token()).await;
    let mut on_b = Ws::authed(b.ws(), &fx.token()).await;
    let colleague = fx.add_user(fx.org).await;
    let mut stays = Ws::authed(a.ws(), &token_of(colleague, fx.org)).await;
    for ws in [&mut on_a, &mut on_b, &mut stays] {
        assert_eq!(join(ws, fx.project).await["room"], project);
    }
    send_project(&mut a, fx.project, 1).await;
    assert_eq!(on_b.messages(&project, 1).await[0]["data"]["i"], 1);

    sqlx::query("DELETE FROM organization_members WHERE organization_id = $1 AND user_id = $2")
        .bind(fx.org)
        .bind(fx.user)
        .execute(&fx.pool)
        .await
        .unwrap();
    let rooms = [org.clone(), project.clone()];
    revoked(&mut on_a, &rooms).await;
    revoked(&mut on_b, &rooms).await;

    // Nothing more of either room: the next message is the one sent to the user afterwards.
    send_project(&mut a, fx.project, 2).await;
    send_org(&mut a, fx.org, "org_news").await;
    send_user(&mut a, fx.user, "marker", None).await;
    let user_room = format!("user:{}", fx.user);
    next_message_is(&mut on_a, &user_room, "marker").await;
    next_message_is(&mut on_b, &user_room, "marker").await;
    // The colleague still gets both rooms.
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let m = stays.until("message").await;
        seen.push((
            m["room"].as_str().unwrap().to_owned(),
            m["event"].clone(),
            m["data"].clone(),
        ));
    }
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        seen,
        vec![
            (org.clone(), json!("org_news"), json!(null)),
            (project.clone(), json!("tick"), json!({"i": 1})),
            (project.clone(), json!("tick"), json!({"i": 2})),
        ]
    );
    // The room's presence no longer lists the removed user, and it cannot join again (the
    // cached "member" answer went with the membership).
    let listed = a
        .grpc
        .presence(pb::PresenceRequest {
            room: project.clone(),
            page_size: 0,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let users: Vec<_> = listed.users.iter().map(|u| u.user_id.clone()).collect();
    assert_eq!(users, vec![colleague.to_string()]);
    let refused = join(&mut on_a, fx.project).await;
    assert_eq!(refused["code"], "forbidden", "{refused}");
    // Both rooms left on both instances are counted (the counter is the process's: other tests
    // may add to it meanwhile, never take from it).
    let counted = counter(a.addrs.admin, REVOKED).await;
    assert!(
        counted >= revocations + 4,
        "{REVOKED} went from {revocations} to {counted}"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_project_moved_or_deleted_is_revoked() {
    let fx = Fixture::new().await;
    let mut gw = fx.start(&[NO_BACKSTOP]).await;
    let mut ws = Ws::authed(gw.ws(), &fx.token()).await;
    let room = format!("project:{}", fx.project);
    join(&mut ws, fx.project).await;
    sqlx::query("UPDATE projects SET organization_id = $1 WHERE id = $2")
        .bind(fx.other_org)
        .bind(fx.project)
        .execute(&fx.pool)
        .await
        .unwrap();
    revoked(&mut ws, std::slice::from_ref(&room)).await;
    assert_eq!(join(&mut ws, fx.project).await["code"], "forbidden");

    let second = Uuid::new_v4();
    sqlx::query("INSERT INTO projects (id, organization_id, name) VALUES ($1, $2, 'Gemini')")
        .bind(second)
        .bind(fx.org)
        .execute(&fx.pool)
        .await
        .unwrap();
    let second_room = format!("project:{second}");
    assert_eq!(join(&mut ws, second).await["room"], second_room);
    // A rename changes nothing.
    sqlx::query("UPDATE projects SET name = 'Gemini 2' WHERE id = $1")
        .bind(second)
        .execute(&fx.pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM projects WHERE id = $1")
        .bind(second)
        .execute(&fx.pool)
        .await
        .unwrap();
    revoked(&mut ws, std::slice::from_ref(&second_room)).await;
    send_project(&mut gw, second, 1).await;
    send_user(&mut gw, fx.user, "marker", None).await;
    next_message_is(&mut ws, &format!("user:{}", fx.user), "marker").await;
    gw.stop().await;
}

#[tokio::test]
async fn the_periodic_recheck_revokes_when_notifications_are_missed() {
    let fx = Fixture::new().await;
    // Notifications go to a channel this gateway does not listen on.
    let gw = fx
        .start(&[
            ("NCY_ACCESS_NOTIFY_CHANNEL", "nobody_notifies_this"),
            ("NCY_ACCESS_RECHECK_SECS", "1"),
        ])
        .await;
    let mut ws = Ws::authed(gw.ws(), &fx.token()).await;
    join(&mut ws, fx.project).await;
    sqlx::query("DELETE FROM organization_members WHERE user_id = $1")
        .bind(fx.user)
        .execute(&fx.pool)
        .await
        .unwrap();
    revoked(
        &mut ws,
        &[format!("org:{}", fx.org), format!("project:{}", fx.project)],
    )
    .await;
    gw.stop().await;
}

#[tokio::test]
async fn refresh_re_evaluates_the_org_room_against_the_new_claims() {
    let fx = Fixture::new().await;
    let mut gw = fx.start(&[NO_BACKSTOP]).await;
    fx.add_member(fx.other_org, fx.user).await;
    let token = |org: Option<Uuid>| {
        let mut claims = json!({"userId": fx.user, "exp": now() + 3600});
        if let Some(org) = org {
            claims["organizationId"] = json!(org);
        }
        hs_token(&claims)
    };
    let mut ws = Ws::authed(gw.ws(), &fx.token()).await;
    let (org, other) = (format!("org:{}", fx.org), format!("org:{}", fx.other_org));

    ws.send(json!({"type": "refresh", "token": token(Some(fx.other_org))}))
        .await;
    revoked(&mut ws, std::slice::from_ref(&org)).await;
    assert_eq!(ws.until("joined").await["room"], other);
    ws.until("refreshed").await;
    send_org(&mut gw, fx.org, "old_org").await;
    send_org(&mut gw, fx.other_org, "new_org").await;
    next_message_is(&mut ws, &other, "new_org").await;

    // An organization the user is not a member of: the org room is left and none joined.
    let stranger = Uuid::new_v4();
    ws.send(json!({"type": "refresh", "token": token(Some(stranger))}))
        .await;
    assert_eq!(ws.until("error").await["code"], "forbidden");
    revoked(&mut ws, std::slice::from_ref(&other)).await;
    ws.until("refreshed").await;
    // Back to a token with the first organization: joined again, as authenticate would.
    ws.send(json!({"type": "refresh", "token": token(Some(fx.org))}))
        .await;
    assert_eq!(ws.until("joined").await["room"], org);
    ws.until("refreshed").await;
    // No organization at all: no org room.
    ws.send(json!({"type": "refresh", "token": token(None)}))
        .await;
    revoked(&mut ws, std::slice::from_ref(&org)).await;
    ws.until("refreshed").await;
    send_org(&mut gw, fx.org, "after").await;
    send_user(&mut gw, fx.user, "marker", None).await;
    next_message_is(&mut ws, &format!("user:{}", fx.user), "marker").await;
    gw.stop().await;
}

#[tokio::test]
async fn refresh_re_checks_project_rooms_against_the_database() {
    let fx = Fixture::new().await;
    // No notification and no periodic check can revoke here: only the refresh does.
    let gw = fx
        .start(&[
            ("NCY_ACCESS_NOTIFY_CHANNEL", "nobody_notifies_this"),
            NO_BACKSTOP,
        ])
        .await;
    let mut ws = Ws::authed(gw.ws(), &fx.token()).await;
    join(&mut ws, fx.project).await;
    sqlx::query("UPDATE projects SET organization_id = $1 WHERE id = $2")
        .bind(fx.other_org)
        .bind(fx.project)
        .execute(&fx.pool)
        .await
        .unwrap();
    ws.send(json!({"type": "refresh", "token": fx.token()}))
        .await;
    revoked(&mut ws, &[format!("project:{}", fx.project)]).await;
    ws.until("refreshed").await;
    gw.stop().await;
}

#[tokio::test]
async fn authenticate_joins_the_org_room_only_for_a_member() {
    let fx = Fixture::new().await;
    let mut gw = fx.start(&[NO_BACKSTOP]).await;
    let mut ws = Ws::connect(gw.ws(), "").await;
    ws.send(json!({"type": "authenticate", "token": token_of(fx.user, fx.other_org)}))
        .await;
    let mut joined = Vec::new();
    loop {
        let v = ws.recv().await.unwrap();
        match v["type"].as_str() {
            Some("joined") => joined.push(v["room"].as_str().unwrap().to_owned()),
            Some("error") => assert_eq!(v["code"], "forbidden", "{v}"),
            Some("authenticated") => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    joined.sort();
    assert_eq!(
        joined,
        vec!["broadcast".to_owned(), format!("user:{}", fx.user)]
    );
    send_org(&mut gw, fx.other_org, "not_yours").await;
    send_user(&mut gw, fx.user, "marker", None).await;
    next_message_is(&mut ws, &format!("user:{}", fx.user), "marker").await;
    gw.stop().await;
}

#[tokio::test]
async fn a_user_just_added_to_the_organization_may_join_at_once() {
    let fx = Fixture::new().await;
    let gw = fx.start(&[NO_BACKSTOP]).await;
    let mut ws = Ws::authed(gw.ws(), &token_of(fx.outsider, fx.other_org)).await;
    assert_eq!(join(&mut ws, fx.project).await["code"], "forbidden");
    fx.add_member(fx.org, fx.outsider).await;
    assert_eq!(
        join(&mut ws, fx.project).await["room"],
        format!("project:{}", fx.project)
    );
    gw.stop().await;
}
