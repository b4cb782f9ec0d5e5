//! API keys on every gRPC server, tried as an outside caller would: no key, a wrong key, a key
//! without the RPC's scope, a key with it; health and reflection open; the keys file re-read while
//! serving (rotation) and a bad edit not locking anyone out; garbage method paths neither answered
//! to anonymous callers nor added to `/metrics`; a request that does not decode answered
//! INVALID_ARGUMENT; and services with RPCs refusing to start without keys.
use std::{path::Path, time::Duration};

use ncy_proto::{
    cache::v1::{
        GetRequest, GetResponse, InvalidatePatternRequest, SetRequest,
        cache_service_client::CacheServiceClient,
    },
    jobs::v1::{
        CleanJobsRequest, DeadLetterSelection, EnqueueRequest, JobState, ListJobsRequest,
        PauseQueueRequest, PurgeDeadLettersRequest, QueueHistoryRequest, RetryDeadLettersRequest,
        job_service_client::JobServiceClient,
    },
    realtime::v1::{
        BroadcastRequest, SendToUserRequest, realtime_service_client::RealtimeServiceClient,
    },
};
use ncy_testkit::{
    InProcess, TestDatabase, assert_eventually, env_of, http_get, service_env, unique_prefix,
};
use tonic::{Code, Request, transport::Channel};

use crate::support::stop;

const READER: &str = "reader-key-0123456789abcdef0123";
const WRITER: &str = "writer-key-0123456789abcdef0123";
const ADMIN: &str = "admin-key-0123456789abcdef01234";

fn keys_toml(keys: &[(&str, &str, &[&str])]) -> String {
    keys.iter()
        .map(|(name, secret, scopes)| {
            let scopes: Vec<String> = scopes.iter().map(|s| format!("{s:?}")).collect();
            format!(
                "[[keys]]\nname = {name:?}\nsecret = {secret:?}\nscopes = [{}]\n\n",
                scopes.join(", ")
            )
        })
        .collect()
}

/// The test environment with authentication required and keys from `file`.
fn auth_env(db: &TestDatabase, file: &Path) -> Vec<(String, String)> {
    let mut env = service_env(&unique_prefix(), Some(&db.url));
    env.retain(|(k, _)| k != "NCY_API_AUTH");
    env.push(("NCY_API_KEYS_FILE".into(), file.display().to_string()));
    env.push(("NCY_API_KEYS_RELOAD_SECS".into(), "1".into()));
    env
}

fn with_key<T>(message: T, key: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {key}").parse().expect("ascii"),
    );
    request
}

async fn channel(addr: std::net::SocketAddr) -> anyhow::Result<Channel> {
    Ok(Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?)
}

/// A cache gateway serving in this process.
async fn cache_gateway(
    env: &[(String, String)],
) -> anyhow::Result<(ncy_runtime::LocalAddrs, InProcess)> {
    let app =
        cache_gateway::Application::build(cache_gateway::Settings::load(&env_of(env))?).await?;
    let addrs = app.local_addrs();
    // Health needs no key: `serving` polls it anonymously.
    let running = InProcess::serving(addrs.grpc, |stop| app.run_until_stopped(stop)).await;
    Ok((addrs, running))
}

fn get(key: &str) -> GetRequest {
    GetRequest {
        key: key.into(),
        ..Default::default()
    }
}

fn set(key: &str) -> SetRequest {
    SetRequest {
        key: key.into(),
        value_json: "{\"v\":1}".into(),
        ttl_seconds: Some(60),
        ..Default::default()
    }
}

