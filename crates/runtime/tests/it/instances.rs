//! The instance registry against the real Redis: what readers list (fresh snapshots only, sorted,
//! bounded, the caller's own always), what the writer prunes (fields older than 10 intervals, not
//! those merely stale), the field removed when the instance stops, and reports that resume by
//! themselves after Redis was down.
use std::{collections::HashMap, time::Duration};

use ncy_runtime::{
    CommonSettings, InstanceRegistry, RedisPool, ServiceSpec,
    instances::{MAX_INSTANCES, Reported, now_ms, report_until_stopped},
};
use ncy_testkit::{
    RedisCluster, RedisServer, assert_eventually, env_of, service_env, set_env, unique_prefix,
};
use tokio_util::sync::CancellationToken;

const SPEC: ServiceSpec = ServiceSpec {
    name: "runtime-test",
    default_grpc_addr: "127.0.0.1:0",
    default_admin_addr: "127.0.0.1:0",
    needs_postgres: false,
    default_runtime_threads: 0,
};

/// A long interval, so that the writer prunes at its first report and not again during the test.
const INTERVAL: Duration = Duration::from_secs(60);

/// A registry of service `svc` under a fresh prefix on `redis_url`, reported every `interval`.
fn registry(redis_url: &str, interval: Duration) -> anyhow::Result<InstanceRegistry> {
    Ok(registry_and_pool(redis_url, false, interval)?.0)
}

/// [`registry`] on a single server or a cluster, with its pool.
fn registry_and_pool(
    redis_url: &str,
    cluster: bool,
    interval: Duration,
) -> anyhow::Result<(InstanceRegistry, RedisPool)> {
    let mut env = service_env(&unique_prefix(), None);
    set_env(&mut env, "REDIS_URL", redis_url);
    set_env(
        &mut env,
        "NCY_REDIS_CLUSTER",
        if cluster { "true" } else { "false" },
    );
    set_env(&mut env, "NCY_REDIS_TIMEOUT_MS", "300");
    let settings = CommonSettings::load(SPEC, &env_of(&env))?;
    let pool = RedisPool::new(&settings.redis)?;
    let registry = InstanceRegistry::new(pool.clone(), &settings.redis.keys, "svc", interval);
    Ok((registry, pool))
}

async fn conn(url: &str) -> anyhow::Result<redis::aio::MultiplexedConnection> {
    Ok(redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?)
}

/// Writes a field as an instance that reported `age` ago would have.
async fn plant(
    url: &str,
    key: &str,
    id: &str,
    age: Duration,
    snapshot: &str,
) -> anyhow::Result<()> {
    let at = now_ms() - i64::try_from(age.as_millis())?;
    let _: () = redis::cmd("HSET")
        .arg(key)
        .arg(id)
        .arg(format!("{at}\n{snapshot}"))
        .query_async(&mut conn(url).await?)
        .await?;
    Ok(())
}

async fn fields(url: &str, key: &str) -> anyhow::Result<HashMap<String, Vec<u8>>> {
    Ok(redis::cmd("HGETALL")
        .arg(key)
        .query_async(&mut conn(url).await?)
        .await?)
}

/// The caller's own report, as of `at`.
fn own(id: &str, at: i64, snapshot: &str) -> Reported<String> {
    Reported {
        instance_id: id.to_owned(),
        reported_at_ms: at,
        snapshot: snapshot.to_owned(),
    }
}

fn ids<T>(list: &[Reported<T>]) -> Vec<&str> {
    list.iter().map(|r| r.instance_id.as_str()).collect()
}

#[tokio::test]
async fn stale_fields_are_not_listed_and_old_ones_are_pruned_by_the_writer() -> anyhow::Result<()> {
    let url = ncy_testkit::redis_url();
    let reg = registry(&url, INTERVAL)?;
    let key = reg.key().to_owned();
    assert!(key.ends_with(":instances:svc"), "{key}");
    plant(&url, &key, "b-fresh", Duration::ZERO, "B").await?;
    plant(&url, &key, "a-fresh", INTERVAL, "A").await?;
    // Three missed reports and a bit: no longer listed, not yet pruned.
    plant(&url, &key, "quiet", INTERVAL * 3 + INTERVAL / 2, "Q").await?;
    // Past ten intervals: pruned.
    plant(&url, &key, "dead", INTERVAL * 11, "D").await?;
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg("junk")
        .arg("not a report")
        .query_async(&mut conn(&url).await?)
        .await?;

    let live = reg.live().await?;
    assert_eq!(ids(&live), ["a-fresh", "b-fresh"]);
    assert_eq!(live[1].snapshot, b"B");
    assert!(now_ms() - live[0].reported_at_ms >= 60_000, "{live:?}");

    // The caller's own snapshot is listed fresh whatever Redis holds for it; an unreadable one is
    // left out.
    plant(&url, &key, "me", INTERVAL * 2, "old").await?;
    let decode = |b: &[u8]| (b != b"B").then(|| String::from_utf8_lossy(b).into_owned());
    let now = now_ms();
    let view = reg.view(own("me", now, "now"), decode).await?;
    assert_eq!(ids(&view), ["a-fresh", "me"]);
    assert_eq!(
        (view[1].snapshot.as_str(), view[1].reported_at_ms),
        ("now", now)
    );

    // The writer: reports at once, prunes the dead and the unreadable, keeps the merely stale.
    let stop = CancellationToken::new();
    let writer = tokio::spawn(report_until_stopped(
        reg.clone(),
        "me".to_owned(),
        || async { b"mine".to_vec() },
        stop.clone(),
    ));
    assert_eventually(
        "the writer reported and pruned",
        Duration::from_secs(10),
        || {
            let (url, key) = (url.clone(), key.clone());
            async move {
                let f = fields(&url, &key).await.unwrap_or_default();
                f.get("me").is_some_and(|v| v.ends_with(b"\nmine"))
                    && !f.contains_key("dead")
                    && !f.contains_key("junk")
            }
        },
    )
    .await;
    let mut left: Vec<String> = fields(&url, &key).await?.into_keys().collect();
    left.sort();
    assert_eq!(left, ["a-fresh", "b-fresh", "me", "quiet"]);
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut conn(&url).await?)
        .await?;
    assert!(
        ttl > 0 && ttl <= 600_000,
        "the hash expires after 10 intervals: {ttl}"
    );

    // Stopping removes the instance's own field, and only it.
    stop.cancel();
    writer.await?;
    let mut left: Vec<String> = fields(&url, &key).await?.into_keys().collect();
    left.sort();
    assert_eq!(left, ["a-fresh", "b-fresh", "quiet"]);
    Ok(())
}

