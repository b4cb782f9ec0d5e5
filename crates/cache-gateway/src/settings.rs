//! Settings of the cache gateway: the shared block plus the cache's own knobs (`NCY_CACHE_*`).
//!
//! Every value has a default, so a deployment only sets what it changes; a bad value stops the
//! process at start with the variable named (exit 64), never at the first request.
use std::{path::PathBuf, time::Duration};

use ncy_runtime::{CommonSettings, ConfigError, Env, ServiceSpec};

use crate::loaders::Loaders;

/// What the gateway is configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The block every service shares.
    pub common: CommonSettings,
    /// The cache's own settings.
    pub cache: CacheSettings,
}

/// The cache's own settings (the `NCY_CACHE_*` rows of docs/configuration.md).
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// `NCY_CACHE_L1_CAPACITY_BYTES`: L1 size bound, weighed by key + value + tags bytes.
    pub l1_capacity_bytes: u64,
    /// `NCY_CACHE_L1_MAX_TTL_SECS`: the longest an L1 copy lives (min with the entry's TTL).
    pub l1_max_ttl: Duration,
    /// `NCY_CACHE_DEFAULT_TTL_SECS`: Set's TTL when the request has none.
    pub default_ttl: Duration,
    /// `NCY_CACHE_MAX_TTL_SECS`: the largest TTL a request may ask for.
    pub max_ttl: Duration,
    /// `NCY_CACHE_MAX_VALUE_BYTES`: the largest JSON value accepted.
    pub max_value_bytes: usize,
    /// `NCY_CACHE_COMPRESS_THRESHOLD_BYTES`: values above this are lz4-compressed in L2.
    pub compress_threshold_bytes: usize,
    /// `NCY_CACHE_NEGATIVE_TTL_SECS`: how long a missing row is remembered.
    pub negative_ttl: Duration,
    /// `NCY_CACHE_MAX_STALE_SECS`: how long after expiry a loaded copy may still be served when its
    /// loader fails (fail-safe). 0 disables the fail-safe.
    pub max_stale: Duration,
    /// `NCY_CACHE_REFRESH_AHEAD_PERCENT`: a read in the last N% of the TTL reloads in the background.
    pub refresh_ahead_percent: u8,
    /// `NCY_CACHE_TTL_JITTER_PERCENT`: up to N% is added to every TTL so entries written together do
    /// not expire together.
    pub ttl_jitter_percent: u8,
    /// `NCY_CACHE_L2_TIMEOUT_MS`: the longest a request waits for one Redis call.
    pub l2_timeout: Duration,
    /// `NCY_CACHE_BREAKER_FAILURES`: consecutive Redis failures that open the circuit.
    pub breaker_failures: u32,
    /// `NCY_CACHE_BREAKER_OPEN_MS`: how long the open circuit fails fast before a trial call.
    pub breaker_open: Duration,
    /// `NCY_CACHE_LEASE_MS`: the cross-instance load lease; losers wait at most this long for L2.
    pub lease: Duration,
    /// `NCY_CACHE_LOADERS_FILE`: a TOML file of loaders added to (or replacing) the defaults.
    pub loaders_file: Option<PathBuf>,
    /// The loaders: the defaults plus the file's (parsed at load, so a bad file fails the start).
    pub loaders: Loaders,
    /// `NCY_CACHE_DB_NOTIFY`: LISTEN for the database's invalidation NOTIFYs.
    pub db_notify: bool,
    /// `NCY_CACHE_DB_NOTIFY_CHANNEL`: the channel the migration's triggers NOTIFY on.
    pub db_notify_channel: String,
    /// `NCY_CACHE_BACKPLANE_HEARTBEAT_MS`: the backplane proves it is alive this often.
    pub backplane_heartbeat: Duration,
    /// `NCY_CACHE_SESSION_TTL_SECS`: PutSession's TTL when the request has none.
    pub session_ttl: Duration,
    /// `NCY_CACHE_MAX_SESSION_BYTES`: the largest session `data_json`.
    pub max_session_bytes: usize,
}

const SPEC: ServiceSpec = ServiceSpec {
    name: crate::SERVICE,
    default_grpc_addr: "0.0.0.0:50051",
    default_admin_addr: "0.0.0.0:9101",
    needs_postgres: true,
    // One thread by default: a cache read is a few microseconds of work between two socket
    // operations, and on the work-stealing scheduler every read woke a task on the other thread
    // and went out in a write of its own (the connection task ran right after each answer). The
    // single-threaded scheduler answers a whole MGET batch, then writes each HTTP/2 connection
    // once: about 55% more L2 reads per second on the benchmark machine. Scale with replicas, or set
    // NCY_RUNTIME_THREADS=0 to use every CPU in one process.
    default_runtime_threads: 1,
};