#[tokio::test]
async fn the_cache_gateway_answers_only_keys_with_the_rpcs_scope() -> anyhow::Result<()> {
    let db = TestDatabase::migrated().await?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("api-keys.toml");
    std::fs::write(
        &file,
        keys_toml(&[
            ("reader", READER, &["cache:read"]),
            ("writer", WRITER, &["cache:read", "cache:write"]),
            ("admin", ADMIN, &["cache:*"]),
        ]),
    )?;
    let (addrs, running) = cache_gateway(&auth_env(&db, &file)).await?;
    let listed = ncy_testkit::reflection_services(addrs.grpc).await?;
    assert!(
        listed.iter().any(|s| s == "ncy.cache.v1.CacheService"),
        "{listed:?}"
    );

    let mut client = CacheServiceClient::new(channel(addrs.grpc).await?);
    let key = "api:auth-test:0";

    // No key, an unknown key, a malformed header: UNAUTHENTICATED, and nothing is written.
    let e = client.set(set(key)).await.expect_err("anonymous");
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let e = client
        .set(with_key(set(key), "not-a-key-0123456789abcdef0123"))
        .await
        .expect_err("unknown key");
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let mut basic = Request::new(get(key));
    basic
        .metadata_mut()
        .insert("authorization", "Basic dXNlcjpwYXNz".parse()?);
    assert_eq!(
        client.get(basic).await.expect_err("basic").code(),
        Code::Unauthenticated
    );

    // A read key reads, and may not write: PERMISSION_DENIED naming the scope; nothing written.
    let found = client.get(with_key(get(key), READER)).await?.into_inner();
    assert!(!found.found);
    let e = client
        .set(with_key(set(key), READER))
        .await
        .expect_err("read-only key");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("cache:write"), "{e:?}");
    assert!(
        !client
            .get(with_key(get(key), WRITER))
            .await?
            .into_inner()
            .found
    );

    // A write key writes but may not invalidate by pattern; the admin key may.
    client.set(with_key(set(key), WRITER)).await?;
    assert!(
        client
            .get(with_key(get(key), READER))
            .await?
            .into_inner()
            .found
    );
    let pattern = InvalidatePatternRequest {
        pattern: "api:auth-test:*".into(),
        dry_run: true,
    };
    let e = client
        .invalidate_pattern(with_key(pattern.clone(), WRITER))
        .await
        .expect_err("not admin");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("cache:admin"), "{e:?}");
    client.invalidate_pattern(with_key(pattern, ADMIN)).await?;

    // A message that does not decode as the RPC's request is the caller's error.
    let mut raw = tonic::client::Grpc::new(channel(addrs.grpc).await?);
    raw.ready().await?;
    let not_a_get = prost_types::Duration {
        seconds: 5,
        nanos: 0,
    };
    let e = raw
        .unary::<_, GetResponse, _>(
            with_key(not_a_get, READER),
            "/ncy.cache.v1.CacheService/Get".parse()?,
            ncy_proto::codec::ProstCodec::<prost_types::Duration, GetResponse>::default(),
        )
        .await
        .expect_err("undecodable");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

    // Garbage method paths: refused to an anonymous caller, UNIMPLEMENTED with a key, and none of
    // them becomes a series of its own in /metrics.
    for i in 0..20 {
        let path = format!("/garbage.Svc{i}/Method{i}");
        raw.ready().await?;
        let e = raw
            .unary::<_, GetResponse, _>(
                Request::new(get(key)),
                path.parse()?,
                ncy_proto::codec::ProstCodec::<GetRequest, GetResponse>::default(),
            )
            .await
            .expect_err("anonymous garbage");
        assert_eq!(e.code(), Code::Unauthenticated, "{path}: {e:?}");
        raw.ready().await?;
        let e = raw
            .unary::<_, GetResponse, _>(
                with_key(get(key), ADMIN),
                path.parse()?,
                ncy_proto::codec::ProstCodec::<GetRequest, GetResponse>::default(),
            )
            .await
            .expect_err("garbage");
        assert_eq!(e.code(), Code::Unimplemented, "{path}: {e:?}");
    }
    let (_, metrics) = http_get(addrs.admin, "/metrics").await?;
    assert!(
        !metrics.contains("garbage.Svc"),
        "garbage paths in /metrics"
    );
    assert!(
        metrics.contains("method=\"unknown\""),
        "unknown label missing"
    );
    assert!(metrics.contains("ncy_grpc_auth_rejected_total"));

    // Rotation: the file is re-read while serving. A new key works and a removed one stops working,
    // without a restart.
    const ROTATED: &str = "rotated-key-0123456789abcdef012";
    std::fs::write(
        &file,
        keys_toml(&[
            ("reader-2", ROTATED, &["cache:read"]),
            ("writer", WRITER, &["cache:read", "cache:write"]),
        ]),
    )?;
    let addr = addrs.grpc;
    assert_eventually(
        "the rotated keys are in force",
        Duration::from_secs(15),
        || async move {
            let Ok(channel) = channel(addr).await else {
                return false;
            };
            let mut c = CacheServiceClient::new(channel);
            let new_ok = c.get(with_key(get("api:x:1"), ROTATED)).await.is_ok();
            let old_refused = matches!(
                c.get(with_key(get("api:x:1"), READER)).await,
                Err(e) if e.code() == Code::Unauthenticated
            );
            new_ok && old_refused
        },
    )
    .await;

    // A bad edit keeps the keys in force (and is counted), so callers are not locked out.
    std::fs::write(&file, "[[keys]]\nname = \"broken\"\n")?;
    let admin = addrs.admin;
    assert_eventually(
        "a failed reload is counted",
        Duration::from_secs(15),
        || async move {
            http_get(admin, "/metrics")
                .await
                .is_ok_and(|(_, m)| m.contains("ncy_api_keys_reload_failures_total"))
        },
    )
    .await;
    client.set(with_key(set("api:auth-test:1"), WRITER)).await?;

    stop(running).await
}

