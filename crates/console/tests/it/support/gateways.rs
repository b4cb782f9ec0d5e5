//! The other two services behind the console, in this process on port 0 against the real Redis
//! (a key prefix of the test's own) and a migrated database of the test's own: a cache-gateway,
//! and a realtime-gateway with one organization, member and project, tokens for that member and a
//! small WebSocket client that waits for frames with a deadline.
use std::{net::SocketAddr, time::Duration};

use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{EncodingKey, Header};
use ncy_proto::{
    cache::v1::cache_service_client::CacheServiceClient,
    realtime::v1::realtime_service_client::RealtimeServiceClient,
};
use ncy_testkit::{InProcess, TestDatabase, env_of, service_env, set_env, unique_prefix};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async, tungstenite::Message};
use tonic::transport::Channel;
use uuid::Uuid;

/// The realtime-gateway's JWT secret in these tests.
const JWT_SECRET: &str = "console-test-jwt-secret-console-test";
/// How long a test waits for a frame.
pub const WAIT: Duration = Duration::from_secs(10);

/// A jobs URL nobody serves: the Cache and Realtime pages never call the scheduler.
pub fn no_scheduler() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], ncy_testkit::free_port()))
}

/// A cache-gateway in this process.
pub struct CacheGateway {
    /// A gRPC client, to set up and check what the console shows and does.
    pub client: CacheServiceClient<Channel>,
    /// Its gRPC address.
    pub addr: SocketAddr,
    running: InProcess,
    prefix: String,
    db_url: String,
    _db: Option<TestDatabase>,
}

impl CacheGateway {
    /// A gateway on a fresh prefix and database.
    pub async fn start() -> anyhow::Result<Self> {
        let db = TestDatabase::migrated().await?;
        let mut gateway = Self::start_on(&unique_prefix(), &db.url).await?;
        gateway._db = Some(db);
        Ok(gateway)
    }

    /// Another replica of this gateway: same prefix and database, so the same cache and the same
    /// instance registry.
    pub async fn replica(&self) -> anyhow::Result<Self> {
        Self::start_on(&self.prefix, &self.db_url).await
    }

    async fn start_on(prefix: &str, db_url: &str) -> anyhow::Result<Self> {
        let mut env = service_env(prefix, Some(db_url));
        set_env(&mut env, "NCY_CACHE_DB_NOTIFY", "false");
        let settings = cache_gateway::Settings::load(&env_of(&env))?;
        let app = cache_gateway::Application::build(settings).await?;
        let addr = app.local_addrs().grpc;
        let running = InProcess::serving(addr, |stop| app.run_until_stopped(stop)).await;
        Ok(Self {
            client: CacheServiceClient::connect(format!("http://{addr}")).await?,
            addr,
            running,
            prefix: prefix.to_owned(),
            db_url: db_url.to_owned(),
            _db: None,
        })
    }

    /// The console setting pointing at this gateway.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the gateway.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.running
            .stop(Duration::from_secs(15))
            .await
            .map_err(anyhow::Error::msg)
    }
}

/// A realtime-gateway in this process, with an organization, a member and a project.
pub struct RealtimeGateway {
    /// A gRPC client.
    pub client: RealtimeServiceClient<Channel>,
    /// Its gRPC address.
    pub addr: SocketAddr,
    /// Its WebSocket address.
    pub ws: SocketAddr,
    /// The organization.
    pub org: Uuid,
    /// Its member.
    pub user: Uuid,
    /// Its project.
    pub project: Uuid,
    running: InProcess,
    prefix: String,
    db_url: String,
    _db: Option<TestDatabase>,
}

