//! Readiness: whether this instance should receive traffic.
//!
//! Each dependency (Redis, PostgreSQL) is probed in the background with backoff while it is down, so
//! a service that starts before its dependencies reports not-ready on `/readyz` and in gRPC health
//! instead of crash-looping. Draining (after SIGTERM) also makes the instance not-ready.
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::redis::RedisPool;

/// The last probe result of one dependency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckState {
    /// Not probed yet.
    Unknown,
    /// Answered its last probe.
    Up,
    /// Failed its last probe, with the reason.
    Down(String),
}

#[derive(Debug)]
struct State {
    checks: BTreeMap<&'static str, CheckState>,
    draining: bool,
}

/// Shared readiness of one service instance. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Readiness {
    state: Arc<Mutex<State>>,
    changed: watch::Sender<bool>,
}

impl Readiness {
    /// Readiness over the named dependencies, all `Unknown` (so not ready) at first.
    pub fn new(dependencies: &[&'static str]) -> Self {
        let checks = dependencies
            .iter()
            .map(|d| (*d, CheckState::Unknown))
            .collect();
        let (changed, _) = watch::channel(dependencies.is_empty());
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

    fn publish(&self) {
        let ready = self.is_ready();
        self.changed
            .send_if_modified(|old| std::mem::replace(old, ready) != ready);
    }

    /// Records a probe result.
    pub fn set(&self, dependency: &'static str, state: CheckState) {
        let previous = self.with_state(|s| s.checks.insert(dependency, state.clone()));
        match (&previous, &state) {
            (Some(CheckState::Up), CheckState::Up) => {}
            (_, CheckState::Up) => tracing::info!(dependency, "dependency is up"),
            (Some(CheckState::Down(_)), CheckState::Down(_)) => {}
            (_, CheckState::Down(reason)) => {
                tracing::warn!(dependency, %reason, "dependency is down")
            }
            _ => {}
        }
        metrics::gauge!("ncy_dependency_up", "dependency" => dependency)
            .set(if state == CheckState::Up { 1.0 } else { 0.0 });
        self.publish();
    }

    /// Marks the instance as draining: not ready from now on.
    pub fn start_draining(&self) {
        self.with_state(|s| s.draining = true);
        self.publish();
    }

    /// Every dependency up and not draining.
    pub fn is_ready(&self) -> bool {
        self.with_state(|s| !s.draining && s.checks.values().all(|c| *c == CheckState::Up))
    }

    /// Notified whenever readiness flips.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.changed.subscribe()
    }

    /// The `/readyz` body.
    pub fn report(&self) -> serde_json::Value {
        let ready = self.is_ready();
        self.with_state(|s| {
            let checks: serde_json::Map<String, serde_json::Value> = s
                .checks
                .iter()
                .map(|(name, state)| {
                    let v = match state {
                        CheckState::Unknown => json!({"status": "unknown"}),
                        CheckState::Up => json!({"status": "up"}),
                        CheckState::Down(reason) => json!({"status": "down", "error": reason}),
                    };
                    ((*name).to_owned(), v)
                })
                .collect();
            json!({"ready": ready, "draining": s.draining, "checks": checks})
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
    redis: Option<RedisPool>,
    postgres: Option<sqlx::PgPool>,
    cancel: &CancellationToken,
) {
    if let Some(pool) = redis {
        spawn_probe(readiness.clone(), "redis", cancel.clone(), move || {
            let pool = pool.clone();
            async move { pool.ping().await.map_err(|e| e.to_string()) }
        });
    }
    if let Some(pool) = postgres {
        spawn_probe(readiness.clone(), "postgres", cancel.clone(), move || {
            let pool = pool.clone();
            async move {
                crate::postgres::ping(&pool)
                    .await
                    .map_err(|e| e.to_string())
            }
        });
    }
}

fn spawn_probe<F, Fut>(
    readiness: Readiness,
    name: &'static str,
    cancel: CancellationToken,
    probe: F,
) where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    tokio::spawn(async move {
        let mut backoff = BACKOFF_START;
        loop {
            let result = match tokio::time::timeout(PROBE_TIMEOUT, probe()).await {
                Ok(r) => r,
                Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
            };
            let wait = match result {
                Ok(()) => {
                    readiness.set(name, CheckState::Up);
                    backoff = BACKOFF_START;
                    HEALTHY_INTERVAL
                }
                Err(reason) => {
                    readiness.set(name, CheckState::Down(reason));
                    let wait = backoff;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    wait
                }
            };
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
    fn ready_only_when_all_up_and_not_draining() {
        let r = Readiness::new(&["redis", "postgres"]);
        assert!(!r.is_ready());
        r.set("redis", CheckState::Up);
        assert!(!r.is_ready());
        r.set("postgres", CheckState::Up);
        assert!(r.is_ready());
        r.set("redis", CheckState::Down("refused".into()));
        assert!(!r.is_ready());
        assert_eq!(r.report()["checks"]["redis"]["error"], "refused");
        r.set("redis", CheckState::Up);
        r.start_draining();
        assert!(!r.is_ready());
        assert_eq!(r.report()["draining"], true);
    }
}
