//! A browser's side of the realtime gateway for the end-to-end tests: connect, authenticate with a
//! JWT signed by the test's secret, and read the next JSON frame.
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::{connect_async, tungstenite::Message};
use uuid::Uuid;

/// How long a test waits for one frame.
pub const FRAME_WAIT: Duration = Duration::from_secs(20);

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects, authenticates as `user` (with `org` in the token when given) and waits for
/// `authenticated`.
pub async fn browser(
    addr: std::net::SocketAddr,
    secret: &str,
    user: Uuid,
    org: Option<Uuid>,
) -> anyhow::Result<Socket> {
    let (mut ws, _) = connect_async(format!("ws://{addr}/ws")).await?;
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + 3600;
    let mut claims = json!({"userId": user, "exp": exp});
    if let Some(org) = org {
        claims["organizationId"] = json!(org);
    }
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )?;
    send(&mut ws, json!({"type": "authenticate", "token": token})).await?;
    loop {
        let f = next_frame(&mut ws).await?;
        match f["type"].as_str() {
            Some("authenticated") => return Ok(ws),
            Some("error") => anyhow::bail!("authentication refused: {f}"),
            _ => {}
        }
    }
}

/// Sends one JSON frame.
pub async fn send(ws: &mut Socket, frame: Value) -> anyhow::Result<()> {
    ws.send(Message::Text(frame.to_string().into())).await?;
    Ok(())
}

/// The next text frame as JSON (pings and the like skipped); fails after [`FRAME_WAIT`].
pub async fn next_frame(ws: &mut Socket) -> anyhow::Result<Value> {
    loop {
        match tokio::time::timeout(FRAME_WAIT, ws.next()).await? {
            Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(&t)?),
            Some(Ok(_)) => {}
            other => anyhow::bail!("socket closed: {other:?}"),
        }
    }
}

/// The next frame whose `type` is one of `types`.
pub async fn next_of(ws: &mut Socket, types: &[&str]) -> anyhow::Result<Value> {
    loop {
        let f = next_frame(ws).await?;
        if types.iter().any(|t| f["type"] == *t) {
            return Ok(f);
        }
    }
}

/// The next `message` frame carrying `event` (other messages skipped).
pub async fn next_event(ws: &mut Socket, event: &str) -> anyhow::Result<Value> {
    loop {
        let f = next_of(ws, &["message"]).await?;
        if f["event"] == event {
            return Ok(f);
        }
    }
}
