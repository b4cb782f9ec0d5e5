//! Delivery through failures on the Redis side: the pub/sub connection killed and kept from
//! reconnecting (the missed messages are replayed from history once it is back), Redis restarting
//! with its data lost (delivery resumes under a new epoch), and subscriptions that go silent
//! behind a proxy, found by the bus's and the control channel's probes and replaced.
use ncy_proto::realtime::v1 as pb;
use ncy_testkit::{RedisServer, assert_eventually};
use serde_json::json;

use crate::support::{Fixture, WAIT, Ws, send_project, stats_until};

#[tokio::test]
async fn a_lost_subscription_is_restored_and_missed_messages_replayed() {
    let mut redis = RedisServer::start().await.unwrap();
    let fx = Fixture::with_redis(&redis.url()).await;
    let mut gw = fx.start(&[]).await;
    let room = format!("project:{}", fx.project);
    let mut ws = Ws::authed(gw.ws(), &fx.token()).await;
    ws.send(json!({"type": "join_project", "projectId": fx.project}))
        .await;
    ws.until("joined").await;
    send_project(&mut gw, fx.project, 1).await;
    ws.messages(&room, 1).await;

    // Kill the gateway's pub/sub connection and keep it from reconnecting (no free client slot)
    // while three messages are published on the pooled connections.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut admin = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxclients")
        .arg(1)
        .query_async(&mut admin)
        .await
        .unwrap();
    let _: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut admin)
        .await
        .unwrap();
    let clients: String = redis::cmd("INFO")
        .arg("clients")
        .query_async(&mut admin)
        .await
        .unwrap();
    let connected = clients
        .lines()
        .find_map(|l| l.strip_prefix("connected_clients:"))
        .unwrap()
        .trim()
        .to_owned();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxclients")
        .arg(&connected)
        .query_async(&mut admin)
        .await
        .unwrap();
    stats_until(&gw.grpc, "bus reports the lost subscription", |s| {
        !s.bus_connected
    })
    .await;
    for i in 2..=4 {
        send_project(&mut gw, fx.project, i).await;
    }
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxclients")
        .arg(10_000)
        .query_async(&mut admin)
        .await
        .unwrap();
    let got = ws.messages(&room, 3).await;
    let is: Vec<_> = got
        .iter()
        .map(|m| m["data"]["i"].as_u64().unwrap())
        .collect();
    assert_eq!(is, [2, 3, 4], "missed messages replayed in order");
    stats_until(&gw.grpc, "bus reports the subscription restored", |s| {
        s.bus_connected
    })
    .await;

    // Redis itself restarts (data lost): delivery resumes under a new epoch.
    let grpc = gw.grpc.clone();
    redis.stop();
    redis.resume().await.unwrap();
    assert_eventually("publish works again after the restart", WAIT, || {
        let mut grpc = grpc.clone();
        let project = fx.project;
        async move {
            grpc.send_to_project(pb::SendToProjectRequest {
                project_id: project.to_string(),
                event: "tick".into(),
                data_json: "100".into(),
                idempotency_key: String::new(),
            })
            .await
            .is_ok()
        }
    })
    .await;
    let m = ws.messages(&room, 1).await.remove(0);
    assert_eq!(m["data"], 100);
    assert_ne!(
        m["epoch"], got[0]["epoch"],
        "new epoch after Redis lost its data"
    );
    gw.stop().await;
}

/// A TCP proxy in front of Redis that can make the connections that subscribed go *silent*: still
/// open, but nothing from Redis reaches the client any more — what a half-dead proxy or a failover
/// does to a pub/sub connection. Other connections (the pool) keep working.
/// Per proxied connection: (has subscribed, is silenced).
type ConnFlags = Vec<(
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
)>;

struct SilencingProxy {
    port: u16,
    conns: std::sync::Arc<std::sync::Mutex<ConnFlags>>,
}

