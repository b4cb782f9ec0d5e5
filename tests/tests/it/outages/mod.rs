//! Dependency outages end to end, through the public interfaces of all four services running
//! together: a PostgreSQL of the test's own stopped for 10 s while jobs write rows, and a Redis of
//! the test's own stopped for 10 s. What must hold (the table in `docs/operations.md`):
//!
//! - every instance stays **ready** (`/readyz` 200, gRPC health `""` SERVING): the outage is shared
//!   by every replica, so taking them all out of their Service would only turn a blip into a total
//!   outage; the dependency shows as down in `/readyz`'s body and the named services that cannot
//!   work without it report NOT_SERVING;
//! - what does not need the dependency goes on (cached and stale reads, sockets authenticating and
//!   joining rooms whose membership is cached, delivery of messages), what does answers
//!   `UNAVAILABLE` / an `unavailable` error frame at once rather than hanging;
//! - nothing is lost and nothing is dead-lettered because of the outage, and everything resumes
//!   when the dependency returns, without a restart.
//!
//! A module per dependency; the tenant the services serve, the readiness check and the bounded
//! requests both use are here.
mod postgres;
mod redis;

use std::time::Duration;

use crate::support::backbone::Backbone;
use ncy_proto::cache::v1 as cache_pb;
use ncy_runtime::LocalAddrs;
use ncy_testkit::{assert_eventually, grpc_health, http_get};
use serde_json::Value;
use tonic::Request;
use tonic_health::pb::health_check_response::ServingStatus;
use uuid::Uuid;

const SECRET: &str = "outage-test-secret-0123456789abcdef";
const OUTAGE: Duration = Duration::from_secs(10);
const WAIT: Duration = Duration::from_secs(30);

/// Waits until every instance reports `dependency` down in `/readyz` while answering 200 (ready)
/// and gRPC health `""` SERVING. The worker and scheduler only probe what they use.
async fn assert_ready_with(stack: &Backbone, dependency: &str, instances: &[LocalAddrs]) {
    for addrs in instances {
        let admin = addrs.admin;
        assert_eventually(
            &format!("{admin} ready with {dependency} down"),
            WAIT,
            || async move {
                match http_get(admin, "/readyz").await {
                    Ok((200, body)) => {
                        let v: Value = serde_json::from_str(&body).unwrap_or_default();
                        v["checks"][dependency]["status"] == "down" && v["degraded"] == true
                    }
                    _ => false,
                }
            },
        )
        .await;
        assert_eq!(
            grpc_health(addrs.grpc, "").await.ok(),
            Some(ServingStatus::Serving),
            "{} overall health",
            addrs.grpc
        );
    }
    stack.assert_none_restarted();
}

fn bounded<T>(msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.set_timeout(Duration::from_secs(10));
    r
}

fn load(kind: &str, id: Uuid, ttl: Option<i64>) -> Request<cache_pb::GetOrLoadRequest> {
    bounded(cache_pb::GetOrLoadRequest {
        kind: kind.into(),
        id: id.to_string(),
        ttl_seconds: ttl,
        force_refresh: false,
    })
}

/// A user in an organization with two projects.
struct Tenant {
    user: Uuid,
    org: Uuid,
    project: Uuid,
    other_project: Uuid,
}

async fn seed(pool: &sqlx::PgPool) -> anyhow::Result<Tenant> {
    let t = Tenant {
        user: Uuid::new_v4(),
        org: Uuid::new_v4(),
        project: Uuid::new_v4(),
        other_project: Uuid::new_v4(),
    };
    sqlx::query("INSERT INTO users (id, email, name) VALUES ($1, $2, 'Ada')")
        .bind(t.user)
        .bind(format!("{}@example.com", t.user.simple()))
        .execute(pool)
        .await?;
    sqlx::query("INSERT INTO organizations (id, name, slug) VALUES ($1, 'Acme', $2)")
        .bind(t.org)
        .bind(format!("acme-{}", &t.org.simple().to_string()[..12]))
        .execute(pool)
        .await?;
    sqlx::query("INSERT INTO organization_members (organization_id, user_id) VALUES ($1, $2)")
        .bind(t.org)
        .bind(t.user)
        .execute(pool)
        .await?;
    for p in [t.project, t.other_project] {
        sqlx::query("INSERT INTO projects (id, organization_id, name) VALUES ($1, $2, 'P')")
            .bind(p)
            .bind(t.org)
            .execute(pool)
            .await?;
    }
    Ok(t)
}
