//! Heartbeats: the server pings every socket; one that answers (any client library does) stays
//! connected past the idle timeout, and one that has gone silent (a dead peer, a frozen tab) is
//! closed with 4000 — the silent client here is a raw TCP socket that speaks just enough WebSocket
//! to authenticate and then never answers a ping.
use ncy_proto::realtime::v1 as pb;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Fixture, WAIT, Ws, send_project, stats_until};

/// A masked client text frame (payload < 64 KiB).
fn text_frame(payload: &[u8]) -> Vec<u8> {
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut f = vec![0x81];
    if payload.len() < 126 {
        f.push(0x80 | u8::try_from(payload.len()).unwrap());
    } else {
        f.push(0x80 | 126);
        f.extend_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Reads server frames (unmasked) until a close frame; returns its code and the opcodes seen.
async fn read_until_close(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> (Option<u16>, Vec<u8>) {
    let mut opcodes = Vec::new();
    loop {
        // Parse every complete frame in the buffer.
        while buf.len() >= 2 {
            let op = buf[0] & 0x0f;
            let (len, head) = match buf[1] & 0x7f {
                126 if buf.len() >= 4 => (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
                127 => panic!("unexpected 64-bit frame"),
                126 => break,
                n => (usize::from(n), 2),
            };
            if buf.len() < head + len {
                break;
            }
            let payload: Vec<u8> = buf[head..head + len].to_vec();
            buf.drain(..head + len);
            opcodes.push(op);
            if op == 0x8 {
                let code =
                    (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                return (code, opcodes);
            }
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, tcp.read(&mut chunk))
            .await
            .expect("the server neither closed nor sent anything")
            .unwrap();
        if n == 0 {
            return (None, opcodes);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A raw WebSocket client: the upgrade request to `/ws{query}`, the 101 read; returns the socket
/// and whatever arrived after the response headers.
async fn raw_socket(addr: std::net::SocketAddr, query: &str) -> (TcpStream, Vec<u8>) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /ws{query} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut chunk = [0u8; 1024];
        let n = tcp.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed during the handshake");
        buf.extend_from_slice(&chunk[..n]);
    }
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(String::from_utf8_lossy(&buf[..end]).starts_with("HTTP/1.1 101"));
    buf.drain(..end);
    (tcp, buf)
}

#[tokio::test]
async fn a_silent_socket_is_closed_while_a_responsive_one_stays() {
    let f = Fixture::new().await;
    let mut gw = f
        .start(&[
            ("NCY_WS_PING_INTERVAL_SECS", "1"),
            ("NCY_WS_IDLE_TIMEOUT_SECS", "2"),
        ])
        .await;

    // The responsive client: a normal WebSocket client reading all along (it answers pings).
    let mut live = Ws::authed(gw.ws(), &f.token()).await;
    live.send(json!({"type": "join_project", "projectId": f.project}))
        .await;
    live.until("joined").await;
    let live_reader = tokio::spawn(async move {
        // Reads (and so answers pings) until the test's message arrives.
        let got = live.messages(&format!("project:{}", f.project), 1).await;
        (live, got)
    });

    // The silent one: handshake and authenticate by hand, then only read, never pong.
    let (mut tcp, mut buf) = raw_socket(gw.ws(), "").await;
    let auth = json!({"type": "authenticate", "token": f.token()}).to_string();
    tcp.write_all(&text_frame(auth.as_bytes())).await.unwrap();

    let (code, opcodes) = read_until_close(&mut tcp, &mut buf).await;
    assert_eq!(
        code,
        Some(4000),
        "idle close code; frames seen: {opcodes:?}"
    );
    assert!(
        opcodes.contains(&0x9),
        "the server pinged before giving up: {opcodes:?}"
    );

    // The responsive client outlived the idle timeout and still receives.
    let offset = send_project(&mut gw, f.project, 1).await;
    let (_live, got) = live_reader.await.unwrap();
    assert_eq!(got[0]["offset"], offset);
    gw.stop().await;
}

/// A client that stops reading while the server is writing to it (a frozen tab whose TCP is still
/// up) and is sent too little to fill its outbound queue: the blocked write is given up after the
/// idle timeout and the socket closed, instead of holding the connection forever.
#[tokio::test]
async fn a_socket_that_stops_reading_mid_write_is_closed_after_the_idle_timeout() {
    let f = Fixture::new().await;
    let gw = f
        .start(&[
            ("NCY_WS_PING_INTERVAL_SECS", "1"),
            ("NCY_WS_IDLE_TIMEOUT_SECS", "2"),
            ("NCY_MAX_DATA_BYTES", "200000"),
        ])
        .await;
    // Handshake, authenticate and join by hand, then never read again.
    let (mut tcp, _) = raw_socket(gw.ws(), "").await;
    let auth = json!({"type": "authenticate", "token": f.token()}).to_string();
    tcp.write_all(&text_frame(auth.as_bytes())).await.unwrap();
    let join = json!({"type": "join_project", "projectId": f.project}).to_string();
    tcp.write_all(&text_frame(join.as_bytes())).await.unwrap();
    // Wait until the join took effect: user, org, broadcast and the project room.
    let mut grpc = gw.grpc.clone();
    stats_until(&grpc, "the join took effect", |s| s.rooms >= 4).await;
    // ~6 MB: more than the loopback socket buffers hold, far fewer frames than the queue's 1,024.
    let big = json!({"pad": "z".repeat(100_000)}).to_string();
    for _ in 0..60 {
        grpc.send_to_project(pb::SendToProjectRequest {
            project_id: f.project.to_string(),
            event: "big".into(),
            data_json: big.clone(),
            idempotency_key: String::new(),
        })
        .await
        .unwrap();
    }
    stats_until(&grpc, "the stalled socket was closed", |s| {
        s.connections == 0
    })
    .await;
    drop(tcp);
    gw.stop().await;
}
