//! The JavaScript client in a real headless Chromium against running gateways.
//!
//! A page served from a loopback origin (the gateways' `FRONTEND_URL`) imports the client from a
//! gateway's `/client.js`, authenticates with a token from its URL fragment, joins a project and
//! follows a job. It receives a project message and a job's progress; the gateway is stopped
//! (1012) and started again on the same port; what was published meanwhile through another
//! instance (project messages and the job's progress, in the user's room) arrives in the page after
//! it reconnects by itself, in order and once, then live messages do.
//!
//! Chromium is Debian's `chromium` (`scripts/deps.sh up` installs it), driven over CDP
//! (`ncy_testkit::chromium`). Without it the test is skipped with a message, or fails when `CI` is
//! set.
use std::net::SocketAddr;

use ncy_testkit::chromium;
use serde_json::{Value, json};

use crate::support::{Fixture, send_project, send_user};

const PAGE: &str = include_str!("fixtures/browser_page.html");

/// Serves the test page at `/` on a loopback port; the server ends with the test's runtime.
async fn serve_page() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(|| async { axum::response::Html(PAGE) }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn is_tick(v: &Value) -> bool {
    v.get("tick").is_some()
}

#[tokio::test]
async fn browser_page_reconnects_after_a_gateway_restart_and_recovers_what_was_published_meanwhile()
{
    let Some(binary) = chromium::binary_or_skip("browser_client") else {
        return;
    };
    let fx = Fixture::new().await;
    let origin = format!("http://{}", serve_page().await);
    let env = [("FRONTEND_URL", origin.as_str())];
    let mut gw = fx.start(&env).await;
    let mut other = fx.start(&env).await;
    let ws_addr = gw.ws();
    let job = "job-browser-1";

    let browser = chromium::Chromium::launch(&binary).await;
    let mut page = browser
        .open_page(&format!(
            "{origin}/#gw={ws_addr}&token={}&project={}&job={job}",
            fx.token(),
            fx.project
        ))
        .await;
    let project_room = format!("project:{}", fx.project);
    page.next("project joined", |v| v["joined"] == project_room.as_str())
        .await;

    // Live: a project message and the job's first progress.
    let first = send_project(&mut gw, fx.project, 1).await;
    let tick = page.next("tick 1", is_tick).await;
    assert_eq!(
        (&tick["tick"], &tick["room"]),
        (&json!(1), &json!(project_room))
    );
    assert_eq!(tick["offset"], first);
    send_user(
        &mut gw,
        fx.user,
        "job_progress",
        Some(json!({"jobId": job, "progress": 10, "message": "started"})),
    )
    .await;
    let p = page
        .next("job progress 10", |v| v.get("jobProgress").is_some())
        .await;
    assert_eq!(p, json!({"jobProgress": 10, "message": "started"}));

    // The gateway goes away; the page's client sees 1012 and keeps trying.
    gw.stop().await;
    page.next("disconnected 1012", |v| {
        v["status"] == "disconnected" && v["code"] == 1012
    })
    .await;
    let mut meanwhile = Vec::new();
    for i in 2..=3 {
        meanwhile.push(send_project(&mut other, fx.project, i).await);
    }
    send_user(
        &mut other,
        fx.user,
        "job_progress",
        Some(json!({"jobId": job, "progress": 60, "message": "halfway"})),
    )
    .await;
    // A message for another job is not this watcher's.
    send_user(
        &mut other,
        fx.user,
        "job_progress",
        Some(json!({"jobId": "someone-else", "progress": 99})),
    )
    .await;

    // The same gateway comes back on the same port: the page reconnects and recovers.
    let mut gw = fx
        .start(&[
            ("FRONTEND_URL", &origin),
            ("NCY_WS_ADDR", &ws_addr.to_string()),
        ])
        .await;
    // The user's room is recovered when the client authenticates, before it rejoins the project.
    let p = page
        .next("job progress 60", |v| v.get("jobProgress").is_some())
        .await;
    assert_eq!(p, json!({"jobProgress": 60, "message": "halfway"}));
    let rejoined = page
        .next("project rejoined", |v| v["joined"] == project_room.as_str())
        .await;
    assert_eq!(rejoined["recovered"], true, "{rejoined}");
    let mut recovered = Vec::new();
    for _ in 0..2 {
        let t = page.next("recovered ticks", is_tick).await;
        recovered.push((t["tick"].as_u64().unwrap(), t["offset"].as_u64().unwrap()));
    }
    assert_eq!(recovered, [(2, meanwhile[0]), (3, meanwhile[1])]);

    // Live again, through the restarted instance and the other one.
    let last = send_project(&mut gw, fx.project, 4).await;
    let t = page.next("tick 4", is_tick).await;
    assert_eq!((&t["tick"], &t["offset"]), (&json!(4), &json!(last)));
    send_user(
        &mut other,
        fx.user,
        "job_completed",
        Some(json!({"jobId": job, "result": {"rows": 7}})),
    )
    .await;
    let done = page
        .next("job completed", |v| v.get("jobCompleted").is_some())
        .await;
    assert_eq!(done["jobCompleted"], json!({"rows": 7}));

    // What the page recorded in window.events: each message once, in order.
    let seen = page
        .evaluate("window.events.filter((e) => 'tick' in e).map((e) => [e.tick, e.offset])")
        .await;
    assert_eq!(
        seen,
        json!([[1, first], [2, meanwhile[0]], [3, meanwhile[1]], [4, last]])
    );
    let progress = page
        .evaluate("window.events.filter((e) => 'jobProgress' in e).map((e) => e.jobProgress)")
        .await;
    assert_eq!(progress, json!([10, 60]));

    page.evaluate("window.realtime.close()").await;
    drop(page);
    drop(browser);
    gw.stop().await;
    other.stop().await;
}
