//! One browser socket, served by one task: it reads and runs the protocol, and writes what the
//! socket's bounded outbound queue holds.
//!
//! Fan-out and replies only queue frames ([`Outbox`]) and never touch the socket or wait on it. A
//! write gives up as soon as the outbox closes, so a client that stops reading ends as a slow
//! consumer instead of holding the task. Every way a socket ends is a [`CloseReason`] with its own
//! close code; on the way out the task leaves its rooms at once and sends what was already queued
//! (except to a slow consumer), then the close frame, and waits briefly for the client's answer.
//!
//! The task itself ([`serve`]) and the socket's state ([`Conn`]) are here; `frames` runs what the
//! client sends, `authentication` its `authenticate` and `refresh`, `rooms` joining and leaving
//! rooms, and `socket` the writes and the close handshake.
mod authentication;
mod frames;
mod rooms;
mod socket;

use std::{sync::Arc, sync::atomic::Ordering, time::Duration};

use axum::extract::ws::{Message, WebSocket};
use futures_util::{
    StreamExt,
    stream::{SplitSink, SplitStream},
};
use tokio::time::Instant;
use uuid::Uuid;

use crate::{
    auth::Identity,
    error::{CloseReason, GatewayError},
    gateway::Gateway,
    hub::Outbox,
    metrics,
};

/// Serves one upgraded socket until it closes.
///
/// Memory per idle socket is what this task and the writer keep between frames, so the loop holds
/// one timer and the frame handlers run boxed: their futures (Redis and PostgreSQL calls) exist
/// only while a frame is being handled instead of sizing every connection's task. The socket
/// arrives split (see [`serve`]): an async fn keeps its arguments for its whole life, and a
/// `WebSocket` is several hundred bytes where its two halves are a pointer each.
pub fn serve(
    gw: Arc<Gateway>,
    socket: WebSocket,
    query_token: Option<String>,
) -> impl Future<Output = ()> + Send + 'static {
    let (sink, stream) = socket.split();
    run(gw, sink, stream, query_token)
}

