//! Invalidation from the database: the triggers of migration
//! `20261125000002_cache_invalidation_notify.sql` NOTIFY on every change to users, organizations,
//! organization_members, projects and tasks; this task LISTENs and invalidates what the change
//! affects, through the same keys and tags the loaders attach, so a row changed by any writer is
//! not served stale past the propagation delay.
//!
//! Map (table → invalidation): users → entity user (key `user:X`, tag `user:X`, which drops the
//! member and task lists containing X); organizations → entity org; organization_members → key
//! `org_members:<org>`; projects → entity project; tasks → key `project_tasks:<project>` (old and
//! new project on a move). If the LISTEN connection drops, notifications in the gap are lost, so
//! L1 is emptied when it reconnects (L2 entries then heal by TTL; see the README's weaknesses).
use std::{sync::Arc, time::Duration};

use serde::Deserialize;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use crate::cache::Core;

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

/// (own keys, tag) invalidations a change implies.
fn plan(change: &Change) -> Vec<(Vec<String>, Option<String>)> {
    let mut out = Vec::new();
    for ids in [&change.new, &change.old].into_iter().flatten() {
        let uuid = |v: &Option<String>| {
            v.as_deref()
                .and_then(|s| ncy_types::parse_uuid("id", s).ok())
                .map(|u| u.to_string())
        };
        match change.table.as_str() {
            "users" => {
                if let Some(id) = uuid(&ids.id) {
                    out.push((vec![format!("user:{id}")], Some(format!("user:{id}"))));
                }
            }
            "organizations" => {
                if let Some(id) = uuid(&ids.id) {
                    out.push((
                        vec![format!("org:{id}"), format!("org_members:{id}")],
                        Some(format!("org:{id}")),
                    ));
                }
            }
            "organization_members" => {
                if let Some(org) = uuid(&ids.organization_id) {
                    out.push((vec![format!("org_members:{org}")], None));
                }
            }
            "projects" => {
                if let Some(id) = uuid(&ids.id) {
                    out.push((
                        vec![format!("project:{id}"), format!("project_tasks:{id}")],
                        Some(format!("project:{id}")),
                    ));
                }
            }
            "tasks" => {
                if let Some(p) = uuid(&ids.project_id) {
                    out.push((vec![format!("project_tasks:{p}")], None));
                }
            }
            _ => {}
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
    for (keys, tag) in plan(&change) {
        let result = match tag {
            Some(tag) => core.invalidate_entity(&keys, &tag).await,
            None => {
                let mut r = Ok(());
                for k in keys {
                    if let Err(e) = core.delete(&core.keys.cache_key(&k)).await {
                        r = Err(e);
                    }
                }
                r
            }
        };
        if let Err(e) = result {
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

    #[test]
    fn maps_tables_to_keys_and_tags() {
        let u = "123e4567-e89b-12d3-a456-426614174000";
        let change: Change = serde_json::from_str(&format!(
            r#"{{"table":"tasks","new":{{"id":"x","project_id":"{u}"}},"old":{{"project_id":"{u}"}}}}"#
        ))
        .expect("json");
        assert_eq!(
            plan(&change),
            vec![(vec![format!("project_tasks:{u}")], None)]
        );
        let change: Change =
            serde_json::from_str(&format!(r#"{{"table":"users","new":{{"id":"{u}"}}}}"#))
                .expect("json");
        assert_eq!(
            plan(&change),
            vec![(vec![format!("user:{u}")], Some(format!("user:{u}")))]
        );
    }
}
