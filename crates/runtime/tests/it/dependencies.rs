//! A service whose Redis or PostgreSQL is down at start keeps running, reports not-ready on
//! `/readyz` and in gRPC health, and turns ready by itself once the dependency comes up. After
//! that, a dependency going down is reported (degraded, `ncy_dependency_up`, the health entries of
//! what needs it) but leaves the instance ready — no other replica would do better — while a pool
//! of this instance's own that is wedged makes it not-ready. The Redis Cluster switch talks to a
//! real three-node cluster the test builds.
//!
//! `ncy_dependency_up` has no per-instance label: it is one gauge per dependency for the whole
//! process, written by every instance when its probe's state changes. The tests whose instance
//! probes PostgreSQL take turns (`POSTGRES_GAUGE`), so the value a test reads is its instance's.
use std::time::Duration;

use ncy_runtime::{CommonSettings, ServiceRuntime, ServiceSpec};
use ncy_testkit::{
    InProcess, PostgresServer, RedisCluster, RedisServer, TestDatabase, assert_eventually, env_of,
    free_port, grpc_health, http_get, service_env, set_env, unique_prefix,
};
use tonic_health::pb::health_check_response::ServingStatus;

const SPEC: ServiceSpec = ServiceSpec {
    name: "runtime-test",
    default_grpc_addr: "127.0.0.1:0",
    default_admin_addr: "127.0.0.1:0",
    needs_postgres: true,
    default_runtime_threads: 0,
};

/// Held for its whole run by each test whose instance probes PostgreSQL, so that no other instance
/// writes `ncy_dependency_up{dependency="postgres"}` while it reads the gauge.
static POSTGRES_GAUGE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `/readyz` answers 200.
async fn ready(admin: std::net::SocketAddr) -> bool {
    http_get(admin, "/readyz").await.ok().map(|r| r.0) == Some(200)
}

/// Stops a service started by the test; it must drain cleanly.
async fn stop(running: InProcess) -> anyhow::Result<()> {
    running
        .stop(Duration::from_secs(10))
        .await
        .map_err(anyhow::Error::msg)
}

async fn not_ready_because(admin: std::net::SocketAddr, dependency: &str) -> bool {
    match http_get(admin, "/readyz").await {
        Ok((503, body)) => {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            v["checks"][dependency]["status"] == "down"
        }
        _ => false,
    }
}

#[tokio::test]
async fn redis_down_at_start_is_not_ready_then_recovers() -> anyhow::Result<()> {
    let _gauge = POSTGRES_GAUGE.lock().await;
    let db = TestDatabase::create().await?;
    let mut redis = RedisServer::start().await?;
    redis.stop();
    let mut env = service_env(&unique_prefix(), Some(&db.url));
    set_env(&mut env, "REDIS_URL", &redis.url());
    let runtime = ServiceRuntime::build(CommonSettings::load(SPEC, &env_of(&env))?).await?;
    let addrs = runtime.local_addrs();
    let running =
        InProcess::spawn(|stop| runtime.serve(tonic::service::Routes::default(), &[], stop));

    assert_eventually("readyz reports redis down", Duration::from_secs(10), || {
        not_ready_because(addrs.admin, "redis")
    })
    .await;
    assert_eq!(
        grpc_health(addrs.grpc, "").await?,
        ServingStatus::NotServing
    );
    assert_eq!(
        http_get(addrs.admin, "/healthz").await?.0,
        200,
        "alive while not ready"
    );

    redis.resume().await?;
    ncy_testkit::wait_until_serving(addrs.grpc).await;
    assert_eq!(http_get(addrs.admin, "/readyz").await?.0, 200);

    // Redis dies while serving: reported, but the instance stays ready (every replica shares the
    // outage; taking them all out of their Service would turn it into a total one).
    redis.stop();
    assert_eventually("readyz notices redis died", Duration::from_secs(15), || {
        degraded_because(addrs.admin, "redis")
    })
    .await;
    assert_eq!(grpc_health(addrs.grpc, "").await?, ServingStatus::Serving);
    assert_eq!(
        grpc_health(addrs.grpc, "ncy.dependency.redis").await?,
        ServingStatus::NotServing
    );
    redis.resume().await?;
    assert_eventually(
        "health sees redis back",
        Duration::from_secs(15),
        || async {
            grpc_health(addrs.grpc, "ncy.dependency.redis").await.ok()
                == Some(ServingStatus::Serving)
        },
    )
    .await;
    stop(running).await
}

/// `/readyz` 200 with `dependency` down and the body saying degraded.
async fn degraded_because(admin: std::net::SocketAddr, dependency: &str) -> bool {
    match http_get(admin, "/readyz").await {
        Ok((200, body)) => {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            v["degraded"] == true && v["checks"][dependency]["status"] == "down"
        }
        _ => false,
    }
}

