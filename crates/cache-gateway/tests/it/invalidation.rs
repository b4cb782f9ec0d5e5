//! Invalidation and refusal: tags and InvalidateEntity reaching every instance, InvalidatePattern
//! scanning and sparing reserved families, and every bad input answered INVALID_ARGUMENT naming the
//! field, with nothing written and no loader run.
use std::time::Duration;

use ncy_proto::cache::v1::{
    ApiKey, CacheLayer, EntityType, InvalidateEntityRequest, InvalidatePatternRequest,
    InvalidateTagRequest, MGetRequest, SetRequest,
};
use ncy_testkit::assert_eventually;
use tonic::Code;

use crate::support::{World, get, key, load, set};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_and_entity_invalidation_reach_every_instance() -> anyhow::Result<()> {
    let w = World::new().await?;
    let a = w.gateway().await?;
    let b = w.gateway().await?;
    let (mut ca, mut cb) = (a.client.clone(), b.client.clone());
    let user = uuid::Uuid::new_v4().to_string();
    let list = key("list");
    let other = key("other");
    let mut req = set(&list, "[]");
    req.tags = vec![format!("user:{user}"), "pricing".into()];
    ca.set(req).await?;
    ca.set(set(&other, "1")).await?;
    assert_eventually(
        "B holds the tagged list in L1",
        Duration::from_secs(5),
        || {
            let mut cb = cb.clone();
            let list = list.clone();
            async move { cb.get(get(&list)).await.unwrap().into_inner().layer() == CacheLayer::L1 }
        },
    )
    .await;
    let r = ca
        .invalidate_entity(InvalidateEntityRequest {
            entity_type: EntityType::User as i32,
            id: user.to_uppercase(),
            kind: String::new(),
        })
        .await?
        .into_inner();
    assert_eq!(r.deleted_keys, vec![format!("user:{user}")]);
    assert_eq!(r.invalidated_tags, vec![format!("user:{user}")]);
    assert!(!ca.get(get(&list)).await?.into_inner().found);
    assert_eventually("B drops the tagged entry", Duration::from_secs(5), || {
        let mut cb = cb.clone();
        let list = list.clone();
        async move { !cb.get(get(&list)).await.unwrap().into_inner().found }
    })
    .await;
    assert!(
        cb.get(get(&other)).await?.into_inner().found,
        "untagged entry kept"
    );

    let mut req = set(&list, "[1]");
    req.tags = vec!["pricing".into()];
    ca.set(req).await?;
    assert!(
        cb.get(get(&list)).await?.into_inner().found,
        "written after the invalidation"
    );
    let t = ca
        .invalidate_tag(InvalidateTagRequest {
            tag: "pricing".into(),
        })
        .await?
        .into_inner();
    assert!(t.invalidated_at_ms > 0);
    assert_eventually("tag invalidation on B", Duration::from_secs(5), || {
        let mut cb = cb.clone();
        let list = list.clone();
        async move { !cb.get(get(&list)).await.unwrap().into_inner().found }
    })
    .await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidate_pattern_scans_and_spares_reserved_families() -> anyhow::Result<()> {
    let w = World::new().await?;
    let a = w.gateway().await?;
    let b = w.gateway().await?;
    let (mut ca, mut cb) = (a.client.clone(), b.client.clone());
    for i in 0..25 {
        ca.set(set(&format!("report:{i}"), "1")).await?;
    }
    ca.set(set("keep:1", "1")).await?;
    cb.get(get("report:3")).await?;
    let dry = ca
        .invalidate_pattern(InvalidatePatternRequest {
            pattern: "report:*".into(),
            dry_run: true,
        })
        .await?
        .into_inner();
    assert_eq!(dry.removed, 25);
    assert!(ca.get(get("report:1")).await?.into_inner().found);
    let done = ca
        .invalidate_pattern(InvalidatePatternRequest {
            pattern: "report:*".into(),
            dry_run: false,
        })
        .await?
        .into_inner();
    assert_eq!(done.removed, 25);
    assert!(!ca.get(get("report:1")).await?.into_inner().found);
    assert!(ca.get(get("keep:1")).await?.into_inner().found);
    assert_eventually("B's L1 emptied", Duration::from_secs(5), || {
        let mut cb = cb.clone();
        async move { !cb.get(get("report:3")).await.unwrap().into_inner().found }
    })
    .await;
    let err = ca
        .invalidate_pattern(InvalidatePatternRequest {
            pattern: "session:*".into(),
            dry_run: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("pattern:"));
    Ok(())
}
#[tokio::test]
async fn bad_input_is_invalid_argument_naming_the_field_and_writes_nothing() -> anyhow::Result<()> {
    let w = World::new().await?;
    let gw = w.gateway().await?;
    let mut c = gw.client.clone();
    let k = key("bad");
    let with = |f: &dyn Fn(&mut SetRequest)| {
        let mut r = set(&k, "1");
        f(&mut r);
        r
    };
    let cases: Vec<(SetRequest, &str)> = vec![
        (with(&|r| r.key = String::new()), "key:"),
        (with(&|r| r.key = "k".repeat(1025)), "key:"),
        (with(&|r| r.key = "has space".into()), "key:"),
        (with(&|r| r.key = "session:abc".into()), "key:"),
        (with(&|r| r.key = "rate_limit:a:b".into()), "key:"),
        (with(&|r| r.key = "user_sessions:x".into()), "key:"),
        (
            with(&|r| {
                r.api = Some(ApiKey {
                    endpoint: "e".into(),
                    params_json: "{}".into(),
                })
            }),
            "key:",
        ),
        (with(&|r| r.value_json = "{not json".into()), "value_json:"),
        (
            with(&|r| r.value_json = format!("\"{}\"", "x".repeat(4 << 20))),
            "value_json:",
        ),
        (with(&|r| r.ttl_seconds = Some(0)), "ttl_seconds:"),
        (with(&|r| r.ttl_seconds = Some(-5)), "ttl_seconds:"),
        (with(&|r| r.ttl_seconds = Some(2_592_001)), "ttl_seconds:"),
        (with(&|r| r.tags = vec!["a b".into()]), "tags[0]:"),
        (
            with(&|r| r.tags = (0..33).map(|i| i.to_string()).collect()),
            "tags:",
        ),
        (
            with(&|r| {
                r.key = String::new();
                r.api = Some(ApiKey {
                    endpoint: "e".into(),
                    params_json: "{".into(),
                })
            }),
            "api.params_json:",
        ),
        (
            with(&|r| {
                r.key = String::new();
                r.api = Some(ApiKey {
                    endpoint: String::new(),
                    params_json: String::new(),
                })
            }),
            "api.endpoint:",
        ),
    ];
    for (req, field) in cases {
        let err = c.set(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{field}");
        assert!(
            err.message().starts_with(field),
            "{field}: {}",
            err.message()
        );
    }
    assert!(!c.get(get(&k)).await?.into_inner().found, "nothing written");

    let err = c.get(get("")).await.unwrap_err();
    assert!(err.message().starts_with("key:"));
    let err = c.m_get(MGetRequest { keys: vec![] }).await.unwrap_err();
    assert!(err.message().starts_with("keys:"));
    let err = c
        .m_get(MGetRequest {
            keys: vec!["ok".into(), "session:x".into()],
        })
        .await
        .unwrap_err();
    assert!(err.message().starts_with("keys[1]:"), "{}", err.message());
    for (kind, id, field) in [
        ("nope", "x", "kind:"),
        ("Bad-Kind", "x", "kind:"),
        ("user", "not-a-uuid", "id:"),
    ] {
        let err = c.get_or_load(load(kind, id)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().starts_with(field), "{}", err.message());
    }
    let mut req = load("user", &uuid::Uuid::new_v4().to_string());
    req.ttl_seconds = Some(0);
    let err = c.get_or_load(req).await.unwrap_err();
    assert!(err.message().starts_with("ttl_seconds:"));
    let err = c
        .invalidate_entity(InvalidateEntityRequest {
            entity_type: 0,
            id: uuid::Uuid::new_v4().to_string(),
            kind: String::new(),
        })
        .await
        .unwrap_err();
    assert!(err.message().starts_with("entity_type:"));
    let err = c
        .invalidate_entity(InvalidateEntityRequest {
            entity_type: EntityType::Org as i32,
            id: "x".into(),
            kind: String::new(),
        })
        .await
        .unwrap_err();
    assert!(err.message().starts_with("id:"));
    let err = c
        .invalidate_tag(InvalidateTagRequest { tag: String::new() })
        .await
        .unwrap_err();
    assert!(err.message().starts_with("tag:"));
    assert_eq!(
        gw.stats().await.loads,
        0,
        "no loader ran for rejected input"
    );
    Ok(())
}