#[tokio::test]
async fn job_and_realtime_rpcs_need_their_own_scopes() -> anyhow::Result<()> {
    let db = TestDatabase::migrated().await?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("api-keys.toml");
    std::fs::write(
        &file,
        keys_toml(&[
            ("producer", WRITER, &["jobs:enqueue", "realtime:publish"]),
            ("viewer", READER, &["jobs:read", "realtime:read"]),
            ("operator", ADMIN, &["*"]),
        ]),
    )?;

    let mut env = auth_env(&db, &file);
    env.push(("NCY_CRON_INSTALL_DEFAULTS".into(), "false".into()));
    let scheduler =
        job_scheduler::Application::build(job_scheduler::Settings::load(&env_of(&env))?).await?;
    let jobs_addr = scheduler.local_addrs().grpc;
    let jobs_running =
        InProcess::serving(jobs_addr, |stop| scheduler.run_until_stopped(stop)).await;
    let mut jobs = JobServiceClient::new(channel(jobs_addr).await?);

    let enqueue = EnqueueRequest {
        queue: "notification".into(),
        job_type: "send-notification".into(),
        payload_json: serde_json::json!({
            "userId": uuid::Uuid::new_v4(), "title": "t", "body": "b"
        })
        .to_string(),
        ..Default::default()
    };
    let e = jobs
        .enqueue(with_key(enqueue.clone(), READER))
        .await
        .expect_err("viewer cannot enqueue");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let list = ListJobsRequest {
        queue: "notification".into(),
        state: JobState::Waiting.into(),
        page_size: 10,
        ..Default::default()
    };
    assert!(
        jobs.list_jobs(with_key(list.clone(), READER))
            .await?
            .into_inner()
            .jobs
            .is_empty(),
        "the refused enqueue wrote nothing"
    );
    let e = jobs
        .list_jobs(with_key(list, WRITER))
        .await
        .expect_err("producer cannot list");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    // QueueHistory is a read (jobs:read): the viewer's key answers, the producer's is refused.
    let history = QueueHistoryRequest {
        queue: "notification".into(),
        minutes: 5,
    };
    let seen = jobs
        .queue_history(with_key(history.clone(), READER))
        .await?
        .into_inner();
    assert_eq!(seen.queues[0].points.len(), 5);
    let e = jobs
        .queue_history(with_key(history, WRITER))
        .await
        .expect_err("producer cannot read the history");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let pause = PauseQueueRequest {
        queue: "notification".into(),
    };
    for key in [READER, WRITER] {
        let e = jobs
            .pause_queue(with_key(pause.clone(), key))
            .await
            .expect_err("not an operator");
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    }
    jobs.pause_queue(with_key(pause, ADMIN)).await?;
    // The bulk actions are operators' (jobs:admin): a reader's or a producer's key is refused
    // before any work, whatever the request.
    let selection = Some(DeadLetterSelection {
        queue: "notification".into(),
        ..Default::default()
    });
    let clean = CleanJobsRequest {
        queue: "notification".into(),
        state: JobState::Completed.into(),
        ..Default::default()
    };
    for key in [READER, WRITER] {
        let retry = RetryDeadLettersRequest {
            selection: selection.clone(),
            ..Default::default()
        };
        let purge = PurgeDeadLettersRequest {
            selection: selection.clone(),
            ..Default::default()
        };
        let refused = [
            jobs.retry_dead_letters(with_key(retry, key)).await.err(),
            jobs.purge_dead_letters(with_key(purge, key)).await.err(),
            jobs.clean_jobs(with_key(clean.clone(), key)).await.err(),
        ];
        for e in refused {
            assert_eq!(
                e.map(|e| e.code()),
                Some(Code::PermissionDenied),
                "a bulk action without jobs:admin"
            );
        }
    }
    let cleaned = jobs
        .clean_jobs(with_key(
            CleanJobsRequest {
                dry_run: true,
                ..clean
            },
            ADMIN,
        ))
        .await?
        .into_inner();
    assert_eq!(cleaned.deleted, 0, "the operator's key may clean");
    assert_eq!(
        jobs.enqueue(enqueue).await.expect_err("anonymous").code(),
        Code::Unauthenticated
    );

    let mut env = auth_env(&db, &file);
    env.extend([
        (
            "JWT_SECRET".into(),
            "api-auth-test-secret-0123456789abcdef".into(),
        ),
        ("NCY_WS_ADDR".into(), "127.0.0.1:0".into()),
        ("FRONTEND_URL".into(), "http://localhost:3000".into()),
    ]);
    let gateway =
        realtime_gateway::Application::build(realtime_gateway::Settings::load(&env_of(&env))?)
            .await?;
    let rt_addr = gateway.local_addrs().grpc;
    let rt_running = InProcess::serving(rt_addr, |stop| gateway.run_until_stopped(stop)).await;
    let mut realtime = RealtimeServiceClient::new(channel(rt_addr).await?);
    let to_user = SendToUserRequest {
        user_id: uuid::Uuid::new_v4().to_string(),
        event: "hello".into(),
        data_json: "{}".into(),
        ..Default::default()
    };
    realtime
        .send_to_user(with_key(to_user.clone(), WRITER))
        .await?;
    let e = realtime
        .send_to_user(with_key(to_user, READER))
        .await
        .expect_err("viewer cannot publish");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let everyone = BroadcastRequest {
        event: "hello".into(),
        data_json: "{}".into(),
        ..Default::default()
    };
    let e = realtime
        .broadcast(with_key(everyone.clone(), WRITER))
        .await
        .expect_err("broadcast needs realtime:admin");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("realtime:admin"), "{e:?}");
    realtime.broadcast(with_key(everyone, ADMIN)).await?;

    stop(jobs_running).await?;
    stop(rt_running).await
}