#[tokio::test]
async fn a_wedged_redis_pool_is_not_ready_while_redis_answers_others() -> anyhow::Result<()> {
    let mut env = service_env(&unique_prefix(), None);
    set_env(&mut env, "NCY_REDIS_POOL_SIZE", "1");
    set_env(&mut env, "NCY_REDIS_TIMEOUT_MS", "300");
    let spec = ServiceSpec {
        needs_postgres: false,
        ..SPEC
    };
    let runtime = ServiceRuntime::build(CommonSettings::load(spec, &env_of(&env))?).await?;
    let pool = runtime.redis().clone();
    let addrs = runtime.local_addrs();
    let running = InProcess::serving(addrs.grpc, |stop| {
        runtime.serve(tonic::service::Routes::default(), &[], stop)
    })
    .await;
    assert_eq!(http_get(addrs.admin, "/readyz").await?.0, 200);

    // The one pooled connection is held (a leak, a stuck caller): Redis answers everyone else,
    // but this instance cannot reach it, so another replica would do better.
    let held = pool.get().await?;
    assert_eventually(
        "readyz reports the pool wedged",
        Duration::from_secs(30),
        || async {
            match http_get(addrs.admin, "/readyz").await {
                Ok((503, body)) => {
                    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                    v["checks"]["redis"]["status"] == "wedged"
                }
                _ => false,
            }
        },
    )
    .await;
    assert_eq!(
        grpc_health(addrs.grpc, "").await?,
        ServingStatus::NotServing
    );
    drop(held);
    assert_eventually(
        "ready again once the pool is free",
        Duration::from_secs(30),
        || ready(addrs.admin),
    )
    .await;
    stop(running).await
}

#[tokio::test]
async fn postgres_going_down_after_start_leaves_the_instance_ready() -> anyhow::Result<()> {
    let _gauge = POSTGRES_GAUGE.lock().await;
    let mut pg = PostgresServer::start().await?;
    let env = service_env(&unique_prefix(), Some(&pg.url("postgres")));
    let runtime = ServiceRuntime::build(CommonSettings::load(SPEC, &env_of(&env))?).await?;
    let addrs = runtime.local_addrs();
    let running = InProcess::serving(addrs.grpc, |stop| {
        runtime.serve(tonic::service::Routes::default(), &[], stop)
    })
    .await;
    assert_eventually("ready", Duration::from_secs(15), || ready(addrs.admin)).await;
    pg.stop();
    assert_eventually(
        "readyz notices postgres died",
        Duration::from_secs(15),
        || degraded_because(addrs.admin, "postgres"),
    )
    .await;
    let metrics = http_get(addrs.admin, "/metrics").await?.1;
    assert!(
        metrics.contains("ncy_dependency_up{dependency=\"postgres\"} 0"),
        "{metrics}"
    );
    pg.resume().await?;
    assert_eventually("postgres back", Duration::from_secs(15), || async {
        match http_get(addrs.admin, "/readyz").await {
            Ok((200, body)) => body.contains("\"degraded\":false"),
            _ => false,
        }
    })
    .await;
    stop(running).await
}

#[tokio::test]
async fn postgres_down_is_not_ready() -> anyhow::Result<()> {
    let _gauge = POSTGRES_GAUGE.lock().await;
    let mut env = service_env(&unique_prefix(), None);
    // Nothing listens on this port.
    set_env(
        &mut env,
        "DATABASE_URL",
        &format!("postgres://postgres@127.0.0.1:{}/none", free_port()),
    );
    let runtime = ServiceRuntime::build(CommonSettings::load(SPEC, &env_of(&env))?).await?;
    let addrs = runtime.local_addrs();
    let running =
        InProcess::spawn(|stop| runtime.serve(tonic::service::Routes::default(), &[], stop));
    assert_eventually(
        "readyz reports postgres down",
        Duration::from_secs(10),
        || not_ready_because(addrs.admin, "postgres"),
    )
    .await;
    assert_eq!(
        grpc_health(addrs.grpc, "").await?,
        ServingStatus::NotServing
    );
    let metrics = http_get(addrs.admin, "/metrics").await?.1;
    assert!(
        metrics.contains("ncy_dependency_up{dependency=\"postgres\"} 0"),
        "{metrics}"
    );
    stop(running).await
}

#[tokio::test]
async fn cluster_mode_talks_to_redis_cluster() -> anyhow::Result<()> {
    let cluster = RedisCluster::start(3).await?;

    let mut env = service_env(&unique_prefix(), None);
    set_env(&mut env, "REDIS_URL", &cluster.urls());
    set_env(&mut env, "NCY_REDIS_CLUSTER", "true");
    let spec = ServiceSpec {
        needs_postgres: false,
        default_runtime_threads: 0,
        ..SPEC
    };
    let runtime = ServiceRuntime::build(CommonSettings::load(spec, &env_of(&env))?).await?;
    assert!(runtime.redis().is_cluster());

    // Keys spread over every slot range: the pool routes each to its node.
    let mut conn = runtime.redis().get().await?;
    for i in 0..50 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query_async(&mut conn)
            .await?;
    }
    for i in 0..50 {
        let v: i64 = redis::cmd("GET")
            .arg(format!("k{i}"))
            .query_async(&mut conn)
            .await?;
        assert_eq!(v, i);
    }
    drop(conn);

    let addrs = runtime.local_addrs();
    let running = InProcess::serving(addrs.grpc, |stop| {
        runtime.serve(tonic::service::Routes::default(), &[], stop)
    })
    .await;
    stop(running).await
}
