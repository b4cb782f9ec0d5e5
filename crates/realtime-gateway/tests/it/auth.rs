//! Authentication on the browser socket: HS256 and RS256 tokens, every rejection (`alg: none`,
//! forged, expired, not yet valid, wrong audience/issuer, no user), the token in the query (only
//! when enabled), the authentication timeout, and expiry versus `refresh`; plus what an
//! authenticated socket joins and receives from the gRPC sends.
use std::time::Duration;

use ncy_proto::realtime::v1 as pb;
use serde_json::json;

use crate::support::{Fixture, Ws, hs_token, now};

#[tokio::test]
async fn authenticate_joins_user_org_and_broadcast_and_delivers_sends() {
    let fx = Fixture::new().await;
    let mut gw = fx.start(&[]).await;
    let mut ws = Ws::connect(gw.ws(), "").await;
    ws.send(json!({"type": "authenticate", "token": fx.token()}))
        .await;
    let mut joined = Vec::new();
    let auth = loop {
        let v = ws.recv().await.unwrap();
        match v["type"].as_str() {
            Some("joined") => joined.push(v["room"].as_str().unwrap().to_owned()),
            Some("authenticated") => break v,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(auth["userId"], fx.user.to_string());
    joined.sort();
    let mut want = vec![
        "broadcast".to_owned(),
        format!("org:{}", fx.org),
        format!("user:{}", fx.user),
    ];
    want.sort();
    assert_eq!(joined, want);

    let d = gw
        .grpc
        .send_to_user(pb::SendToUserRequest {
            user_id: fx.user.to_string(),
            event: "notification".into(),
            data_json: r#"{"n":12345678901234567}"#.into(),
            idempotency_key: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .delivery
        .unwrap();
    let m = ws.until("message").await;
    assert_eq!(m["room"], format!("user:{}", fx.user));
    assert_eq!(m["event"], "notification");
    assert_eq!(m["data"]["n"], json!(12_345_678_901_234_567_u64));
    assert_eq!(m["offset"], d.offset);
    assert_eq!(m["epoch"], d.epoch);
    assert_eq!(m["ts"], d.published_at_ms);

    gw.grpc
        .send_to_organization(pb::SendToOrganizationRequest {
            organization_id: fx.org.to_string(),
            event: "org_news".into(),
            data_json: "{}".into(),
            idempotency_key: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(ws.until("message").await["event"], "org_news");
    let first = gw
        .grpc
        .broadcast(pb::BroadcastRequest {
            event: "hello".into(),
            data_json: String::new(),
            idempotency_key: "k1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .delivery
        .unwrap();
    let again = gw
        .grpc
        .broadcast(pb::BroadcastRequest {
            event: "hello".into(),
            data_json: String::new(),
            idempotency_key: "k1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .delivery
        .unwrap();
    assert!(again.deduplicated && !first.deduplicated);
    assert_eq!(again.offset, first.offset);
    let m = ws.until("message").await;
    assert_eq!(
        (m["room"].as_str(), m["data"].clone()),
        (Some("broadcast"), json!(null))
    );
    // The deduplicated repeat was not delivered: the next message is a fresh one.
    gw.grpc
        .broadcast(pb::BroadcastRequest {
            event: "after".into(),
            data_json: String::new(),
            idempotency_key: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(ws.until("message").await["event"], "after");
    gw.stop().await;
}

/// A token in the URL ends up in proxy and ingress access logs, so `/ws?token=` is off unless
/// `NCY_WS_QUERY_TOKEN=true`. Off, the socket opens unauthenticated: its first frame is an
/// `unauthenticated` error saying so, it is served as any socket that has not authenticated yet,
/// and it may still send `authenticate`.
#[tokio::test]
async fn a_token_in_the_query_authenticates_only_when_enabled() {
    let fx = Fixture::new().await;
    let gw = fx.start(&[]).await;
    let mut ws = Ws::connect(gw.ws(), &format!("?token={}", fx.token())).await;
    let first = ws.recv().await.unwrap();
    assert_eq!(
        (&first["type"], &first["code"]),
        (&json!("error"), &json!("unauthenticated")),
        "{first}"
    );
    ws.send(json!({"type": "ping"})).await;
    let answer = ws.recv().await.unwrap();
    assert_eq!(answer["code"], "unauthenticated", "{answer}");
    ws.send(json!({"type": "authenticate", "token": fx.token()}))
        .await;
    assert_eq!(
        ws.until("authenticated").await["userId"],
        fx.user.to_string()
    );
    gw.stop().await;

    let gw = fx.start(&[("NCY_WS_QUERY_TOKEN", "true")]).await;
    let mut ws = Ws::connect(gw.ws(), &format!("?token={}", fx.token())).await;
    assert_eq!(
        ws.until("authenticated").await["userId"],
        fx.user.to_string()
    );
    gw.stop().await;
}

#[tokio::test]
async fn bad_tokens_get_authentication_failed_and_close_4003() {
    let fx = Fixture::new().await;
    let gw = fx
        .start(&[
            ("NCY_JWT_AUDIENCE", "ncy-web"),
            ("NCY_JWT_ISSUER", "ncy-auth"),
        ])
        .await;
    let good = json!({"userId": fx.user, "organizationId": fx.org, "exp": now() + 3600,
                      "aud": "ncy-web", "iss": "ncy-auth"});
    let with = |k: &str, v: serde_json::Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };
    // `alg: none`: header {"alg":"none"}, no signature.
    let b64 = |s: &str| {
        use base64_url_like::encode;
        encode(s.as_bytes())
    };
    let none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&good.to_string())
    );
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &good,
        &jsonwebtoken::EncodingKey::from_secret(b"another-secret-another-secret-xx"),
    )
    .unwrap();
    let cases = [
        ("garbage", "not.a.jwt".to_owned()),
        ("alg none", none),
        ("forged", forged),
        ("expired", hs_token(&with("exp", json!(now() - 10)))),
        ("not yet valid", hs_token(&with("nbf", json!(now() + 600)))),
        ("wrong audience", hs_token(&with("aud", json!("other")))),
        ("wrong issuer", hs_token(&with("iss", json!("evil")))),
        // Another token of the app signed with the same secret but meant for something else.
        (
            "no audience",
            hs_token(&json!({"userId": fx.user, "organizationId": fx.org,
                             "exp": now() + 3600, "iss": "ncy-auth"})),
        ),
        (
            "no issuer",
            hs_token(&json!({"userId": fx.user, "organizationId": fx.org,
                             "exp": now() + 3600, "aud": "ncy-web"})),
        ),
        (
            "no user",
            hs_token(&json!({"exp": now() + 60, "aud": "ncy-web", "iss": "ncy-auth"})),
        ),
    ];
    for (what, token) in cases {
        let mut ws = Ws::connect(gw.ws(), "").await;
        ws.send(json!({"type": "authenticate", "token": token}))
            .await;
        let v = ws.recv().await.unwrap();
        assert_eq!(v["type"], "authentication_failed", "{what}: {v}");
        assert_eq!(ws.close_code().await, Some(4003), "{what}");
    }
    // The good token works on the same gateway.
    Ws::authed(gw.ws(), &hs_token(&good)).await;
    gw.stop().await;
}

/// Minimal base64url without padding, so the test needs no extra crate.
mod base64_url_like {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    pub fn encode(input: &[u8]) -> String {
        let mut out = String::new();
        for chunk in input.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            let chars = chunk.len() + 1;
            for i in 0..chars {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }
}

#[tokio::test]
async fn unauthenticated_sockets_are_closed_after_the_timeout_and_processed_nothing() {
    let fx = Fixture::new().await;
    let gw = fx.start(&[("NCY_WS_AUTH_TIMEOUT_MS", "500")]).await;
    let mut ws = Ws::connect(gw.ws(), "").await;
    ws.send(json!({"type": "join_project", "projectId": fx.project}))
        .await;
    let v = ws.recv().await.unwrap();
    assert_eq!(
        (v["type"].as_str(), v["code"].as_str()),
        (Some("error"), Some("unauthenticated"))
    );
    assert_eq!(ws.close_code().await, Some(4001));
    gw.stop().await;
}

#[tokio::test]
async fn expired_token_closes_4004_unless_refreshed() {
    let fx = Fixture::new().await;
    let gw = fx.start(&[]).await;
    let short = |secs: i64| hs_token(&json!({"userId": fx.user, "exp": now() + secs}));
    let mut ws = Ws::authed(gw.ws(), &short(2)).await;
    assert_eq!(ws.close_code().await, Some(4004));

    let old_exp = now() + 2;
    let mut ws = Ws::authed(
        gw.ws(),
        &hs_token(&json!({"userId": fx.user, "exp": old_exp})),
    )
    .await;
    ws.send(json!({"type": "refresh", "token": short(3600)}))
        .await;
    assert!(ws.until("refreshed").await["exp"].as_i64().unwrap() > old_exp);
    // A token for someone else is refused, the connection stays.
    let other = hs_token(&json!({"userId": fx.outsider, "exp": now() + 3600}));
    ws.send(json!({"type": "refresh", "token": other})).await;
    assert_eq!(ws.until("error").await["code"], "refresh_failed");
    // Past the old expiry the socket still answers.
    while now() <= old_exp + 1 {
        ws.send(json!({"type": "ping"})).await;
        ws.until("pong").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ws.send(json!({"type": "ping"})).await;
    ws.until("pong").await;
    gw.stop().await;
}

#[tokio::test]
async fn rs256_tokens_verify_with_the_public_key_and_hs256_is_refused() {
    let fx = Fixture::new().await;
    let dir = tempfile_dir();
    let private = dir.join("test-only-private.pem");
    let public = dir.join("test-only-public.pem");
    let ok = std::process::Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&private)
        .arg("2048")
        .output()
        .unwrap()
        .status
        .success()
        && std::process::Command::new("openssl")
            .args(["rsa", "-pubout", "-in"])
            .arg(&private)
            .arg("-out")
            .arg(&public)
            .output()
            .unwrap()
            .status
            .success();
    assert!(ok, "openssl could not generate a test RSA key");
    let gw = fx
        .start(&[
            ("NCY_JWT_ALGORITHM", "RS256"),
            ("NCY_JWT_PUBLIC_KEY_FILE", public.to_str().unwrap()),
        ])
        .await;
    let claims = json!({"userId": fx.user, "exp": now() + 3600});
    let rs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(&std::fs::read(&private).unwrap()).unwrap(),
    )
    .unwrap();
    Ws::authed(gw.ws(), &rs).await;
    let mut ws = Ws::connect(gw.ws(), "").await;
    ws.send(json!({"type": "authenticate", "token": hs_token(&claims)}))
        .await;
    assert_eq!(ws.recv().await.unwrap()["type"], "authentication_failed");
    assert_eq!(ws.close_code().await, Some(4003));
    gw.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ncy-rt-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
