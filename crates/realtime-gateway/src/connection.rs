//! One browser socket: a reader loop that runs the protocol and a writer task that drains the
//! socket's bounded outbound queue.
//!
//! Only the writer touches the socket's sending half, and it never holds a lock: fan-out and
//! replies only queue frames. Every way a socket ends is a [`CloseReason`] with its own close code;
//! the writer sends what was already queued (except to a slow consumer), then the close frame.
use std::{collections::HashSet, sync::Arc, sync::atomic::Ordering, time::Duration};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::{SinkExt, StreamExt, stream::SplitSink};
use ncy_types::Room;
use tokio::{sync::mpsc, time::Instant};
use uuid::Uuid;

use crate::{
    auth::Identity,
    error::{CloseReason, GatewayError, error_frame},
    gateway::Gateway,
    hub::Outbox,
    metrics,
    protocol::{self, ClientFrame, Position},
};

/// Bad or rate-limited frames tolerated before the socket is closed (1008).
const MAX_ABUSE: u32 = 20;

/// Serves one upgraded socket until it closes.
pub async fn serve(gw: Arc<Gateway>, socket: WebSocket, query_token: Option<String>) {
    let id = gw.next_conn_id.fetch_add(1, Ordering::Relaxed);
    let (outbox, rx) = Outbox::new(id, gw.limits.outbound_queue);
    let (sink, mut stream) = socket.split();
    let writer = tokio::spawn(write_loop(
        sink,
        rx,
        outbox.clone(),
        gw.limits.ping_interval,
    ));

    let mut conn = Conn {
        gw: gw.clone(),
        outbox: outbox.clone(),
        identity: None,
        rooms: HashSet::new(),
        tokens: f64::from(gw.limits.commands_per_sec),
        refilled: Instant::now(),
        abuse: 0,
    };
    let auth_deadline = Instant::now() + gw.limits.auth_timeout;
    if let Some(token) = query_token {
        conn.authenticate(&token, &Default::default()).await;
    }
    let stop = gw.stop.clone();
    loop {
        let expiry = conn.expiry_deadline();
        tokio::select! {
            () = outbox.closed().cancelled() => break,
            () = stop.cancelled() => { outbox.close(CloseReason::Restart); break }
            () = tokio::time::sleep_until(auth_deadline), if conn.identity.is_none() => {
                outbox.close(CloseReason::AuthTimeout);
                break;
            }
            () = tokio::time::sleep_until(expiry), if conn.identity.is_some() => {
                outbox.close(CloseReason::TokenExpired);
                break;
            }
            next = tokio::time::timeout(gw.limits.idle_timeout, stream.next()) => match next {
                Err(_) => { outbox.close(CloseReason::Idle); break }
                Ok(None) => { outbox.close(CloseReason::ClientGone); break }
                Ok(Some(Err(e))) => {
                    let too_big = error_chain(&e).contains("too long");
                    outbox.close(if too_big { CloseReason::TooBig } else { CloseReason::ClientGone });
                    break;
                }
                Ok(Some(Ok(Message::Text(text)))) => conn.on_text(&text).await,
                Ok(Some(Ok(Message::Binary(_)))) => conn.bad_frame("binary frames are not supported"),
                Ok(Some(Ok(Message::Close(_)))) => { outbox.close(CloseReason::ClientGone); break }
                Ok(Some(Ok(_))) => {} // ping/pong: tungstenite answers pings; any frame resets idle
            }
        }
    }
    conn.cleanup().await;
    let reason = outbox.close_reason().unwrap_or(CloseReason::ClientGone);
    metrics::disconnect(reason);
    if reason == CloseReason::SlowConsumer {
        gw.slow_client_disconnects.fetch_add(1, Ordering::Relaxed);
    }
    let _ = tokio::time::timeout(Duration::from_secs(3), writer).await;
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Drains the outbound queue into the socket; sends pings; on close, the close frame.
async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Utf8Bytes>,
    outbox: Arc<Outbox>,
    ping_every: Duration,
) {
    let mut ping = tokio::time::interval(ping_every);
    ping.tick().await;
    loop {
        tokio::select! {
            biased;
            () = outbox.closed().cancelled() => break,
            frame = rx.recv() => match frame {
                None => break,
                Some(f) => if write_batch(&mut sink, &mut rx, f).await.is_err() {
                    outbox.close(CloseReason::ClientGone);
                    break;
                },
            },
            _ = ping.tick() => if sink.send(Message::Ping(Default::default())).await.is_err() {
                outbox.close(CloseReason::ClientGone);
                break;
            },
        }
    }
    let reason = outbox.close_reason().unwrap_or(CloseReason::ClientGone);
    let flush = async {
        if reason != CloseReason::SlowConsumer {
            while let Ok(f) = rx.try_recv() {
                if sink.send(Message::Text(f)).await.is_err() {
                    return;
                }
            }
        }
        if reason != CloseReason::ClientGone {
            let frame = CloseFrame {
                code: reason.code(),
                reason: reason.text().into(),
            };
            let _ = sink.send(Message::Close(Some(frame))).await;
        }
        let _ = sink.close().await;
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), flush).await;
}

