//! Telling a user something: a `notifications` row (what the app lists) and a realtime message in
//! the user's `user:<id>` room (what an open browser shows at once, and recovers after a reconnect),
//! the seed's `notificationService.create` + `realtimeService.sendToUser(userId, 'notification', …)`.
//!
//! The row comes first: if the publish fails the notification still exists and the app shows it on
//! its next load, so a publish failure is logged, not returned.
use ncy_bus::BusPublisher;
use ncy_store::notifications::{self, Notification};
use ncy_types::realtime::Room;
use serde_json::{Value, json};
use sqlx::PgPool;
use tracing::Instrument;
use uuid::Uuid;

/// The realtime event name of a notification.
pub const NOTIFICATION_EVENT: &str = "notification";

/// Writes notifications and pushes them to the user's room.
#[derive(Clone, Debug)]
pub struct Notifier {
    pub postgres: Option<PgPool>,
    pub bus: BusPublisher,
}

/// Why a notification could not be written.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The worker has no database configured.
    #[error("no database is configured (DATABASE_URL)")]
    NoDatabase,
    /// The user does not exist (no retry can fix it).
    #[error("user {0} does not exist")]
    UnknownUser(Uuid),
    /// The insert failed (database down, …).
    #[error("cannot write the notification: {0}")]
    Store(#[from] ncy_store::StoreError),
}

impl Notifier {
    /// Inserts the row, then publishes it as `event` (usually [`NOTIFICATION_EVENT`]) to
    /// `user:<user_id>`.
    pub async fn notify(
        &self,
        event: &str,
        user_id: Uuid,
        kind: &str,
        message: &str,
        metadata: &Value,
    ) -> Result<Notification, NotifyError> {
        let pg = self.postgres.as_ref().ok_or(NotifyError::NoDatabase)?;
        // A child of the job's attempt span when the job carries a trace context.
        let span = tracing::info_span!(
            "sql.insert",
            otel.kind = "client",
            otel.name = "INSERT notifications",
            db.system = "postgresql"
        );
        let row = notifications::insert(pg, user_id, kind, message, metadata)
            .instrument(span)
            .await
            .map_err(|e| {
                if notifications::is_foreign_key_violation(&e) {
                    NotifyError::UnknownUser(user_id)
                } else {
                    NotifyError::Store(e)
                }
            })?;
        self.push(user_id, event, &notification_json(&row)).await;
        Ok(row)
    }

    /// Publishes `event` with `data` to `user:<user_id>`; a failure is logged.
    pub async fn push(&self, user_id: Uuid, event: &str, data: &Value) {
        if let Err(e) = self.bus.publish(&Room::user(user_id), event, data).await {
            tracing::warn!(user_id = %user_id, event, error = %e, "cannot publish to the user's room");
        }
    }
}

/// The realtime shape of a notification (camelCase, as the app's REST API returns it).
pub fn notification_json(n: &Notification) -> Value {
    json!({
        "id": n.id,
        "userId": n.user_id,
        "type": n.kind,
        "message": n.message,
        "metadata": n.metadata,
        "createdAt": n.created_at_ms,
    })
}
