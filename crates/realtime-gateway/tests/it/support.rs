//! Shared harness of the gateway's integration tests: a migrated database with one organization,
//! member and project; gateways started in-process on port 0; token minting; a small WebSocket
//! client that waits for frames with a deadline (never a sleep).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{EncodingKey, Header};
use ncy_proto::realtime::v1::realtime_service_client::RealtimeServiceClient;
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
        hs_token(&json!({"userId": self.user, "organizationId": self.org, "exp": now() + 3600}))
    }
}

pub struct Gateway {
    pub addrs: LocalAddrs,
    pub running: InProcess,
    pub grpc: RealtimeServiceClient<Channel>,
}

impl Gateway {
    pub fn ws(&self) -> std::net::SocketAddr {
        self.addrs.websocket.unwrap()
    }

    pub async fn stop(self) {
        self.running.stop(Duration::from_secs(15)).await.unwrap();
    }
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
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
    pub async fn connect(addr: std::net::SocketAddr, query: &str) -> Self {
        let (stream, _) = connect_async(format!("ws://{addr}/ws{query}"))
            .await
            .unwrap();
        Self { stream }
    }

    /// Connects with an `Origin` header; the HTTP status on refusal.
    pub async fn connect_origin(addr: std::net::SocketAddr, origin: &str) -> Result<Self, u16> {
        let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
        req.headers_mut().insert("origin", origin.parse().unwrap());
        match connect_async(req).await {
            Ok((stream, _)) => Ok(Self { stream }),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
            Err(e) => panic!("unexpected connect error: {e}"),
        }
    }

    /// Connects, authenticates and waits for `authenticated`.
    pub async fn authed(addr: std::net::SocketAddr, token: &str) -> Self {
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
        .send_to_project(ncy_proto::realtime::v1::SendToProjectRequest {
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