#[tokio::test]
async fn services_with_rpcs_refuse_to_start_without_keys() -> anyhow::Result<()> {
    let db = TestDatabase::migrated().await?;
    let mut env = service_env(&unique_prefix(), Some(&db.url));
    env.retain(|(k, _)| k != "NCY_API_AUTH");
    let app =
        cache_gateway::Application::build(cache_gateway::Settings::load(&env_of(&env))?).await?;
    let e = tokio::time::timeout(
        Duration::from_secs(10),
        app.run_until_stopped(std::future::pending()),
    )
    .await?
    .expect_err("no keys, no waiver");
    assert!(e.to_string().contains("NCY_API_KEYS_FILE"), "{e}");

    // A keys file that does not parse is refused at build, naming the file and the key.
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("keys.toml");
    std::fs::write(
        &file,
        "[[keys]]\nname = \"short\"\nsecret = \"abc\"\nscopes = [\"*\"]\n",
    )?;
    let bad = cache_gateway::Settings::load(&env_of(&auth_env(&db, &file)))?;
    let e = cache_gateway::Application::build(bad)
        .await
        .err()
        .expect("short key refused");
    let text = format!("{e:#}");
    assert!(
        text.contains("keys.toml") && text.contains("at least 24"),
        "{text}"
    );

    // The worker serves no RPCs (health only): it needs no keys.
    let worker = worker::Application::build(worker::Settings::load(&env_of(&env))?).await?;
    let worker_addr = worker.local_addrs().grpc;
    let running = InProcess::serving(worker_addr, |stop| worker.run_until_stopped(stop)).await;
    stop(running).await
}

/// Limits are answered as the caller's problem: a message over the size limit is RESOURCE_EXHAUSTED
/// naming the limit (tonic alone says OUT_OF_RANGE), and nothing is written.
#[tokio::test]
async fn an_oversized_request_is_resource_exhausted_naming_the_limit() -> anyhow::Result<()> {
    let db = TestDatabase::migrated().await?;
    let (addrs, running) = cache_gateway(&service_env(&unique_prefix(), Some(&db.url))).await?;
    let mut client =
        CacheServiceClient::new(channel(addrs.grpc).await?).max_encoding_message_size(64 << 20);
    let big = SetRequest {
        key: "api:too-big:0".into(),
        value_json: format!("\"{}\"", "x".repeat(9 << 20)),
        ttl_seconds: Some(60),
        ..Default::default()
    };
    let e = client.set(big).await.expect_err("over the 8 MiB limit");
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("limit"), "{e:?}");
    assert!(!client.get(get("api:too-big:0")).await?.into_inner().found);
    let (_, metrics) = http_get(addrs.admin, "/metrics").await?;
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("CacheService/Set") && l.contains("RESOURCE_EXHAUSTED")),
        "the refusal is counted with its real code"
    );
    stop(running).await
}