#[tokio::test]
async fn readers_list_at_most_256_instances_with_their_own_among_them() -> anyhow::Result<()> {
    let url = ncy_testkit::redis_url();
    let reg = registry(&url, INTERVAL)?;
    let key = reg.key().to_owned();
    let mut pipe = redis::pipe();
    let at = now_ms();
    for i in 0..1100 {
        pipe.hset(&key, format!("i{i:04}"), format!("{at}\nx"))
            .ignore();
    }
    let _: () = pipe.query_async(&mut conn(&url).await?).await?;

    let live = reg.live().await?;
    assert_eq!(live.len(), MAX_INSTANCES);
    assert!(
        live.windows(2).all(|w| w[0].instance_id < w[1].instance_id),
        "sorted by id"
    );
    let view = reg
        .view(own("zz-me", at, ""), |_| Some("x".to_owned()))
        .await?;
    assert_eq!(view.len(), MAX_INSTANCES);
    assert_eq!(view.last().map(|r| r.instance_id.as_str()), Some("zz-me"));
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut conn(&url).await?)
        .await?;
    Ok(())
}

#[tokio::test]
async fn reports_resume_by_themselves_once_redis_is_back() -> anyhow::Result<()> {
    let mut redis = RedisServer::start().await?;
    let url = redis.url();
    redis.stop();
    let reg = registry(&url, Duration::from_millis(100))?;
    let key = reg.key().to_owned();
    let stop = CancellationToken::new();
    let writer = tokio::spawn(report_until_stopped(
        reg.clone(),
        "me".to_owned(),
        || async { b"mine".to_vec() },
        stop.clone(),
    ));
    assert!(reg.live().await.is_err(), "Redis is down");
    redis.resume().await?;
    assert_eventually(
        "a report after Redis came back",
        Duration::from_secs(10),
        || {
            let reg = reg.clone();
            async move { reg.live().await.is_ok_and(|l| l.len() == 1) }
        },
    )
    .await;
    assert!(!writer.is_finished(), "the writer kept going");
    stop.cancel();
    writer.await?;
    assert!(fields(&url, &key).await?.is_empty());
    Ok(())
}

/// Every command names the one hash, so the registry works unchanged on Redis Cluster: report,
/// list, prune (the script) and remove.
#[tokio::test]
async fn the_registry_works_on_redis_cluster() -> anyhow::Result<()> {
    let cluster = RedisCluster::start(3).await?;
    let (reg, pool) = registry_and_pool(&cluster.urls(), true, INTERVAL)?;
    let key = reg.key().to_owned();
    let dead = now_ms() - i64::try_from((INTERVAL * 11).as_millis())?;
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg("dead")
        .arg(format!("{dead}\nD"))
        .query_async(&mut pool.get().await?)
        .await?;
    let stop = CancellationToken::new();
    let writer = tokio::spawn(report_until_stopped(
        reg.clone(),
        "me".to_owned(),
        || async { b"mine".to_vec() },
        stop.clone(),
    ));
    assert_eventually("reported and pruned", Duration::from_secs(10), || {
        let (pool, key) = (pool.clone(), key.clone());
        async move {
            let Ok(mut conn) = pool.get().await else {
                return false;
            };
            let f: HashMap<String, Vec<u8>> = redis::cmd("HGETALL")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap_or_default();
            f.len() == 1 && f.contains_key("me")
        }
    })
    .await;
    let live = reg.live().await?;
    assert_eq!(
        (ids(&live), live[0].snapshot.as_slice()),
        (vec!["me"], &b"mine"[..])
    );
    stop.cancel();
    writer.await?;
    assert!(reg.live().await?.is_empty());
    Ok(())
}
