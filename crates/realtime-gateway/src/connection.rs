//! One browser socket, served by one task: it reads and runs the protocol, and writes what the
//! socket's bounded outbound queue holds.
//!
//! Fan-out and replies only queue frames ([`Outbox`]) and never touch the socket or wait on it. A
//! write gives up as soon as the outbox closes, so a client that stops reading ends as a slow
//! consumer instead of holding the task. Every way a socket ends is a [`CloseReason`] with its own
//! close code; on the way out the task leaves its rooms at once and sends what was already queued
//! (except to a slow consumer), then the close frame, and waits briefly for the client's answer.
use std::{collections::HashMap, sync::Arc, sync::atomic::Ordering, task::Poll, time::Duration};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::{
    SinkExt, StreamExt,
    stream::{SplitSink, SplitStream},
};
use ncy_types::Room;
use tokio::time::Instant;
use uuid::Uuid;

use crate::{
    auth::Identity,
    control::{Command, LeaveReason},
    error::{CloseReason, GatewayError},
    gateway::Gateway,
    gateway::Scope,
    hub::Outbox,
    metrics,
    presence_writes::Kind,
    protocol::{self, ClientFrame, Position},
};

/// Bad or rate-limited frames tolerated before the socket is closed (1008).
const MAX_ABUSE: u32 = 20;

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
                    && !Box::pin(write(&mut sink, &gw, &outbox, ping, frames)).await
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
        Box::pin(close(sink, stream, &outbox, within)),
        Box::pin(conn.cleanup())
    );
}

/// Writes what the outbox had queued; false if the socket failed. Gives up (true) as soon as the
/// outbox closes or the instance stops, so a client that stopped reading cannot hold the
/// connection's only task in a write: its queue fills and it is closed as a slow consumer, or,
/// when nothing more is queued for it, the write is given up after the idle timeout (the peer
/// is gone or frozen) and it is closed as idle.
async fn write(
    sink: &mut SplitSink<WebSocket, Message>,
    gw: &Gateway,
    outbox: &Outbox,
    ping: bool,
    frames: std::collections::VecDeque<Utf8Bytes>,
) -> bool {
    let mut written = Box::pin(write_all(sink, ping, frames));
    // Nearly every write completes at once (the socket's send buffer has room): then no timer is
    // armed and no wake-up of the outbox is consumed, so none has to be handed back.
    if let Poll::Ready(r) = futures_util::poll!(written.as_mut()) {
        return r.is_ok();
    }
    let give_up = tokio::time::sleep(gw.limits.idle_timeout);
    tokio::pin!(give_up);
    let mut woken = false;
    let ok = loop {
        tokio::select! {
            r = &mut written => break r.is_ok(),
            () = outbox.ready() => {
                woken = true;
                if outbox.is_closed() { break true }
            }
            () = gw.stop.cancelled() => break true,
            () = &mut give_up => {
                outbox.close(CloseReason::Idle);
                break true;
            }
        }
    };
    // A wake-up consumed here may have been for a frame queued meanwhile. (Handing one back when
    // none was consumed would cost the task a second, empty turn per write.)
    if woken {
        outbox.rearm();
    }
    ok
}

/// Sends what is still queued (not to a slow consumer) and the close frame, then waits for the
/// client's close frame, all `within` (`NCY_WS_CLOSE_TIMEOUT_MS`).
///
/// The close frame goes out behind whatever the socket holds: a slow consumer gets the rest of the
/// frame in progress, then 4008, as soon as it reads again within that time. Waiting for the
/// client's answer (RFC 6455 §7.1.1) keeps the connection until the client has read the close
/// frame: a TCP connection dropped while the client's own frames are unread is reset, and a reset
/// can discard the close frame on its way. A draining instance keeps its listener (answering 503)
/// for as long as this lasts.
async fn close(
    mut sink: SplitSink<WebSocket, Message>,
    mut stream: SplitStream<WebSocket>,
    outbox: &Outbox,
    within: Duration,
) {
    let reason = outbox.closing();
    let rest = outbox.finish();
    let flush = async {
        if reason != CloseReason::SlowConsumer && write_all(&mut sink, false, rest).await.is_err() {
            return;
        }
        if reason != CloseReason::ClientGone {
            // DisconnectUser's reason text, else the reason's own.
            let text = match reason {
                CloseReason::ServerDisconnect => outbox.disconnect_text(),
                _ => None,
            };
            let frame = CloseFrame {
                code: reason.code(),
                reason: text.unwrap_or_else(|| reason.text().to_owned()).into(),
            };
            if sink.send(Message::Close(Some(frame))).await.is_ok() {
                while let Some(Ok(m)) = stream.next().await {
                    if matches!(m, Message::Close(_)) {
                        break;
                    }
                }
            }
        }
        let _ = sink.close().await;
    };
    let _ = tokio::time::timeout(within, flush).await;
}

