//! Shared harness of the cache gateway's integration tests: gateways in-process on port 0 against
//! the real Redis and a fresh PostgreSQL database, plus helpers to seed rows.
use std::time::Duration;

use cache_gateway::{Application, Settings};
use ncy_proto::cache::v1::{
    GetOrLoadRequest, GetRequest, SetRequest, StatsRequest, StatsResponse,
    cache_service_client::CacheServiceClient,
};
use ncy_testkit::{InProcess, TestDatabase, env_of, service_env, set_env, unique_prefix};
use sqlx::PgPool;
use tonic::transport::Channel;

pub type Client = CacheServiceClient<Channel>;

/// One running gateway.
pub struct Gateway {
    pub client: Client,
    pub addrs: ncy_runtime::LocalAddrs,
    running: Option<InProcess>,
}

impl Gateway {
    /// Starts a gateway with `env` and waits until its backplane is subscribed.
    pub async fn start(env: &[(String, String)]) -> anyhow::Result<Self> {
        let settings = Settings::load(&env_of(env))?;
        let app = Application::build(settings).await?;
        let addrs = app.local_addrs();
        let running = InProcess::spawn(|stop| app.run_until_stopped(stop));
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", addrs.grpc))?
            .connect()
            .await?;
        let client = CacheServiceClient::new(channel);
        let gw = Self {
            client,
            addrs,
            running: Some(running),
        };
        let c = gw.client.clone();
        ncy_testkit::assert_eventually("backplane subscribed", Duration::from_secs(20), || {
            let mut c = c.clone();
            async move {
                c.stats(StatsRequest::default())
                    .await
                    .is_ok_and(|r| r.into_inner().backplane_connected)
            }
        })
        .await;
        Ok(gw)
    }

    /// Stats of this instance.
    pub async fn stats(&self) -> StatsResponse {
        self.client
            .clone()
            .stats(StatsRequest::default())
            .await
            .unwrap()
            .into_inner()
    }

    /// Stops it.
    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop(Duration::from_secs(10)).await.unwrap();
        }
    }
}

/// A test's world: a database, a prefix, and the environment gateways start with.
pub struct World {
    /// Held for the test's lifetime: dropping it drops the database.
    _db: TestDatabase,
    pub pool: PgPool,
    pub prefix: String,
    pub env: Vec<(String, String)>,
    _dir: tempfile::TempDir,
}

/// The loader kinds every World adds, as a deployment's `NCY_CACHE_LOADERS_FILE` would:
/// `counted_user` and `gadget` bump `load_count` on each run.
const LOADERS: &str = r#"
[loaders.counted_user]
ttl_seconds = 3600
id = "uuid"
tags = ["user:{id}"]
sql = """
SELECT (SELECT jsonb_build_object('id', u.id, 'name', u.name)::text FROM users u WHERE u.id = $1::uuid)
FROM (SELECT count_load()) c
"""

[loaders.thing]
ttl_seconds = 1
id = "text"
sql = "SELECT doc FROM things WHERE id = $1"

[loaders.gadget]
ttl_seconds = 3600
id = "text"
sql = "SELECT (SELECT doc FROM things WHERE id = $1) FROM (SELECT count_load()) c"
"#;

impl World {
    pub async fn new() -> anyhow::Result<Self> {
        let db = TestDatabase::migrated().await?;
        let pool = db.pool().await?;
        sqlx::raw_sql(
            "CREATE TABLE load_count (n int NOT NULL); INSERT INTO load_count VALUES (0);
             CREATE FUNCTION count_load() RETURNS int LANGUAGE sql VOLATILE AS
               'UPDATE load_count SET n = n + 1 RETURNING n';
             CREATE TABLE things (id text PRIMARY KEY, doc text NOT NULL);",
        )
        .execute(&pool)
        .await?;
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("loaders.toml");
        std::fs::write(&file, LOADERS)?;
        let prefix = unique_prefix();
        let mut env = service_env(&prefix, Some(&db.url));
        set_env(&mut env, "NCY_CACHE_LOADERS_FILE", &file.to_string_lossy());
        // Off unless a test is about it: the NOTIFY of a row a test inserts could otherwise land
        // in the middle of what the test measures.
        set_env(&mut env, "NCY_CACHE_DB_NOTIFY", "false");
        Ok(Self {
            _db: db,
            pool,
            prefix,
            env,
            _dir: dir,
        })
    }

