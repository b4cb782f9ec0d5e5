//! Shared harness of the gateway's integration tests: a migrated database with one organization,
//! member and project; gateways started in-process on port 0; token minting; a small WebSocket
//! client that waits for frames with a deadline (never a sleep); the sends, `Stats` and `/metrics`
//! readings and Redis look-ups that several areas make.

use std::{net::SocketAddr, time::Duration};

use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{EncodingKey, Header};
use ncy_proto::realtime::v1::{self as pb, realtime_service_client::RealtimeServiceClient};
use ncy_runtime::LocalAddrs;
use ncy_testkit::{InProcess, TestDatabase, env_of, service_env, set_env, unique_prefix};
use realtime_gateway::{Application, Settings};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async,
    tungstenite::{Message, client::IntoClientRequest},
};
use tonic::transport::Channel;
use uuid::Uuid;

pub const SECRET: &str = "test-secret-test-secret-test-secret";
pub const FRONTEND: &str = "http://app.example.test";
/// How long a test waits for something that should happen.
pub const WAIT: Duration = Duration::from_secs(10);

/// A database with one organization, a member of it and one of its projects, plus an outsider.
pub struct Fixture {
    pub db: TestDatabase,
    pub pool: sqlx::PgPool,
    pub prefix: String,
    pub redis_url: String,
    pub org: Uuid,
    pub user: Uuid,
    pub project: Uuid,
    pub outsider: Uuid,
    pub other_org: Uuid,
}

impl Fixture {
    pub async fn new() -> Self {
        Self::with_redis(&ncy_testkit::redis_url()).await
    }

    pub async fn with_redis(redis_url: &str) -> Self {
        let db = TestDatabase::migrated().await.unwrap();
        let pool = db.pool().await.unwrap();
        let (org, other_org) = (Uuid::new_v4(), Uuid::new_v4());
        let (user, outsider, project) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        for (id, slug) in [(org, "acme"), (other_org, "other")] {
            sqlx::query("INSERT INTO organizations (id, name, slug) VALUES ($1, $2, $2)")
                .bind(id)
                .bind(slug)
                .execute(&pool)
                .await
                .unwrap();
        }
        for (id, email) in [(user, "ada@example.com"), (outsider, "eve@example.com")] {
            sqlx::query("INSERT INTO users (id, email, name) VALUES ($1, $2, 'n')")
                .bind(id)
                .bind(email)
                .execute(&pool)
                .await
                .unwrap();
        }
        sqlx::query(
            "INSERT INTO organization_members (organization_id, user_id) VALUES ($1, $2), ($3, $4)",
        )
        .bind(org)
        .bind(user)
        .bind(other_org)
        .bind(outsider)
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query("INSERT INTO projects (id, organization_id, name) VALUES ($1, $2, 'Apollo')")
            .bind(project)
            .bind(org)
            .execute(&pool)
            .await
            .unwrap();
        Self {
            db,
            pool,
            prefix: unique_prefix(),
            redis_url: redis_url.to_owned(),
            org,
            user,
            project,
            outsider,
            other_org,
        }
    }

    pub fn env(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env = service_env(&self.prefix, Some(&self.db.url));
        set_env(&mut env, "REDIS_URL", &self.redis_url);
        set_env(&mut env, "JWT_SECRET", SECRET);
        set_env(&mut env, "NCY_WS_ADDR", "127.0.0.1:0");
        set_env(&mut env, "FRONTEND_URL", FRONTEND);
        set_env(&mut env, "NCY_BUS_PROBE_MS", "300");
        for (k, v) in extra {
            set_env(&mut env, k, v);
        }
        env
    }

    pub async fn start(&self, extra: &[(&str, &str)]) -> Gateway {
        let settings = Settings::load(&env_of(&self.env(extra))).unwrap();
        let app = Application::build(settings).await.unwrap();
        let addrs = app.local_addrs();
        let running = InProcess::serving(addrs.grpc, |stop| app.run_until_stopped(stop)).await;
        let grpc = RealtimeServiceClient::connect(format!("http://{}", addrs.grpc))
            .await
            .unwrap();
        Gateway {
            addrs,
            running,
            grpc,
        }
    }

    /// A valid HS256 token for the member, expiring in an hour.
    pub fn token(&self) -> String {
        token_of(self.user, self.org)
    }

    /// Makes `user` a member of `org`.
    pub async fn add_member(&self, org: Uuid, user: Uuid) {
        sqlx::query("INSERT INTO organization_members (organization_id, user_id) VALUES ($1, $2)")
            .bind(org)
            .bind(user)
            .execute(&self.pool)
            .await
            .unwrap();
    }

    /// A new user, member of `org`.
    pub async fn add_user(&self, org: Uuid) -> Uuid {
        let user = Uuid::new_v4();
        sqlx::query("INSERT INTO users (id, email, name) VALUES ($1, $2, 'n')")
            .bind(user)
            .bind(format!("{}@example.com", user.simple()))
            .execute(&self.pool)
            .await
            .unwrap();
        self.add_member(org, user).await;
        user
    }
}

pub struct Gateway {
    pub addrs: LocalAddrs,
    pub running: InProcess,
    pub grpc: RealtimeServiceClient<Channel>,
}

impl Gateway {
    pub fn ws(&self) -> SocketAddr {
        self.addrs.websocket.unwrap()
    }

