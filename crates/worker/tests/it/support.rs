//! What the worker's integration tests share: the job engine a test drives the queue with, built
//! from the same environment as the worker under test.
use ncy_queue::{Engine, EngineSettings};
use ncy_runtime::{CommonSettings, RedisPool, ServiceSpec};
use ncy_testkit::env_of;

const SPEC: ServiceSpec = ServiceSpec {
    name: "worker-test",
    default_grpc_addr: "127.0.0.1:0",
    default_admin_addr: "127.0.0.1:0",
    needs_postgres: false,
    default_runtime_threads: 0,
};

/// The engine on `env`'s Redis and key prefix (as the job-scheduler would build it).
pub fn engine(env: &[(String, String)]) -> anyhow::Result<Engine> {
    let env = env_of(env);
    let common = CommonSettings::load(SPEC, &env)?;
    let pool = RedisPool::new(&common.redis)?;
    Ok(Engine::for_service(
        pool,
        &common.redis,
        EngineSettings::load(&env)?,
    ))
}
