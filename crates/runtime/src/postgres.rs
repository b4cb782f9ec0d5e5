//! The PostgreSQL pool: created lazily so a service starts while the database is still down and
//! reports not-ready until it answers.
use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::{
    Connection, PgConnection,
    postgres::{PgConnectOptions, PgPool, PgPoolOptions},
};

use crate::{error::RuntimeError, settings::PostgresSettings};

/// Builds the pool without connecting.
pub fn pool(settings: &PostgresSettings, application_name: &str) -> Result<PgPool, RuntimeError> {
    let options: PgConnectOptions = settings
        .url
        .expose_secret()
        .parse()
        .map_err(|e: sqlx::Error| RuntimeError::Postgres(e.to_string()))?;
    Ok(PgPoolOptions::new()
        .max_connections(settings.pool_size)
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy_with(options.application_name(application_name)))
}

/// `SELECT 1`, for readiness probes.
pub async fn ping(pool: &PgPool) -> Result<(), RuntimeError> {
    sqlx::query("SELECT 1")
        .execute(pool)
        .await
        .map(|_| ())
        .map_err(|e| RuntimeError::Postgres(e.to_string()))
}

/// `SELECT 1` over a new connection outside the pool, for readiness: when the pool fails and this
/// answers, the fault is this instance's pool, not the database (see [`crate::readiness`]).
pub async fn ping_fresh(options: &PgConnectOptions) -> Result<(), RuntimeError> {
    let mut conn = PgConnection::connect_with(options)
        .await
        .map_err(|e| RuntimeError::Postgres(e.to_string()))?;
    let result = sqlx::query("SELECT 1").execute(&mut conn).await;
    let _ = conn.close().await;
    result
        .map(|_| ())
        .map_err(|e| RuntimeError::Postgres(e.to_string()))
}