/// Writes `frames` with one flush at the end (the sink also flushes whenever its write buffer
/// fills), so a burst costs a few syscalls instead of one per frame.
async fn write_all(
    sink: &mut SplitSink<WebSocket, Message>,
    ping: bool,
    frames: std::collections::VecDeque<Utf8Bytes>,
) -> Result<(), axum::Error> {
    if !ping && frames.is_empty() {
        return Ok(());
    }
    if ping {
        sink.feed(Message::Ping(Default::default())).await?;
    }
    for f in frames {
        sink.feed(Message::Text(f)).await?;
    }
    sink.flush().await
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

    /// The name of a joined room.
    fn room_name(&self, room: Joined) -> String {
        let id = self.identity.as_ref();
        match room {
            Joined::User => id.map(|i| Room::user(i.user_id)),
            Joined::Org => id.and_then(|i| i.org_id).map(Room::org),
            Joined::Broadcast => Some(Room::Broadcast),
            Joined::Project(p) => Some(Room::project(p)),
        }
        .map(|r| r.name())
        .unwrap_or_default()
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

    /// Answers `e` with its error frame; misuse of the protocol also counts towards the bad
    /// frames tolerated before the socket is closed (1008).
    fn reply_error(&mut self, e: GatewayError) {
        self.outbox.send_text(e.frame());
        if e.is_abuse() {
            self.abuse += 1;
            if self.abuse > MAX_ABUSE {
                self.outbox.close(CloseReason::Abuse);
            }
        }
    }

    /// Runs one text frame; a refusal or failure is the error the caller answers with its frame
    /// ([`Conn::reply_error`]).
    async fn on_text(&mut self, text: &str) -> Result<(), GatewayError> {
        metrics::message_in();
        self.gw.messages_in.fetch_add(1, Ordering::Relaxed);
        if !self.take_token() {
            return Err(GatewayError::RateLimited);
        }
        let frame = serde_json::from_str::<ClientFrame>(text)
            .map_err(|e| GatewayError::BadFrame(format!("not a known frame: {e}").into()))?;
        match (frame, self.identity.is_some()) {
            (ClientFrame::Authenticate { token, since }, false) => {
                self.authenticate(&token, &since).await;
            }
            (ClientFrame::Authenticate { .. }, true) => {
                return Err(GatewayError::AlreadyAuthenticated);
            }
            (_, false) => return Err(GatewayError::Unauthenticated),
            (ClientFrame::Refresh { token }, true) => self.refresh(&token).await?,
            (ClientFrame::JoinProject { project_id, since }, true) => {
                self.join_project(&project_id, since.as_ref()).await?;
            }
            (ClientFrame::LeaveProject { project_id }, true) => {
                self.leave_project(&project_id).await?;
            }
            (ClientFrame::Presence { room }, true) => self.presence(&room).await?,
            (ClientFrame::Ping, true) => {
                self.outbox.send_text(protocol::pong());
            }
        }
        Ok(())
    }

    async fn authenticate(&mut self, token: &str, since: &HashMap<String, Position>) {
        let identity = match self.gw.verifier.verify(token) {
            Ok(i) => i,
            Err(reason) => {
                self.outbox
                    .send_text(protocol::authentication_failed(&reason));
                self.outbox.close(CloseReason::AuthFailed);
                return;
            }
        };
        let user = identity.user_id;
        let _ = self.outbox.user.set(user);
        self.gw.authenticated.fetch_add(1, Ordering::Relaxed);
        // Registered before joining, so a revocation decided meanwhile reaches this socket.
        self.gw.sessions.add(user, self.outbox.clone());
        let mut rooms = vec![Joined::User, Joined::Broadcast];
        let epoch = self.gw.access_epoch.load(Ordering::SeqCst);
        let org = identity.org_id;
        if let Some(org) = org
            && self.org_allowed(user, org).await
        {
            rooms.push(Joined::Org);
        }
        let exp = identity.exp;
        self.identity = Some(identity);
        self.join(&rooms, since).await;
        if let Some(org) = org {
            self.confirm(Joined::Org, Scope::Org(org), epoch).await;
        }
        self.outbox
            .send_text(protocol::authenticated(&user.to_string(), exp));
    }

    /// Whether the socket may be in `org:<org>`: its user must be a member. When PostgreSQL cannot
    /// answer, the signed claim is trusted, as before membership was checked here; the periodic
    /// re-check revokes it later if the database says no.
    async fn org_allowed(&self, user: Uuid, org: Uuid) -> bool {
        match self.gw.is_org_member(user, org).await {
            Ok(true) => true,
            Ok(false) => {
                let refused =
                    format!("not a member of organization {org}: its room was not joined");
                self.outbox
                    .send_text(GatewayError::Forbidden(refused.into()).frame());
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "organization membership unknown; trusting the token");
                true
            }
        }
    }

    /// A fresh token of the same user: its expiry replaces the old one, and every room is
    /// re-evaluated against the new claims as `authenticate` would have joined them — the `org:`
    /// room follows the token's organization (when the user is a member of it), project rooms are
    /// re-checked against the database. What the socket may no longer see is left with reason
    /// `revoked`, before `refreshed`.
    async fn refresh(&mut self, token: &str) -> Result<(), GatewayError> {
        let fresh = self
            .gw
            .verifier
            .verify(token)
            .map_err(GatewayError::RefreshFailed)?;
        if self.identity.as_ref().map(|i| i.user_id) != Some(fresh.user_id) {
            return Err(GatewayError::RefreshFailed(
                "the new token is for another user".into(),
            ));
        }
        let exp = fresh.exp;
        Box::pin(self.reevaluate(fresh)).await;
        self.outbox.send_text(protocol::refreshed(exp));
        Ok(())
    }

    /// Joins `rooms` at once (each recovering from its position in `since`), then marks presence in
    /// all of them with one Redis round trip.
    async fn join(&mut self, rooms: &[Joined], since: &HashMap<String, Position>) {
        let names: Vec<String> = rooms.iter().map(|r| self.room_name(*r)).collect();
        let results = futures_util::future::join_all(
            names
                .iter()
                .map(|room| self.gw.hub.join(&self.outbox, room, since.get(room))),
        )
        .await;
        let user = self.outbox.user.get().map(Uuid::to_string);
        let mut present = Vec::with_capacity(rooms.len());
        for ((joined, room), result) in rooms.iter().zip(names).zip(results) {
            match result {
                Ok(()) => {
                    if !self.rooms.contains(joined) {
                        self.rooms.push(*joined);
                    }
                    if let Some(user) = &user {
                        present.push((room, user.clone(), self.conn_key()));
                    }
                }
                Err(e) => self.reply_error(e.into()),
            }
        }
        if let Err(e) = self.gw.presence_writes.apply(Kind::Online, present).await {
            tracing::debug!(error = %e, "presence refresh failed");
        }
    }

    async fn join_project(
        &mut self,
        project_id: &str,
        since: Option<&Position>,
    ) -> Result<(), GatewayError> {
        let project = Uuid::parse_str(project_id)
            .map_err(|_| GatewayError::BadFrame("projectId: must be a UUID".into()))?;
        let Some(user) = self.identity.as_ref().map(|i| i.user_id) else {
            return Ok(());
        };
        let epoch = self.gw.access_epoch.load(Ordering::SeqCst);
        if !self.gw.is_project_member(user, project).await? {
            return Err(GatewayError::Forbidden(
                "not a member of this project's organization".into(),
            ));
        }
        let room = Room::project(project).name();
        let since = since.map(|p| HashMap::from([(room, p.clone())]));
        self.join(&[Joined::Project(project)], &since.unwrap_or_default())
            .await;
        self.confirm(Joined::Project(project), Scope::Project(project), epoch)
            .await;
        Ok(())
    }

    /// Re-evaluates the rooms against `fresh` (same user) and adopts its claims; see `refresh`.
    async fn reevaluate(&mut self, fresh: Identity) {
        let user = fresh.user_id;
        let want_org = match fresh.org_id {
            Some(org) if self.org_allowed(user, org).await => Some(org),
            _ => None,
        };
        let old_org = self.identity.as_ref().and_then(|i| i.org_id);
        // Named from the old claims, so left before they are replaced.
        let old_room = self.room_name(Joined::Org);
        if old_org != want_org && self.leave_room(Joined::Org).await {
            self.told_left(&old_room, LeaveReason::Revoked);
        }
        let projects: Vec<(Uuid, Scope)> = self
            .rooms
            .iter()
            .filter_map(|r| match r {
                Joined::Project(p) => Some((user, Scope::Project(*p))),
                _ => None,
            })
            .collect();
        if !projects.is_empty() {
            match crate::access::denied(&self.gw.db, &projects).await {
                Ok(gone) => {
                    for (_, scope) in gone {
                        self.gw.membership.invalidate(&(user, scope)).await;
                        if let Scope::Project(p) = scope
                            && self.leave_room(Joined::Project(p)).await
                        {
                            self.told_left(&scope.room(), LeaveReason::Revoked);
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "project rooms not re-checked on refresh"),
            }
        }
        self.identity = Some(fresh);
        if want_org.is_some() && !self.rooms.contains(&Joined::Org) {
            self.join(&[Joined::Org], &HashMap::new()).await;
        }
    }

    async fn leave_project(&mut self, project_id: &str) -> Result<(), GatewayError> {
        let project = Uuid::parse_str(project_id)
            .map_err(|_| GatewayError::BadFrame("projectId: must be a UUID".into()))?;
        self.leave_room(Joined::Project(project)).await;
        self.outbox
            .send_text(protocol::left(&Room::project(project).name()));
        Ok(())
    }

    /// Leaves `joined` if in it (the hub first: nothing more of the room is queued after this),
    /// and clears the socket's presence there. True if it was in the room.
    async fn leave_room(&mut self, joined: Joined) -> bool {
        let Some(i) = self.rooms.iter().position(|r| *r == joined) else {
            return false;
        };
        let room = self.room_name(joined);
        self.rooms.swap_remove(i);
        self.gw.hub.leave(self.outbox.id, &room);
        if let Some(user) = self.outbox.user.get().map(Uuid::to_string)
            && let Err(e) = self
                .gw
                .presence_writes
                .apply(Kind::Offline, vec![(room, user, self.conn_key())])
                .await
        {
            tracing::debug!(error = %e, "presence leave failed");
        }
        true
    }

    /// After joining `joined` on an answer read at access epoch `epoch`: if a re-check ran since,
    /// it may have looked before this socket was in the room, so the database is asked again
    /// (uncached) and the room left, `revoked`, if access is gone.
    async fn confirm(&mut self, joined: Joined, scope: Scope, epoch: u64) {
        let Some(user) = self.identity.as_ref().map(|i| i.user_id) else {
            return;
        };
        if self.gw.access_epoch.load(Ordering::SeqCst) == epoch || !self.rooms.contains(&joined) {
            return;
        }
        if let Ok(false) = crate::access::is_member(&self.gw.db, user, scope).await
            && self.leave_room(joined).await
        {
            self.gw.membership.invalidate(&(user, scope)).await;
            self.told_left(&scope.room(), LeaveReason::Revoked);
        }
    }

    /// `left` with the server's reason, after [`Conn::leave_room`].
    fn told_left(&self, room: &str, reason: LeaveReason) {
        self.outbox
            .send_text(protocol::left_with_reason(room, reason.as_str()));
        metrics::room_left(reason.as_str());
    }

    /// Applies the server's commands (see `control`): leaves the rooms it was taken out of, with
    /// `left` and the reason. (A disconnect closes the outbox, which ends the socket by itself.)
    async fn on_commands(&mut self) {
        for command in self.outbox.take_commands() {
            if let Command::Leave { room, reason } = command
                && let Some(joined) = self
                    .rooms
                    .iter()
                    .copied()
                    .find(|r| self.room_name(*r) == room)
                && self.leave_room(joined).await
            {
                self.told_left(&room, reason);
            }
        }
    }

    async fn presence(&mut self, room: &str) -> Result<(), GatewayError> {
        let parsed = room.parse::<Room>().map_err(|_| {
            GatewayError::BadFrame(
                "room: must be user:<id>, org:<id>, project:<id> or broadcast".into(),
            )
        })?;
        let name = parsed.name();
        if !crate::presence_writes::recorded(&name) {
            return Err(GatewayError::Forbidden(
                "broadcast has no presence: ask about a user:, org: or project: room".into(),
            ));
        }
        if !self.rooms.iter().any(|r| self.room_name(*r) == name) {
            return Err(GatewayError::Forbidden("join the room first".into()));
        }
        let users = self.gw.presence.list(&name).await?;
        let max = self.gw.limits.presence_max_users;
        self.outbox
            .send_text(protocol::presence(&name, &users, max));
        Ok(())
    }

    async fn cleanup(&mut self) {
        if let Some(identity) = &self.identity {
            self.gw.authenticated.fetch_sub(1, Ordering::Relaxed);
            self.gw.sessions.remove(identity.user_id, self.outbox.id);
        }
        let user = self.outbox.user.get().map(Uuid::to_string);
        let mut gone = Vec::with_capacity(self.rooms.len());
        for joined in std::mem::take(&mut self.rooms) {
            let room = self.room_name(joined);
            self.gw.hub.leave(self.outbox.id, &room);
            if let Some(user) = &user {
                gone.push((room, user.clone(), self.conn_key()));
            }
        }
        if let Err(e) = self.gw.presence_writes.apply(Kind::Offline, gone).await {
            tracing::debug!(error = %e, "presence leave failed");
        }
    }
}
