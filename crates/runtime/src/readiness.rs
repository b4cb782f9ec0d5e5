//! Readiness: whether this instance should receive traffic — which is only worth refusing when
//! **another instance would do better**.
//!
//! A dependency shared by every replica (Redis, PostgreSQL) going down makes every replica equally
//! worse off; if each then turned not-ready, Kubernetes would take them all out of their Service at
//! once and a database blip would become a total outage of the tiers built to absorb it (the
//! cascading-failure trap of dependency-checking readiness probes). So, after startup, a dependency
//! that is down is *reported* (`/readyz` body, `ncy_dependency_up`, gRPC health of the named
//! services that need it and of `ncy.dependency.<name>`) but does not make the instance not-ready.
//!
//! Not-ready means a fault local to this instance:
//! - **startup**: a dependency has never answered since the process started, so a rollout does not
//!   route to a pod that never reached Redis;
//! - **draining** after SIGTERM;
//! - **wedged**: this instance's own pool cannot reach a dependency that a fresh connection reaches
//!   (checked twice before concluding), e.g. every pooled connection stuck or leaked.
//!
//! Each dependency is probed in the background with backoff while it is down. The per-service table
//! of what still works during each outage is in `docs/operations.md`.
use std::{
    collections::BTreeMap,
    future::Future,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{redis::RedisPool, settings::RedisSettings};

/// The last probe result of one dependency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckState {
    /// Not probed yet.
    Unknown,
    /// Answered its last probe.
    Up,
    /// Failed its last probe, with the reason: the dependency itself is unreachable (a fresh
    /// connection fails too), which every replica shares.
    Down(String),
    /// This instance's pool failed twice while a fresh connection answered: a local fault.
    Wedged(String),
}

impl CheckState {
    fn as_str(&self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Up => "up",
            Self::Down(_) => "down",
            Self::Wedged(_) => "wedged",
        }
    }
}

#[derive(Debug)]
struct Check {
    state: CheckState,
    /// Answered at least once since the process started.
    seen_up: bool,
}

#[derive(Debug)]
struct State {
    checks: BTreeMap<&'static str, Check>,
    draining: bool,
}

impl State {
    /// Why this instance should not get traffic, if it should not.
    fn not_ready_because(&self) -> Option<String> {
        if self.draining {
            return Some("draining".to_owned());
        }
        for (name, check) in &self.checks {
            if !check.seen_up {
                return Some(format!("starting: {name} has not answered yet"));
            }
            if let CheckState::Wedged(reason) = &check.state {
                return Some(format!("{name} pool wedged: {reason}"));
            }
        }
        None
    }
}

/// Shared readiness of one service instance. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Readiness {
    state: Arc<Mutex<State>>,
    /// Bumped on every change of readiness or of a dependency's state.
    changed: watch::Sender<u64>,
}

