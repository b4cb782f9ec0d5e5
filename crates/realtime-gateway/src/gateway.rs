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
    /// (user, scope) answers "member", briefly cached. Only yes is cached (a no would keep a user
    /// just added out for the cache's lifetime); `access` drops entries when access changes.
    pub membership: moka::future::Cache<(Uuid, Scope), ()>,
    /// Authenticated sockets by user, for server-side decisions about a user.
    pub sessions: crate::sessions::Sessions,
    /// Bumped before and after every access re-check, so a join that raced one can tell it must
    /// check again (see `Conn::confirm`).
    pub access_epoch: AtomicU64,
    /// This instance's id.
    pub instance_id: String,
    /// Start time (ms).
    pub started_at_ms: i64,
    /// Fires when the instance starts draining.
    pub stop: CancellationToken,
    /// Open sockets.
    pub connections: AtomicUsize,
    /// Woken when the last open socket closes (the drain waits on it).
    pub all_closed: tokio::sync::Notify,
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

/// What a membership answer is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The project's room: a member of the project's organization.
    Project(Uuid),
    /// The organization's room: a member of it.
    Org(Uuid),
}

impl Gateway {
    /// A membership cache living `ttl` (entries can be dropped by predicate, for `access`).
    pub fn membership_cache(ttl: Duration) -> moka::future::Cache<(Uuid, Scope), ()> {
        moka::future::Cache::builder()
            .max_capacity(100_000)
            .time_to_live(ttl)
            .support_invalidation_closures()
            .build()
    }

    /// Whether `user` is a member of the organization owning `project` (false for no project).
    pub async fn is_project_member(&self, user: Uuid, project: Uuid) -> Result<bool, GatewayError> {
        self.is_member(user, Scope::Project(project)).await
    }

    /// Whether `user` is a member of organization `org`.
    pub async fn is_org_member(&self, user: Uuid, org: Uuid) -> Result<bool, GatewayError> {
        self.is_member(user, Scope::Org(org)).await
    }

    /// Concurrent checks of one (user, scope) share one query; only a yes is cached.
    async fn is_member(&self, user: Uuid, scope: Scope) -> Result<bool, GatewayError> {
        let loaded = self
            .membership
            .try_get_with((user, scope), async {
                match crate::access::is_member(&self.db, user, scope).await {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(None),
                    Err(e) => Err(Some(Arc::new(e))),
                }
            })
            .await;
        match loaded {
            Ok(()) => Ok(true),
            Err(e) => match e.as_ref() {
                None => Ok(false),
                // Shared by every waiter: each gets the same error.
                Some(e) => Err(GatewayError::Db(e.clone())),
            },
        }
    }
}
