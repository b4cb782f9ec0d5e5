//! The migrations apply to an empty database, twice without harm, and the demo seed is idempotent.
use ncy_testkit::TestDatabase;

#[tokio::test]
async fn migrations_apply_and_seed_is_idempotent() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let pool = db.pool().await?;
    ncy_store::migrate(&pool).await?;
    ncy_store::migrate(&pool).await?; // already applied: no-op

    let first = ncy_store::seed(&pool).await?;
    let second = ncy_store::seed(&pool).await?;
    assert_eq!(first, second);
    assert_eq!(
        (
            first.users,
            first.organizations,
            first.projects,
            first.tasks
        ),
        (4, 2, 3, 7)
    );

    // The schema enforces what the services rely on.
    let bad_status = sqlx::query(
        "UPDATE tasks SET status = 'nonsense' WHERE id = '00000000-0000-4000-8000-000000000301'",
    )
    .execute(&pool)
    .await;
    assert!(
        bad_status.is_err(),
        "a task status outside the allowed set must be rejected"
    );

    let before: (chrono::DateTime<chrono::Utc>,) = sqlx::query_as(
        "SELECT updated_at FROM tasks WHERE id = '00000000-0000-4000-8000-000000000301'",
    )
    .fetch_one(&pool)
    .await?;
    sqlx::query(
        "UPDATE tasks SET status = 'done' WHERE id = '00000000-0000-4000-8000-000000000301'",
    )
    .execute(&pool)
    .await?;
    let after: (chrono::DateTime<chrono::Utc>,) = sqlx::query_as(
        "SELECT updated_at FROM tasks WHERE id = '00000000-0000-4000-8000-000000000301'",
    )
    .fetch_one(&pool)
    .await?;
    assert!(
        after.0 > before.0,
        "updated_at is maintained by the trigger"
    );
    pool.close().await;
    Ok(())
}
