//! Who is on the socket: `authenticate` verifies the token and joins the rooms it entitles the
//! user to (the `org:` room only for a member), and `refresh` adopts a fresh token of the same user
//! and re-evaluates every room against it, leaving what it may no longer see (`revoked`).
use std::{collections::HashMap, sync::atomic::Ordering};

use uuid::Uuid;

use super::{Conn, Joined};
use crate::{
    auth::Identity,
    control::LeaveReason,
    error::{CloseReason, GatewayError},
    gateway::Scope,
    protocol::{self, Position},
};

impl Conn {
    pub(super) async fn authenticate(&mut self, token: &str, since: &HashMap<String, Position>) {
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
    pub(super) async fn refresh(&mut self, token: &str) -> Result<(), GatewayError> {
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
}
