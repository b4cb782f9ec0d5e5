//! The whole backbone in one process, as `make run` brings it up: the four services share one Redis
//! key prefix and one PostgreSQL database, each answers gRPC health and reflection and its admin
//! endpoints, and all drain cleanly together.
use crate::support::backbone::Backbone;
use ncy_testkit::{TestDatabase, service_env, set_env, unique_prefix};

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

    let backbone = Backbone::start(&env).await?;
    let checks = [
        (backbone.cache, &["ncy.cache.v1.CacheService"][..]),
        (backbone.jobs, &["ncy.jobs.v1.JobService"]),
        (backbone.worker, &[]),
        (backbone.realtime, &["ncy.realtime.v1.RealtimeService"]),
    ];
    for (addrs, services) in checks {
        ncy_testkit::assert_service_basics(addrs, services).await;
    }
    let all = backbone.all();
    backbone.stop().await?;
    for addrs in all {
        assert!(
            ncy_testkit::grpc_health(addrs.grpc, "").await.is_err(),
            "{} closed",
            addrs.grpc
        );
    }
    Ok(())
}