    pub async fn stop(self) {
        self.running.stop(Duration::from_secs(15)).await.unwrap();
    }
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A valid HS256 token of `user` with `org` as its organization, expiring in an hour.
pub fn token_of(user: Uuid, org: Uuid) -> String {
    hs_token(&json!({"userId": user, "organizationId": org, "exp": now() + 3600}))
}

pub fn hs_token(claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

pub struct Ws {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Ws {
    pub async fn connect(addr: SocketAddr, query: &str) -> Self {
        let (stream, _) = connect_async(format!("ws://{addr}/ws{query}"))
            .await
            .unwrap();
        Self { stream }
    }

    /// Connects with an `Origin` header; the HTTP status on refusal.
    pub async fn connect_origin(addr: SocketAddr, origin: &str) -> Result<Self, u16> {
        let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
        req.headers_mut().insert("origin", origin.parse().unwrap());
        match connect_async(req).await {
            Ok((stream, _)) => Ok(Self { stream }),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
            Err(e) => panic!("unexpected connect error: {e}"),
        }
    }

    /// Connects, authenticates and waits for `authenticated`.
    pub async fn authed(addr: SocketAddr, token: &str) -> Self {
        let mut ws = Self::connect(addr, "").await;
        ws.send(json!({"type": "authenticate", "token": token}))
            .await;
        ws.until("authenticated").await;
        ws
    }

    pub async fn send(&mut self, v: Value) {
        self.stream
            .send(Message::Text(v.to_string().into()))
            .await
            .unwrap();
    }

    /// The next JSON frame, or None when the socket closed.
    pub async fn recv(&mut self) -> Option<Value> {
        loop {
            let next = tokio::time::timeout(WAIT, self.stream.next())
                .await
                .expect("timed out waiting for a frame");
            match next {
                Some(Ok(Message::Text(t))) => return Some(serde_json::from_str(&t).unwrap()),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => {}
            }
        }
    }

    /// Skips frames until one of type `ty`.
    pub async fn until(&mut self, ty: &str) -> Value {
        loop {
            let v = self
                .recv()
                .await
                .unwrap_or_else(|| panic!("closed while waiting for {ty}"));
            if v["type"] == ty {
                return v;
            }
        }
    }

    /// The next `message` frames of `room`, `n` of them.
    pub async fn messages(&mut self, room: &str, n: usize) -> Vec<Value> {
        let mut out = Vec::new();
        while out.len() < n {
            let v = self.until("message").await;
            if v["room"] == room {
                out.push(v);
            }
        }
        out
    }

    /// Reads until the server's close frame; its code (None if the TCP closed without one). Answers
    /// it as a browser does (the server waits for that answer before dropping the connection).
    pub async fn close_code(&mut self) -> Option<u16> {
        loop {
            let next = tokio::time::timeout(WAIT, self.stream.next())
                .await
                .expect("timed out waiting for close");
            match next {
                Some(Ok(Message::Close(frame))) => {
                    let _ = self.stream.flush().await;
                    return frame.map(|f| u16::from(f.code));
                }
                Some(Ok(_)) => {}
                None | Some(Err(_)) => return None,
            }
        }
    }
}

pub async fn send_project(gw: &mut Gateway, project: Uuid, i: u64) -> u64 {
    let r = gw
        .grpc
        .send_to_project(pb::SendToProjectRequest {
            project_id: project.to_string(),
            event: "tick".into(),
            data_json: json!({"i": i}).to_string(),
            idempotency_key: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    r.delivery.unwrap().offset
}

/// Sends `event` to `user`'s room, with `data` (none: no `data_json`).
pub async fn send_user(gw: &mut Gateway, user: Uuid, event: &str, data: Option<Value>) {
    gw.grpc
        .send_to_user(pb::SendToUserRequest {
            user_id: user.to_string(),
            event: event.into(),
            data_json: data.map(|d| d.to_string()).unwrap_or_default(),
            idempotency_key: String::new(),
        })
        .await
        .unwrap();
}

/// Stats of `grpc`'s gateway, once: this instance's own numbers, whatever else runs in the process.
pub async fn stats(grpc: &RealtimeServiceClient<Channel>) -> pb::StatsResponse {
    grpc.clone()
        .stats(pb::StatsRequest::default())
        .await
        .unwrap()
        .into_inner()
}

/// Waits (at most [`WAIT`]) until the Stats of `grpc`'s gateway satisfy `ok`.
pub async fn stats_until(
    grpc: &RealtimeServiceClient<Channel>,
    what: &str,
    ok: impl Fn(&pb::StatsResponse) -> bool,
) {
    ncy_testkit::assert_eventually(what, WAIT, || {
        let ok = &ok;
        async move { ok(&stats(grpc).await) }
    })
    .await;
}

/// The sum of the samples of `/metrics` whose line starts with `series` (a name with its opening
/// brace, or with its first labels). The recorder is the process's, shared by every gateway of
/// every test running meanwhile: a counter read here can only be compared with an earlier reading
/// of it (others only add to it), never expected to hold an exact value.
pub async fn counter(admin: SocketAddr, series: &str) -> u64 {
    let (_, text) = ncy_testkit::http_get(admin, "/metrics").await.unwrap();
    text.lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Subscribers of the pub/sub `channel` on the Redis at `redis_url`.
pub async fn numsub(redis_url: &str, channel: &str) -> i64 {
    let client = redis::Client::open(redis_url).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let (_, n): (String, i64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query_async::<Vec<(String, i64)>>(&mut c)
        .await
        .unwrap()
        .into_iter()
        .next()
        .unwrap();
    n
}