impl Readiness {
    /// Readiness over the named dependencies, all `Unknown` (so not ready: starting) at first.
    pub fn new(dependencies: &[&'static str]) -> Self {
        let checks = dependencies
            .iter()
            .map(|d| {
                (
                    *d,
                    Check {
                        state: CheckState::Unknown,
                        seen_up: false,
                    },
                )
            })
            .collect();
        let (changed, _) = watch::channel(0);
        Self {
            state: Arc::new(Mutex::new(State {
                checks,
                draining: false,
            })),
            changed,
        }
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Records a probe result.
    pub fn set(&self, dependency: &'static str, state: CheckState) {
        let previous = self.with_state(|s| {
            let check = s.checks.entry(dependency).or_insert(Check {
                state: CheckState::Unknown,
                seen_up: false,
            });
            check.seen_up |= state == CheckState::Up;
            std::mem::replace(&mut check.state, state.clone())
        });
        if previous == state {
            return;
        }
        match &state {
            CheckState::Up => tracing::info!(dependency, "dependency is up"),
            CheckState::Down(reason) if !matches!(previous, CheckState::Down(_)) => {
                tracing::warn!(dependency, %reason, "dependency is down; serving what does not need it")
            }
            CheckState::Wedged(reason) if !matches!(previous, CheckState::Wedged(_)) => {
                tracing::error!(dependency, %reason, "this instance's pool is wedged while the dependency answers; not ready")
            }
            _ => {}
        }
        metrics::gauge!("ncy_dependency_up", "dependency" => dependency)
            .set(if state == CheckState::Up { 1.0 } else { 0.0 });
        self.bump();
    }

    /// Marks the instance as draining: not ready from now on.
    pub fn start_draining(&self) {
        self.with_state(|s| s.draining = true);
        self.bump();
    }

    /// Whether this instance should get traffic: started, not draining, no pool wedged. A shared
    /// dependency being down does not count (see the module documentation).
    pub fn is_ready(&self) -> bool {
        self.with_state(|s| s.not_ready_because().is_none())
    }

    /// Ready, and each of `dependencies` answering its probes now: the gRPC health of a named
    /// service that cannot work without them.
    pub fn is_serving(&self, dependencies: &[&'static str]) -> bool {
        self.with_state(|s| {
            s.not_ready_because().is_none()
                && dependencies
                    .iter()
                    .all(|d| s.checks.get(d).is_some_and(|c| c.state == CheckState::Up))
        })
    }

    /// The dependencies probed, each with whether it answers now.
    pub fn dependencies(&self) -> Vec<(&'static str, bool)> {
        self.with_state(|s| {
            s.checks
                .iter()
                .map(|(name, c)| (*name, c.state == CheckState::Up))
                .collect()
        })
    }

    /// Notified whenever readiness or a dependency's state changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The `/readyz` body: `ready`, `reason` when not, `draining`, `degraded` (some dependency
    /// down while ready) and each check.
    pub fn report(&self) -> serde_json::Value {
        self.with_state(|s| {
            let reason = s.not_ready_because();
            let checks: serde_json::Map<String, serde_json::Value> = s
                .checks
                .iter()
                .map(|(name, check)| {
                    let mut v = json!({"status": check.state.as_str()});
                    if let CheckState::Down(e) | CheckState::Wedged(e) = &check.state {
                        v["error"] = json!(e);
                    }
                    ((*name).to_owned(), v)
                })
                .collect();
            let degraded = s.checks.values().any(|c| c.state != CheckState::Up);
            let mut body = json!({
                "ready": reason.is_none(),
                "draining": s.draining,
                "degraded": degraded,
                "checks": checks,
            });
            if let Some(reason) = reason {
                body["reason"] = json!(reason);
            }
            body
        })
    }
}

/// How often a healthy dependency is probed, and the backoff bounds while it is down.
const HEALTHY_INTERVAL: Duration = Duration::from_secs(5);
const BACKOFF_START: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Probes `redis` and `postgres` until `cancel` fires, recording results in `readiness`.
pub fn spawn_probes(
    readiness: &Readiness,
    redis: Option<(RedisPool, RedisSettings)>,
    postgres: Option<sqlx::PgPool>,
    cancel: &CancellationToken,
) {
    if let Some((pool, settings)) = redis {
        let settings = Arc::new(settings);
        spawn_probe(
            readiness.clone(),
            "redis",
            cancel.clone(),
            move || {
                let pool = pool.clone();
                async move { pool.ping().await.map_err(|e| e.to_string()) }
            },
            move || {
                let settings = settings.clone();
                async move {
                    crate::redis::ping_fresh(&settings)
                        .await
                        .map_err(|e| e.to_string())
                }
            },
        );
    }
    if let Some(pool) = postgres {
        let options = pool.connect_options();
        spawn_probe(
            readiness.clone(),
            "postgres",
            cancel.clone(),
            move || {
                let pool = pool.clone();
                async move {
                    crate::postgres::ping(&pool)
                        .await
                        .map_err(|e| e.to_string())
                }
            },
            move || {
                let options = options.clone();
                async move {
                    crate::postgres::ping_fresh(&options)
                        .await
                        .map_err(|e| e.to_string())
                }
            },
        );
    }
}

async fn bounded<Fut>(probe: Fut) -> Result<(), String>
where
    Fut: Future<Output = Result<(), String>>,
{
    match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
    }
}

/// One probe round: the pool; when it fails, a fresh connection tells a shared outage (`Down`)
/// from a local fault (`Wedged`), confirmed by a second failure of the pool.
async fn probe_once<P, PF, F, FF>(pooled: &P, fresh: &F) -> CheckState
where
    P: Fn() -> PF,
    PF: Future<Output = Result<(), String>>,
    F: Fn() -> FF,
    FF: Future<Output = Result<(), String>>,
{
    let Err(reason) = bounded(pooled()).await else {
        return CheckState::Up;
    };
    if let Err(e) = bounded(fresh()).await {
        return CheckState::Down(e);
    }
    // A fresh connection answers. The pool's first failure may be a connection that died with a
    // server restart (dropped on this failure): ask once more before blaming the pool.
    match bounded(pooled()).await {
        Ok(()) => CheckState::Up,
        Err(again) => {
            tracing::debug!(first = %reason, "pool probe failed twice while a fresh connection answered");
            CheckState::Wedged(again)
        }
    }
}

fn spawn_probe<P, PF, F, FF>(
    readiness: Readiness,
    name: &'static str,
    cancel: CancellationToken,
    pooled: P,
    fresh: F,
) where
    P: Fn() -> PF + Send + Sync + 'static,
    PF: Future<Output = Result<(), String>> + Send,
    F: Fn() -> FF + Send + Sync + 'static,
    FF: Future<Output = Result<(), String>> + Send,
{
    tokio::spawn(async move {
        let mut backoff = BACKOFF_START;
        loop {
            let state = probe_once(&pooled, &fresh).await;
            let wait = if state == CheckState::Up {
                backoff = BACKOFF_START;
                HEALTHY_INTERVAL
            } else {
                let wait = backoff;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                wait
            };
            readiness.set(name, state);
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_ready_only_for_local_faults_after_startup() {
        let r = Readiness::new(&["redis", "postgres"]);
        assert!(!r.is_ready(), "starting");
        r.set("redis", CheckState::Up);
        assert!(!r.is_ready(), "postgres never answered");
        assert!(
            r.report()["reason"]
                .as_str()
                .is_some_and(|s| s.contains("postgres"))
        );
        r.set("postgres", CheckState::Up);
        assert!(r.is_ready());
        assert!(r.is_serving(&["redis"]));

        // A shared outage after startup: still ready, but degraded, and what needs Redis is not
        // serving.
        r.set("redis", CheckState::Down("refused".into()));
        assert!(r.is_ready());
        assert!(!r.is_serving(&["redis"]));
        assert!(r.is_serving(&["postgres"]));
        let report = r.report();
        assert_eq!(report["degraded"], true);
        assert_eq!(report["checks"]["redis"]["error"], "refused");

        // A local fault: not ready.
        r.set("redis", CheckState::Wedged("pool timed out".into()));
        assert!(!r.is_ready());
        r.set("redis", CheckState::Up);
        assert!(r.is_ready());

        r.start_draining();
        assert!(!r.is_ready());
        assert_eq!(r.report()["reason"], "draining");
    }

    #[tokio::test]
    async fn a_pool_failing_while_a_fresh_connection_answers_is_wedged() {
        let ok = || async { Ok::<(), String>(()) };
        let fail = || async { Err::<(), String>("no".into()) };
        assert_eq!(probe_once(&ok, &fail).await, CheckState::Up);
        assert_eq!(
            probe_once(&fail, &fail).await,
            CheckState::Down("no".into())
        );
        assert_eq!(
            probe_once(&fail, &ok).await,
            CheckState::Wedged("no".into())
        );
        // Fails once (a connection that died with a restart), then answers: up.
        let calls = std::sync::atomic::AtomicU32::new(0);
        let flaky = || {
            let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                if n == 0 {
                    Err("dropped".to_owned())
                } else {
                    Ok(())
                }
            }
        };
        assert_eq!(probe_once(&flaky, &ok).await, CheckState::Up);
    }
}
