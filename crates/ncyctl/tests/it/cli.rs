//! `ncyctl` run as a process, the way an operator runs it.
use std::time::Duration;

use ncy_testkit::{InProcess, TestDatabase, env_of, free_port, service_env, unique_prefix};

use crate::support::{Run, ncyctl, ncyctl_with};

/// `ncyctl args…` with `DATABASE_URL` set to `url`.
async fn with_database(args: &[&str], url: &str) -> Run {
    ncyctl_with(args, &[("DATABASE_URL", url)]).await
}

#[tokio::test]
async fn db_migrate_then_seed_loads_demo_data() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    with_database(&["db", "seed"], &db.url)
        .await
        .fails(1, &["ncyctl db migrate"]);

    let migrate = with_database(&["db", "migrate"], &db.url).await;
    assert!(
        migrate.ok().contains("schema is up to date"),
        "{migrate:#?}"
    );
    let counts = with_database(&["--json", "db", "seed"], &db.url)
        .await
        .json();
    assert_eq!(counts["users"], 4);
    assert_eq!(counts["projects"], 3);

    let pool = db.pool().await?;
    let (members,): (i64,) = sqlx::query_as("SELECT count(*) FROM organization_members")
        .fetch_one(&pool)
        .await?;
    assert_eq!(members, 5);
    pool.close().await;
    Ok(())
}

#[tokio::test]
async fn db_commands_explain_a_missing_or_unreachable_database() {
    // 2: clap's usage error.
    ncyctl(&["db", "migrate"])
        .await
        .fails(2, &["--database-url"]);
    let url = format!("postgres://postgres@127.0.0.1:{}/x", free_port());
    with_database(&["db", "migrate"], &url)
        .await
        .fails(69, &["cannot connect to the database"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_serving_and_unreachable() -> anyhow::Result<()> {
    let db = TestDatabase::migrated().await?;
    let settings =
        cache_gateway::Settings::load(&env_of(&service_env(&unique_prefix(), Some(&db.url))))?;
    let app = cache_gateway::Application::build(settings).await?;
    let grpc = app.local_addrs().grpc;
    let addr = format!("http://{grpc}");
    let running = InProcess::serving(grpc, |stop| app.run_until_stopped(stop)).await;

    assert_eq!(
        ncyctl(&["health", "--addr", &addr]).await.ok(),
        "server                     SERVING\n\
         ncy.cache.v1.CacheService  SERVING\n\
         dependency redis           UP\n\
         dependency postgres        UP\n"
    );
    let overall = ncyctl(&["health", "--addr", &addr, "--service", ""]).await;
    assert_eq!(overall.ok().trim(), "SERVING");
    let service = ncyctl(&[
        "--json",
        "health",
        "--addr",
        &addr,
        "--service",
        "ncy.cache.v1.CacheService",
    ])
    .await;
    assert_eq!(service.json()["status"], "SERVING");
    ncyctl(&["health", "--addr", &addr, "--service", "nope.Service"])
        .await
        .fails(1, &[]);

    running
        .stop(Duration::from_secs(10))
        .await
        .map_err(anyhow::Error::msg)?;
    // 69: the stopped service is unreachable.
    ncyctl(&["health", "--addr", &addr, "--timeout-secs", "1"])
        .await
        .fails(69, &[]);
    Ok(())
}
