//! What a socket does with each text frame its client sends: the per-socket command rate, the
//! dispatch of a parsed frame (only `authenticate` before authentication), error replies and the
//! count of protocol misuse that ends the socket (1008), and the answer to a `presence` question.
use std::sync::atomic::Ordering;

use ncy_types::Room;
use tokio::time::Instant;

use super::Conn;
use crate::{
    error::{CloseReason, GatewayError},
    metrics,
    protocol::{self, ClientFrame},
};

/// Bad or rate-limited frames tolerated before the socket is closed (1008).
const MAX_ABUSE: u32 = 20;

impl Conn {
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
    pub(super) fn reply_error(&mut self, e: GatewayError) {
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
    pub(super) async fn on_text(&mut self, text: &str) -> Result<(), GatewayError> {
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
}
