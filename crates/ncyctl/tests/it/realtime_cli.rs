//! `ncyctl realtime …` run as a process against a realtime gateway running in this process, with a
//! browser-like WebSocket client on the other side that must receive what the operator sent.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async, tungstenite::Message};

use crate::support::{JWT_SECRET, Stack, ctl, json};

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// A signed-in browser tab of `user` (in its `user:` room from the start).
async fn browser(ws: std::net::SocketAddr, user: &str) -> Socket {
    browser_in(ws, json!({"userId": user})).await
}

/// A signed-in browser tab with these claims (plus an expiry).
async fn browser_in(ws: std::net::SocketAddr, mut claims: Value) -> Socket {
    let (mut socket, _) = connect_async(format!("ws://{ws}/ws")).await.unwrap();
    claims["exp"] = json!(chrono::Utc::now().timestamp() + 3600);
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap();
    let auth = json!({"type": "authenticate", "token": token}).to_string();
    socket.send(Message::Text(auth.into())).await.unwrap();
    next_of_type(&mut socket, "authenticated").await;
    socket
}

/// Skips frames until one whose `type` is `ty`.
async fn next_of_type(socket: &mut Socket, ty: &str) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .unwrap_or_else(|_| panic!("no {ty} frame within 10 s"))
            .unwrap_or_else(|| panic!("socket closed before a {ty} frame"))
            .unwrap();
        if let Message::Text(text) = frame {
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["type"] == ty {
                return v;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_reaches_a_browser_and_presence_and_stats_show_it() {
    let stack = Stack::new().await;
    let gateway = stack.realtime().await;
    let url = gateway.url.as_str();
    let user = uuid::Uuid::new_v4().to_string();
    let pool = stack.db.pool().await.unwrap();
    sqlx::query("INSERT INTO users (id, email, name) VALUES ($1::uuid, 'ada@example.com', 'Ada')")
        .bind(&user)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let room = format!("user:{user}");
    let mut tab = browser(gateway.websocket.unwrap(), &user).await;

    let sent = ctl(
        url,
        &[
            "realtime",
            "send",
            "user",
            &user,
            "--event",
            "maintenance",
            "--data",
            r#"{"at":"03:00"}"#,
        ],
    )
    .await;
    assert!(
        sent.ok().starts_with(&format!("{room} offset 1 epoch ")),
        "{sent:#?}"
    );
    let message = next_of_type(&mut tab, "message").await;
    assert_eq!(message["room"], room.as_str());
    assert_eq!(message["event"], "maintenance");
    assert_eq!(message["data"], json!({"at": "03:00"}));

    // The same idempotency key twice: one message, the second send says so.
    let keyed = [
        "realtime",
        "send",
        "user",
        &user,
        "--event",
        "once",
        "--idempotency-key",
        "k-1",
    ];
    let first = json(url, &keyed).await;
    assert_eq!(
        (first["offset"].as_i64(), first["deduplicated"].as_bool()),
        (Some(2), Some(false))
    );
    let second = ctl(url, &keyed).await;
    assert_eq!(
        second.ok().trim_end(),
        format!(
            "{room} offset 2 epoch {} (deduplicated)",
            first["epoch"].as_str().unwrap()
        )
    );
    assert_eq!(next_of_type(&mut tab, "message").await["event"], "once");

    let presence = ctl(url, &["realtime", "presence", &room]).await;
    let out = presence.ok();
    assert!(out.starts_with(&format!("1 online in {room}\n")), "{out}");
    let row = out
        .lines()
        .skip(1)
        .find(|l| l.contains(&user))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(row.contains(" 1 "), "one connection: {row}");
    assert!(row.contains(" - "), "no status set yet: {row}");
    ctl(url, &["realtime", "user-status", &user, "busy"])
        .await
        .ok();
    let listed = json(url, &["realtime", "presence", &room]).await;
    assert_eq!(listed["users"][0]["status"], "USER_STATUS_BUSY", "{listed}");
    let row = ctl(url, &["realtime", "presence", &room])
        .await
        .ok()
        .to_owned();
    assert!(row.contains(" busy "), "{row}");
    let listed = json(url, &["realtime", "presence", &room]).await;
    assert_eq!(listed["users"][0]["user_id"], user.as_str());
    let nobody = format!("project:{}", uuid::Uuid::new_v4());
    assert_eq!(
        json(url, &["realtime", "presence", &nobody]).await["users"],
        json!([])
    );

    let stats = ctl(url, &["realtime", "stats"]).await;
    let out = stats.ok();
    assert!(out.contains("connections 1 (1 authenticated)"), "{out}");
    assert!(out.contains("bus connected"), "{out}");
    let stats = json(url, &["realtime", "stats"]).await;
    assert!(
        stats["messages_published"].as_i64().unwrap() >= 2,
        "{stats}"
    );

    // Validation names the field; a broadcast needs no id.
    ctl(
        url,
        &["realtime", "send", "user", "not-a-uuid", "--event", "x"],
    )
    .await
    .fails(1, &["invalid argument", "user_id"]);
    ctl(url, &["realtime", "send", "user", "--event", "x"])
        .await
        .fails(1, &["invalid argument", "`id` is required"]);
    let all = json(url, &["realtime", "send", "broadcast", "--event", "hello"]).await;
    assert_eq!(all["room"], "broadcast");
    assert_eq!(next_of_type(&mut tab, "message").await["event"], "hello");

    drop(tab);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domain_events_reach_the_organization_and_project_rooms() {
    let stack = Stack::new().await;
    let (org, user, assignee, project, task) = (
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
    );
    let pool = stack.db.pool().await.unwrap();
    for (sql, ids) in [
        (
            "INSERT INTO organizations (id, name, slug) VALUES ($1, 'Acme', 'acme')",
            vec![org],
        ),
        (
            "INSERT INTO users (id, email, name) VALUES ($1, 'ada@example.com', 'Ada')",
            vec![user],
        ),
        (
            "INSERT INTO users (id, email, name) VALUES ($1, 'bob@example.com', 'Bob')",
            vec![assignee],
        ),
        (
            "INSERT INTO organization_members (organization_id, user_id) VALUES ($1, $2), ($1, $3)",
            vec![org, user, assignee],
        ),
        (
            "INSERT INTO projects (id, organization_id, name) VALUES ($1, $2, 'Apollo')",
            vec![project, org],
        ),
        (
            "INSERT INTO tasks (id, project_id, assignee_id, title) VALUES ($1, $2, $3, 'Ship')",
            vec![task, project, assignee],
        ),
    ] {
        let mut query = sqlx::query(sql);
        for id in ids {
            query = query.bind(id);
        }
        query.execute(&pool).await.unwrap();
    }
    pool.close().await;
    let gateway = stack.realtime().await;
    let url = gateway.url.as_str();
    let mut tab = browser_in(
        gateway.websocket.unwrap(),
        json!({"userId": user, "organizationId": org}),
    )
    .await;

    let created = ctl(
        url,
        &[
            "realtime",
            "project-created",
            &project.to_string(),
            "--created-by",
            &user.to_string(),
        ],
    )
    .await;
    assert_eq!(created.ok(), format!("org:{org} notified\n"));
    let message = next_of_type(&mut tab, "message").await;
    assert_eq!(message["room"], format!("org:{org}"));
    assert_eq!(
        message["data"]["projectId"],
        project.to_string(),
        "{message}"
    );

    let updated = ctl(
        url,
        &[
            "realtime",
            "task-updated",
            &task.to_string(),
            "--updated-by",
            &user.to_string(),
            "--changes",
            r#"{"status":"done"}"#,
        ],
    )
    .await;
    assert_eq!(
        updated.ok(),
        format!("project:{project} notified\nuser:{assignee} notified\n")
    );
    let status = json(url, &["realtime", "user-status", &user.to_string(), "away"]).await;
    assert_eq!(
        status["deliveries"][0]["room"],
        format!("org:{org}"),
        "{status}"
    );
    let message = next_of_type(&mut tab, "message").await;
    assert_eq!(message["data"]["status"], "away", "{message}");
    ctl(
        url,
        &[
            "realtime",
            "project-created",
            &uuid::Uuid::new_v4().to_string(),
            "--created-by",
            &user.to_string(),
        ],
    )
    .await
    .fails(1, &["not found"]);

    drop(tab);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_user_and_disconnect_user_reach_the_users_sockets() {
    let stack = Stack::new().await;
    let gateway = stack.realtime().await;
    let url = gateway.url.as_str();
    let user = uuid::Uuid::new_v4().to_string();
    let room = format!("user:{user}");
    let mut tab = browser(gateway.websocket.unwrap(), &user).await;

    let out = ctl(url, &["realtime", "unsubscribe-user", &user, &room]).await;
    assert!(
        out.ok().starts_with(&format!(
            "took 1 socket(s) out of {room} on the instance that answered;"
        )),
        "{out:#?}"
    );
    let left = next_of_type(&mut tab, "left").await;
    assert_eq!(
        left,
        json!({"type": "left", "room": room, "reason": "unsubscribed"})
    );
    let again = json(url, &["realtime", "unsubscribe-user", &user, &room]).await;
    assert_eq!(
        again["local_connections"].as_i64().unwrap_or(0),
        0,
        "{again}"
    );

    let closed = json(
        url,
        &[
            "realtime",
            "disconnect-user",
            &user,
            "--reason",
            "maintenance",
        ],
    )
    .await;
    assert_eq!(closed["local_connections"], 1, "{closed}");
    let close = loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), tab.next())
            .await
            .expect("no close frame within 10 s")
            .expect("socket ended without a close frame")
            .unwrap();
        if let Message::Close(Some(close)) = frame {
            break close;
        }
    };
    assert_eq!(
        (u16::from(close.code), close.reason.as_str()),
        (4010, "maintenance")
    );

    ctl(url, &["realtime", "disconnect-user", "not-a-uuid"])
        .await
        .fails(1, &["invalid argument", "user_id"]);
    ctl(url, &["realtime", "unsubscribe-user", &user, "project:42"])
        .await
        .fails(1, &["invalid argument", "room"]);
    gateway.stop().await;
}

/// Two gateways of one deployment, a browser on one: `stats --all-instances` asked of the other
/// says which one holds the connection (reports every 200 ms here), as JSON and as a table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_all_instances_shows_which_gateway_holds_the_connections() {
    let mut stack = Stack::new().await;
    ncy_testkit::set_env(&mut stack.env, "NCY_INSTANCE_REPORT_MS", "200");
    let (a, b) = (stack.realtime().await, stack.realtime().await);
    let _tab = browser(a.websocket.unwrap(), &uuid::Uuid::new_v4().to_string()).await;
    let ida = json(&a.url, &["realtime", "stats"]).await["instance_id"].clone();
    let idb = json(&b.url, &["realtime", "stats"]).await["instance_id"].clone();
    let connections = |s: &Value| -> Vec<(Value, i64)> {
        s["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| (i["instance_id"].clone(), i["connections"].as_i64().unwrap()))
            .collect()
    };
    let mut expected = vec![(ida.clone(), 1), (idb.clone(), 0)];
    expected.sort_by_key(|(id, _)| id.as_str().unwrap().to_owned());
    let url = b.url.clone();
    ncy_testkit::assert_eventually("a's connection reported", Duration::from_secs(20), || {
        let (url, expected) = (url.clone(), expected.clone());
        async move {
            connections(&json(&url, &["realtime", "stats", "--all-instances"]).await) == expected
        }
    })
    .await;
    let s = json(&b.url, &["realtime", "stats", "--all-instances"]).await;
    assert_eq!((&s["instance_id"], &s["connections"]), (&idb, &json!(0)));
    assert_eq!(
        json(&b.url, &["realtime", "stats"]).await["instances"],
        json!([])
    );

    let table = ctl(&b.url, &["realtime", "stats", "--all-instances"]).await;
    let out = table.ok();
    assert!(
        out.starts_with("2 live realtime-gateway instance(s), 1 connection(s) in all; * answered"),
        "{out}"
    );
    assert!(
        out.contains(&format!("{} *", idb.as_str().unwrap())),
        "{out}"
    );
    a.stop().await;
    b.stop().await;
}
