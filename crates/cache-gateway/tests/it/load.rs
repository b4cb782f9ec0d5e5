//! GetOrLoad through gRPC: read-through from PostgreSQL, the one-query stampede across two
//! instances, negative caching, refresh-ahead, the stale fail-safe, dependency tags from the
//! loaded document, a kind of the loaders file as a first-class entity (its own metrics label,
//! InvalidateEntity by kind), and invalidation driven by database NOTIFY.
use std::time::Duration;

use ncy_proto::cache::v1::{CacheLayer, EntityType, InvalidateEntityRequest};
use ncy_testkit::assert_eventually;
use tonic::Code;

use crate::support::{Gateway, World, get, key, load, set};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_from_postgres_then_serves_from_cache() -> anyhow::Result<()> {
    let w = World::new().await?;
    let gw = w.gateway().await?;
    let mut c = gw.client.clone();
    let user = w.user("Ada").await;
    let r = c
        .get_or_load(load("user", &user.to_uppercase()))
        .await?
        .into_inner();
    assert_eq!(r.key, format!("user:{user}"));
    assert_eq!(r.layer(), CacheLayer::L3);
    let doc: serde_json::Value = serde_json::from_str(&r.value_json)?;
    assert_eq!(doc["name"], "Ada");
    assert_eq!(doc["id"], user.as_str());
    let r = c.get_or_load(load("user", &user)).await?.into_inner();
    assert_eq!(r.layer(), CacheLayer::L1);
    assert!(!r.stale && r.ttl_remaining_ms > 0);

    let org = w.org("Acme").await;
    w.member(&org, &user).await;
    let r = c.get_or_load(load("org_members", &org)).await?.into_inner();
    let members: serde_json::Value = serde_json::from_str(&r.value_json)?;
    assert_eq!(members[0]["userId"], user.as_str());
    // The list carries the member's tag: invalidating the user drops it.
    c.invalidate_entity(InvalidateEntityRequest {
        entity_type: EntityType::User as i32,
        id: user.clone(),
        kind: String::new(),
    })
    .await?;
    let r = c.get_or_load(load("org_members", &org)).await?.into_inner();
    assert_eq!(
        r.layer(),
        CacheLayer::L3,
        "reloaded after the member changed"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_cold_reads_on_two_instances_run_one_query() -> anyhow::Result<()> {
    let w = World::new().await?;
    // 2,000 in-flight calls (clients and both servers) share this test process's two threads: a
    // generous Redis timeout keeps that CPU starvation from looking like a Redis outage, which
    // would (by design) let each instance load on its own.
    let env = w.env_with(&[("NCY_CACHE_L2_TIMEOUT_MS", "10000")]);
    let a = Gateway::start(&env).await?;
    let b = Gateway::start(&env).await?;
    let user = w.user("Grace").await;
    let mut calls = Vec::new();
    for i in 0..1000 {
        let mut c = if i % 2 == 0 {
            a.client.clone()
        } else {
            b.client.clone()
        };
        let user = user.clone();
        calls.push(tokio::spawn(async move {
            c.get_or_load(load("counted_user", &user))
                .await
                .map(|r| r.into_inner())
        }));
    }
    for call in calls {
        let r = call.await??;
        assert!(r.value_json.contains("Grace"));
    }
    let (sa, sb) = (a.stats().await, b.stats().await);
    assert_eq!(
        w.load_count().await,
        1,
        "exactly one SQL query; {sa:?} {sb:?}"
    );
    assert_eq!(sa.loads + sb.loads, 1);
    assert!(sa.coalesced_loads + sb.coalesced_loads >= 1);
    Ok(())
}

#[tokio::test]
async fn missing_rows_are_cached_negatively() -> anyhow::Result<()> {
    let w = World::new().await?;
    let gw = w.gateway().await?;
    let mut c = gw.client.clone();
    let id = uuid::Uuid::new_v4().to_string();
    let err = c.get_or_load(load("counted_user", &id)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains(&format!("counted_user:{id}")));
    w.exec(&format!(
        "INSERT INTO users (id, email, name) VALUES ('{id}', '{id}@x.io', 'Late')"
    ))
    .await;
    let err = c.get_or_load(load("counted_user", &id)).await.unwrap_err();
    assert_eq!(
        err.code(),
        Code::NotFound,
        "answered from the negative cache"
    );
    assert_eq!(w.load_count().await, 1);
    let mut forced = load("counted_user", &id);
    forced.force_refresh = true;
    let r = c.get_or_load(forced).await?.into_inner();
    assert!(r.value_json.contains("Late"));
    assert_eq!(w.load_count().await, 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_near_expiry_refresh_in_the_background() -> anyhow::Result<()> {
    let w = World::new().await?;
    let env = w.env_with(&[
        ("NCY_CACHE_REFRESH_AHEAD_PERCENT", "90"),
        ("NCY_CACHE_TTL_JITTER_PERCENT", "0"),
    ]);
    let gw = Gateway::start(&env).await?;
    let mut c = gw.client.clone();
    let user = w.user("Old").await;
    let mut first = load("counted_user", &user);
    first.ttl_seconds = Some(30);
    c.get_or_load(first).await?;
    w.exec(&format!(
        "UPDATE users SET name = 'New' WHERE id = '{user}'"
    ))
    .await;
    assert_eventually(
        "a cached read shows the refreshed row",
        Duration::from_secs(20),
        || {
            let mut c = c.clone();
            let user = user.clone();
            async move {
                let r = c
                    .get_or_load(load("counted_user", &user))
                    .await
                    .unwrap()
                    .into_inner();
                assert_ne!(r.layer(), CacheLayer::L3, "never a foreground load");
                r.value_json.contains("New")
            }
        },
    )
    .await;
    assert!(gw.stats().await.refresh_ahead >= 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_loader_serves_the_stale_copy_flagged() -> anyhow::Result<()> {
    let w = World::new().await?;
    let env = w.env_with(&[
        ("NCY_CACHE_REFRESH_AHEAD_PERCENT", "0"),
        ("NCY_CACHE_TTL_JITTER_PERCENT", "0"),
    ]);
    let gw = Gateway::start(&env).await?;
    let mut c = gw.client.clone();
    w.exec("INSERT INTO things VALUES ('t1', '{\"v\":1}')")
        .await;
    let r = c.get_or_load(load("thing", "t1")).await?.into_inner();
    assert!(!r.stale);
    w.exec("DROP TABLE things").await;
    assert_eventually(
        "stale copy served after expiry",
        Duration::from_secs(20),
        || {
            let mut c = c.clone();
            async move {
                let r = c
                    .get_or_load(load("thing", "t1"))
                    .await
                    .unwrap()
                    .into_inner();
                assert_eq!(r.value_json, "{\"v\":1}");
                r.stale
            }
        },
    )
    .await;
    let s = gw.stats().await;
    assert!(s.stale_served >= 1 && s.load_errors >= 1);
    let err = c.get_or_load(load("thing", "t2")).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "no stale copy to serve");
    Ok(())
}

#[tokio::test]
async fn a_loaders_file_kind_has_its_own_metrics_label_and_is_invalidated_by_kind()
-> anyhow::Result<()> {
    let w = World::new().await?;
    let gw = w.gateway().await?;
    let mut c = gw.client.clone();
    let id = format!("g-{}", uuid::Uuid::new_v4().simple());
    w.exec(&format!(
        r#"INSERT INTO things VALUES ('{id}', '{{"n": 1}}')"#
    ))
    .await;
    let r = c.get_or_load(load("gadget", &id)).await?.into_inner();
    assert_eq!(
        (r.key.as_str(), r.layer()),
        (&*format!("gadget:{id}"), CacheLayer::L3)
    );
    let r = c.get_or_load(load("gadget", &id)).await?.into_inner();
    assert_eq!(r.layer(), CacheLayer::L1);
    // A caller's own family is no label of its own, however many a caller invents.
    let report = key("report");
    c.set(set(&report, "1")).await?;
    c.get(get(&report)).await?;

    // The counters are process-wide; only this test loads `gadget`, so its counts are exact.
    let (status, body) = ncy_testkit::http_get(gw.addrs.admin, "/metrics").await?;
    assert_eq!(status, 200);
    for layer in ["l1", "l3"] {
        let line = format!(r#"cache_hits_total{{cache_layer="{layer}",key_pattern="gadget"}} 1"#);
        assert!(body.lines().any(|l| l == line), "{line} in\n{body}");
    }
    assert!(!body.contains(r#"key_pattern="report""#), "{body}");

    // An entry a caller made dependent on the gadget, through the entity's tag.
    let page = key("page");
    let mut req = set(&page, "[]");
    req.tags = vec![format!("gadget:{id}")];
    c.set(req).await?;
    let r = c
        .invalidate_entity(InvalidateEntityRequest {
            kind: "gadget".into(),
            id: id.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(r.deleted_keys, [format!("gadget:{id}")]);
    assert_eq!(r.invalidated_tags, [format!("gadget:{id}")]);
    let r = c.get_or_load(load("gadget", &id)).await?.into_inner();
    assert_eq!(r.layer(), CacheLayer::L3, "a fresh load");
    assert_eq!(w.load_count().await, 2);
    assert!(
        !c.get(get(&page)).await?.into_inner().found,
        "{page} dropped"
    );

    let user = EntityType::User as i32;
    for (entity_type, kind, id, field) in [
        (0, "nope", "x", "kind:"),
        (user, "gadget", "x", "kind:"),
        (0, "", "x", "entity_type:"),
        (99, "", "x", "entity_type:"),
        (0, "counted_user", "not-a-uuid", "id:"),
        (0, "gadget", "", "id:"),
    ] {
        let err = c
            .invalidate_entity(InvalidateEntityRequest {
                entity_type,
                id: id.into(),
                kind: kind.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{kind:?}");
        assert!(err.message().starts_with(field), "{}", err.message());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_changed_by_plain_sql_is_read_fresh_after_notify() -> anyhow::Result<()> {
    let w = World::new().await?;
    let env = w.env_with(&[("NCY_CACHE_DB_NOTIFY", "true")]);
    let a = Gateway::start(&env).await?;
    let b = Gateway::start(&env).await?;
    // LISTEN starts in the background: wait until each instance has seen one NOTIFY (an update
    // made before its LISTEN was live is never delivered, so retry with a new name).
    let probe = w.user("probe").await;
    for (i, c) in [&a.client, &b.client].into_iter().enumerate() {
        let mut c = c.clone();
        let mut live = false;
        for round in 0..10 {
            c.get_or_load(load("user", &probe)).await?;
            let name = format!("probe-{i}-{round}");
            w.exec(&format!(
                "UPDATE users SET name = '{name}' WHERE id = '{probe}'"
            ))
            .await;
            let until = tokio::time::Instant::now() + Duration::from_secs(2);
            while tokio::time::Instant::now() < until {
                let r = c.get_or_load(load("user", &probe)).await?.into_inner();
                if r.value_json.contains(&name) {
                    live = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if live {
                break;
            }
        }
        assert!(live, "instance {i} never saw a NOTIFY");
    }
    let user = w.user("Before").await;
    let org = w.org("Org").await;
    w.member(&org, &user).await;
    for c in [&a.client, &b.client] {
        let mut c = c.clone();
        c.get_or_load(load("user", &user)).await?;
        c.get_or_load(load("user", &user)).await?;
        c.get_or_load(load("org_members", &org)).await?;
    }
    w.exec(&format!(
        "UPDATE users SET name = 'After' WHERE id = '{user}'"
    ))
    .await;
    for c in [&a.client, &b.client] {
        assert_eventually(
            "user and member list fresh",
            Duration::from_secs(10),
            || {
                let mut c = c.clone();
                let (user, org) = (user.clone(), org.clone());
                async move {
                    let u = c
                        .get_or_load(load("user", &user))
                        .await
                        .unwrap()
                        .into_inner();
                    let m = c
                        .get_or_load(load("org_members", &org))
                        .await
                        .unwrap()
                        .into_inner();
                    u.value_json.contains("After") && m.value_json.contains("After")
                }
            },
        )
        .await;
    }
    let other = w.user("Joiner").await;
    w.member(&org, &other).await;
    let mut c = a.client.clone();
    assert_eventually(
        "membership change invalidates the list",
        Duration::from_secs(10),
        || {
            let mut c = c.clone();
            let org = org.clone();
            async move {
                let m = c
                    .get_or_load(load("org_members", &org))
                    .await
                    .unwrap()
                    .into_inner();
                m.value_json.contains("Joiner")
            }
        },
    )
    .await;
    assert!(c.get_or_load(load("org", &org)).await.is_ok());
    Ok(())
}
