//! Shared setup of the job engine's end-to-end tests: a scheduler and workers in this process on
//! one key prefix (and, when asked, their own Redis), small polling helpers and the dead letters.
use std::time::Duration;

use ncy_proto::jobs::v1::{self as pb, job_service_client::JobServiceClient};
use ncy_testkit::{InProcess, TestDatabase, env_of, service_env, set_env, unique_prefix};
use tonic::transport::Channel;

pub type Client = JobServiceClient<Channel>;

/// Environment for one test stack.
pub struct StackEnv {
    pub env: Vec<(String, String)>,
    pub db: TestDatabase,
}

impl StackEnv {
    /// A fresh prefix and database; test job types on; fast visibility timeout unless overridden.
    pub async fn new(extra: &[(&str, &str)]) -> anyhow::Result<Self> {
        let db = TestDatabase::migrated().await?;
        let mut env = service_env(&unique_prefix(), Some(&db.url));
        set_env(&mut env, "NCY_JOBS_TEST_JOB_TYPES", "true");
        set_env(&mut env, "NCY_CRON_INSTALL_DEFAULTS", "false");
        for (k, v) in extra {
            set_env(&mut env, k, v);
        }
        Ok(Self { env, db })
    }

    pub fn set(&mut self, k: &str, v: &str) {
        set_env(&mut self.env, k, v);
    }

    /// The Redis key prefix of this stack.
    pub fn prefix(&self) -> String {
        self.env
            .iter()
            .find(|(k, _)| k == "NCY_REDIS_PREFIX")
            .map(|(_, v)| v.clone())
            .expect("service_env sets a prefix")
    }

    /// Inserts an operator user and makes it the dead-letter alert recipient of the workers started
    /// from now on; returns its id.
    pub async fn alert_recipient(&mut self) -> anyhow::Result<uuid::Uuid> {
        let admin = uuid::Uuid::new_v4();
        sqlx::query("INSERT INTO users (id, email, name) VALUES ($1, 'ops@example.com', 'Ops')")
            .bind(admin)
            .execute(&self.db.pool().await?)
            .await?;
        self.set("NCY_WORKER_ALERT_USER_IDS", &admin.to_string());
        Ok(admin)
    }

    /// The key space of this stack's prefix, as the services build their Redis keys.
    pub fn keys(&self) -> anyhow::Result<ncy_types::KeySpace> {
        Ok(ncy_types::KeySpace::new(self.prefix())?)
    }

    /// The entries of `user`'s realtime room history (what a reconnecting browser recovers).
    pub async fn room_history(&self, user: uuid::Uuid) -> anyhow::Result<Vec<redis::Value>> {
        let key = self.keys()?.room(&format!("user:{user}")).history();
        Ok(redis::cmd("XRANGE")
            .arg(&key)
            .arg("-")
            .arg("+")
            .query_async(&mut redis().await?)
            .await?)
    }

    /// Starts a scheduler; returns its client.
    pub async fn scheduler(&self) -> anyhow::Result<(Client, InProcess)> {
        let (client, running, _) = self.scheduler_with_admin().await?;
        Ok((client, running))
    }

    /// Starts a worker in this process; also returns where its admin port (`/metrics`) listens.
    pub async fn worker_with_admin(&self) -> anyhow::Result<(InProcess, std::net::SocketAddr)> {
        let app = worker::Application::build(worker::Settings::load(&env_of(&self.env))?).await?;
        let admin = app.local_addrs().admin;
        Ok((InProcess::spawn(|stop| app.run_until_stopped(stop)), admin))
    }

    /// Starts a scheduler; also returns its admin address.
    pub async fn scheduler_with_admin(
        &self,
    ) -> anyhow::Result<(Client, InProcess, std::net::SocketAddr)> {
        let app =
            job_scheduler::Application::build(job_scheduler::Settings::load(&env_of(&self.env))?)
                .await?;
        let addr = app.local_addrs().grpc;
        let admin = app.local_addrs().admin;
        let running = InProcess::serving(addr, |stop| app.run_until_stopped(stop)).await;
        Ok((
            JobServiceClient::connect(format!("http://{addr}")).await?,
            running,
            admin,
        ))
    }

    /// Starts a worker in this process.
    pub async fn worker(&self) -> anyhow::Result<InProcess> {
        let app = worker::Application::build(worker::Settings::load(&env_of(&self.env))?).await?;
        Ok(InProcess::spawn(|stop| app.run_until_stopped(stop)))
    }
}

pub fn job(queue: &str, job_type: &str, payload: &str) -> pb::EnqueueRequest {
    pb::EnqueueRequest {
        queue: queue.into(),
        job_type: job_type.into(),
        payload_json: payload.into(),
        ..Default::default()
    }
}

/// `req` with `attempts` attempts and a fixed `delay_ms` backoff (fast retries for tests).
pub fn retried(mut req: pb::EnqueueRequest, attempts: i32, delay_ms: i64) -> pb::EnqueueRequest {
    req.attempts = attempts;
    req.backoff = Some(pb::Backoff {
        r#type: pb::BackoffType::Fixed as i32,
        delay_ms,
    });
    req
}

pub async fn get(c: &mut Client, id: &str) -> anyhow::Result<pb::Job> {
    c.get_job(pb::GetJobRequest { job_id: id.into() })
        .await?
        .into_inner()
        .job
        .ok_or_else(|| anyhow::anyhow!("no job"))
}

pub async fn enqueue(c: &mut Client, req: pb::EnqueueRequest) -> anyhow::Result<String> {
    Ok(c.enqueue(req).await?.into_inner().job_id)
}

/// Waits until job `id` is in `state`.
pub async fn wait_state(c: &Client, id: &str, state: pb::JobState, within: Duration) {
    let what = format!("job {id} reaches {state:?}");
    ncy_testkit::assert_eventually(&what, within, || {
        let mut c = c.clone();
        let id = id.to_owned();
        async move {
            get(&mut c, &id)
                .await
                .map(|j| j.state() == state)
                .unwrap_or(false)
        }
    })
    .await;
}

/// Waits until job `id` is postponed by an outage: FAILED with its attempt given back, and an error
/// containing `error`.
pub async fn wait_postponed(c: &Client, id: &str, error: &str, within: Duration) {
    let what = format!("job {id} postponed ({error})");
    ncy_testkit::assert_eventually(&what, within, || {
        let (mut c, id) = (c.clone(), id.to_owned());
        async move {
            get(&mut c, &id).await.is_ok_and(|j| {
                j.state() == pb::JobState::Failed
                    && j.attempts_made == 0
                    && j.last_error.contains(error)
            })
        }
    })
    .await;
}

/// The dead letters of every queue.
pub async fn dead_letters(c: &mut Client) -> anyhow::Result<Vec<pb::DeadLetter>> {
    Ok(c.list_dead_letters(pb::ListDeadLettersRequest::default())
        .await?
        .into_inner()
        .dead_letters)
}

/// The dead letters of `queue`.
pub async fn dead_letters_of(c: &mut Client, queue: &str) -> anyhow::Result<Vec<pb::DeadLetter>> {
    let request = pb::ListDeadLettersRequest {
        queue: queue.into(),
        ..Default::default()
    };
    Ok(c.list_dead_letters(request)
        .await?
        .into_inner()
        .dead_letters)
}

/// A connection to the shared test Redis.
pub async fn redis() -> anyhow::Result<redis::aio::MultiplexedConnection> {
    Ok(redis::Client::open(ncy_testkit::redis_url())?
        .get_multiplexed_async_connection()
        .await?)
}
