//! The worker through its public interfaces: gRPC health and reflection, the admin port, the drain,
//! and the binary's configuration errors and SIGTERM.
use std::time::Duration;

use ncy_testkit::{
    InProcess, TestDatabase, env_of, free_port, service_env, set_env, unique_prefix,
};
use worker::{Application, Settings};

#[tokio::test]
async fn serves_health_reflection_and_admin_then_drains() -> anyhow::Result<()> {
    let db = TestDatabase::migrated().await?;
    let settings = Settings::load(&env_of(&service_env(&unique_prefix(), Some(&db.url))))?;
    let app = Application::build(settings).await?;
    let addrs = app.local_addrs();
    let running = InProcess::spawn(|stop| app.run_until_stopped(stop));

    ncy_testkit::assert_service_basics(addrs, &[]).await;

    running
        .stop(Duration::from_secs(10))
        .await
        .map_err(anyhow::Error::msg)?;
    assert!(
        ncy_testkit::grpc_health(addrs.grpc, "").await.is_err(),
        "gRPC port closed after drain"
    );
    Ok(())
}

#[tokio::test]
async fn binary_exits_64_on_bad_config_and_0_on_sigterm() -> anyhow::Result<()> {
    let db = TestDatabase::migrated().await?;
    let mut env = service_env(&unique_prefix(), Some(&db.url));
    let port = free_port();
    set_env(&mut env, "NCY_GRPC_ADDR", &format!("127.0.0.1:{port}"));
    ncy_testkit::assert_binary_lifecycle(env!("CARGO_BIN_EXE_worker"), &env, "REDIS_URL", port)
        .await;
    Ok(())
}
