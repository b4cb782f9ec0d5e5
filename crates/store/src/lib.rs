//! ncy-store: the PostgreSQL schema of the platform (sqlx migrations under `migrations/`, embedded
//! at build time so no database is needed to compile), the demo data set, and the queries several
//! services share.
//!
//! Services never migrate on start: `ncyctl db migrate` (locally) and the helm migrations Job
//! (on Kubernetes) apply the schema, so replicas starting together never race on DDL.
use sqlx::PgPool;

pub mod access;
pub mod notifications;
pub mod reports;

/// The embedded migrations.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Demo data: fixed ids, idempotent.
const SEED_SQL: &str = include_str!("seed.sql");

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A migration failed or the database's history disagrees with this build.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl StoreError {
    /// Whether the database was unreachable or not accepting work for a moment (retrying later
    /// can succeed), rather than refusing this query: see [`is_unavailable`].
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Database(e) => is_unavailable(e),
            StoreError::Migrate(_) => false,
        }
    }
}

/// SQLSTATE codes of a server that is there but not serving for a moment: shutting down
/// (`57P01` admin, `57P02` crash), starting up (`57P03`), out of connection slots (`53300`).
/// Class `08` (connection exception) is matched as a class.
const UNAVAILABLE_SQLSTATES: [&str; 4] = ["57P01", "57P02", "57P03", "53300"];

/// Whether `e` is the database being unreachable or unavailable, told by the error's kind and
/// SQLSTATE, never its text: an I/O error (refused, reset, timed out), no connection from the pool
/// in time or the pool closed, the connection's worker gone, or a server shutting down, starting
/// or out of connection slots (class `08` and [`UNAVAILABLE_SQLSTATES`]). A query the server
/// answered with an error of its own (a constraint, a syntax error, a missing row) is not.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || UNAVAILABLE_SQLSTATES.contains(&c.as_ref())),
        _ => false,
    }
}

/// Applies every pending migration (idempotent; concurrent runners serialise on an advisory lock).
pub async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    MIGRATOR.run(pool).await?;
    tracing::info!(migrations = MIGRATOR.iter().count(), "schema is up to date");
    Ok(())
}

/// Loads the demo data set (idempotent).
pub async fn seed(pool: &PgPool) -> Result<SeedSummary, StoreError> {
    sqlx::raw_sql(SEED_SQL).execute(pool).await?;
    let row: (i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM organizations),
                (SELECT count(*) FROM projects), (SELECT count(*) FROM tasks),
                (SELECT count(*) FROM notifications)",
    )
    .fetch_one(pool)
    .await?;
    Ok(SeedSummary {
        users: row.0,
        organizations: row.1,
        projects: row.2,
        tasks: row.3,
        notifications: row.4,
    })
}

/// Row counts after seeding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedSummary {
    /// Users.
    pub users: i64,
    /// Organizations.
    pub organizations: i64,
    /// Projects.
    pub projects: i64,
    /// Tasks.
    pub tasks: i64,
    /// Notifications.
    pub notifications: i64,
}
