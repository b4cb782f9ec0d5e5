//! The gateway on a Redis Cluster of the test's own (three primaries): values spread over every
//! node, MGet reads keys of every slot in one call (in key order), and InvalidatePattern walks each
//! primary, so it removes matching keys wherever they live.
use ncy_proto::cache::v1::{InvalidatePatternRequest, MGetRequest};
use ncy_testkit::RedisCluster;

use crate::support::{Gateway, World, get, set};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidate_pattern_reaches_every_primary_of_a_cluster() -> anyhow::Result<()> {
    let cluster = RedisCluster::start(3).await?;
    let w = World::new().await?;
    let env = w.env_with(&[
        ("REDIS_URL", &cluster.urls()),
        ("NCY_REDIS_CLUSTER", "true"),
    ]);
    let gw = Gateway::start(&env).await?;
    let mut c = gw.client.clone();
    for i in 0..60 {
        c.set(set(&format!("report:{i}"), "1")).await?;
    }
    c.set(set("keep:1", "1")).await?;
    let per_node = cluster.key_counts().await?;
    assert!(
        per_node.iter().all(|n| *n > 0),
        "keys should land on every primary: {per_node:?}"
    );

    // One MGet over keys of many slots (and one missing key): values back in key order, from L2
    // (a fresh gateway instance has no L1 copies).
    let fresh = Gateway::start(&env).await?;
    let keys: Vec<String> = (0..20)
        .map(|i| format!("report:{i}"))
        .chain(["report:missing".to_owned()])
        .collect();
    let got = fresh
        .client
        .clone()
        .m_get(MGetRequest { keys: keys.clone() })
        .await?
        .into_inner();
    assert_eq!(got.entries.len(), keys.len());
    for (entry, key) in got.entries.iter().zip(&keys) {
        assert_eq!(&entry.key, key);
        assert_eq!(entry.found, key != "report:missing", "{key}");
    }
    fresh.stop().await;

    let dry = c
        .invalidate_pattern(InvalidatePatternRequest {
            pattern: "report:*".into(),
            dry_run: true,
        })
        .await?
        .into_inner();
    assert_eq!(dry.removed, 60);
    let done = c
        .invalidate_pattern(InvalidatePatternRequest {
            pattern: "report:*".into(),
            dry_run: false,
        })
        .await?
        .into_inner();
    assert_eq!(done.removed, 60);
    for i in [0, 17, 42, 59] {
        assert!(
            !c.get(get(&format!("report:{i}"))).await?.into_inner().found,
            "report:{i} survived"
        );
    }
    assert!(c.get(get("keep:1")).await?.into_inner().found);
    gw.stop().await;
    Ok(())
}