impl RealtimeGateway {
    /// A gateway on a fresh prefix and database holding the fixture rows.
    pub async fn start() -> anyhow::Result<Self> {
        let db = TestDatabase::migrated().await?;
        let pool = db.pool().await?;
        let (org, user, project) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        sqlx::query("INSERT INTO organizations (id, name, slug) VALUES ($1, 'acme', 'acme')")
            .bind(org)
            .execute(&pool)
            .await?;
        sqlx::query("INSERT INTO users (id, email, name) VALUES ($1, 'ada@example.com', 'Ada')")
            .bind(user)
            .execute(&pool)
            .await?;
        sqlx::query("INSERT INTO organization_members (organization_id, user_id) VALUES ($1, $2)")
            .bind(org)
            .bind(user)
            .execute(&pool)
            .await?;
        sqlx::query("INSERT INTO projects (id, organization_id, name) VALUES ($1, $2, 'Apollo')")
            .bind(project)
            .bind(org)
            .execute(&pool)
            .await?;
        pool.close().await;
        let mut gateway = Self::start_on(&unique_prefix(), &db.url, (org, user, project)).await?;
        gateway._db = Some(db);
        Ok(gateway)
    }

    /// Another replica of this gateway: same prefix, database and fixture rows, so the same rooms
    /// and the same instance registry.
    pub async fn replica(&self) -> anyhow::Result<Self> {
        Self::start_on(
            &self.prefix,
            &self.db_url,
            (self.org, self.user, self.project),
        )
        .await
    }

    async fn start_on(
        prefix: &str,
        db_url: &str,
        (org, user, project): (Uuid, Uuid, Uuid),
    ) -> anyhow::Result<Self> {
        let mut env = service_env(prefix, Some(db_url));
        // Reports every 200 ms, so another instance's numbers reach a page without a long wait.
        set_env(&mut env, "NCY_INSTANCE_REPORT_MS", "200");
        set_env(&mut env, "JWT_SECRET", JWT_SECRET);
        set_env(&mut env, "NCY_WS_ADDR", "127.0.0.1:0");
        set_env(&mut env, "FRONTEND_URL", "http://app.example.test");
        let settings = realtime_gateway::Settings::load(&env_of(&env))?;
        let app = realtime_gateway::Application::build(settings).await?;
        let addrs = app.local_addrs();
        let ws = addrs
            .websocket
            .ok_or_else(|| anyhow::anyhow!("no WebSocket listener"))?;
        let running = InProcess::serving(addrs.grpc, |stop| app.run_until_stopped(stop)).await;
        Ok(Self {
            client: RealtimeServiceClient::connect(format!("http://{}", addrs.grpc)).await?,
            addr: addrs.grpc,
            ws,
            org,
            user,
            project,
            running,
            prefix: prefix.to_owned(),
            db_url: db_url.to_owned(),
            _db: None,
        })
    }

    /// The console setting pointing at this gateway.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A WebSocket of the member, signed in and joined to the project's room.
    pub async fn member_in_project(&self) -> anyhow::Result<Ws> {
        let token = jsonwebtoken::encode(
            &Header::default(),
            &json!({
                "userId": self.user,
                "organizationId": self.org,
                "exp": unix_now() + 3600,
            }),
            &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
        )?;
        let (stream, _) = connect_async(format!("ws://{}/ws", self.ws)).await?;
        let mut ws = Ws { stream };
        ws.send(json!({"type": "authenticate", "token": token}))
            .await?;
        ws.until("authenticated").await?;
        ws.send(json!({"type": "join_project", "projectId": self.project}))
            .await?;
        ws.until("joined").await?;
        Ok(ws)
    }

    /// Stops the gateway.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.running
            .stop(Duration::from_secs(15))
            .await
            .map_err(anyhow::Error::msg)
    }
}

/// Unix seconds now.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A WebSocket client of the realtime-gateway.
pub struct Ws {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Ws {
    /// Sends a JSON frame.
    pub async fn send(&mut self, frame: Value) -> anyhow::Result<()> {
        self.stream
            .send(Message::Text(frame.to_string().into()))
            .await?;
        Ok(())
    }

    /// Skips frames until one of type `ty` (within [`WAIT`] each).
    pub async fn until(&mut self, ty: &str) -> anyhow::Result<Value> {
        loop {
            let next = tokio::time::timeout(WAIT, self.stream.next())
                .await
                .map_err(|_| anyhow::anyhow!("no frame within {WAIT:?} waiting for {ty}"))?;
            match next {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t)?;
                    if v["type"] == ty {
                        return Ok(v);
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => anyhow::bail!("socket failed waiting for {ty}: {e}"),
                None => anyhow::bail!("socket closed waiting for {ty}"),
            }
        }
    }
}
