//! Shared setup of the engine's tests: an engine under a unique key prefix on the real Redis, with
//! its consumer groups, and a plain job to enqueue.

use ncy_queue::{Engine, EngineSettings, NewJob};
use ncy_runtime::{CommonSettings, RedisPool, ServiceSpec};
use ncy_testkit::{env_of, service_env, set_env, unique_prefix};
use ncy_types::jobs::{Backoff, BackoffKind, QueueName};

const SPEC: ServiceSpec = ServiceSpec {
    name: "queue-test",
    default_grpc_addr: "127.0.0.1:0",
    default_admin_addr: "127.0.0.1:0",
    needs_postgres: false,
    default_runtime_threads: 0,
};

/// An engine with `extra` settings under a fresh prefix, its groups created.
pub async fn engine(extra: &[(&str, &str)]) -> anyhow::Result<Engine> {
    let mut env = service_env(&unique_prefix(), None);
    for (k, v) in extra {
        set_env(&mut env, k, v);
    }
    let env = env_of(&env);
    let common = CommonSettings::load(SPEC, &env)?;
    let pool = RedisPool::new(&common.redis)?;
    let client = redis::Client::open(ncy_testkit::redis_url())?;
    let engine = Engine::new(
        pool,
        common.redis.keys.clone(),
        EngineSettings::load(&env)?,
        Some(client),
    );
    for q in QueueName::ALL {
        engine.ensure_groups(q).await?;
    }
    Ok(engine)
}

/// A `noop` job of `priority`: two attempts, 1 ms fixed backoff.
pub fn job(priority: u8) -> NewJob {
    NewJob {
        job_type: "noop".into(),
        data: format!("{{\"p\":{priority}}}"),
        priority,
        max_attempts: 2,
        backoff: Backoff {
            kind: BackoffKind::Fixed,
            delay_ms: 1,
        },
        delay_ms: 0,
        idempotency_key: String::new(),
        owner_user_id: String::new(),
        schedule_name: String::new(),
        trace: String::new(),
    }
}
