//! Entries through gRPC: Get/Set/Delete/MGet across the layers (and Stats and `/metrics` counting
//! hits per layer), coherence between two instances, concurrent L2 reads coalesced, GetStream and
//! the drain that ends it, compression of big values, and canonical API keys.
use std::time::Duration;

use futures_util::StreamExt;
use ncy_proto::cache::v1::{
    ApiKey, CacheLayer, DeleteRequest, GetRequest, MGetRequest, SetRequest,
};
use ncy_testkit::assert_eventually;
use tonic::Code;

use crate::support::{Gateway, World, get, key, load, redis, request_channel, set};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_then_get_from_l1_then_l2_and_delete() -> anyhow::Result<()> {
    let w = World::new().await?;
    let a = w.gateway().await?;
    let b = w.gateway().await?;
    let k = key("entry");
    let mut ca = a.client.clone();
    let mut cb = b.client.clone();
    let reply = ca.set(set(&k, r#"{"n":1}"#)).await?.into_inner();
    assert_eq!(reply.key, k);
    assert!(reply.expires_at_ms > 0);

    let r = ca.get(get(&k)).await?.into_inner();
    assert!(r.found);
    assert_eq!(r.value_json, r#"{"n":1}"#);
    assert_eq!(r.layer(), CacheLayer::L1, "the writer keeps an L1 copy");
    assert!(r.ttl_remaining_ms > 0);

    let r = cb.get(get(&k)).await?.into_inner();
    assert_eq!(r.layer(), CacheLayer::L2, "another instance reads L2 first");
    assert_eventually("then holds it in L1", Duration::from_secs(5), || {
        let mut cb = cb.clone();
        let k = k.clone();
        async move { cb.get(get(&k)).await.unwrap().into_inner().layer() == CacheLayer::L1 }
    })
    .await;

    let m = cb
        .m_get(MGetRequest {
            keys: vec![k.clone(), key("missing"), k.clone()],
        })
        .await?
        .into_inner();
    assert_eq!(m.entries.len(), 3);
    assert!(m.entries[0].found && m.entries[2].found && !m.entries[1].found);
    assert_eq!(m.entries[2].value_json, r#"{"n":1}"#);

    let d = ca
        .delete(DeleteRequest {
            key: k.clone(),
            api: None,
        })
        .await?
        .into_inner();
    assert!(d.existed);
    let d = ca
        .delete(DeleteRequest {
            key: k.clone(),
            api: None,
        })
        .await?
        .into_inner();
    assert!(!d.existed, "idempotent");
    assert!(!ca.get(get(&k)).await?.into_inner().found);
    assert_eventually(
        "B's L1 copy evicted by the delete",
        Duration::from_secs(5),
        || {
            let mut cb = cb.clone();
            let k = k.clone();
            async move { !cb.get(get(&k)).await.unwrap().into_inner().found }
        },
    )
    .await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_on_one_instance_evicts_the_others_l1() -> anyhow::Result<()> {
    let w = World::new().await?;
    let a = w.gateway().await?;
    let b = w.gateway().await?;
    let k = key("coherent");
    let (mut ca, cb) = (a.client.clone(), b.client.clone());
    ca.set(set(&k, r#""v1""#)).await?;
    // B holds v1 in L1 (a read racing with A's eviction message is not promoted, so poll).
    assert_eventually("B serves v1 from L1", Duration::from_secs(5), || {
        let mut cb = cb.clone();
        let k = k.clone();
        async move {
            let r = cb.get(get(&k)).await.unwrap().into_inner();
            assert_eq!(r.value_json, r#""v1""#);
            r.layer() == CacheLayer::L1
        }
    })
    .await;

    ca.set(set(&k, r#""v2""#)).await?;
    assert_eventually("B serves v2 after A's Set", Duration::from_secs(5), || {
        let mut cb = cb.clone();
        let k = k.clone();
        async move { cb.get(get(&k)).await.unwrap().into_inner().value_json == r#""v2""# }
    })
    .await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_l2_reads_coalesced_into_mgets_each_get_their_own_value() -> anyhow::Result<()> {
    let w = World::new().await?;
    let a = w.gateway().await?;
    let b = w.gateway().await?;
    let keys: Vec<String> = (0..300).map(|_| key("coalesced")).collect();
    let mut cb = b.client.clone();
    // Every seventh key is never written: its read must come back empty, not shifted.
    for (i, k) in keys.iter().enumerate().filter(|(i, _)| i % 7 != 0) {
        cb.set(set(k, &i.to_string())).await?;
    }
    // A holds none of them in L1, so all 300 concurrent Gets read L2 at once.
    let reads = keys.iter().enumerate().map(|(i, k)| {
        let mut ca = a.client.clone();
        let k = k.clone();
        async move { anyhow::Ok((i, ca.get(get(&k)).await?.into_inner())) }
    });
    for read in futures_util::future::join_all(reads).await {
        let (i, r) = read?;
        if i % 7 == 0 {
            assert!(!r.found, "key {i} was never written: {r:?}");
        } else {
            assert!(r.found, "key {i}");
            assert_eq!(r.layer(), CacheLayer::L2, "key {i}");
            assert_eq!(
                r.value_json,
                i.to_string(),
                "key {i} got another key's value"
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_stream_answers_every_read_in_order_and_a_bad_one_in_place() -> anyhow::Result<()> {
    let w = World::new().await?;
    let a = w.gateway().await?;
    let b = w.gateway().await?;
    let (mut ca, mut cb) = (a.client.clone(), b.client.clone());
    let hot = key("hot");
    ca.set(set(&hot, r#"{"hot":true}"#)).await?;
    // 200 keys in L2 only (written through B), every fifth never written, then the hot key (in
    // A's L1), a bad key and an API key: all sent before any answer is read (pipelined).
    let keys: Vec<String> = (0..200).map(|_| key("streamed")).collect();
    for (i, k) in keys.iter().enumerate().filter(|(i, _)| i % 5 != 0) {
        cb.set(set(k, &i.to_string())).await?;
    }
    let mut reqs: Vec<GetRequest> = keys.iter().map(|k| get(k)).collect();
    reqs.insert(100, get(""));
    reqs.insert(150, get(&hot));
    let api = ApiKey {
        endpoint: "GET /api/projects".into(),
        params_json: r#"{"page":1}"#.into(),
    };
    reqs.push(GetRequest {
        key: String::new(),
        api: Some(api),
    });
    let sent = reqs.len();
    let answers: Vec<_> = ca
        .get_stream(futures_util::stream::iter(reqs))
        .await?
        .into_inner()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    assert_eq!(answers.len(), sent, "one answer per request, then the end");
    let mut at = answers.iter();
    for (i, k) in keys.iter().enumerate() {
        if i == 100 {
            let bad = at.next().unwrap();
            assert_eq!(bad.error_code, Code::InvalidArgument as i32, "{bad:?}");
            assert!(bad.error_message.starts_with("key"), "{bad:?}");
            assert!(bad.response.is_none());
        }
        if i == 149 {
            let r = at.next().unwrap().response.clone().unwrap();
            assert_eq!((r.key.as_str(), r.layer()), (hot.as_str(), CacheLayer::L1));
            assert_eq!(r.value_json, r#"{"hot":true}"#);
        }
        let a = at.next().unwrap();
        assert_eq!(a.error_code, 0, "{a:?}");
        let r = a.response.clone().unwrap();
        assert_eq!(&r.key, k, "answers come in request order");
        if i % 5 == 0 {
            assert!(!r.found, "key {i} was never written: {r:?}");
        } else {
            assert_eq!((r.found, r.layer()), (true, CacheLayer::L2), "key {i}");
            assert_eq!(r.value_json, i.to_string(), "key {i}");
        }
    }
    let r = at.next().unwrap().response.clone().unwrap();
    assert!(
        r.key.starts_with("api:GET /api/projects:") && !r.found,
        "{r:?}"
    );

    // One read at a time on an open stream: each is answered before the next is sent.
    let (tx, requests) = request_channel();
    let mut answers = ca.get_stream(requests).await?.into_inner();
    for req in [get(&hot), get("session:abc"), get(&keys[1])] {
        tx.send(req).await?;
        let a = answers.message().await?.unwrap();
        match a.response {
            Some(r) => assert!(r.found, "{r:?}"),
            None => assert!(a.error_message.starts_with("key"), "{a:?}"),
        }
    }
    drop(tx);
    assert!(
        answers.message().await?.is_none(),
        "the stream ends when the caller closes"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_ends_open_get_streams_with_unavailable_instead_of_waiting_out_the_grace_period()
-> anyhow::Result<()> {
    let w = World::new().await?;
    // A grace period far longer than `Gateway::stop` waits (10 s): an open stream that held the
    // drain up would make the stop fail.
    let gw = Gateway::start(&w.env_with(&[("NCY_SHUTDOWN_GRACE_SECS", "120")])).await?;
    let mut c = gw.client.clone();
    let k = key("drained");
    c.set(set(&k, "1")).await?;
    let (tx, requests) = request_channel();
    let mut answers = c.get_stream(requests).await?.into_inner();
    tx.send(get(&k)).await?;
    assert!(answers.message().await?.unwrap().response.unwrap().found);
    let stopped = tokio::spawn(gw.stop());
    let status = tokio::time::timeout(Duration::from_secs(20), answers.message())
        .await?
        .expect_err("the drain ends the stream");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    stopped.await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_values_are_compressed_and_readable_by_another_instance() -> anyhow::Result<()> {
    let w = World::new().await?;
    let a = w.gateway().await?;
    let b = w.gateway().await?;
    let k = key("big");
    let value = serde_json::json!({ "text": "abc".repeat(100_000), "n": 1 }).to_string();
    a.client.clone().set(set(&k, &value)).await?;
    let r = b.client.clone().get(get(&k)).await?.into_inner();
    assert_eq!(r.layer(), CacheLayer::L2);
    assert_eq!(r.value_json, value);

    // Stored compressed: far smaller than the value, with the lz4 marker byte.
    let mut conn = redis().await;
    let raw: Vec<u8> = redis::cmd("GET")
        .arg(format!("{}:{k}", w.prefix))
        .query_async(&mut conn)
        .await?;
    assert_eq!(raw[0], 0x02);
    assert!(raw.len() < value.len() / 10);
    Ok(())
}

#[tokio::test]
async fn api_keys_are_canonical() -> anyhow::Result<()> {
    let w = World::new().await?;
    let gw = w.gateway().await?;
    let mut c = gw.client.clone();
    let api = |params: &str| ApiKey {
        endpoint: "GET /api/projects".into(),
        params_json: params.into(),
    };
    let reply = c
        .set(SetRequest {
            key: String::new(),
            api: Some(api(r#"{"page":2,"filter":{"status":"open","q":"x"}}"#)),
            value_json: "[1,2]".into(),
            ttl_seconds: Some(60),
            tags: vec![],
        })
        .await?
        .into_inner();
    assert_eq!(
        reply.key,
        "api:GET /api/projects:e7761c77e9a1420dab5d73d134793aa9"
    );
    let r = c
        .get(GetRequest {
            key: String::new(),
            api: Some(api(
                r#"{ "filter": {"q":"x", "status":"open"}, "page": 2 }"#,
            )),
        })
        .await?
        .into_inner();
    assert!(r.found);
    assert_eq!(r.key, reply.key);
    assert_eq!(r.value_json, "[1,2]");
    Ok(())
}
#[tokio::test]
async fn stats_and_metrics_count_hits_per_layer() -> anyhow::Result<()> {
    let w = World::new().await?;
    let gw = w.gateway().await?;
    let mut c = gw.client.clone();
    let user = w.user("Ada").await;
    c.get_or_load(load("user", &user)).await?;
    c.get_or_load(load("user", &user)).await?;
    c.get(get(&key("nothing"))).await?;
    let s = gw.stats().await;
    assert_eq!(s.layers.len(), 3);
    assert_eq!(s.layers[0].layer(), CacheLayer::L1);
    assert_eq!((s.layers[0].hits, s.layers[0].misses), (1, 2));
    assert_eq!((s.layers[2].hits, s.layers[2].misses), (1, 0));
    assert!((s.layers[0].hit_ratio - 1.0 / 3.0).abs() < 1e-9);
    assert_eq!(s.loads, 1);
    assert!(s.l1_entries >= 1 && s.l1_bytes > 0);
    assert!(s.l2_available && s.backplane_connected);

    let (status, body) = ncy_testkit::http_get(gw.addrs.admin, "/metrics").await?;
    assert_eq!(status, 200);
    assert!(
        body.contains(r#"cache_hits_total{cache_layer="l1",key_pattern="user"}"#),
        "{body}"
    );
    assert!(body.contains("cache_misses_total{"));
    assert!(body.contains("cache_operation_duration_seconds_bucket{"));
    Ok(())
}