    /// The environment with `pairs` set on top.
    pub fn env_with(&self, pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env = self.env.clone();
        for (k, v) in pairs {
            set_env(&mut env, k, v);
        }
        env
    }

    pub async fn gateway(&self) -> anyhow::Result<Gateway> {
        Gateway::start(&self.env).await
    }

    /// How many times a counting loader ran.
    pub async fn load_count(&self) -> i32 {
        sqlx::query_scalar("SELECT n FROM load_count")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// Inserts a user, returning its id.
    pub async fn user(&self, name: &str) -> String {
        let id: uuid::Uuid =
            sqlx::query_scalar("INSERT INTO users (email, name) VALUES ($1, $2) RETURNING id")
                .bind(format!("{}@example.com", uuid::Uuid::new_v4().simple()))
                .bind(name)
                .fetch_one(&self.pool)
                .await
                .unwrap();
        id.to_string()
    }

    /// Inserts an organization, returning its id.
    pub async fn org(&self, name: &str) -> String {
        let slug = format!("o{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let id: uuid::Uuid = sqlx::query_scalar(
            "INSERT INTO organizations (name, slug) VALUES ($1, $2) RETURNING id",
        )
        .bind(name)
        .bind(slug)
        .fetch_one(&self.pool)
        .await
        .unwrap();
        id.to_string()
    }

    /// Adds `user` to `org`.
    pub async fn member(&self, org: &str, user: &str) {
        sqlx::query("INSERT INTO organization_members (organization_id, user_id) VALUES ($1::uuid, $2::uuid)")
            .bind(org)
            .bind(user)
            .execute(&self.pool)
            .await
            .unwrap();
    }

    /// Runs one SQL statement.
    pub async fn exec(&self, sql: &str) {
        sqlx::raw_sql(sql).execute(&self.pool).await.unwrap();
    }
}

/// A connection of the test's own to the shared Redis, to plant keys or read what a gateway wrote
/// there (under its World's prefix).
pub async fn redis() -> redis::aio::MultiplexedConnection {
    redis::Client::open(ncy_testkit::redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// A request stream for GetStream fed one request at a time through the returned sender; it ends
/// when the sender is dropped.
pub fn request_channel() -> (
    tokio::sync::mpsc::Sender<GetRequest>,
    impl futures_util::Stream<Item = GetRequest> + Send + 'static,
) {
    let (tx, rx) = tokio::sync::mpsc::channel::<GetRequest>(1);
    let requests =
        futures_util::stream::unfold(rx, |mut rx| async { rx.recv().await.map(|req| (req, rx)) });
    (tx, requests)
}

pub fn get(key: &str) -> GetRequest {
    GetRequest {
        key: key.to_owned(),
        api: None,
    }
}

pub fn set(key: &str, value: &str) -> SetRequest {
    SetRequest {
        key: key.to_owned(),
        api: None,
        value_json: value.to_owned(),
        ttl_seconds: None,
        tags: Vec::new(),
    }
}

pub fn load(kind: &str, id: &str) -> GetOrLoadRequest {
    GetOrLoadRequest {
        kind: kind.to_owned(),
        id: id.to_owned(),
        ttl_seconds: None,
        force_refresh: false,
    }
}

/// The prefix-less key family check helper: a fresh unique logical key.
pub fn key(family: &str) -> String {
    format!("{family}:{}", uuid::Uuid::new_v4().simple())
}