const DAY: u64 = 86_400;

impl Settings {
    /// Reads settings from `env`.
    pub fn load(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            common: CommonSettings::load(SPEC, env)?,
            cache: CacheSettings::load(env)?,
        })
    }
}

impl CacheSettings {
    fn load(env: &Env) -> Result<Self, ConfigError> {
        let max_ttl = env.secs_or("NCY_CACHE_MAX_TTL_SECS", 30 * DAY, 365 * DAY)?;
        let default_ttl = env.secs_or("NCY_CACHE_DEFAULT_TTL_SECS", 3600, max_ttl.as_secs())?;
        let percent = |var: &str, default: u8| -> Result<u8, ConfigError> {
            let v: u8 = env.parse_or(var, default, "a percentage 0 to 100")?;
            if v > 100 {
                return Err(ConfigError::new(var, "must be between 0 and 100"));
            }
            Ok(v)
        };
        let ms = |var: &str, default: u64| -> Result<Duration, ConfigError> {
            let v: u64 = env.parse_or(var, default, "a number of milliseconds")?;
            if v == 0 {
                return Err(ConfigError::new(var, "must be at least 1"));
            }
            Ok(Duration::from_millis(v))
        };
        let loaders_file = env.get("NCY_CACHE_LOADERS_FILE").map(PathBuf::from);
        let loaders = Loaders::load(loaders_file.as_deref(), default_ttl)
            .map_err(|e| ConfigError::new("NCY_CACHE_LOADERS_FILE", e))?;
        let max_stale_secs: u64 = env.parse_or("NCY_CACHE_MAX_STALE_SECS", 3600, "seconds")?;
        Ok(Self {
            l1_capacity_bytes: env.parse_or(
                "NCY_CACHE_L1_CAPACITY_BYTES",
                256 << 20,
                "a number of bytes",
            )?,
            l1_max_ttl: env.secs_or("NCY_CACHE_L1_MAX_TTL_SECS", 60, DAY)?,
            default_ttl,
            max_ttl,
            max_value_bytes: env.parse_or(
                "NCY_CACHE_MAX_VALUE_BYTES",
                4 << 20,
                "a number of bytes",
            )?,
            compress_threshold_bytes: env.parse_or(
                "NCY_CACHE_COMPRESS_THRESHOLD_BYTES",
                1024,
                "a number of bytes",
            )?,
            negative_ttl: env.secs_or("NCY_CACHE_NEGATIVE_TTL_SECS", 30, DAY)?,
            max_stale: Duration::from_secs(max_stale_secs),
            refresh_ahead_percent: percent("NCY_CACHE_REFRESH_AHEAD_PERCENT", 10)?,
            ttl_jitter_percent: percent("NCY_CACHE_TTL_JITTER_PERCENT", 5)?,
            l2_timeout: ms("NCY_CACHE_L2_TIMEOUT_MS", 500)?,
            breaker_failures: env.parse_or("NCY_CACHE_BREAKER_FAILURES", 5, "a count")?,
            breaker_open: ms("NCY_CACHE_BREAKER_OPEN_MS", 2000)?,
            lease: ms("NCY_CACHE_LEASE_MS", 5000)?,
            loaders_file,
            loaders,
            db_notify: env.bool_or("NCY_CACHE_DB_NOTIFY", true)?,
            db_notify_channel: env
                .get("NCY_CACHE_DB_NOTIFY_CHANNEL")
                .unwrap_or_else(|| "ncy_cache_invalidation".to_owned()),
            backplane_heartbeat: ms("NCY_CACHE_BACKPLANE_HEARTBEAT_MS", 1000)?,
            session_ttl: env.secs_or("NCY_CACHE_SESSION_TTL_SECS", DAY, 30 * DAY)?,
            max_session_bytes: env.parse_or(
                "NCY_CACHE_MAX_SESSION_BYTES",
                64 << 10,
                "a number of bytes",
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bad_values() {
        let base = [
            ("REDIS_URL", "redis://127.0.0.1:6379"),
            ("DATABASE_URL", "postgres://postgres@127.0.0.1/x"),
        ];
        let s = Settings::load(&Env::from_pairs(base)).expect("defaults load");
        assert_eq!(s.cache.default_ttl, Duration::from_secs(3600));
        assert_eq!(s.cache.max_value_bytes, 4 << 20);
        assert_eq!(s.cache.refresh_ahead_percent, 10);
        let mut bad = base.to_vec();
        bad.push(("NCY_CACHE_REFRESH_AHEAD_PERCENT", "101"));
        let err = Settings::load(&Env::from_pairs(bad)).expect_err("bad percent");
        assert!(err.to_string().contains("NCY_CACHE_REFRESH_AHEAD_PERCENT"));
    }
}
