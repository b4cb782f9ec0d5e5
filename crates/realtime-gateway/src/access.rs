//! Who may be in which room, checked against PostgreSQL — when a socket joins, when the database
//! says access changed, and periodically — and revocation of what a socket may no longer see.
//!
//! A `project:<id>` room is for members of the project's organization, an `org:<id>` room for
//! members of that organization. Access changes when a row of `organization_members` goes (or
//! changes user or organization) and when a project is deleted or moved to another organization.
//!
//! How a change reaches every instance: the triggers of migration
//! `20261125000002_cache_invalidation_notify.sql` NOTIFY every change to those tables (with the
//! ids involved) on `ncy_cache_invalidation` (setting `NCY_ACCESS_NOTIFY_CHANNEL`), and each
//! gateway instance LISTENs. For a batch of notifications it drops the cached positive answers of
//! the users and projects involved, then re-checks the affected memberships of its local sockets in
//! one query and takes each socket out of what it may no longer see: `left` with reason `revoked`,
//! and nothing more of that room. Whenever the LISTEN connection is (re)established, every local
//! membership is re-checked and the cache emptied, since changes made meanwhile were not notified.
//! As a backstop against anything else missed, every membership is re-checked every
//! `NCY_ACCESS_RECHECK_SECS` (60 s).
//!
//! A join that raced a re-check (its answer read before the change, its membership added after the
//! re-check looked) is caught by the socket itself: each re-check bumps `Gateway::access_epoch`
//! before and after, and a join that sees it moved asks the database again, uncached.
//!
//! A database error never revokes: only a definite "not a member" does.
use std::{
    collections::HashSet,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use ncy_types::Room;
use serde::Deserialize;
use sqlx::{PgPool, postgres::PgListener};
use uuid::Uuid;

use crate::{
    control::{self, LeaveReason},
    gateway::{Gateway, Scope},
};

/// Memberships checked per query.
const CHUNK: usize = 5000;

/// Whether `user` is allowed in `scope` now (no cache), by the membership rule of `ncy-store`.
pub async fn is_member(
    db: &PgPool,
    user: Uuid,
    scope: Scope,
) -> Result<bool, ncy_store::StoreError> {
    let member = match scope {
        Scope::Project(p) => ncy_store::access::project_member(db, p, user).await?,
        Scope::Org(o) => ncy_store::access::organization_member(db, o, user).await?,
    };
    Ok(member == Some(true))
}

/// Of `pairs`, the ones the database no longer allows (two queries, whatever their number).
pub async fn denied(
    db: &PgPool,
    pairs: &[(Uuid, Scope)],
) -> Result<Vec<(Uuid, Scope)>, sqlx::Error> {
    let mut out = Vec::new();
    for (is_project, sql) in [
        (
            true,
            "SELECT t.u, t.s FROM unnest($1::uuid[], $2::uuid[]) AS t(u, s) WHERE NOT EXISTS \
             (SELECT 1 FROM projects p JOIN organization_members m \
              ON m.organization_id = p.organization_id AND m.user_id = t.u WHERE p.id = t.s)",
        ),
        (
            false,
            "SELECT t.u, t.s FROM unnest($1::uuid[], $2::uuid[]) AS t(u, s) WHERE NOT EXISTS \
             (SELECT 1 FROM organization_members m \
              WHERE m.organization_id = t.s AND m.user_id = t.u)",
        ),
    ] {
        let (users, ids): (Vec<Uuid>, Vec<Uuid>) = pairs
            .iter()
            .filter_map(|(u, s)| match (*s, is_project) {
                (Scope::Project(p), true) | (Scope::Org(p), false) => Some((*u, p)),
                _ => None,
            })
            .unzip();
        if users.is_empty() {
            continue;
        }
        let rows: Vec<(Uuid, Uuid)> = sqlx::query_as(sql)
            .bind(users)
            .bind(ids)
            .fetch_all(db)
            .await?;
        out.extend(rows.into_iter().map(|(u, id)| {
            let scope = if is_project {
                Scope::Project(id)
            } else {
                Scope::Org(id)
            };
            (u, scope)
        }));
    }
    Ok(out)
}

/// The scope of a room access is checked for (`project:` and `org:` rooms).
pub fn scope_of(room: &str) -> Option<Scope> {
    if let Some(id) = room.strip_prefix("project:") {
        return Uuid::parse_str(id).ok().map(Scope::Project);
    }
    room.strip_prefix("org:")
        .and_then(|id| Uuid::parse_str(id).ok())
        .map(Scope::Org)
}

impl Scope {
    /// The room this scope guards.
    pub fn room(self) -> String {
        match self {
            Self::Project(p) => Room::project(p).name(),
            Self::Org(o) => Room::org(o).name(),
        }
    }
}

/// What a batch of database changes may have taken away.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Anything (notifications may have been missed).
    everything: bool,
    /// Users who lost (or may have lost) an organization membership.
    users: HashSet<Uuid>,
    /// Projects deleted or moved to another organization.
    projects: HashSet<Uuid>,
}

