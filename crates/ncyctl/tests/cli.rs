//! `ncyctl` run as a process, the way an operator runs it.
use std::{process::Command, time::Duration};

use ncy_testkit::{InProcess, TestDatabase, env_of, free_port, service_env, unique_prefix};

fn ncyctl(args: &[&str], database_url: Option<&str>) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ncyctl"));
    cmd.args(args)
        .env_remove("DATABASE_URL")
        .env_remove("NCY_ADDR");
    if let Some(url) = database_url {
        cmd.env("DATABASE_URL", url);
    }
    let out = cmd.output().expect("run ncyctl");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn db_migrate_then_seed_loads_demo_data() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let (code, _, stderr) = ncyctl(&["db", "seed"], Some(&db.url));
    assert_eq!(code, Some(1), "seeding before migrating fails: {stderr}");
    assert!(stderr.contains("ncyctl db migrate"), "{stderr}");

    let (code, stdout, stderr) = ncyctl(&["db", "migrate"], Some(&db.url));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("schema is up to date"), "{stdout}");
    let (code, stdout, _) = ncyctl(&["--json", "db", "seed"], Some(&db.url));
    assert_eq!(code, Some(0));
    let counts: serde_json::Value = serde_json::from_str(stdout.trim())?;
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
    let (code, _, stderr) = ncyctl(&["db", "migrate"], None);
    assert_eq!(code, Some(2), "clap usage error: {stderr}");
    assert!(stderr.contains("--database-url"), "{stderr}");
    let url = format!("postgres://postgres@127.0.0.1:{}/x", free_port());
    let (code, _, stderr) = ncyctl(&["db", "migrate"], Some(&url));
    assert_eq!(code, Some(69), "{stderr}");
    assert!(
        stderr.contains("cannot connect to the database"),
        "{stderr}"
    );
}

// Multi-threaded: `ncyctl` runs as a blocking child process while the in-process server answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_serving_and_unreachable() -> anyhow::Result<()> {
    let db = TestDatabase::migrated().await?;
    let settings =
        cache_gateway::Settings::load(&env_of(&service_env(&unique_prefix(), Some(&db.url))))?;
    let app = cache_gateway::Application::build(settings).await?;
    let grpc = app.local_addrs().grpc;
    let addr = format!("http://{grpc}");
    let running = InProcess::serving(grpc, |stop| app.run_until_stopped(stop)).await;

    let (code, stdout, stderr) = ncyctl(&["health", "--addr", &addr], None);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stdout,
        "server                     SERVING\n\
         ncy.cache.v1.CacheService  SERVING\n\
         dependency redis           UP\n\
         dependency postgres        UP\n"
    );
    let (code, stdout, stderr) = ncyctl(&["health", "--addr", &addr, "--service", ""], None);
    assert_eq!((code, stdout.trim()), (Some(0), "SERVING"), "{stderr}");
    let (code, stdout, _) = ncyctl(
        &[
            "--json",
            "health",
            "--addr",
            &addr,
            "--service",
            "ncy.cache.v1.CacheService",
        ],
        None,
    );
    assert_eq!(code, Some(0));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(stdout.trim())?["status"],
        "SERVING"
    );
    let (code, _, stderr) = ncyctl(
        &["health", "--addr", &addr, "--service", "nope.Service"],
        None,
    );
    assert_eq!(code, Some(1), "{stderr}");

    running
        .stop(Duration::from_secs(10))
        .await
        .map_err(anyhow::Error::msg)?;
    let (code, _, stderr) = ncyctl(&["health", "--addr", &addr, "--timeout-secs", "1"], None);
    assert_eq!(code, Some(69), "stopped service is unreachable: {stderr}");
    Ok(())
}
