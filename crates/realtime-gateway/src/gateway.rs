//! The state one gateway instance shares between its sockets, its gRPC API and its background
//! tasks: settings, the JWT verifier, the hub of local rooms, bus handles, PostgreSQL, counters.
use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize},
    },
    time::Duration,
};

use ncy_bus::{BusPublisher, Presence};
use ncy_runtime::RedisPool;
use ncy_types::KeySpace;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{auth::Verifier, error::GatewayError, hub::Hub, settings::Limits};

/// Everything a socket or an RPC needs.
pub struct Gateway {
    /// Protocol limits.
    pub limits: Limits,
    /// Token verification.
    pub verifier: Verifier,
    /// Allowed `Origin`.
    pub frontend_url: String,
    /// Local rooms and fan-out.
    pub hub: Arc<Hub>,
    /// Publishing.
    pub publisher: BusPublisher,
    /// Room presence (reads and heartbeats).
    pub presence: Presence,
    /// Sockets' presence changes, batched.
    pub presence_writes: crate::presence_writes::PresenceWrites,
    /// Redis, for status reads/writes.
    pub redis: RedisPool,
    /// Key builders.
    pub keys: KeySpace,
    /// PostgreSQL.
    pub db: PgPool,
    /// (user, project) → member of the project's organization, briefly cached.
    pub membership: moka::future::Cache<(Uuid, Uuid), bool>,
    /// This instance's id.
    pub instance_id: String,
    /// Start time (ms).
    pub started_at_ms: i64,
    /// Fires when the instance starts draining.
    pub stop: CancellationToken,
    /// Open sockets.
    pub connections: AtomicUsize,
    /// Authenticated sockets.
    pub authenticated: AtomicUsize,
    /// Next connection id.
    pub next_conn_id: AtomicU64,
    /// Frames received.
    pub messages_in: AtomicU64,
    /// Messages published through this instance.
    pub messages_published: AtomicU64,
    /// Slow-consumer closes.
    pub slow_client_disconnects: AtomicU64,
    /// Sockets opened and closed, for returning their handshakes' memory after a burst.
    pub churn: Arc<ncy_runtime::memory::Churn>,
}

impl Gateway {
    /// A membership cache living `ttl`.
    pub fn membership_cache(ttl: Duration) -> moka::future::Cache<(Uuid, Uuid), bool> {
        moka::future::Cache::builder()
            .max_capacity(100_000)
            .time_to_live(ttl)
            .build()
    }

    /// Whether `user` is a member of the organization owning `project` (false for no project).
    pub async fn is_project_member(&self, user: Uuid, project: Uuid) -> Result<bool, GatewayError> {
        if let Some(hit) = self.membership.get(&(user, project)).await {
            return Ok(hit);
        }
        let member: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM projects p JOIN organization_members m \
             ON m.organization_id = p.organization_id WHERE p.id = $1 AND m.user_id = $2)",
        )
        .bind(project)
        .bind(user)
        .fetch_one(&self.db)
        .await?;
        self.membership.insert((user, project), member).await;
        Ok(member)
    }
}
