//! The `notifications` table: what the worker's processors and alerts write for a user, and what
//! the cleanup job deletes.
use std::time::Duration;

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

/// Rows one `DELETE` removes at most, so a large cleanup never holds long locks.
pub const DELETE_BATCH: i64 = 5_000;

/// Deletes read notifications (`read_at` set) created more than `older_than` ago (by the database's
/// clock), in batches of [`DELETE_BATCH`]; unread ones stay whatever their age. Returns how many
/// rows were deleted.
pub async fn delete_read_older_than(
    pool: &PgPool,
    older_than: Duration,
) -> Result<u64, StoreError> {
    let ms = i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX);
    let mut deleted = 0;
    loop {
        let n = sqlx::query(
            "DELETE FROM notifications WHERE id IN (
                 SELECT id FROM notifications
                 WHERE read_at IS NOT NULL AND created_at < now() - $1 * interval '1 millisecond'
                 LIMIT $2)",
        )
        .bind(ms)
        .bind(DELETE_BATCH)
        .execute(pool)
        .await?
        .rows_affected();
        deleted += n;
        if n < u64::try_from(DELETE_BATCH).unwrap_or(u64::MAX) {
            return Ok(deleted);
        }
    }
}

/// True when `err` is a foreign-key violation (e.g. the user of a notification does not exist).
pub fn is_foreign_key_violation(err: &StoreError) -> bool {
    matches!(err, StoreError::Database(sqlx::Error::Database(db)) if db.code().as_deref() == Some("23503"))
}
