//! Shared setup of the job scheduler's gRPC tests: a scheduler in this process (no worker, so
//! jobs stay where the scheduler puts them) on the real Redis, unless `extra` names another.

use job_scheduler::{Application, Settings};
use ncy_proto::jobs::v1::job_service_client::JobServiceClient;
use ncy_queue::Engine;
use ncy_runtime::RedisPool;
use ncy_testkit::{InProcess, env_of, service_env, set_env};
use tonic::transport::Channel;

pub type Client = JobServiceClient<Channel>;

/// Starts a scheduler with the test job types and `extra` settings; its client and handle.
pub async fn start(prefix: &str, extra: &[(&str, &str)]) -> anyhow::Result<(Client, InProcess)> {
    let (client, running, _) = start_at(prefix, extra).await?;
    Ok((client, running))
}

/// Like [`start`], also returning the gRPC address (for clients with their own connection).
pub async fn start_at(
    prefix: &str,
    extra: &[(&str, &str)],
) -> anyhow::Result<(Client, InProcess, std::net::SocketAddr)> {
    let mut env = service_env(prefix, None);
    set_env(&mut env, "NCY_JOBS_TEST_JOB_TYPES", "true");
    for (k, v) in extra {
        set_env(&mut env, k, v);
    }
    let app = Application::build(Settings::load(&env_of(&env))?).await?;
    let addr = app.local_addrs().grpc;
    let running = InProcess::serving(addr, |stop| app.run_until_stopped(stop)).await;
    Ok((
        JobServiceClient::connect(format!("http://{addr}")).await?,
        running,
        addr,
    ))
}

/// Like [`start`] without waiting for the health check to say SERVING (it does not while Redis is
/// unreachable); the gRPC port is bound already, so the client connects at once.
pub async fn start_unready(
    prefix: &str,
    extra: &[(&str, &str)],
) -> anyhow::Result<(Client, InProcess)> {
    let mut env = service_env(prefix, None);
    set_env(&mut env, "NCY_JOBS_TEST_JOB_TYPES", "true");
    for (k, v) in extra {
        set_env(&mut env, k, v);
    }
    let app = Application::build(Settings::load(&env_of(&env))?).await?;
    let addr = app.local_addrs().grpc;
    let running = InProcess::spawn(|stop| app.run_until_stopped(stop));
    Ok((
        JobServiceClient::connect(format!("http://{addr}")).await?,
        running,
    ))
}

/// The job engine under `prefix`, for a test to play the worker (fetch, complete, fail) beside a
/// scheduler started with [`start`] on the same prefix.
/// Its consumer groups are created.
pub async fn worker_engine(prefix: &str) -> anyhow::Result<Engine> {
    let settings = Settings::load(&env_of(&service_env(prefix, None)))?;
    let pool = RedisPool::new(&settings.common.redis)?;
    let engine = Engine::for_service(pool, &settings.common.redis, settings.engine);
    for queue in ncy_types::jobs::QueueName::ALL {
        engine.ensure_groups(queue).await?;
    }
    Ok(engine)
}
