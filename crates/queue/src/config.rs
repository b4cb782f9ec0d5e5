//! Engine settings shared by job-scheduler and worker: per-queue rate limits, concurrency and
//! retention, and the engine's timeouts, read from the environment with the seed's defaults.
//!
//! Variables (queue `Q` upper-cased, e.g. `EMAIL`):
//! `NCY_QUEUE_<Q>_RATE_LIMIT` (`100/60000` = 100 starts per 60 000 ms, `0` = unlimited),
//! `NCY_QUEUE_<Q>_CONCURRENCY`, `NCY_QUEUE_<Q>_KEEP_COMPLETED` (count), `NCY_QUEUE_<Q>_KEEP_SECS`
//! (age), and engine-wide `NCY_JOBS_VISIBILITY_TIMEOUT_MS`, `NCY_JOBS_MAX_RECLAIMS`,
//! `NCY_JOBS_DEDUP_TTL_SECS`, `NCY_JOBS_MAX_BACKOFF_MS`, `NCY_JOBS_DEAD_LETTER_MAX`,
//! `NCY_JOBS_TEST_JOB_TYPES` (accept/run the test-only `sleep` and `fail` types),
//! `NCY_JOBS_HISTORY_FLUSH_MS` (how often a worker adds its QueueHistory counts to Redis).
use std::collections::BTreeMap;
use std::time::Duration;

use ncy_runtime::{ConfigError, Env};
use ncy_types::jobs::QueueName;

/// A shared rate limit: at most `max` job starts per `window_ms`, across all workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub max: u32,
    pub window_ms: u64,
}

/// Settings of one queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSettings {
    pub name: QueueName,
    pub rate_limit: Option<RateLimit>,
    /// Jobs of this queue one worker runs at once.
    pub concurrency: u32,
    /// Finished jobs (completed, dead, cancelled: each set) kept at most.
    pub keep_count: u64,
    /// Finished jobs kept at most this long.
    pub keep_age: Duration,
}

/// Settings of the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineSettings {
    pub queues: BTreeMap<QueueName, QueueSettings>,
    /// An ACTIVE entry idle (no heartbeat) this long is reclaimed by another worker.
    pub visibility_timeout: Duration,
    /// Reclaims after which a job that keeps killing its worker becomes DEAD.
    pub max_reclaims: u32,
    /// How long an idempotency key is remembered.
    pub dedup_ttl: Duration,
    /// Cap of the exponential backoff.
    pub max_backoff_ms: u64,
    /// Dead letters kept per queue at most (approximate trim).
    pub dead_letter_max: u64,
    /// Accept and run the test-only `sleep` and `fail` job types.
    pub test_job_types: bool,
    /// How often a worker adds the jobs it finished per minute to the queue history (default
    /// 5 s, 100 ms–60 s): the current minute of QueueHistory lags by up to this much.
    pub history_flush: Duration,
}

