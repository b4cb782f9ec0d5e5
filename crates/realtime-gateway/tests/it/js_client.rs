//! The JavaScript client (clients/js, the file served at `/client.js`) against running gateways:
//! it authenticates, joins a project and receives a message; the gateway is stopped (1012) and
//! started again on the same port; the client reconnects by itself and receives, in order and once,
//! what was published meanwhile (through another instance), then live messages. Taken out of the
//! project by the server (`UnsubscribeUser`), it forgets the project and does not rejoin it when it
//! reconnects.
//!
//! Runs the client under Node's built-in WebSocket (`node --experimental-websocket`); the same
//! scenario in headless Chromium is `browser_client`. Without `node` the test is skipped
//! with a message, or fails when `CI` is set — the same rule as the Chromium test.
use std::process::Stdio;

use ncy_proto::realtime::v1 as realtime_gateway_pb;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::{Fixture, WAIT, send_project};

struct Driver {
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    child: tokio::process::Child,
}

impl Driver {
    async fn next(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        loop {
            let line = tokio::time::timeout(WAIT, self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
                .unwrap()
                .unwrap_or_else(|| panic!("driver exited while waiting for {what}"));
            let v: Value = serde_json::from_str(&line).unwrap();
            if pred(&v) {
                return v;
            }
        }
    }
}

#[tokio::test]
async fn js_client_reconnects_and_recovers_what_was_published_meanwhile() {
    if std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "node not found: `scripts/deps.sh up` installs Node.js, which CI needs for this test"
        );
        // Straight to stderr, past the test harness's output capture, so the skip is seen.
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"js_client: skipped, node not found (scripts/deps.sh up installs it)\n",
        );
        return;
    }
    let fx = Fixture::new().await;
    let mut gw = fx.start(&[]).await;
    let mut other = fx.start(&[]).await;
    let ws_addr = gw.ws();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let client_js = root
        .join("../../clients/js/ncy-realtime.js")
        .canonicalize()
        .unwrap();
    let mut child = tokio::process::Command::new("node")
        .arg("--experimental-websocket")
        .arg("--no-warnings")
        .arg(root.join("tests/it/fixtures/js_client_driver.mjs"))
        .arg(client_js)
        .arg(format!("ws://{ws_addr}/ws"))
        .arg(fx.token())
        .arg(fx.project.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut d = Driver {
        lines: BufReader::new(stdout).lines(),
        child,
    };
    let project_room = format!("project:{}", fx.project);
    d.next("project joined", |v| v["joined"] == project_room.as_str())
        .await;
    send_project(&mut gw, fx.project, 1).await;
    assert_eq!(
        d.next("tick 1", |v| v.get("tick").is_some()).await["tick"],
        1
    );

    gw.stop().await;
    d.next("disconnected 1012", |v| {
        v["status"] == "disconnected" && v["code"] == 1012
    })
    .await;
    for i in 2..=3 {
        send_project(&mut other, fx.project, i).await;
    }
    // The same gateway comes back on the same port.
    let gw = fx.start(&[("NCY_WS_ADDR", &ws_addr.to_string())]).await;
    let rejoined = d
        .next("project rejoined", |v| v["joined"] == project_room.as_str())
        .await;
    assert_eq!(rejoined["recovered"], true, "{rejoined}");
    let mut ticks = Vec::new();
    for _ in 0..2 {
        ticks.push(
            d.next("recovered ticks", |v| v.get("tick").is_some()).await["tick"]
                .as_u64()
                .unwrap(),
        );
    }
    assert_eq!(ticks, [2, 3]);
    send_project(&mut other, fx.project, 4).await;
    assert_eq!(
        d.next("tick 4", |v| v.get("tick").is_some()).await["tick"],
        4
    );

    // The server takes the user out of the project: the client forgets it, and a reconnect does
    // not ask to join it again.
    other
        .grpc
        .unsubscribe_user(realtime_gateway_pb::UnsubscribeUserRequest {
            user_id: fx.user.to_string(),
            room: project_room.clone(),
        })
        .await
        .unwrap();
    let left = d.next("left", |v| v.get("left").is_some()).await;
    assert_eq!(left["reason"], "unsubscribed", "{left}");
    gw.stop().await;
    d.next("disconnected 1012", |v| {
        v["status"] == "disconnected" && v["code"] == 1012
    })
    .await;
    let gw = fx.start(&[("NCY_WS_ADDR", &ws_addr.to_string())]).await;
    let connected = d.next("connected", |v| v["status"] == "connected").await;
    assert_eq!(connected["projects"], serde_json::json!([]), "{connected}");

    drop(d.child.stdin.take());
    let _ = tokio::time::timeout(WAIT, d.child.wait()).await;
    gw.stop().await;
    other.stop().await;
}
