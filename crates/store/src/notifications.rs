//! The `notifications` table: what the worker's processors and alerts write for a user, and what
//! the cleanup job deletes.
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::StoreError;

/// A stored notification.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub id: Uuid,
    pub user_id: Uuid,
    pub kind: String,
    pub message: String,
    pub metadata: Value,
    /// Creation time, ms since the Unix epoch.
    pub created_at_ms: i64,
}

/// Inserts a notification row for `user_id` and returns it. A user that does not exist is a
/// [`StoreError::Database`] (foreign-key violation); callers decide whether that is retryable.
pub async fn insert(
    pool: &PgPool,
    user_id: Uuid,
    kind: &str,
    message: &str,
    metadata: &Value,
) -> Result<Notification, StoreError> {
    let (id, created_at_ms): (Uuid, i64) = sqlx::query_as(
        "INSERT INTO notifications (user_id, type, message, metadata) VALUES ($1, $2, $3, $4)
         RETURNING id, (extract(epoch FROM created_at) * 1000)::bigint",
    )
    .bind(user_id)
    .bind(kind)
    .bind(message)
    .bind(metadata)
    .fetch_one(pool)
    .await?;
    Ok(Notification {
        id,
        user_id,
        kind: kind.to_owned(),
        message: message.to_owned(),
        metadata: metadata.clone(),
        created_at_ms,
    })
}

/// True when `err` is a foreign-key violation (e.g. the user of a notification does not exist).
pub fn is_foreign_key_violation(err: &StoreError) -> bool {
    matches!(err, StoreError::Database(sqlx::Error::Database(db)) if db.code().as_deref() == Some("23503"))
}