impl EngineSettings {
    /// Reads the engine settings from `env`.
    pub fn load(env: &Env) -> Result<Self, ConfigError> {
        let mut queues = BTreeMap::new();
        for name in QueueName::ALL {
            let upper = name.as_str().to_ascii_uppercase();
            let (default_rate, default_concurrency) = match name {
                QueueName::Email => ("100/60000", 5),
                QueueName::Notification => ("0", 10),
                QueueName::Report => ("10/60000", 2),
                QueueName::Cleanup => ("0", 1),
            };
            let rate_var = format!("NCY_QUEUE_{upper}_RATE_LIMIT");
            let raw = env
                .get(&rate_var)
                .unwrap_or_else(|| default_rate.to_owned());
            let rate_limit = parse_rate(&raw).map_err(|m| ConfigError::new(&rate_var, m))?;
            let conc_var = format!("NCY_QUEUE_{upper}_CONCURRENCY");
            let concurrency: u32 =
                env.parse_or(&conc_var, default_concurrency, "a number 1–1024")?;
            if !(1..=1024).contains(&concurrency) {
                return Err(ConfigError::new(conc_var, "must be between 1 and 1024"));
            }
            let keep_count: u64 = env.parse_or(
                &format!("NCY_QUEUE_{upper}_KEEP_COMPLETED"),
                1000,
                "a number of jobs",
            )?;
            let keep_age = env.secs_or(
                &format!("NCY_QUEUE_{upper}_KEEP_SECS"),
                24 * 3600,
                365 * 24 * 3600,
            )?;
            queues.insert(
                name,
                QueueSettings {
                    name,
                    rate_limit,
                    concurrency,
                    keep_count,
                    keep_age,
                },
            );
        }
        let visibility_ms: u64 =
            env.parse_or("NCY_JOBS_VISIBILITY_TIMEOUT_MS", 30_000, "milliseconds")?;
        if !(100..=3_600_000).contains(&visibility_ms) {
            return Err(ConfigError::new(
                "NCY_JOBS_VISIBILITY_TIMEOUT_MS",
                "must be between 100 and 3600000",
            ));
        }
        let history_flush_ms: u64 =
            env.parse_or("NCY_JOBS_HISTORY_FLUSH_MS", 5_000, "milliseconds")?;
        if !(100..=60_000).contains(&history_flush_ms) {
            return Err(ConfigError::new(
                "NCY_JOBS_HISTORY_FLUSH_MS",
                "must be between 100 and 60000",
            ));
        }
        Ok(Self {
            queues,
            visibility_timeout: Duration::from_millis(visibility_ms),
            max_reclaims: env.parse_or("NCY_JOBS_MAX_RECLAIMS", 3, "a number")?,
            dedup_ttl: env.secs_or("NCY_JOBS_DEDUP_TTL_SECS", 24 * 3600, 30 * 24 * 3600)?,
            max_backoff_ms: env.parse_or("NCY_JOBS_MAX_BACKOFF_MS", 3_600_000, "milliseconds")?,
            dead_letter_max: env.parse_or("NCY_JOBS_DEAD_LETTER_MAX", 10_000, "a number")?,
            test_job_types: env.bool_or("NCY_JOBS_TEST_JOB_TYPES", false)?,
            history_flush: Duration::from_millis(history_flush_ms),
        })
    }

    /// The settings of `queue` (every queue has an entry).
    pub fn queue(&self, queue: QueueName) -> QueueSettings {
        self.queues.get(&queue).cloned().unwrap_or(QueueSettings {
            name: queue,
            rate_limit: None,
            concurrency: 1,
            keep_count: 1000,
            keep_age: Duration::from_secs(24 * 3600),
        })
    }
}

/// `max/window_ms` or `0` (unlimited).
fn parse_rate(raw: &str) -> Result<Option<RateLimit>, String> {
    let raw = raw.trim();
    if raw == "0" {
        return Ok(None);
    }
    let bad = || format!("expected max/window_ms such as 100/60000, or 0, got {raw:?}");
    let (max, window) = raw.split_once('/').ok_or_else(bad)?;
    let max: u32 = max.trim().parse().map_err(|_| bad())?;
    let window_ms: u64 = window.trim().parse().map_err(|_| bad())?;
    if max == 0 || window_ms == 0 {
        return Err(bad());
    }
    Ok(Some(RateLimit { max, window_ms }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_defaults() {
        let s = EngineSettings::load(&Env::from_pairs::<String, String>([])).expect("defaults");
        let email = s.queue(QueueName::Email);
        assert_eq!(
            email.rate_limit,
            Some(RateLimit {
                max: 100,
                window_ms: 60_000
            })
        );
        assert_eq!(email.concurrency, 5);
        assert_eq!(s.queue(QueueName::Notification).concurrency, 10);
        assert_eq!(s.queue(QueueName::Report).concurrency, 2);
        assert_eq!(
            s.queue(QueueName::Report).rate_limit,
            Some(RateLimit {
                max: 10,
                window_ms: 60_000
            })
        );
        assert!(!s.test_job_types);
        assert_eq!(s.history_flush, Duration::from_secs(5));
    }

    #[test]
    fn bad_values_name_the_variable() {
        let env = Env::from_pairs([("NCY_QUEUE_EMAIL_RATE_LIMIT", "fast")]);
        let err = EngineSettings::load(&env).expect_err("bad rate");
        assert!(
            err.to_string().contains("NCY_QUEUE_EMAIL_RATE_LIMIT"),
            "{err}"
        );
        let env = Env::from_pairs([("NCY_QUEUE_REPORT_CONCURRENCY", "0")]);
        assert!(EngineSettings::load(&env).is_err());
        for bad in ["99", "60001", "soon"] {
            let env = Env::from_pairs([("NCY_JOBS_HISTORY_FLUSH_MS", bad)]);
            let err = EngineSettings::load(&env).expect_err(bad);
            assert!(
                err.to_string().contains("NCY_JOBS_HISTORY_FLUSH_MS"),
                "{err}"
            );
        }
    }
}
