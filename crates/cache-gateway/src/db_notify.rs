//! Invalidation from the database: the triggers of migration
//! `20261125000002_cache_invalidation_notify.sql` NOTIFY on every change to users, organizations,
//! organization_members, projects and tasks; this task LISTENs and invalidates what the change
//! affects, through the same keys and tags the loaders attach, so a row changed by any writer is
//! not served stale past the propagation delay.
//!
//! Map (table → what changed; the keys and tags each means are `entities.rs`'s): users → the user
//! (whose tag drops the member and task lists containing it); organizations → the org;
//! organization_members → the org's lists; projects → the project; tasks → the project's lists
//! (old and new project on a move).
//!
//! If the LISTEN connection drops, notifications in the gap are lost. L1 is emptied when that is
//! noticed, but L2 is not: an entry whose row changed during the gap is served until its TTL runs
//! out (or until an explicit invalidation), so a long outage of the listener is as stale as the
//! loaders' TTLs (`ttl_seconds` in `loaders.toml`).
use std::{sync::Arc, time::Duration};

use serde::Deserialize;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use crate::{
    cache::Core,
    entities::{EntityKind, Invalidation},
};

#[derive(Debug, Deserialize)]
struct Change {
    table: String,
    #[serde(default)]
    new: Option<Ids>,
    #[serde(default)]
    old: Option<Ids>,
}

#[derive(Debug, Default, Deserialize)]
struct Ids {
    id: Option<String>,
    organization_id: Option<String>,
    project_id: Option<String>,
}

/// What a change implies.
fn plan(change: &Change) -> Vec<Invalidation> {
    let mut out = Vec::new();
    for ids in [&change.new, &change.old].into_iter().flatten() {
        let uuid = |v: &Option<String>| {
            v.as_deref()
                .and_then(|s| ncy_types::parse_uuid("id", s).ok())
                .map(|u| u.to_string())
        };
        let (entity, id, lists_only) = match change.table.as_str() {
            "users" => (EntityKind::User, &ids.id, false),
            "organizations" => (EntityKind::Org, &ids.id, false),
            "organization_members" => (EntityKind::Org, &ids.organization_id, true),
            "projects" => (EntityKind::Project, &ids.id, false),
            "tasks" => (EntityKind::Project, &ids.project_id, true),
            _ => continue,
        };
        if let Some(id) = uuid(id) {
            out.push(if lists_only {
                entity.lists_changed(&id)
            } else {
                entity.changed(&id)
            });
        }
    }
    out.sort();
    out.dedup();
    out
}

async fn apply(core: &Core, payload: &str) {
    let Ok(change) = serde_json::from_str::<Change>(payload) else {
        tracing::warn!(payload, "unreadable cache NOTIFY payload");
        return;
    };
    for invalidation in plan(&change) {
        if let Err(e) = core.invalidate(&invalidation).await {
            tracing::warn!(error = %e, "database-driven invalidation failed");
        }
    }
}

/// LISTENs on `channel` until `cancel`, reconnecting with backoff.
pub async fn run(core: Arc<Core>, channel: String, cancel: CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let listener = async {
            let mut l = PgListener::connect_with(&core.pg).await?;
            l.listen(&channel).await?;
            Ok::<_, sqlx::Error>(l)
        };
        let mut listener = tokio::select! {
            () = cancel.cancelled() => return,
            l = listener => match l {
                Ok(l) => l,
                Err(e) => {
                    tracing::debug!(error = %e, "cache LISTEN failed; retrying");
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            },
        };
        backoff = Duration::from_millis(100);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                n = listener.try_recv() => match n {
                    Ok(Some(n)) => apply(&core, n.payload()).await,
                    // The connection dropped: notifications may have been missed.
                    Ok(None) => core.l1.clear(),
                    Err(e) => {
                        tracing::debug!(error = %e, "cache LISTEN connection lost");
                        core.l1.clear();
                        break;
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(json: &str) -> Vec<Invalidation> {
        plan(&serde_json::from_str(json).expect("json"))
    }

    fn keys(keys: &[String], tag: Option<String>) -> Invalidation {
        Invalidation {
            keys: keys.to_vec(),
            tag,
        }
    }

    #[test]
    fn maps_tables_to_keys_and_tags() {
        let u = "123e4567-e89b-12d3-a456-426614174000";
        let v = "00000000-0000-4000-8000-000000000001";
        let row = |table: &str, field: &str| {
            plan_of(&format!(
                r#"{{"table":"{table}","new":{{"{field}":"{u}"}}}}"#
            ))
        };
        assert_eq!(
            row("users", "id"),
            [keys(&[format!("user:{u}")], Some(format!("user:{u}")))]
        );
        assert_eq!(
            row("organizations", "id"),
            [keys(
                &[format!("org:{u}"), format!("org_members:{u}")],
                Some(format!("org:{u}"))
            )]
        );
        assert_eq!(
            row("organization_members", "organization_id"),
            [keys(&[format!("org_members:{u}")], None)]
        );
        assert_eq!(
            row("projects", "id"),
            [keys(
                &[format!("project:{u}"), format!("project_tasks:{u}")],
                Some(format!("project:{u}"))
            )]
        );
        assert_eq!(
            row("tasks", "project_id"),
            [keys(&[format!("project_tasks:{u}")], None)]
        );
        assert_eq!(row("invoices", "id"), []);
        assert_eq!(row("users", "organization_id"), [], "no id, nothing");

        // A task moved between projects: both lists; the same project twice: once.
        let moved = plan_of(&format!(
            r#"{{"table":"tasks","new":{{"id":"x","project_id":"{u}"}},"old":{{"project_id":"{v}"}}}}"#
        ));
        assert_eq!(
            moved,
            [
                keys(&[format!("project_tasks:{v}")], None),
                keys(&[format!("project_tasks:{u}")], None)
            ]
        );
        let stayed = plan_of(&format!(
            r#"{{"table":"tasks","new":{{"id":"x","project_id":"{u}"}},"old":{{"project_id":"{u}"}}}}"#
        ));
        assert_eq!(stayed, [keys(&[format!("project_tasks:{u}")], None)]);
    }
}
