//! Fail-safe when Redis dies mid-test (a redis-server of the test's own): reads are still answered
//! from L1 and the loaders, writes are refused with UNAVAILABLE, the backplane reports the loss,
//! Stats answers for this instance but not for all (their reports are in Redis), and everything
//! recovers when Redis comes back, the instance's report included.
use std::time::Duration;

use ncy_proto::cache::v1::StatsRequest;
use ncy_testkit::{RedisServer, assert_eventually};
use tonic::{Code, Request};

use crate::support::{Gateway, World, get, load, set};

/// A request that gives up after a few seconds: a call stuck on the dead Redis fails the test.
fn bounded<T>(msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.set_timeout(Duration::from_secs(5));
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_survive_redis_going_down_and_everything_recovers() -> anyhow::Result<()> {
    let mut redis = RedisServer::start().await?;
    let w = World::new().await?;
    let env = w.env_with(&[
        ("REDIS_URL", &redis.url()),
        ("NCY_REDIS_TIMEOUT_MS", "300"),
        ("NCY_CACHE_L2_TIMEOUT_MS", "300"),
        ("NCY_INSTANCE_REPORT_MS", "200"),
    ]);
    let gw = Gateway::start(&env).await?;
    let mut c = gw.client.clone();
    let user = w.user("Resilient").await;
    let cached = w.user("Cached").await;
    let r = c
        .get_or_load(bounded(load("user", &cached)))
        .await?
        .into_inner();
    assert!(r.value_json.contains("Cached"));
    c.set(bounded(set("k:1", "1"))).await?;

    redis.stop();

    // Straight after the crash: answered (from L1, or from the loader once L1 is emptied).
    let r = c
        .get_or_load(bounded(load("user", &cached)))
        .await?
        .into_inner();
    assert!(r.value_json.contains("Cached"));
    // A never-cached entity is loaded from PostgreSQL without Redis.
    let r = c
        .get_or_load(bounded(load("user", &user)))
        .await?
        .into_inner();
    assert!(r.value_json.contains("Resilient"));
    let err = c.set(bounded(set("k:2", "2"))).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "writes are not acknowledged");

    let c2 = c.clone();
    assert_eventually(
        "loss of the backplane and open circuit reported",
        Duration::from_secs(20),
        || {
            let mut c = c2.clone();
            let user = user.clone();
            async move {
                // Reads keep being answered all along.
                let r = c
                    .get_or_load(bounded(load("user", &user)))
                    .await
                    .unwrap()
                    .into_inner();
                assert!(r.value_json.contains("Resilient"));
                let s = c.stats(StatsRequest::default()).await.unwrap().into_inner();
                !s.backplane_connected && !s.l2_available
            }
        },
    )
    .await;
    // L1 was emptied on the loss, so Get finds nothing rather than an untrusted copy…
    let r = c.get(bounded(get("k:1"))).await?.into_inner();
    assert!(!r.found);
    // …while loads after the loss are kept in L1 and flagged as possibly stale.
    let r = c
        .get_or_load(bounded(load("user", &user)))
        .await?
        .into_inner();
    assert!(r.value_json.contains("Resilient"));
    let own = c
        .stats(bounded(StatsRequest::default()))
        .await?
        .into_inner();
    let all = StatsRequest {
        all_instances: true,
    };
    let err = c.stats(bounded(all)).await.unwrap_err();
    assert_eq!(
        err.code(),
        Code::Unavailable,
        "the instances' reports are in Redis"
    );

    redis.resume().await?;
    let c3 = c.clone();
    assert_eventually("backplane and L2 back", Duration::from_secs(30), || {
        let mut c = c3.clone();
        async move {
            c.set(bounded(set("k:3", "3"))).await.is_ok()
                && c.stats(StatsRequest::default())
                    .await
                    .unwrap()
                    .into_inner()
                    .backplane_connected
        }
    })
    .await;
    let r = c.get(bounded(get("k:3"))).await?.into_inner();
    assert!(r.found && !r.stale);
    // The restarted Redis lost the registry; the next report puts this instance back.
    let registry = ncy_types::KeySpace::new(w.prefix.clone())?.instances(cache_gateway::SERVICE);
    let url = redis.url();
    assert_eventually(
        "the instance reported again",
        Duration::from_secs(20),
        || {
            let (url, registry, id) = (url.clone(), registry.clone(), own.instance_id.clone());
            async move {
                let Ok(mut conn) = redis::Client::open(url)
                    .unwrap()
                    .get_multiplexed_async_connection()
                    .await
                else {
                    return false;
                };
                redis::cmd("HEXISTS")
                    .arg(&registry)
                    .arg(&id)
                    .query_async::<bool>(&mut conn)
                    .await
                    .unwrap_or(false)
            }
        },
    )
    .await;
    Ok(())
}