async fn run(
    gw: Arc<Gateway>,
    mut sink: SplitSink<WebSocket, Message>,
    mut stream: SplitStream<WebSocket>,
    query_token: Option<String>,
) {
    let id = gw.next_conn_id.fetch_add(1, Ordering::Relaxed);
    let outbox = Outbox::new(id, gw.limits.outbound_queue);

    let mut conn = Conn {
        gw: gw.clone(),
        outbox: outbox.clone(),
        identity: None,
        rooms: Vec::new(),
        tokens: f64::from(gw.limits.commands_per_sec),
        refilled: Instant::now(),
        abuse: 0,
    };
    let auth_deadline = Instant::now() + gw.limits.auth_timeout;
    if let Some(token) = query_token {
        if gw.limits.query_token {
            Box::pin(conn.authenticate(&token, &Default::default())).await;
        } else {
            // Not an `authentication_failed` (that closes the socket): the client may still send
            // `authenticate`, and is told why the URL's token was not used.
            outbox.send_text(GatewayError::QueryTokenRefused.frame());
        }
    }
    let mut last_frame = Instant::now();
    let mut next_ping = last_frame + gw.limits.ping_interval;
    // One timer for every deadline (authentication, token expiry, idle, the next ping). Frames only
    // move the idle deadline later, so the timer is not re-armed per frame: when it fires early it
    // is reset to whichever deadline is next.
    let timer = tokio::time::sleep_until(conn.deadline(auth_deadline, last_frame).min(next_ping));
    tokio::pin!(timer);
    loop {
        tokio::select! {
            () = gw.stop.cancelled() => { outbox.close(CloseReason::Restart); break }
            () = outbox.ready() => {
                if outbox.is_closed() {
                    break;
                }
                if outbox.has_commands() {
                    Box::pin(conn.on_commands()).await;
                }
                let (ping, frames) = outbox.take();
                if (ping || !frames.is_empty())
                    && !Box::pin(socket::write(&mut sink, &gw, &outbox, ping, frames)).await
                {
                    outbox.close(CloseReason::ClientGone);
                    break;
                }
                if outbox.is_closed() {
                    break;
                }
            }
            () = &mut timer => {
                let now = Instant::now();
                if now >= next_ping {
                    outbox.ping();
                    next_ping = now + gw.limits.ping_interval;
                }
                if conn.identity.is_some() && conn.token_expired() {
                    outbox.close(CloseReason::TokenExpired);
                    break;
                }
                if conn.identity.is_none() && now >= auth_deadline {
                    outbox.close(CloseReason::AuthTimeout);
                    break;
                }
                if now >= last_frame + gw.limits.idle_timeout {
                    outbox.close(CloseReason::Idle);
                    break;
                }
                timer.as_mut().reset(conn.deadline(auth_deadline, last_frame).min(next_ping));
            }
            next = stream.next() => {
                last_frame = Instant::now();
                match next {
                    None => { outbox.close(CloseReason::ClientGone); break }
                    Some(Err(e)) => { outbox.close(CloseReason::of_read_error(&e)); break }
                    Some(Ok(Message::Text(text))) => {
                        if let Err(e) = Box::pin(conn.on_text(&text)).await {
                            conn.reply_error(e);
                        }
                        // Authentication or a refresh may have brought the next deadline closer.
                        let next = conn.deadline(auth_deadline, last_frame).min(next_ping);
                        if next < timer.deadline() {
                            timer.as_mut().reset(next);
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        conn.reply_error(GatewayError::BadFrame("binary frames are not supported".into()));
                    }
                    Some(Ok(Message::Close(_))) => { outbox.close(CloseReason::ClientGone); break }
                    Some(Ok(_)) => {} // ping/pong: tungstenite answers pings; any frame resets idle
                }
            }
        }
    }
    let reason = outbox.closing();
    metrics::disconnect(reason);
    if reason == CloseReason::SlowConsumer {
        gw.slow_client_disconnects.fetch_add(1, Ordering::Relaxed);
    }
    // The socket leaves its rooms and presence at once (the server has given up on it), while its
    // close frame may still wait behind data the client has not read yet.
    let within = gw.limits.close_timeout;
    futures_util::join!(
        Box::pin(socket::close(sink, stream, &outbox, within)),
        Box::pin(conn.cleanup())
    );
}

/// A room a socket is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Joined {
    /// `user:<its user>`
    User,
    /// `org:<its organization>`
    Org,
    /// `broadcast`
    Broadcast,
    /// `project:<id>`
    Project(Uuid),
}

/// The state of one socket, owned by its task: who is on it, the rooms it is in, and its
/// command rate and misuse counts.
struct Conn {
    gw: Arc<Gateway>,
    outbox: Arc<Outbox>,
    identity: Option<Identity>,
    /// Joined rooms: a handful, and named from the identity when needed (every idle socket keeps
    /// this, so no strings).
    rooms: Vec<Joined>,
    tokens: f64,
    refilled: Instant,
    abuse: u32,
}

impl Conn {
    fn expiry_deadline(&self) -> Instant {
        let Some(id) = &self.identity else {
            return Instant::now() + Duration::from_secs(86_400);
        };
        let now_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let left = (id.exp as f64 - now_s).max(0.0);
        Instant::now() + Duration::from_secs_f64(left.min(86_400.0 * 365.0))
    }

    /// The next moment the socket must be looked at: its authentication or expiry deadline, or
    /// when it would be idle for too long.
    fn deadline(&self, auth_deadline: Instant, last_frame: Instant) -> Instant {
        let limit = if self.identity.is_some() {
            self.expiry_deadline()
        } else {
            auth_deadline
        };
        limit.min(last_frame + self.gw.limits.idle_timeout)
    }

    /// Whether the token's `exp` has passed.
    fn token_expired(&self) -> bool {
        let now_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.identity.as_ref().is_some_and(|id| id.exp <= now_s)
    }
}
