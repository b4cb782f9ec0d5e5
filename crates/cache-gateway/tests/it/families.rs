//! One caller of the cache cannot break another service through it: keys of families other
//! services own (ncy-types' `KEY_FAMILIES`) are refused by every key RPC and skipped by
//! InvalidatePattern, loader-backed families are never written by Set, a loader kind cannot take a
//! reserved family, and a key of the wrong type in Redis does not open the circuit every caller
//! shares.
use std::{collections::HashMap, time::Duration};

use futures_util::StreamExt;
use ncy_proto::cache::v1::{
    CacheLayer, DeleteRequest, InvalidatePatternRequest, InvalidateTagRequest, MGetRequest,
};
use ncy_types::{
    KeySpace,
    keys::{KEY_FAMILIES, KeyFamily, Layout},
};
use tonic::Code;

use crate::support::{Gateway, World, get, key, load, redis, set};

/// Plants the realtime gateway's status hash as the realtime gateway writes it.
async fn plant_user_status(keys: &KeySpace) -> HashMap<String, String> {
    let mut conn = redis().await;
    let statuses: HashMap<String, String> = [("u1", "online"), ("u2", "busy")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let _: () = redis::cmd("HSET")
        .arg(keys.user_status())
        .arg(&statuses)
        .query_async(&mut conn)
        .await
        .unwrap();
    statuses
}

async fn exists(key: &str) -> bool {
    let n: i64 = redis::cmd("EXISTS")
        .arg(key)
        .query_async(&mut redis().await)
        .await
        .unwrap();
    n == 1
}

async fn hash_of(key: &str) -> (String, HashMap<String, String>) {
    let mut conn = redis().await;
    let kind: String = redis::cmd("TYPE")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let all: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    (kind, all)
}

/// A logical key of every family callers of the cache may not touch, plus concrete keys.
fn reserved_keys() -> Vec<String> {
    let mut keys: Vec<String> = KEY_FAMILIES
        .iter()
        .filter(|f| f.layout == Layout::Plain && !f.cache_readable())
        .map(|f| format!("{}:x", f.name))
        .collect();
    keys.extend(
        [
            "realtime:user_status",
            "bus:probe:x",
            "cache:tag:x",
            "instances:cache-gateway",
        ]
        .map(String::from),
    );
    keys
}

fn assert_refused(status: &tonic::Status, field: &str, key: &str) {
    let family = KeyFamily::of_logical(key).unwrap().name;
    assert_eq!(status.code(), Code::InvalidArgument, "{key}: {status:?}");
    assert!(
        status.message().starts_with(field) && status.message().contains(family),
        "{key}: {}",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rpcs_refuse_other_services_families_and_write_nothing() -> anyhow::Result<()> {
    let w = World::new().await?;
    let gw = w.gateway().await?;
    let mut c = gw.client.clone();
    let keys = KeySpace::new(w.prefix.clone())?;
    let statuses = plant_user_status(&keys).await;
    let reserved = reserved_keys();
    for family in [
        "realtime",
        "bus",
        "session",
        "user_sessions",
        "rate_limit",
        "cache",
        "instances",
    ] {
        let k = format!("{family}:x");
        assert!(reserved.contains(&k), "{k} is reserved");
    }

    for k in &reserved {
        assert_refused(&c.set(set(k, r#""x""#)).await.unwrap_err(), "key:", k);
        assert_refused(&c.get(get(k)).await.unwrap_err(), "key:", k);
        let del = DeleteRequest {
            key: k.clone(),
            api: None,
        };
        assert_refused(&c.delete(del).await.unwrap_err(), "key:", k);
        let m = MGetRequest {
            keys: vec!["fine:1".into(), k.clone()],
        };
        assert_refused(&c.m_get(m).await.unwrap_err(), "keys[1]:", k);
    }
    let answers: Vec<_> = c
        .get_stream(futures_util::stream::iter(
            reserved.iter().map(|k| get(k)).collect::<Vec<_>>(),
        ))
        .await?
        .into_inner()
        .collect::<Vec<_>>()
        .await;
    assert_eq!(answers.len(), reserved.len());
    for (k, a) in reserved.iter().zip(answers) {
        let a = a?;
        assert_eq!(a.error_code, Code::InvalidArgument as i32, "{k}: {a:?}");
        assert!(a.error_message.starts_with("key:"), "{a:?}");
        assert!(a.response.is_none());
    }

    assert_eq!(
        hash_of(&keys.user_status()).await,
        ("hash".to_owned(), statuses),
        "the realtime gateway's statuses are untouched"
    );
    for family in ["realtime", "bus", "session", "rate_limit", "cache"] {
        let mut conn = redis().await;
        let exists: i64 = redis::cmd("EXISTS")
            .arg(keys.cache_key(&format!("{family}:x")))
            .query_async(&mut conn)
            .await?;
        assert_eq!(exists, 0, "nothing written under {family}:");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broad_patterns_delete_only_cache_keys() -> anyhow::Result<()> {
    let w = World::new().await?;
    let gw = w.gateway().await?;
    let mut c = gw.client.clone();
    let keys = KeySpace::new(w.prefix.clone())?;
    let statuses = plant_user_status(&keys).await;
    // A tag timestamp of the gateway's own, which a pattern must not drop either.
    c.invalidate_tag(InvalidateTagRequest {
        tag: "pricing".into(),
    })
    .await?;
    let tag_key = keys.cache_tag("pricing");
    // The gateway's entry in the instance registry, written when it starts.
    let registry = keys.instances(cache_gateway::SERVICE);
    ncy_testkit::assert_eventually("the gateway registered", Duration::from_secs(10), || {
        let registry = registry.clone();
        async move { exists(&registry).await }
    })
    .await;
    for i in 0..3 {
        c.set(set(&format!("realm:{i}"), "1")).await?;
    }

    for pattern in [
        "realtime:*",
        "realtime:user_status",
        "bus:*",
        "cache:*",
        "instances:*",
    ] {
        let err = c
            .invalidate_pattern(InvalidatePatternRequest {
                pattern: pattern.into(),
                dry_run: false,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{pattern}");
        assert!(err.message().starts_with("pattern:"), "{}", err.message());
    }
    let dry = c
        .invalidate_pattern(InvalidatePatternRequest {
            pattern: "real*".into(),
            dry_run: true,
        })
        .await?
        .into_inner();
    assert_eq!(
        dry.removed, 3,
        "only the realm: keys match among the cache's"
    );
    for pattern in ["real*", "*"] {
        c.invalidate_pattern(InvalidatePatternRequest {
            pattern: pattern.into(),
            dry_run: false,
        })
        .await?;
        assert_eq!(
            hash_of(&keys.user_status()).await,
            ("hash".to_owned(), statuses.clone()),
            "{pattern} spares the realtime gateway's statuses"
        );
    }
    assert!(!c.get(get("realm:1")).await?.into_inner().found);
    assert!(
        exists(&tag_key).await,
        "* spares the gateway's tag timestamps"
    );
    assert!(exists(&registry).await, "* spares the instance registry");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loader_backed_families_are_read_and_deleted_but_never_set() -> anyhow::Result<()> {
    let w = World::new().await?;
    let gw = w.gateway().await?;
    let mut c = gw.client.clone();
    let user = w.user("Ada").await;

    // Default loader kinds and the kinds of the loaders file alike.
    for k in [
        format!("user:{user}"),
        format!("org:{user}"),
        format!("project_tasks:{user}"),
        format!("counted_user:{user}"),
        key("thing"),
    ] {
        let err = c.set(set(&k, r#"{"name":"Mallory"}"#)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{k}");
        assert!(
            err.message().starts_with("key:") && err.message().contains("loader"),
            "{k}: {}",
            err.message()
        );
    }
    let r = c.get_or_load(load("user", &user)).await?.into_inner();
    assert_eq!(r.layer(), CacheLayer::L3, "nothing was planted");
    assert!(r.value_json.contains("Ada") && !r.value_json.contains("Mallory"));
    let r = c.get(get(&format!("user:{user}"))).await?.into_inner();
    assert!(r.found && r.value_json.contains("Ada"), "readable by key");

    // Delete forces a reload.
    c.get_or_load(load("counted_user", &user)).await?;
    c.get_or_load(load("counted_user", &user)).await?;
    assert_eq!(w.load_count().await, 1);
    let d = c
        .delete(DeleteRequest {
            key: format!("counted_user:{user}"),
            api: None,
        })
        .await?
        .into_inner();
    assert!(d.existed);
    let r = c
        .get_or_load(load("counted_user", &user))
        .await?
        .into_inner();
    assert_eq!(r.layer(), CacheLayer::L3);
    assert_eq!(w.load_count().await, 2);
    Ok(())
}

#[tokio::test]
async fn a_loader_kind_may_not_take_a_family_it_does_not_own() -> anyhow::Result<()> {
    let w = World::new().await?;
    for kind in ["realtime", "session", "cache", "api"] {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("loaders.toml");
        std::fs::write(
            &file,
            format!("[loaders.{kind}]\nid = \"text\"\nsql = \"SELECT '1'\"\n"),
        )?;
        let env = w.env_with(&[("NCY_CACHE_LOADERS_FILE", &file.to_string_lossy())]);
        let err = cache_gateway::Settings::load(&ncy_testkit::env_of(&env))
            .err()
            .unwrap_or_else(|| panic!("a {kind} loader was accepted"));
        let text = err.to_string();
        assert!(
            text.contains("NCY_CACHE_LOADERS_FILE") && text.contains(kind),
            "{text}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrongtype_replies_never_open_the_circuit_every_caller_shares() -> anyhow::Result<()> {
    let w = World::new().await?;
    // A circuit that would open after 3 failures and stay open for the whole test.
    let env = w.env_with(&[
        ("NCY_CACHE_BREAKER_FAILURES", "3"),
        ("NCY_CACHE_BREAKER_OPEN_MS", "600000"),
    ]);
    let a = Gateway::start(&env).await?;
    let b = Gateway::start(&env).await?;
    let (mut ca, mut cb) = (a.client.clone(), b.client.clone());
    let keys = KeySpace::new(w.prefix.clone())?;
    let planted = key("planted");
    let mut conn = redis().await;
    let _: () = redis::cmd("HSET")
        .arg(keys.cache_key(&planted))
        .arg("field")
        .arg("value")
        .query_async(&mut conn)
        .await?;

    for _ in 0..20 {
        let r = ca.get(get(&planted)).await?.into_inner();
        assert!(!r.found, "a hash is no cache entry");
    }
    assert!(a.stats().await.l2_available, "the circuit stayed closed");
    let mine = key("mine");
    ca.set(set(&mine, "1")).await?;
    let other = key("other");
    cb.set(set(&other, r#""from b""#)).await?;
    let r = ca.get(get(&other)).await?.into_inner();
    assert_eq!(
        (r.found, r.layer(), r.value_json.as_str()),
        (true, CacheLayer::L2, r#""from b""#),
        "other keys are still served from Redis"
    );
    a.stop().await;
    b.stop().await;
    Ok(())
}
