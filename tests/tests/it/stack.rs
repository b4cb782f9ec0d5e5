//! The whole backbone in one process, as `make run` brings it up: the four services share one Redis
//! key prefix and one PostgreSQL database, each answers gRPC health and reflection and its admin
//! endpoints, and all drain cleanly together.
use std::time::Duration;

use ncy_testkit::{InProcess, TestDatabase, env_of, service_env, set_env, unique_prefix};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_services_come_up_together_and_drain() -> anyhow::Result<()> {
    let db = TestDatabase::migrated().await?;
    let mut env = service_env(&unique_prefix(), Some(&db.url));
    set_env(
        &mut env,
        "JWT_SECRET",
        "e2e-secret-e2e-secret-e2e-secret-00",
    );
    set_env(&mut env, "NCY_WS_ADDR", "127.0.0.1:0");
    let env = env_of(&env);

    let cache = cache_gateway::Application::build(cache_gateway::Settings::load(&env)?).await?;
    let jobs = job_scheduler::Application::build(job_scheduler::Settings::load(&env)?).await?;
    let work = worker::Application::build(worker::Settings::load(&env)?).await?;
    let realtime =
        realtime_gateway::Application::build(realtime_gateway::Settings::load(&env)?).await?;
    let checks = [
        (cache.local_addrs(), vec!["ncy.cache.v1.CacheService"]),
        (jobs.local_addrs(), vec!["ncy.jobs.v1.JobService"]),
        (work.local_addrs(), vec![]),
        (
            realtime.local_addrs(),
            vec!["ncy.realtime.v1.RealtimeService"],
        ),
    ];
    let running = [
        InProcess::spawn(|stop| cache.run_until_stopped(stop)),
        InProcess::spawn(|stop| jobs.run_until_stopped(stop)),
        InProcess::spawn(|stop| work.run_until_stopped(stop)),
        InProcess::spawn(|stop| realtime.run_until_stopped(stop)),
    ];
    for (addrs, services) in &checks {
        ncy_testkit::assert_service_basics(*addrs, services).await;
    }
    for service in running {
        service
            .stop(Duration::from_secs(10))
            .await
            .map_err(anyhow::Error::msg)?;
    }
    for (addrs, _) in &checks {
        assert!(
            ncy_testkit::grpc_health(addrs.grpc, "").await.is_err(),
            "{} closed",
            addrs.grpc
        );
    }
    Ok(())
}