/// Writes `first` and whatever else is already queued (up to a bound) with one flush, so a burst
/// costs a few syscalls instead of one per frame.
async fn write_batch(
    sink: &mut SplitSink<WebSocket, Message>,
    rx: &mut mpsc::Receiver<Utf8Bytes>,
    first: Utf8Bytes,
) -> Result<(), axum::Error> {
    sink.feed(Message::Text(first)).await?;
    for _ in 0..64 {
        match rx.try_recv() {
            Ok(f) => sink.feed(Message::Text(f)).await?,
            Err(_) => break,
        }
    }
    sink.flush().await
}

struct Conn {
    gw: Arc<Gateway>,
    outbox: Arc<Outbox>,
    identity: Option<Identity>,
    rooms: HashSet<String>,
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
        #[allow(clippy::cast_precision_loss)]
        let left = (id.exp as f64 - now_s).max(0.0);
        Instant::now() + Duration::from_secs_f64(left.min(86_400.0 * 365.0))
    }

    fn conn_key(&self) -> String {
        format!("{}-{}", self.gw.instance_id, self.outbox.id)
    }

    /// Takes one command token; false when over the per-socket rate.
    fn take_token(&mut self) -> bool {
        let rate = f64::from(self.gw.limits.commands_per_sec);
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.refilled).as_secs_f64() * rate).min(rate);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn bad_frame(&mut self, why: &str) {
        self.strike(error_frame("bad_request", why));
    }

    fn strike(&mut self, frame: String) {
        self.abuse += 1;
        self.outbox.send_text(frame);
        if self.abuse > MAX_ABUSE {
            self.outbox.close(CloseReason::Abuse);
        }
    }

    async fn on_text(&mut self, text: &str) {
        metrics::message_in();
        self.gw.messages_in.fetch_add(1, Ordering::Relaxed);
        if !self.take_token() {
            self.strike(error_frame("rate_limited", "too many commands, slow down"));
            return;
        }
        let frame = match serde_json::from_str::<ClientFrame>(text) {
            Ok(f) => f,
            Err(e) => return self.bad_frame(&format!("not a known frame: {e}")),
        };
        match (frame, self.identity.is_some()) {
            (ClientFrame::Authenticate { token, since }, false) => {
                self.authenticate(&token, &since).await;
            }
            (ClientFrame::Authenticate { .. }, true) => {
                self.outbox.send_text(error_frame(
                    "already_authenticated",
                    "already authenticated",
                ));
            }
            (_, false) => self.strike(error_frame("unauthenticated", "authenticate first")),
            (ClientFrame::Refresh { token }, true) => self.refresh(&token),
            (ClientFrame::JoinProject { project_id, since }, true) => {
                self.join_project(&project_id, since.as_ref()).await;
            }
            (ClientFrame::LeaveProject { project_id }, true) => {
                self.leave_project(&project_id).await;
            }
            (ClientFrame::Presence { room }, true) => self.presence(&room).await,
            (ClientFrame::Ping, true) => {
                self.outbox.send_text(protocol::pong());
            }
        }
    }

    async fn authenticate(
        &mut self,
        token: &str,
        since: &std::collections::HashMap<String, Position>,
    ) {
        let identity = match self.gw.verifier.verify(token) {
            Ok(i) => i,
            Err(reason) => {
                self.outbox
                    .send_text(protocol::authentication_failed(&reason));
                self.outbox.close(CloseReason::AuthFailed);
                return;
            }
        };
        let user = identity.user_id.to_string();
        let _ = self.outbox.user.set(user.clone());
        self.gw.authenticated.fetch_add(1, Ordering::Relaxed);
        let mut rooms = vec![Room::user(identity.user_id), Room::Broadcast];
        if let Some(org) = identity.org_id {
            rooms.push(Room::org(org));
        }
        let exp = identity.exp;
        self.identity = Some(identity);
        for room in rooms {
            self.join(&room.name(), since.get(&room.name())).await;
        }
        self.outbox.send_text(protocol::authenticated(&user, exp));
    }

    fn refresh(&mut self, token: &str) {
        match self.gw.verifier.verify(token) {
            Ok(fresh) if self.identity.as_ref().map(|i| i.user_id) == Some(fresh.user_id) => {
                let exp = fresh.exp;
                if let Some(i) = self.identity.as_mut() {
                    i.exp = exp;
                }
                self.outbox.send_text(protocol::refreshed(exp));
            }
            Ok(_) => {
                self.outbox.send_text(error_frame(
                    "refresh_failed",
                    "the new token is for another user",
                ));
            }
            Err(reason) => {
                self.outbox
                    .send_text(error_frame("refresh_failed", &reason));
            }
        }
    }

    /// Joins `room` (recovering from `since`), then marks presence.
    async fn join(&mut self, room: &str, since: Option<&Position>) -> bool {
        match self.gw.hub.join(&self.outbox, room, since).await {
            Ok(_) => {
                self.rooms.insert(room.to_owned());
                if let Some(user) = self.outbox.user.get() {
                    let entry = (room.to_owned(), user.clone(), self.conn_key());
                    if let Err(e) = self.gw.presence.refresh(&[entry]).await {
                        tracing::debug!(error = %e, "presence refresh failed");
                    }
                }
                true
            }
            Err(e) => {
                self.outbox.send_text(GatewayError::from(e).frame());
                false
            }
        }
    }

    async fn join_project(&mut self, project_id: &str, since: Option<&Position>) {
        let Ok(project) = Uuid::parse_str(project_id) else {
            return self.bad_frame("projectId: must be a UUID");
        };
        let Some(user) = self.identity.as_ref().map(|i| i.user_id) else {
            return;
        };
        match self.gw.is_project_member(user, project).await {
            Ok(true) => {
                self.join(&Room::project(project).name(), since).await;
            }
            Ok(false) => {
                self.outbox.send_text(error_frame(
                    "forbidden",
                    "not a member of this project's organization",
                ));
            }
            Err(e) => {
                self.outbox.send_text(e.frame());
            }
        }
    }

    async fn leave_project(&mut self, project_id: &str) {
        let Ok(project) = Uuid::parse_str(project_id) else {
            return self.bad_frame("projectId: must be a UUID");
        };
        let room = Room::project(project).name();
        if self.rooms.remove(&room) {
            self.gw.hub.leave(self.outbox.id, &room);
            if let Some(user) = self.outbox.user.get()
                && let Err(e) = self.gw.presence.leave(&room, user, &self.conn_key()).await
            {
                tracing::debug!(error = %e, "presence leave failed");
            }
        }
        self.outbox.send_text(protocol::left(&room));
    }

    async fn presence(&mut self, room: &str) {
        let Ok(parsed) = room.parse::<Room>() else {
            return self.bad_frame("room: must be user:<id>, org:<id>, project:<id> or broadcast");
        };
        let name = parsed.name();
        if !self.rooms.contains(&name) {
            self.outbox
                .send_text(error_frame("forbidden", "join the room first"));
            return;
        }
        match self.gw.presence.list(&name).await {
            Ok(users) => {
                self.outbox.send_text(protocol::presence(&name, &users));
            }
            Err(e) => {
                self.outbox.send_text(GatewayError::from(e).frame());
            }
        }
    }

    async fn cleanup(&mut self) {
        if self.identity.is_some() {
            self.gw.authenticated.fetch_sub(1, Ordering::Relaxed);
        }
        let user = self.outbox.user.get().cloned();
        for room in std::mem::take(&mut self.rooms) {
            self.gw.hub.leave(self.outbox.id, &room);
            if let Some(user) = &user {
                let _ = self.gw.presence.leave(&room, user, &self.conn_key()).await;
            }
        }
    }
}
