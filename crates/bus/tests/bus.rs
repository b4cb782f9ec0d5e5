//! The room bus against the real Redis: publish offsets/epochs/history and idempotency, input
//! validation, recovery hit/miss, presence expiry, and a subscriber receiving only its rooms in
//! order — with a publisher that knows nothing of the gateway (as the worker uses it).
#![allow(clippy::unwrap_used)]

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use ncy_bus::{
    BusMessage, BusPublisher, History, Presence, PublishOptions, Subscriber, SubscriberConfig,
};
use ncy_runtime::{CommonSettings, Env, RedisPool, ServiceSpec};
use ncy_testkit::{assert_eventually, redis_url, unique_prefix};
use ncy_types::{KeySpace, Room};
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn setup() -> (RedisPool, KeySpace) {
    let prefix = unique_prefix();
    let env = Env::from_pairs([
        ("REDIS_URL", redis_url()),
        ("NCY_REDIS_PREFIX", prefix.clone()),
    ]);
    let spec = ServiceSpec {
        name: "bus-test",
        default_grpc_addr: "127.0.0.1:0",
        default_admin_addr: "127.0.0.1:0",
        needs_postgres: false,
        default_runtime_threads: 0,
    };
    let settings = CommonSettings::load(spec, &env).unwrap();
    (
        RedisPool::new(&settings.redis).unwrap(),
        KeySpace::new(prefix).unwrap(),
    )
}

fn room() -> Room {
    Room::project(uuid::Uuid::new_v4())
}

#[tokio::test]
async fn publish_numbers_messages_keeps_history_and_deduplicates() {
    let (pool, keys) = setup();
    let bus = BusPublisher::new(pool.clone(), keys.clone());
    let r = room();
    let a = bus.publish(&r, "e", &json!({"i": 1})).await.unwrap();
    let b = bus.publish(&r, "e", &json!({"i": 2})).await.unwrap();
    assert_eq!((a.offset, b.offset), (1, 2));
    assert_eq!(a.epoch, b.epoch);
    let opts = PublishOptions {
        idempotency_key: Some("k".into()),
    };
    let c = bus.publish_with(&r, "e", &json!(3), &opts).await.unwrap();
    let again = bus.publish_with(&r, "e", &json!(3), &opts).await.unwrap();
    assert!(!c.deduplicated && again.deduplicated);
    assert_eq!((c.offset, again.offset, again.ts_ms), (3, 3, c.ts_ms));

    let history = History::new(pool.clone(), keys.clone());
    let rec = history
        .recover(&r.name(), Some((1, &a.epoch)))
        .await
        .unwrap();
    assert!(rec.recovered);
    let offsets: Vec<_> = rec.messages.iter().map(|m| m.offset).collect();
    assert_eq!(offsets, [2, 3]);
    let env = rec.messages[0].envelope().unwrap();
    assert_eq!((env.event.as_str(), env.data["i"].as_i64()), ("e", Some(2)));
    let up_to_date = history
        .recover(&r.name(), Some((3, &a.epoch)))
        .await
        .unwrap();
    assert!(up_to_date.recovered && up_to_date.messages.is_empty());
    let miss = history
        .recover(&r.name(), Some((1, "other")))
        .await
        .unwrap();
    assert!(!miss.recovered && miss.messages.is_empty());
    assert_eq!((miss.epoch, miss.offset), (a.epoch.clone(), 3));

    // Bad input names the field and publishes nothing.
    let err = bus.publish(&r, "bad event", &json!(1)).await.unwrap_err();
    assert!(matches!(err, ncy_bus::BusError::Invalid(v) if v.field == "event"));
    let long = PublishOptions {
        idempotency_key: Some("k".repeat(200)),
    };
    let err = bus
        .publish_with(&r, "e", &json!(1), &long)
        .await
        .unwrap_err();
    assert!(matches!(err, ncy_bus::BusError::Invalid(v) if v.field == "idempotency_key"));
    assert_eq!(history.position(&r.name()).await.unwrap().1, 3);
}

#[tokio::test]
async fn subscriber_gets_its_rooms_in_order_and_nothing_else() {
    let (pool, keys) = setup();
    let got: Arc<Mutex<Vec<BusMessage>>> = Arc::default();
    let sink = got.clone();
    let cancel = CancellationToken::new();
    let (sub, task) = Subscriber::start(
        redis::Client::open(redis_url()).unwrap(),
        pool.clone(),
        keys.clone(),
        SubscriberConfig {
            instance_id: "t1".into(),
            probe_interval: Duration::from_millis(200),
        },
        Arc::new(move |m| sink.lock().unwrap().push(m)),
        cancel.clone(),
    );
    let (mine, other) = (room(), room());
    sub.subscribe(&mine.name()).await.unwrap();
    let bus = BusPublisher::new(pool, keys);
    for i in 0..20 {
        bus.publish(&mine, "e", &json!(i)).await.unwrap();
        bus.publish(&other, "e", &json!(i)).await.unwrap();
    }
    assert_eventually(
        "20 messages of the subscribed room",
        Duration::from_secs(10),
        || {
            let n = got.lock().unwrap().len();
            async move { n >= 20 }
        },
    )
    .await;
    let got = got.lock().unwrap().clone();
    assert!(got.iter().all(|m| m.room == mine.name()));
    assert_eq!(
        got.iter().map(|m| m.offset).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>()
    );
    assert_eventually(
        "probe keeps the subscriber connected",
        Duration::from_secs(5),
        || {
            let up = sub.connected();
            async move { up }
        },
    )
    .await;
    cancel.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn presence_counts_connections_per_user_and_expires_lazily() {
    let (pool, keys) = setup();
    let r = room().name();
    let live = Presence::new(pool.clone(), keys.clone(), Duration::from_secs(60));
    live.refresh(&[
        (r.clone(), "u1".into(), "c1".into()),
        (r.clone(), "u1".into(), "c2".into()),
    ])
    .await
    .unwrap();
    let gone = Presence::new(pool, keys, Duration::from_millis(1));
    gone.refresh(&[(r.clone(), "u2".into(), "c3".into())])
        .await
        .unwrap();
    assert_eventually("u2's entry expired", Duration::from_secs(5), || {
        let live = live.clone();
        let r = r.clone();
        async move {
            let users = live.list(&r).await.unwrap();
            users.len() == 1 && users[0].user_id == "u1" && users[0].connections == 2
        }
    })
    .await;
    live.leave(&r, "u1", "c1").await.unwrap();
    assert_eq!(live.list(&r).await.unwrap()[0].connections, 1);
}