impl SilencingProxy {
    async fn start(target: u16) -> Self {
        use std::sync::{
            Arc, Mutex,
            atomic::{AtomicBool, Ordering},
        };
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let conns: Arc<Mutex<ConnFlags>> = Arc::default();
        let registry = conns.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else {
                    continue;
                };
                let (subscriber, silent) = (
                    Arc::new(AtomicBool::new(false)),
                    Arc::new(AtomicBool::new(false)),
                );
                registry
                    .lock()
                    .unwrap()
                    .push((subscriber.clone(), silent.clone()));
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16384];
                    while let Ok(n) = cr.read(&mut buf).await {
                        if n == 0 || sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        if buf[..n]
                            .windows(9)
                            .any(|w| w.eq_ignore_ascii_case(b"SUBSCRIBE"))
                        {
                            subscriber.store(true, Ordering::Relaxed);
                        }
                    }
                });
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16384];
                    while let Ok(n) = sr.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        if silent.load(Ordering::Relaxed) {
                            continue;
                        }
                        if cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Self { port, conns }
    }

    /// Connections that subscribed and are not silenced.
    fn live_subscribers(&self) -> usize {
        use std::sync::atomic::Ordering;
        let conns = self.conns.lock().unwrap();
        conns
            .iter()
            .filter(|(subscriber, silent)| {
                subscriber.load(Ordering::Relaxed) && !silent.load(Ordering::Relaxed)
            })
            .count()
    }

    /// Silences every connection that has subscribed so far; returns how many.
    fn silence_subscribers(&self) -> usize {
        use std::sync::atomic::Ordering;
        let conns = self.conns.lock().unwrap();
        let mut n = 0;
        for (subscriber, silent) in conns.iter() {
            if subscriber.load(Ordering::Relaxed) {
                silent.store(true, Ordering::Relaxed);
                n += 1;
            }
        }
        n
    }
}

#[tokio::test]
async fn a_silent_subscription_is_detected_by_the_probe_and_replayed() {
    let redis = RedisServer::start().await.unwrap();
    let proxy = SilencingProxy::start(redis.port).await;
    let fx = Fixture::with_redis(&format!("redis://127.0.0.1:{}", proxy.port)).await;
    let mut gw = fx.start(&[("NCY_BUS_PROBE_MS", "200")]).await;
    let room = format!("project:{}", fx.project);
    let mut ws = Ws::authed(gw.ws(), &fx.token()).await;
    ws.send(json!({"type": "join_project", "projectId": fx.project}))
        .await;
    ws.until("joined").await;
    send_project(&mut gw, fx.project, 1).await;
    ws.messages(&room, 1).await;

    assert_eq!(
        proxy.silence_subscribers(),
        2,
        "two pub/sub connections per instance: the room bus's and the control channel's"
    );
    // Published while the subscription is silent: the socket stays open, nothing arrives, until
    // the probe notices and the gateway reconnects and replays from history.
    for i in 2..=4 {
        send_project(&mut gw, fx.project, i).await;
    }
    let got = ws.messages(&room, 3).await;
    let is: Vec<_> = got
        .iter()
        .map(|m| m["data"]["i"].as_u64().unwrap())
        .collect();
    assert_eq!(is, [2, 3, 4]);
    send_project(&mut gw, fx.project, 5).await;
    assert_eq!(ws.messages(&room, 1).await[0]["data"]["i"], 5);
    gw.stop().await;
    drop(redis);
}

#[tokio::test]
async fn a_silent_control_subscription_is_detected_by_its_probe() {
    let redis = RedisServer::start().await.unwrap();
    let proxy = SilencingProxy::start(redis.port).await;
    let fx = Fixture::with_redis(&format!("redis://127.0.0.1:{}", proxy.port)).await;
    let behind_proxy = fx.start(&[("NCY_BUS_PROBE_MS", "200")]).await;
    let mut direct = fx.start(&[("REDIS_URL", &redis.url())]).await;
    let mut ws = Ws::authed(behind_proxy.ws(), &fx.token()).await;
    assert_eventually("the bus and control subscriptions are up", WAIT, || async {
        proxy.live_subscribers() == 2
    })
    .await;
    assert_eq!(proxy.silence_subscribers(), 2);
    // Both reconnect on their own: without its probe, the control subscription would stay silent.
    assert_eventually("both subscriptions are replaced", WAIT, || async {
        proxy.live_subscribers() == 2
    })
    .await;
    direct
        .grpc
        .disconnect_user(pb::DisconnectUserRequest {
            user_id: fx.user.to_string(),
            reason: "bye".into(),
        })
        .await
        .unwrap();
    assert_eq!(ws.close_code().await, Some(4010));
    behind_proxy.stop().await;
    direct.stop().await;
    drop(redis);
}
