//! The rooms a socket is in: joining them (from a recovery position) with its presence, joining a
//! project after the membership check, leaving on request, when access is withdrawn or the server
//! says so (`control`'s commands), and leaving all of them when the socket ends.
use std::{collections::HashMap, sync::atomic::Ordering};

use ncy_types::Room;
use uuid::Uuid;

use super::{Conn, Joined};
use crate::{
    control::{Command, LeaveReason},
    error::GatewayError,
    gateway::Scope,
    metrics,
    presence_writes::Kind,
    protocol::{self, Position},
};

impl Conn {
    /// The name of a joined room.
    pub(super) fn room_name(&self, room: Joined) -> String {
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

    /// Joins `rooms` at once (each recovering from its position in `since`), then marks presence in
    /// all of them with one Redis round trip.
    pub(super) async fn join(&mut self, rooms: &[Joined], since: &HashMap<String, Position>) {
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

    pub(super) async fn join_project(
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

    pub(super) async fn leave_project(&mut self, project_id: &str) -> Result<(), GatewayError> {
        let project = Uuid::parse_str(project_id)
            .map_err(|_| GatewayError::BadFrame("projectId: must be a UUID".into()))?;
        self.leave_room(Joined::Project(project)).await;
        self.outbox
            .send_text(protocol::left(&Room::project(project).name()));
        Ok(())
    }

    /// Leaves `joined` if in it (the hub first: nothing more of the room is queued after this),
    /// and clears the socket's presence there. True if it was in the room.
    pub(super) async fn leave_room(&mut self, joined: Joined) -> bool {
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
    pub(super) async fn confirm(&mut self, joined: Joined, scope: Scope, epoch: u64) {
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
    pub(super) fn told_left(&self, room: &str, reason: LeaveReason) {
        self.outbox
            .send_text(protocol::left_with_reason(room, reason.as_str()));
        metrics::room_left(reason.as_str());
    }

    /// Applies the server's commands (see `control`): leaves the rooms it was taken out of, with
    /// `left` and the reason. (A disconnect closes the outbox, which ends the socket by itself.)
    pub(super) async fn on_commands(&mut self) {
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

    pub(super) async fn cleanup(&mut self) {
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
