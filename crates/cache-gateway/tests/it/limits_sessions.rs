//! CheckRateLimit (exact across two instances under concurrency) and the session store.
use std::{collections::BTreeSet, time::Duration};

use ncy_proto::cache::v1::{
    CheckRateLimitRequest, DeleteSessionRequest, DeleteUserSessionsRequest, GetSessionRequest,
    ListUserSessionsRequest, PutSessionRequest,
};
use ncy_testkit::assert_eventually;
use tonic::Code;

use crate::support::{Gateway, World, redis};

fn limit(id: &str, limit: i32, cost: i32) -> CheckRateLimitRequest {
    CheckRateLimitRequest {
        r#type: "api".into(),
        identifier: id.into(),
        limit,
        window_seconds: 3600,
        cost,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_is_exact_across_instances() -> anyhow::Result<()> {
    let w = World::new().await?;
    // 400 in-flight calls share this process's two threads; a generous Redis timeout keeps CPU
    // starvation from turning into UNAVAILABLE answers.
    let env = w.env_with(&[("NCY_CACHE_L2_TIMEOUT_MS", "10000")]);
    let a = Gateway::start(&env).await?;
    let b = Gateway::start(&env).await?;
    let mut calls = Vec::new();
    for i in 0..200 {
        let mut c = if i % 2 == 0 {
            a.client.clone()
        } else {
            b.client.clone()
        };
        calls.push(tokio::spawn(async move {
            c.check_rate_limit(limit("10.0.0.1", 50, 0))
                .await
                .map(|r| r.into_inner())
        }));
    }
    let mut allowed = 0;
    let mut remaining = BTreeSet::new();
    for call in calls {
        let r = call.await??;
        assert_eq!(r.limit, 50);
        if r.allowed {
            allowed += 1;
            remaining.insert(r.remaining);
            assert_eq!(r.retry_after_ms, 0);
        } else {
            assert!(r.retry_after_ms > 0);
            assert_eq!(r.remaining, 0);
        }
        assert!(r.reset_at_ms > 0);
    }
    assert_eq!(allowed, 50);
    assert_eq!(remaining, (0..50).collect::<BTreeSet<i64>>());

    let mut c = a.client.clone();
    let r = c
        .check_rate_limit(limit("other", 10, 4))
        .await?
        .into_inner();
    assert!(r.allowed);
    assert_eq!(r.remaining, 6);
    let r = c
        .check_rate_limit(limit("other", 10, 7))
        .await?
        .into_inner();
    assert!(!r.allowed, "a denied request consumes nothing");
    let r = c
        .check_rate_limit(limit("other", 10, 6))
        .await?
        .into_inner();
    assert!(r.allowed);
    assert_eq!(r.remaining, 0);

    for (req, field) in [
        (limit("x", 0, 0), "limit:"),
        (limit("x", 5, 6), "cost:"),
        (limit("", 5, 1), "identifier:"),
        (
            CheckRateLimitRequest {
                r#type: "Bad Type".into(),
                ..limit("x", 5, 1)
            },
            "type:",
        ),
        (
            CheckRateLimitRequest {
                window_seconds: 0,
                ..limit("x", 5, 1)
            },
            "window_seconds:",
        ),
    ] {
        let err = c.check_rate_limit(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().starts_with(field), "{}", err.message());
    }
    Ok(())
}

fn put(id: &str, user: &str, data: &str, ttl: Option<i64>) -> PutSessionRequest {
    PutSessionRequest {
        session_id: id.into(),
        user_id: user.into(),
        data_json: data.into(),
        ttl_seconds: ttl,
    }
}

#[tokio::test]
async fn sessions_put_get_list_delete() -> anyhow::Result<()> {
    let w = World::new().await?;
    let gw = w.gateway().await?;
    let mut c = gw.client.clone();
    let user = uuid::Uuid::new_v4().to_string();
    let other = uuid::Uuid::new_v4().to_string();

    let first = c
        .put_session(put("", &user, r#"{"ip":"1.2.3.4"}"#, None))
        .await?
        .into_inner();
    assert!(first.created);
    let s1 = first.session.unwrap();
    assert_eq!(s1.session_id.len(), 32);
    assert_eq!(s1.ttl_seconds, 86_400);
    assert_eq!(s1.expires_at_ms - s1.created_at_ms, 86_400_000);

    let again = c
        .put_session(put(&s1.session_id, &user, r#"{"ip":"5.6.7.8"}"#, Some(600)))
        .await?
        .into_inner();
    assert!(!again.created);
    let s1b = again.session.unwrap();
    assert_eq!(s1b.created_at_ms, s1.created_at_ms);
    let err = c
        .put_session(put(&s1.session_id, &other, "{}", None))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    let got = c
        .get_session(GetSessionRequest {
            session_id: s1.session_id.clone(),
            touch: true,
        })
        .await?
        .into_inner()
        .session
        .unwrap();
    assert_eq!(got.data_json, r#"{"ip":"5.6.7.8"}"#);
    assert_eq!(got.user_id, user);
    assert!(got.expires_at_ms >= s1b.expires_at_ms);

    let mut ids = vec![s1.session_id.clone()];
    for i in 0..4 {
        let id = format!("session-{i}-{}", uuid::Uuid::new_v4().simple());
        c.put_session(put(&id, &user, "", None)).await?;
        ids.push(id);
    }
    let short = format!("short-lived-{}", uuid::Uuid::new_v4().simple());
    c.put_session(put(&short, &user, "", Some(1))).await?;

    let c2 = c.clone();
    let user2 = user.clone();
    assert_eventually(
        "the expired session leaves the list",
        Duration::from_secs(10),
        || {
            let mut c = c2.clone();
            let user = user2.clone();
            let short = short.clone();
            async move {
                let page = c
                    .list_user_sessions(ListUserSessionsRequest {
                        user_id: user,
                        page_size: 0,
                        page_token: String::new(),
                    })
                    .await
                    .unwrap()
                    .into_inner();
                !page.sessions.iter().any(|s| s.session_id == short)
            }
        },
    )
    .await;

    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_user_sessions(ListUserSessionsRequest {
                user_id: user.clone(),
                page_size: 2,
                page_token: token.clone(),
            })
            .await?
            .into_inner();
        assert!(page.sessions.len() <= 2);
        seen.extend(page.sessions.into_iter().map(|s| s.session_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(seen, expected, "most recently created first, each once");

    let d = c
        .delete_session(DeleteSessionRequest {
            session_id: ids[1].clone(),
        })
        .await?
        .into_inner();
    assert!(d.existed);
    // Its owner's index lets go of it at once (not only when a List happens to prune it).
    let index = ncy_types::KeySpace::new(w.prefix.clone())?.user_sessions(&user);
    let mut conn = redis().await;
    let score: Option<f64> = redis::cmd("ZSCORE")
        .arg(&index)
        .arg(&ids[1])
        .query_async(&mut conn)
        .await?;
    assert_eq!(score, None, "{index} still lists the deleted session");
    let d = c
        .delete_session(DeleteSessionRequest {
            session_id: ids[1].clone(),
        })
        .await?
        .into_inner();
    assert!(!d.existed);
    let err = c
        .get_session(GetSessionRequest {
            session_id: ids[1].clone(),
            touch: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    let r = c
        .delete_user_sessions(DeleteUserSessionsRequest {
            user_id: user.clone(),
            keep_session_ids: vec![ids[0].clone()],
        })
        .await?
        .into_inner();
    assert_eq!(r.deleted, 3);
    let page = c
        .list_user_sessions(ListUserSessionsRequest {
            user_id: user.clone(),
            page_size: 0,
            page_token: String::new(),
        })
        .await?
        .into_inner();
    assert_eq!(
        page.sessions
            .iter()
            .map(|s| s.session_id.clone())
            .collect::<Vec<_>>(),
        vec![ids[0].clone()]
    );

    for (req, field) in [
        (put("short", &user, "{}", None), "session_id:"),
        (put("", "nope", "{}", None), "user_id:"),
        (put("", &user, "{oops", None), "data_json:"),
        (put("", &user, "{}", Some(0)), "ttl_seconds:"),
    ] {
        let err = c.put_session(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().starts_with(field), "{}", err.message());
    }
    let err = c
        .list_user_sessions(ListUserSessionsRequest {
            user_id: user.clone(),
            page_size: -1,
            page_token: String::new(),
        })
        .await
        .unwrap_err();
    assert!(err.message().starts_with("page_size:"));
    let err = c
        .list_user_sessions(ListUserSessionsRequest {
            user_id: user,
            page_size: 1,
            page_token: "garbage".into(),
        })
        .await
        .unwrap_err();
    assert!(err.message().starts_with("page_token:"));
    Ok(())
}
