//! The notifications queries against a real, migrated database.
use std::time::Duration;

use ncy_store::notifications;
use ncy_testkit::TestDatabase;
use serde_json::json;
use uuid::Uuid;

const DAY: Duration = Duration::from_secs(86_400);

#[tokio::test]
async fn delete_read_older_than_keeps_unread_and_recent_rows() -> anyhow::Result<()> {
    let db = TestDatabase::migrated().await?;
    let pool = db.pool().await?;
    let user = Uuid::new_v4();
    sqlx::query("INSERT INTO users (id, email, name) VALUES ($1, 'n@example.com', 'N')")
        .bind(user)
        .execute(&pool)
        .await?;
    // (message, created days ago, read days ago or NULL)
    let rows = [
        ("old read", 40, Some(35)),
        ("old read 2", 31, Some(1)),
        ("old unread", 90, None),
        ("recent read", 5, Some(4)),
        ("recent unread", 1, None),
    ];
    for (message, created, read) in rows {
        sqlx::query(
            "INSERT INTO notifications (user_id, type, message, created_at, read_at)
             VALUES ($1, 'T', $2, now() - make_interval(days => $3),
                     now() - make_interval(days => $4))",
        )
        .bind(user)
        .bind(message)
        .bind(created)
        .bind(read)
        .execute(&pool)
        .await?;
    }
    let inserted = notifications::insert(&pool, user, "T", "fresh", &json!({})).await?;
    assert_eq!(inserted.user_id, user);

    let deleted = notifications::delete_read_older_than(&pool, 30 * DAY).await?;
    assert_eq!(deleted, 2);
    let mut left: Vec<String> =
        sqlx::query_scalar("SELECT message FROM notifications WHERE user_id = $1")
            .bind(user)
            .fetch_all(&pool)
            .await?;
    left.sort();
    assert_eq!(
        left,
        ["fresh", "old unread", "recent read", "recent unread"]
    );
    assert_eq!(
        notifications::delete_read_older_than(&pool, 30 * DAY).await?,
        0
    );
    // A shorter retention reaches the recent read one, never the unread ones.
    assert_eq!(
        notifications::delete_read_older_than(&pool, 2 * DAY).await?,
        1
    );
    pool.close().await;
    Ok(())
}
