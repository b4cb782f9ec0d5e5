//! What the console's tests share: a job-scheduler (and, when a job must run, a worker) in this
//! process on the real Redis under a key prefix of the test's own, a console in this process on
//! port 0 in front of it with a temporary users file (one viewer, one operator), and a browser
//! that handles its cookie by hand so a test sees exactly what a browser would be sent (in
//! `browser`). The cache-gateway and realtime-gateway the Cache and Realtime pages talk to are in `gateways`.
use std::{net::SocketAddr, sync::Arc, time::Duration};

use argon2::{
    Algorithm, Argon2, Params, Version,
    password_hash::{PasswordHasher, phc::PasswordHash},
};
use ncy_console::{Application, Settings, live::OverviewHub};
use ncy_proto::jobs::v1::{self as pb, job_service_client::JobServiceClient};
use ncy_testkit::{InProcess, TestDatabase, env_of, service_env, set_env, unique_prefix};
use tonic::transport::Channel;

mod browser;
pub mod gateways;

pub use browser::{Browser, Event, EventStream, Origin, Page, instance_row};

pub type Client = JobServiceClient<Channel>;

/// The viewer of every test console: name and password.
pub const VIEWER: (&str, &str) = ("vera", "viewer password 1");
/// The operator of every test console.
pub const OPERATOR: (&str, &str) = ("otto", "operator password 1");
/// A cache-gateway URL where nothing listens (a privileged port nobody binds in tests).
pub const NO_CACHE_GATEWAY: &str = "http://127.0.0.1:1";
/// A realtime-gateway URL where nothing listens.
pub const NO_REALTIME_GATEWAY: &str = "http://127.0.0.1:1";

/// The session secret of every test console.
pub const SECRET: &str = "a-test-session-secret-of-40-characters!!";

/// A password hash with the smallest argon2 cost (tests need not pay for the real one).
pub fn cheap_hash(password: &str) -> String {
    let params = Params::new(Params::MIN_M_COST, 1, 1, None).expect("params");
    let hash = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password.as_bytes())
        .expect("hash")
        .to_string();
    assert!(PasswordHash::new(&hash).is_ok());
    hash
}

/// A users file's text with `users` (name, role, password).
pub fn users_toml(users: &[(&str, &str, &str)]) -> String {
    users
        .iter()
        .map(|(name, role, password)| {
            format!(
                "[[users]]\nname = \"{name}\"\nrole = \"{role}\"\npassword_hash = \"{}\"\n\n",
                cheap_hash(password)
            )
        })
        .collect()
}

/// The scheduler (and worker) a console talks to.
pub struct Backbone {
    /// A gRPC client of the scheduler, to set up and check what the console shows.
    pub jobs: Client,
    /// The scheduler's gRPC address.
    pub addr: SocketAddr,
    /// The environment the services were started with.
    pub env: Vec<(String, String)>,
    scheduler: InProcess,
    worker: Option<(InProcess, TestDatabase)>,
}

impl Backbone {
    /// A scheduler with the test job types, under a fresh key prefix; no worker (jobs stay put).
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(&[]).await
    }

    /// Like [`Backbone::start`] with `extra` scheduler settings on top.
    pub async fn start_with(extra: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut env = service_env(&unique_prefix(), None);
        set_env(&mut env, "NCY_JOBS_TEST_JOB_TYPES", "true");
        set_env(&mut env, "NCY_CRON_INSTALL_DEFAULTS", "false");
        for (k, v) in extra {
            set_env(&mut env, k, v);
        }
        let app = job_scheduler::Application::build(job_scheduler::Settings::load(&env_of(&env))?)
            .await?;
        let addr = app.local_addrs().grpc;
        let scheduler = InProcess::serving(addr, |stop| app.run_until_stopped(stop)).await;
        Ok(Self {
            jobs: JobServiceClient::connect(format!("http://{addr}")).await?,
            addr,
            env,
            scheduler,
            worker: None,
        })
    }

    /// Starts a worker on the same prefix (with a database of its own), so jobs run.
    pub async fn with_worker(mut self) -> anyhow::Result<Self> {
        let db = TestDatabase::migrated().await?;
        let mut env = self.env.clone();
        set_env(&mut env, "DATABASE_URL", &db.url);
        let app = worker::Application::build(worker::Settings::load(&env_of(&env))?).await?;
        self.worker = Some((InProcess::spawn(|stop| app.run_until_stopped(stop)), db));
        Ok(self)
    }

    /// Enqueues `job_type` with `payload` on `queue`; the job's id.
    pub async fn enqueue(
        &self,
        queue: &str,
        job_type: &str,
        payload: &str,
    ) -> anyhow::Result<String> {
        self.enqueue_with(pb::EnqueueRequest {
            queue: queue.into(),
            job_type: job_type.into(),
            payload_json: payload.into(),
            ..Default::default()
        })
        .await
    }

    /// Enqueues `request`; the job's id.
    pub async fn enqueue_with(&self, request: pb::EnqueueRequest) -> anyhow::Result<String> {
        Ok(self
            .jobs
            .clone()
            .enqueue(request)
            .await?
            .into_inner()
            .job_id)
    }

    /// The first page of `queue`'s jobs waiting to run.
    pub async fn waiting(&self, queue: &str) -> anyhow::Result<Vec<pb::Job>> {
        let request = pb::ListJobsRequest {
            queue: queue.into(),
            state: pb::JobState::Waiting as i32,
            ..Default::default()
        };
        Ok(self
            .jobs
            .clone()
            .list_jobs(request)
            .await?
            .into_inner()
            .jobs)
    }

    /// Waits (up to 30 s) until job `id` is in `state`.
    pub async fn reaches(&self, id: &str, state: pb::JobState) {
        let what = format!("job {id} is {state:?}");
        ncy_testkit::assert_eventually(&what, Duration::from_secs(30), || async move {
            self.job(id).await.is_ok_and(|j| j.state() == state)
        })
        .await;
    }

    /// A job as the scheduler sees it.
    pub async fn job(&self, id: &str) -> anyhow::Result<pb::Job> {
        let reply = self
            .jobs
            .clone()
            .get_job(pb::GetJobRequest { job_id: id.into() })
            .await?;
        reply
            .into_inner()
            .job
            .ok_or_else(|| anyhow::anyhow!("GetJob without a job"))
    }

    /// One queue's summary.
    pub async fn stats(&self, queue: &str) -> anyhow::Result<pb::QueueSummary> {
        let reply = self
            .jobs
            .clone()
            .queue_stats(pb::QueueStatsRequest {
                queue: queue.into(),
            })
            .await?;
        reply
            .into_inner()
            .queues
            .into_iter()
            .next()
            .ok_or_else(|| anyhow::anyhow!("no summary for {queue}"))
    }

    /// Stops the services.
    pub async fn stop(self) -> anyhow::Result<()> {
        if let Some((worker, _db)) = self.worker {
            worker
                .stop(Duration::from_secs(15))
                .await
                .map_err(anyhow::Error::msg)?;
        }
        self.scheduler
            .stop(Duration::from_secs(15))
            .await
            .map_err(anyhow::Error::msg)
    }
}

