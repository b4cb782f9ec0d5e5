//! `ncyctl db migrate|seed`: apply the schema and load the demo data set.
use std::time::Duration;

use clap::{Args, Subcommand};
use sqlx::postgres::PgPoolOptions;

use crate::Outcome;

/// Where the database is.
#[derive(Debug, Args)]
pub struct DbArgs {
    /// PostgreSQL URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
}

/// `ncyctl db …`
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Apply pending schema migrations (idempotent).
    Migrate(DbArgs),
    /// Load the demo data set: organizations, users, projects, tasks (idempotent).
    Seed(DbArgs),
}

pub async fn run(command: DbCommand, json: bool) -> Outcome {
    let (DbCommand::Migrate(args) | DbCommand::Seed(args)) = &command;
    let pool = match PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&args.database_url)
        .await
    {
        Ok(pool) => pool,
        Err(e) => {
            eprintln!("ncyctl: cannot connect to the database: {e}");
            return Outcome::Unavailable;
        }
    };
    let outcome = match command {
        DbCommand::Migrate(_) => match ncy_store::migrate(&pool).await {
            Ok(()) => {
                let applied = ncy_store::MIGRATOR.iter().count();
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"migrated": true, "migrations": applied})
                    );
                } else {
                    println!("schema is up to date ({applied} migrations)");
                }
                Outcome::Ok
            }
            Err(e) => {
                eprintln!("ncyctl: {e}");
                Outcome::Failed
            }
        },
        DbCommand::Seed(_) => match ncy_store::seed(&pool).await {
            Ok(s) => {
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"users": s.users, "organizations": s.organizations,
                            "projects": s.projects, "tasks": s.tasks, "notifications": s.notifications})
                    );
                } else {
                    println!(
                        "demo data loaded: {} users, {} organizations, {} projects, {} tasks, {} notifications",
                        s.users, s.organizations, s.projects, s.tasks, s.notifications
                    );
                }
                Outcome::Ok
            }
            Err(e) => {
                eprintln!("ncyctl: {e} (did you run `ncyctl db migrate`?)");
                Outcome::Failed
            }
        },
    };
    pool.close().await;
    outcome
}
