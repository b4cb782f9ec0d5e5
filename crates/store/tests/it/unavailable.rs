//! `StoreError::is_unavailable` against a real PostgreSQL (and a port nothing listens on): what the
//! worker postpones jobs for (the database unreachable, its pool closed, the server ending the
//! connection) and what it does not (the server refusing the query itself).
use std::time::Duration;

use ncy_store::{StoreError, notifications};
use ncy_testkit::TestDatabase;
use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;

async fn insert(pool: &sqlx::PgPool, user: Uuid) -> Result<(), StoreError> {
    notifications::insert(pool, user, "T", "hello", &json!({}))
        .await
        .map(|_| ())
}

#[tokio::test]
async fn an_unreachable_database_or_a_closed_pool_is_unavailable() -> anyhow::Result<()> {
    let port = ncy_testkit::free_port();
    let nowhere = PgPoolOptions::new()
        .acquire_timeout(Duration::from_secs(1))
        .connect_lazy(&format!("postgres://postgres@127.0.0.1:{port}/postgres"))?;
    let err = insert(&nowhere, Uuid::new_v4())
        .await
        .expect_err("nothing listens");
    assert!(err.is_unavailable(), "{err:?}");

    let db = TestDatabase::migrated().await?;
    let pool = db.pool().await?;
    pool.close().await;
    let err = insert(&pool, Uuid::new_v4())
        .await
        .expect_err("closed pool");
    assert!(err.is_unavailable(), "{err:?}");
    Ok(())
}

#[tokio::test]
async fn a_server_ending_the_connection_is_unavailable() -> anyhow::Result<()> {
    let db = TestDatabase::migrated().await?;
    let pool = db.pool().await?;
    // What a server restart does to a session: FATAL 57P01 (or the socket closing under it).
    let err = sqlx::query("SELECT pg_terminate_backend(pg_backend_pid())")
        .execute(&pool)
        .await
        .map_err(StoreError::from)
        .expect_err("the session is terminated");
    assert!(err.is_unavailable(), "{err:?}");
    Ok(())
}

#[tokio::test]
async fn errors_of_the_query_itself_are_not_unavailable() -> anyhow::Result<()> {
    let db = TestDatabase::migrated().await?;
    let pool = db.pool().await?;
    let err = insert(&pool, Uuid::new_v4())
        .await
        .expect_err("no such user");
    assert!(notifications::is_foreign_key_violation(&err), "{err:?}");
    assert!(!err.is_unavailable(), "{err:?}");
    let err = StoreError::from(
        sqlx::query("SELEC 1")
            .execute(&pool)
            .await
            .expect_err("syntax"),
    );
    assert!(!err.is_unavailable(), "{err:?}");
    let err = StoreError::from(
        sqlx::query_scalar::<_, i64>("SELECT 1 WHERE false")
            .fetch_one(&pool)
            .await
            .expect_err("no row"),
    );
    assert!(!err.is_unavailable(), "{err:?}");
    Ok(())
}