/// A console running in this process.
pub struct Console {
    /// Where the pages are.
    pub addr: SocketAddr,
    /// Where `/metrics`, `/readyz` are.
    pub admin: SocketAddr,
    /// Its overview poller (QueueStats calls made).
    pub hub: Arc<OverviewHub>,
    /// The users file (tests rewrite it).
    pub users_file: std::path::PathBuf,
    running: InProcess,
    _dir: tempfile::TempDir,
}

/// The environment of a console in front of the scheduler at `jobs`, with its users file in `dir`.
pub fn console_env(
    jobs: SocketAddr,
    dir: &tempfile::TempDir,
) -> anyhow::Result<Vec<(String, String)>> {
    let users = dir.path().join("users.toml");
    std::fs::write(
        &users,
        users_toml(&[
            (VIEWER.0, "viewer", VIEWER.1),
            (OPERATOR.0, "operator", OPERATOR.1),
        ]),
    )?;
    Ok(vec![
        ("NCY_CONSOLE_ADDR".into(), "127.0.0.1:0".into()),
        ("NCY_ADMIN_ADDR".into(), "127.0.0.1:0".into()),
        ("NCY_CONSOLE_JOBS_URL".into(), format!("http://{jobs}")),
        (
            "NCY_CONSOLE_USERS_FILE".into(),
            users.to_string_lossy().into_owned(),
        ),
        ("NCY_CONSOLE_SESSION_SECRET".into(), SECRET.into()),
        // No cache-gateway unless a test starts one: sign-ins go on unchecked (fail open), and
        // never count against a gateway some other stack runs on the default port.
        ("NCY_CONSOLE_CACHE_URL".into(), NO_CACHE_GATEWAY.into()),
        // Nor a realtime-gateway: the overview polls it while a browser listens.
        (
            "NCY_CONSOLE_REALTIME_URL".into(),
            NO_REALTIME_GATEWAY.into(),
        ),
        ("NCY_SHUTDOWN_GRACE_SECS".into(), "5".into()),
        ("RUST_LOG".into(), "warn".into()),
    ])
}

impl Console {
    /// A console in front of the scheduler at `jobs`.
    pub async fn start(jobs: SocketAddr) -> anyhow::Result<Self> {
        Self::start_with(jobs, &[]).await
    }

    /// A console with `extra` settings on top.
    pub async fn start_with(jobs: SocketAddr, extra: &[(&str, &str)]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut env = console_env(jobs, &dir)?;
        for (k, v) in extra {
            set_env(&mut env, k, v);
        }
        let settings = Settings::load(&env_of(&env))?;
        let users_file = settings.users_file.clone();
        let app = Application::build(settings).await?;
        let addrs = app.local_addrs();
        let hub = app.overview();
        let running = InProcess::spawn(|stop| app.run_until_stopped(stop));
        Ok(Self {
            addr: addrs.http,
            admin: addrs.admin,
            hub,
            users_file,
            running,
            _dir: dir,
        })
    }

    /// A browser of this console, signed out.
    pub fn browser(&self) -> Browser {
        Browser::new(self.addr)
    }

    /// A browser signed in as `user`.
    pub async fn signed_in(&self, user: (&str, &str)) -> anyhow::Result<Browser> {
        let mut browser = self.browser();
        let page = browser.login(user.0, user.1).await?;
        anyhow::ensure!(page.status == 303, "sign-in of {}: {}", user.0, page.status);
        Ok(browser)
    }

    /// Stops the console; it must drain within the grace period.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.running
            .stop(Duration::from_secs(10))
            .await
            .map_err(anyhow::Error::msg)
    }
}