/// One NOTIFY payload of the cache-invalidation triggers.
#[derive(Debug, Deserialize)]
struct Change {
    table: String,
    op: String,
    #[serde(default)]
    new: Option<Ids>,
    #[serde(default)]
    old: Option<Ids>,
}

#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
struct Ids {
    id: Option<Uuid>,
    organization_id: Option<Uuid>,
    user_id: Option<Uuid>,
}

impl Changes {
    /// Every membership is in doubt.
    pub fn everything() -> Self {
        Self {
            everything: true,
            ..Self::default()
        }
    }

    fn is_empty(&self) -> bool {
        !self.everything && self.users.is_empty() && self.projects.is_empty()
    }

    fn concerns(&self, user: Uuid, scope: Scope) -> bool {
        self.everything
            || self.users.contains(&user)
            || matches!(scope, Scope::Project(p) if self.projects.contains(&p))
    }

    /// Adds what the change in NOTIFY `payload` may have taken away (inserts take nothing away).
    pub fn note(&mut self, payload: &str) {
        let change = match serde_json::from_str::<Change>(payload) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, payload, "unreadable access NOTIFY payload");
                return;
            }
        };
        let (old, new) = (
            change.old.unwrap_or_default(),
            change.new.unwrap_or_default(),
        );
        let gone = change.op == "DELETE";
        match change.table.as_str() {
            "organization_members" if gone || change.op == "UPDATE" => {
                let moved =
                    (old.user_id, old.organization_id) != (new.user_id, new.organization_id);
                if let Some(u) = old.user_id.filter(|_| gone || moved) {
                    self.users.insert(u);
                }
            }
            "projects" if gone || change.op == "UPDATE" => {
                if let Some(p) = old
                    .id
                    .filter(|_| gone || old.organization_id != new.organization_id)
                {
                    self.projects.insert(p);
                }
            }
            _ => {}
        }
    }
}

/// Drops the cached answers `changes` may have made wrong.
fn invalidate(gw: &Gateway, changes: &Changes) {
    if changes.everything {
        gw.membership.invalidate_all();
        return;
    }
    let (users, projects) = (changes.users.clone(), changes.projects.clone());
    let dropped = gw
        .membership
        .invalidate_entries_if(move |(user, scope), ()| {
            users.contains(user) || matches!(scope, Scope::Project(p) if projects.contains(p))
        });
    if let Err(e) = dropped {
        tracing::warn!(error = %e, "membership cache: cannot invalidate; emptying it");
        gw.membership.invalidate_all();
    }
}

/// Re-checks the local memberships `changes` concerns and revokes what the database no longer
/// allows; how many socket memberships were revoked.
pub async fn recheck(gw: &Gateway, changes: &Changes) -> Result<usize, sqlx::Error> {
    if changes.is_empty() {
        return Ok(0);
    }
    if changes.everything {
        // While the database is down no membership can change, and the cached positive answers
        // are what lets sockets join rooms during the outage: keep them. (The LISTEN connection
        // drops with the database and checks everything again once it is back.)
        sqlx::query("SELECT 1").execute(&gw.db).await?;
    }
    gw.access_epoch.fetch_add(1, Ordering::SeqCst);
    invalidate(gw, changes);
    let mut pairs = HashSet::new();
    for (room, user, _) in gw.hub.memberships() {
        if let (Some(scope), Ok(user)) = (scope_of(&room), Uuid::parse_str(&user))
            && changes.concerns(user, scope)
        {
            pairs.insert((user, scope));
        }
    }
    let pairs: Vec<_> = pairs.into_iter().collect();
    let mut revoked = 0;
    for chunk in pairs.chunks(CHUNK) {
        for (user, scope) in denied(&gw.db, chunk).await? {
            gw.membership.invalidate(&(user, scope)).await;
            revoked += control::leave(gw, user, &scope.room(), LeaveReason::Revoked);
        }
    }
    // A positive answer loaded from a read made just before the change committed may have been
    // cached after the first invalidation: drop it again now that the database said no.
    invalidate(gw, changes);
    gw.access_epoch.fetch_add(1, Ordering::SeqCst);
    if revoked > 0 {
        tracing::info!(revoked, "access revoked");
    }
    Ok(revoked)
}

