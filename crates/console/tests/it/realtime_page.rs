//! The Realtime page in front of a real realtime-gateway: its Stats with a WebSocket client
//! connected, the presence of that client's room, an operator's test message reaching the client
//! and an operator's disconnect closing it while a viewer's are refused, and the refusals of a
//! bad room or bad JSON.
use ncy_proto::realtime::v1::StatsRequest;
use ncy_testkit::assert_eventually;

use crate::support::{
    Console, OPERATOR, Origin, VIEWER,
    gateways::{RealtimeGateway, WAIT, no_scheduler},
};

#[tokio::test]
async fn the_realtime_page_shows_connections_and_presence_and_an_operator_reaches_a_room()
-> anyhow::Result<()> {
    let gateway = RealtimeGateway::start().await?;
    let console = Console::start_with(
        no_scheduler(),
        &[("NCY_CONSOLE_REALTIME_URL", &gateway.url())],
    )
    .await?;
    let mut ws = gateway.member_in_project().await?;
    let grpc = gateway.client.clone();
    assert_eventually("the gateway counts the connection", WAIT, || {
        let mut grpc = grpc.clone();
        async move {
            grpc.stats(StatsRequest::default())
                .await
                .is_ok_and(|s| s.into_inner().connections == 1)
        }
    })
    .await;

    let mut viewer = console.signed_in(VIEWER).await?;
    let page = viewer.get("/realtime").await?;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("data-counter=\"Connections\">1<"),
        "{}",
        page.body
    );
    assert!(
        !page.body.contains("/realtime/send"),
        "no actions for a viewer"
    );

    let room = format!("project:{}", gateway.project);
    let page = viewer.get(&format!("/realtime?room={room}")).await?;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body
            .contains(&format!("data-user=\"{}\"", gateway.user)),
        "{}",
        page.body
    );
    let bad = viewer.get("/realtime?room=%3Cb%3Enowhere").await?;
    assert_eq!(bad.status, 400, "{}", bad.body);
    let message = &bad.body[bad
        .body
        .find("realtime-gateway refused the request")
        .unwrap_or(0)..];
    assert!(
        message.starts_with("realtime-gateway refused the request") && message.contains("room"),
        "the gateway's INVALID_ARGUMENT naming the field: {}",
        bad.body
    );
    assert!(!bad.body.contains("<b>nowhere"), "{}", bad.body);

    let refused = viewer
        .post(
            "/realtime/send",
            &[("room", &room), ("data", r#"{"from":"viewer"}"#)],
            Origin::Console,
        )
        .await?;
    assert_eq!(refused.status, 403, "{}", refused.body);

    let mut operator = console.signed_in(OPERATOR).await?;
    let invalid = operator
        .post(
            "/realtime/send",
            &[("room", &room), ("data", "{not json")],
            Origin::Console,
        )
        .await?;
    assert_eq!(invalid.status, 400, "{}", invalid.body);
    assert!(invalid.body.contains("not valid JSON"), "{}", invalid.body);

    let sent = operator
        .post(
            "/realtime/send",
            &[("room", &room), ("data", r#"{"from":"operator"}"#)],
            Origin::Console,
        )
        .await?;
    assert_eq!(sent.status, 303, "{}", sent.body);
    assert!(
        sent.location()
            .is_some_and(|l| l.starts_with("/realtime?room=project%3A") && l.contains("done=sent")),
        "{:?}",
        sent.location()
    );
    let message = ws.until("message").await?;
    assert_eq!(message["room"], room.as_str(), "{message}");
    assert_eq!(message["event"], "console.test", "{message}");
    assert_eq!(message["data"]["from"], "operator", "{message}");

    let user = gateway.user.to_string();
    let refused = viewer
        .post(
            "/realtime/disconnect",
            &[("user_id", &user), ("reason", "test")],
            Origin::Console,
        )
        .await?;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let done = operator
        .post(
            "/realtime/disconnect",
            &[("user_id", &user), ("reason", "console test")],
            Origin::Console,
        )
        .await?;
    assert_eq!(done.status, 303, "{}", done.body);
    assert!(
        done.location()
            .is_some_and(|l| l.starts_with("/realtime?done=disconnected&count=1")),
        "{:?}",
        done.location()
    );
    let closed = ws.until("no-such-frame").await.expect_err("closed");
    assert!(closed.to_string().contains("closed"), "{closed}");

    console.stop().await?;
    gateway.stop().await
}

#[tokio::test]
async fn the_realtime_page_shows_the_connections_of_every_replica() -> anyhow::Result<()> {
    let a = RealtimeGateway::start().await?;
    let b = a.replica().await?;
    let b_id = b
        .client
        .clone()
        .stats(StatsRequest::default())
        .await?
        .into_inner()
        .instance_id;
    let console =
        Console::start_with(no_scheduler(), &[("NCY_CONSOLE_REALTIME_URL", &a.url())]).await?;
    let mut viewer = console.signed_in(VIEWER).await?;
    // A browser on the replica the console does not talk to.
    let _ws = b.member_in_project().await?;

    // The replica reports every 200 ms: its row shows the connection (connections, then
    // authenticated: the first two numeric cells) within a few reports.
    viewer
        .get_until("/realtime", WAIT, "the replica's connection", |page| {
            page.instance_row(&b_id).is_some_and(|row| {
                row.contains("<td class=\"n\">1</td><td class=\"n\">1</td>")
                    && !row.contains(">answered<")
            })
        })
        .await?;
    let page = viewer.get("/realtime").await?;
    assert!(
        page.body.contains(">answered<"),
        "the instance that answered is marked: {}",
        page.body
    );
    assert!(
        page.body.contains("data-counter=\"Connections\">0<"),
        "the answering instance has no connection of its own: {}",
        page.body
    );
    console.stop().await
}
