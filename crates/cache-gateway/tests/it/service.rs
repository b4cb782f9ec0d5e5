//! The cache gateway through its public interfaces: gRPC health and reflection, the admin port,
//! bad input on the API, the drain, and the binary's configuration errors and SIGTERM.
use std::time::Duration;

use cache_gateway::{Application, Settings};
use ncy_proto::cache::v1::{GetRequest, cache_service_client::CacheServiceClient};
use ncy_testkit::{
    InProcess, TestDatabase, env_of, free_port, service_env, set_env, unique_prefix,
};

use crate::support;

const SERVICE_NAME: &str = "ncy.cache.v1.CacheService";

#[tokio::test]
async fn serves_health_reflection_and_admin_then_drains() -> anyhow::Result<()> {
    let db = TestDatabase::migrated().await?;
    let settings = Settings::load(&env_of(&service_env(&unique_prefix(), Some(&db.url))))?;
    let app = Application::build(settings).await?;
    let addrs = app.local_addrs();
    let running = InProcess::spawn(|stop| app.run_until_stopped(stop));

    ncy_testkit::assert_service_basics(addrs, &[SERVICE_NAME]).await;
    let mut client = CacheServiceClient::connect(format!("http://{}", addrs.grpc)).await?;
    // Every RPC is implemented; an empty Get is bad input, not UNIMPLEMENTED.
    let err = client
        .get(GetRequest::default())
        .await
        .expect_err("empty key");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

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
    ncy_testkit::assert_binary_lifecycle(
        env!("CARGO_BIN_EXE_cache-gateway"),
        &env,
        "DATABASE_URL",
        port,
    )
    .await;
    Ok(())
}

/// `NCY_RUNTIME_THREADS`: the binary serves reads and writes on the single-threaded scheduler (its
/// default) and on the work-stealing one (0 = one worker per CPU, or a count), drains on SIGTERM
/// either way, and refuses a value that is not a count with exit 64 naming the variable.
#[tokio::test]
async fn binary_runs_on_either_scheduler() -> anyhow::Result<()> {
    let db = TestDatabase::migrated().await?;
    let prefix = unique_prefix();
    for threads in [None, Some("0"), Some("3")] {
        let mut env = service_env(&prefix, Some(&db.url));
        let port = free_port();
        set_env(&mut env, "NCY_GRPC_ADDR", &format!("127.0.0.1:{port}"));
        if let Some(t) = threads {
            set_env(&mut env, "NCY_RUNTIME_THREADS", t);
        }
        let child = ncy_testkit::ChildService::start(env!("CARGO_BIN_EXE_cache-gateway"), &env)?;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        ncy_testkit::wait_until_serving(addr).await;
        let mut client = CacheServiceClient::connect(format!("http://{addr}")).await?;
        let key = format!("threads-{}", threads.unwrap_or("default"));
        let value = format!(r#"{{"threads":"{}"}}"#, threads.unwrap_or("default"));
        client.set(support::set(&key, &value)).await?;
        let got = client.get(support::get(&key)).await?.into_inner();
        assert!(got.found, "{key} read back");
        assert_eq!(got.value_json, value);
        if threads == Some("3") {
            // Work-stealing workers are threads of their own (the single-threaded scheduler runs on
            // the main thread).
            let workers = std::fs::read_dir(format!("/proc/{}/task", child.pid()))?
                .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .filter(|name| name.starts_with("tokio-r"))
                .count();
            assert!(
                workers >= 3,
                "{workers} runtime threads with NCY_RUNTIME_THREADS=3"
            );
        }
        let status = child.terminate(Duration::from_secs(15)).await?;
        assert!(
            status.success(),
            "threads {threads:?}: exit on SIGTERM {status}"
        );
    }

    let mut env = service_env(&prefix, Some(&db.url));
    set_env(
        &mut env,
        "NCY_GRPC_ADDR",
        &format!("127.0.0.1:{}", free_port()),
    );
    set_env(&mut env, "NCY_RUNTIME_THREADS", "many");
    let (code, stderr) = ncy_testkit::run_to_exit(env!("CARGO_BIN_EXE_cache-gateway"), &env)?;
    assert_eq!(code, Some(64), "stderr: {stderr}");
    assert!(stderr.contains("NCY_RUNTIME_THREADS"), "{stderr}");
    Ok(())
}