async fn recheck_logged(gw: &Gateway, changes: &Changes) {
    if let Err(e) = recheck(gw, changes).await {
        tracing::warn!(error = %e, "access re-check failed; the next one retries");
    }
}

/// LISTENs for access changes until the instance stops, reconnecting with backoff.
pub async fn listen(gw: Arc<Gateway>, channel: String) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let connect = async {
            let mut l = PgListener::connect_with(&gw.db).await?;
            l.listen(&channel).await?;
            Ok::<_, sqlx::Error>(l)
        };
        let mut listener = tokio::select! {
            () = gw.stop.cancelled() => return,
            l = connect => match l {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "access LISTEN failed; retrying");
                    tokio::select! {
                        () = gw.stop.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            },
        };
        backoff = Duration::from_millis(100);
        // Changes made before LISTEN took effect were not notified.
        recheck_logged(&gw, &Changes::everything()).await;
        loop {
            let mut changes = Changes::default();
            tokio::select! {
                () = gw.stop.cancelled() => return,
                n = listener.try_recv() => match n {
                    Ok(Some(n)) => {
                        changes.note(n.payload());
                        while let Some(n) = listener.next_buffered() {
                            changes.note(n.payload());
                        }
                    }
                    // The connection dropped: reconnect, then check everything.
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "access LISTEN connection lost");
                        break;
                    }
                },
            }
            recheck_logged(&gw, &changes).await;
        }
    }
}

/// Re-checks every local membership every `interval` until the instance stops.
pub async fn backstop(gw: Arc<Gateway>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            () = gw.stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        recheck_logged(&gw, &Changes::everything()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_name_what_may_be_gone() {
        let (u, o, p) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let mut c = Changes::default();
        c.note(&format!(
            r#"{{"table":"organization_members","op":"INSERT","new":{{"organization_id":"{o}","user_id":"{u}"}},"old":null}}"#
        ));
        c.note(&format!(
            r#"{{"table":"projects","op":"UPDATE","new":{{"id":"{p}","organization_id":"{o}"}},"old":{{"id":"{p}","organization_id":"{o}"}}}}"#
        ));
        c.note(r#"{"table":"tasks","op":"DELETE","new":null,"old":{"id":"x"}}"#);
        c.note("not json");
        assert!(c.is_empty(), "{c:?}");
        c.note(&format!(
            r#"{{"table":"organization_members","op":"DELETE","new":null,"old":{{"organization_id":"{o}","user_id":"{u}"}}}}"#
        ));
        let q = Uuid::new_v4();
        c.note(&format!(
            r#"{{"table":"projects","op":"UPDATE","new":{{"id":"{p}","organization_id":"{q}"}},"old":{{"id":"{p}","organization_id":"{o}"}}}}"#
        ));
        assert_eq!(c.users, HashSet::from([u]));
        assert_eq!(c.projects, HashSet::from([p]));
        assert!(c.concerns(u, Scope::Org(q)));
        assert!(c.concerns(Uuid::new_v4(), Scope::Project(p)));
        assert!(!c.concerns(Uuid::new_v4(), Scope::Org(o)));
    }

    #[test]
    fn rooms_map_to_scopes() {
        let p = Uuid::new_v4();
        assert_eq!(scope_of(&format!("project:{p}")), Some(Scope::Project(p)));
        assert_eq!(scope_of(&format!("org:{p}")), Some(Scope::Org(p)));
        assert_eq!(scope_of(&format!("user:{p}")), None);
        assert_eq!(scope_of("broadcast"), None);
        assert_eq!(Scope::Project(p).room(), format!("project:{p}"));
    }
}
