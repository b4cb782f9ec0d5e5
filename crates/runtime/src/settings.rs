//! Typed settings read from the environment: defaults first, then variables.
//!
//! Every service reads the same common block (addresses, Redis, PostgreSQL, telemetry, shutdown) and
//! adds its own. Settings are read through an [`Env`] lookup rather than `std::env` directly so tests
//! can build settings from a map without touching the process environment. A bad or missing variable
//! is a [`ConfigError`] naming it; `main` turns that into one line on stderr and exit code 64.
use std::{collections::HashMap, net::SocketAddr, str::FromStr, time::Duration};

use ncy_types::KeySpace;
use secrecy::{ExposeSecret, SecretString};

/// Exit code for bad configuration (`EX_USAGE` from sysexits.h).
pub const CONFIG_EXIT_CODE: u8 = 64;

/// A missing or malformed setting, naming the variable.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {message}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub var: String,
    /// What is wrong with it, and what a good value looks like.
    pub message: String,
}

impl ConfigError {
    /// A configuration error for `var`.
    pub fn new(var: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            var: var.into(),
            message: message.into(),
        }
    }
}

/// Where settings come from: the process environment, or a map in tests.
pub struct Env {
    lookup: Lookup,
}

type Lookup = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

impl Env {
    /// Reads the process environment.
    pub fn process() -> Self {
        Self {
            lookup: Box::new(|k| std::env::var(k).ok()),
        }
    }

    /// Reads from a fixed map (tests, embedding).
    pub fn from_map(map: HashMap<String, String>) -> Self {
        Self {
            lookup: Box::new(move |k| map.get(k).cloned()),
        }
    }

    /// Reads from pairs, e.g. `Env::from_pairs([("REDIS_URL", "redis://…")])`.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self::from_map(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }

    /// The raw value; an empty string counts as unset.
    pub fn get(&self, var: &str) -> Option<String> {
        (self.lookup)(var).filter(|v| !v.trim().is_empty())
    }

    /// A variable that must be set.
    pub fn required(&self, var: &str, example: &str) -> Result<String, ConfigError> {
        self.get(var)
            .ok_or_else(|| ConfigError::new(var, format!("is required (for example {example})")))
    }

    /// A variable parsed with `FromStr`, or `default` when unset.
    pub fn parse_or<T: FromStr>(
        &self,
        var: &str,
        default: T,
        expected: &str,
    ) -> Result<T, ConfigError> {
        match self.get(var) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse()
                .map_err(|_| ConfigError::new(var, format!("expected {expected}, got {raw:?}"))),
        }
    }

    /// A boolean: `true/false/1/0/yes/no/on/off`.
    pub fn bool_or(&self, var: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(var).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) if ["true", "1", "yes", "on"].contains(&v.as_str()) => Ok(true),
            Some(v) if ["false", "0", "no", "off"].contains(&v.as_str()) => Ok(false),
            Some(v) => Err(ConfigError::new(
                var,
                format!("expected true or false, got {v:?}"),
            )),
        }
    }

    /// A socket address such as `0.0.0.0:50051`.
    pub fn addr_or(&self, var: &str, default: &str) -> Result<SocketAddr, ConfigError> {
        let raw = self.get(var).unwrap_or_else(|| default.to_owned());
        raw.trim().parse().map_err(|_| {
            ConfigError::new(
                var,
                format!("expected host:port such as 0.0.0.0:50051, got {raw:?}"),
            )
        })
    }

    /// A duration in whole seconds, bounded.
    pub fn secs_or(&self, var: &str, default: u64, max: u64) -> Result<Duration, ConfigError> {
        let secs: u64 = self.parse_or(var, default, "a whole number of seconds")?;
        if secs == 0 || secs > max {
            return Err(ConfigError::new(
                var,
                format!("must be between 1 and {max} seconds, got {secs}"),
            ));
        }
        Ok(Duration::from_secs(secs))
    }
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (production default).
    Json,
    /// Human-readable lines (laptops).
    Text,
}

/// Logging and tracing.
#[derive(Debug, Clone)]
pub struct TelemetrySettings {
    /// `NCY_LOG_FORMAT`: `json` (default) or `text`.
    pub log_format: LogFormat,
    /// `RUST_LOG` filter directives; default `info`.
    pub log_filter: String,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: when set, spans are exported over OTLP/gRPC.
    pub otlp_endpoint: Option<String>,
}

/// Redis connection settings.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// `REDIS_URL`; with `NCY_REDIS_CLUSTER=true` a comma-separated list of seed nodes.
    pub url: SecretString,
    /// `NCY_REDIS_CLUSTER`: talk to Redis Cluster instead of a single server.
    pub cluster: bool,
    /// `NCY_REDIS_PREFIX`: the key builders under this deployment's global prefix.
    pub keys: KeySpace,
    /// `NCY_REDIS_POOL_SIZE`: connections per process.
    pub pool_size: usize,
    /// `NCY_REDIS_TIMEOUT_MS`: the longest a request waits for a connection or a reply.
    pub timeout: Duration,
}

impl RedisSettings {
    /// The seed node URLs (one unless in cluster mode).
    pub fn urls(&self) -> Vec<String> {
        self.url
            .expose_secret()
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// A client of its own on the first URL (the one server, or a cluster's first seed), for the
    /// connections a pool cannot share: pub/sub subscriptions and blocking reads. Connects lazily.
    pub fn dedicated_client(&self) -> Result<redis::Client, crate::RuntimeError> {
        let url = self
            .urls()
            .into_iter()
            .next()
            .unwrap_or_else(|| self.url.expose_secret().to_owned());
        Ok(redis::Client::open(url)?)
    }
}

/// PostgreSQL connection settings.
#[derive(Debug, Clone)]
pub struct PostgresSettings {
    /// `DATABASE_URL`.
    pub url: SecretString,
    /// `NCY_PG_POOL_SIZE`.
    pub pool_size: u32,
}

/// How gRPC callers are authenticated (see [`crate::auth`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiAuthSettings {
    /// `NCY_API_KEYS_FILE`: callers need a key from this file, re-read every
    /// `NCY_API_KEYS_RELOAD_SECS` (5).
    Keys {
        /// The TOML keys file.
        file: std::path::PathBuf,
        /// How often the file is re-read.
        reload: Duration,
    },
    /// `NCY_API_AUTH=disabled`: every caller is let in (a warning at start and
    /// `ncy_api_auth_enabled 0` in `/metrics`). For laptops and tests only.
    Disabled,
    /// Neither: a service with gRPC RPCs refuses to start; one without (the worker) runs.
    Unconfigured,
}

impl ApiAuthSettings {
    fn load(env: &Env) -> Result<Self, ConfigError> {
        let mode = env
            .get("NCY_API_AUTH")
            .map_or_else(|| "required".to_owned(), |v| v.trim().to_ascii_lowercase());
        let file = env.get("NCY_API_KEYS_FILE");
        let reload = env.secs_or("NCY_API_KEYS_RELOAD_SECS", 5, 3600)?;
        match (mode.as_str(), file) {
            ("required", Some(file)) => Ok(Self::Keys {
                file: file.trim().into(),
                reload,
            }),
            ("required", None) => Ok(Self::Unconfigured),
            ("disabled", None) => Ok(Self::Disabled),
            ("disabled", Some(_)) => Err(ConfigError::new(
                "NCY_API_AUTH",
                "is `disabled` while NCY_API_KEYS_FILE is set; unset one of them",
            )),
            (other, _) => Err(ConfigError::new(
                "NCY_API_AUTH",
                format!("expected required or disabled, got {other:?}"),
            )),
        }
    }
}

/// The settings block every service shares.
#[derive(Debug, Clone)]
pub struct CommonSettings {
    /// Service name used in logs, traces and gRPC health (`cache-gateway`, …).
    pub service: &'static str,
    /// `NCY_GRPC_ADDR`: where the gRPC API (and health, reflection) listens.
    pub grpc_addr: SocketAddr,
    /// `NCY_ADMIN_ADDR`: where `/metrics`, `/healthz` and `/readyz` listen.
    pub admin_addr: SocketAddr,
    /// Redis.
    pub redis: RedisSettings,
    /// PostgreSQL, for services that use it.
    pub postgres: Option<PostgresSettings>,
    /// `NCY_SHUTDOWN_GRACE_SECS`: drain deadline after SIGTERM (keep below helm's
    /// `terminationGracePeriodSeconds`).
    pub shutdown_grace: Duration,
    /// `NCY_RUNTIME_THREADS`: threads running the service's tasks. `1` is tokio's single-threaded
    /// scheduler, `0` one worker per CPU, `n` that many (tokio's work-stealing scheduler).
    pub runtime_threads: usize,
    /// Logs and traces.
    pub telemetry: TelemetrySettings,
    /// `NCY_API_AUTH`, `NCY_API_KEYS_FILE`: API keys for gRPC callers.
    pub api_auth: ApiAuthSettings,
    /// Per-connection and per-request limits of the gRPC server.
    pub grpc_limits: crate::limits::GrpcLimits,
    /// `NCY_INSTANCE_REPORT_MS`: how often an instance writes its snapshot to the instance registry.
    pub instances: crate::instances::RegistrySettings,
}

/// Which shared dependencies a service needs, and its default ports.
#[derive(Debug, Clone, Copy)]
pub struct ServiceSpec {
    /// Service name.
    pub name: &'static str,
    /// Default for `NCY_GRPC_ADDR`.
    pub default_grpc_addr: &'static str,
    /// Default for `NCY_ADMIN_ADDR`.
    pub default_admin_addr: &'static str,
    /// Whether `DATABASE_URL` is required.
    pub needs_postgres: bool,
    /// Default for `NCY_RUNTIME_THREADS` (0 = one per CPU, 1 = single-threaded).
    pub default_runtime_threads: usize,
}

impl CommonSettings {
    /// Reads the common block for `spec` from `env`.
    pub fn load(spec: ServiceSpec, env: &Env) -> Result<Self, ConfigError> {
        let redis_url = env.required("REDIS_URL", "redis://127.0.0.1:6379")?;
        let cluster = env.bool_or("NCY_REDIS_CLUSTER", false)?;
        for url in redis_url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
        {
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(ConfigError::new(
                    "REDIS_URL",
                    "expected redis://host:port or rediss://host:port",
                ));
            }
            if redis::Client::open(url).is_err() {
                return Err(ConfigError::new("REDIS_URL", "is not a valid Redis URL"));
            }
        }
        if !cluster && redis_url.contains(',') {
            return Err(ConfigError::new(
                "REDIS_URL",
                "lists several nodes; set NCY_REDIS_CLUSTER=true for Redis Cluster",
            ));
        }
        let prefix = env
            .get("NCY_REDIS_PREFIX")
            .unwrap_or_else(|| "ncy".to_owned());
        let keys =
            KeySpace::new(prefix).map_err(|e| ConfigError::new("NCY_REDIS_PREFIX", e.message))?;
        let redis = RedisSettings {
            url: SecretString::from(redis_url),
            cluster,
            keys,
            pool_size: env.parse_or("NCY_REDIS_POOL_SIZE", 32, "a number of connections")?,
            timeout: Duration::from_millis(env.parse_or(
                "NCY_REDIS_TIMEOUT_MS",
                2000,
                "milliseconds",
            )?),
        };
        if redis.pool_size == 0 {
            return Err(ConfigError::new(
                "NCY_REDIS_POOL_SIZE",
                "must be at least 1",
            ));
        }

        let postgres = if spec.needs_postgres {
            let url = env.required("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ncy")?;
            let scheme_ok = url.starts_with("postgres://") || url.starts_with("postgresql://");
            if !scheme_ok || url.parse::<sqlx::postgres::PgConnectOptions>().is_err() {
                return Err(ConfigError::new(
                    "DATABASE_URL",
                    "is not a valid postgres:// URL",
                ));
            }
            let pool_size: u32 = env.parse_or("NCY_PG_POOL_SIZE", 10, "a number of connections")?;
            if pool_size == 0 {
                return Err(ConfigError::new("NCY_PG_POOL_SIZE", "must be at least 1"));
            }
            Some(PostgresSettings {
                url: SecretString::from(url),
                pool_size,
            })
        } else {
            None
        };

        let runtime_threads: usize = env.parse_or(
            "NCY_RUNTIME_THREADS",
            spec.default_runtime_threads,
            "a number of threads (0 = one per CPU)",
        )?;
        if runtime_threads > 1024 {
            return Err(ConfigError::new(
                "NCY_RUNTIME_THREADS",
                "must be at most 1024",
            ));
        }

        let log_format = match env.get("NCY_LOG_FORMAT").map(|v| v.to_ascii_lowercase()) {
            None => LogFormat::Json,
            Some(v) if v == "json" => LogFormat::Json,
            Some(v) if v == "text" || v == "pretty" => LogFormat::Text,
            Some(v) => {
                return Err(ConfigError::new(
                    "NCY_LOG_FORMAT",
                    format!("expected json or text, got {v:?}"),
                ));
            }
        };

        Ok(Self {
            service: spec.name,
            grpc_addr: env.addr_or("NCY_GRPC_ADDR", spec.default_grpc_addr)?,
            admin_addr: env.addr_or("NCY_ADMIN_ADDR", spec.default_admin_addr)?,
            redis,
            postgres,
            shutdown_grace: env.secs_or("NCY_SHUTDOWN_GRACE_SECS", 25, 3600)?,
            runtime_threads,
            telemetry: TelemetrySettings {
                log_format,
                log_filter: env.get("RUST_LOG").unwrap_or_else(|| "info".to_owned()),
                otlp_endpoint: env.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
            },
            api_auth: ApiAuthSettings::load(env)?,
            grpc_limits: crate::limits::GrpcLimits::load(env)?,
            instances: crate::instances::RegistrySettings::load(env)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: ServiceSpec = ServiceSpec {
        name: "test",
        default_grpc_addr: "127.0.0.1:50051",
        default_admin_addr: "127.0.0.1:9101",
        needs_postgres: true,
        default_runtime_threads: 0,
    };

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            ("REDIS_URL", "redis://127.0.0.1:6379"),
            ("DATABASE_URL", "postgres://postgres@127.0.0.1/ncy"),
        ]
    }

    fn load(extra: &[(&'static str, &'static str)]) -> Result<CommonSettings, ConfigError> {
        let mut pairs = base();
        pairs.extend_from_slice(extra);
        CommonSettings::load(SPEC, &Env::from_pairs(pairs))
    }

    #[test]
    fn api_auth_is_required_unless_disabled() {
        assert_eq!(
            load(&[]).expect("valid").api_auth,
            ApiAuthSettings::Unconfigured
        );
        let s = load(&[("NCY_API_KEYS_FILE", "/etc/ncy/keys.toml")]).expect("valid");
        assert_eq!(
            s.api_auth,
            ApiAuthSettings::Keys {
                file: "/etc/ncy/keys.toml".into(),
                reload: Duration::from_secs(5)
            }
        );
        let s = load(&[("NCY_API_AUTH", "disabled")]).expect("valid");
        assert_eq!(s.api_auth, ApiAuthSettings::Disabled);
        let e =
            load(&[("NCY_API_AUTH", "disabled"), ("NCY_API_KEYS_FILE", "/k")]).expect_err("both");
        assert_eq!(e.var, "NCY_API_AUTH");
        let e = load(&[("NCY_API_AUTH", "off")]).expect_err("unknown mode");
        assert_eq!(e.var, "NCY_API_AUTH");
    }

    #[test]
    fn defaults_apply() {
        let s = load(&[]).expect("valid");
        assert_eq!(s.grpc_addr.to_string(), "127.0.0.1:50051");
        assert_eq!(s.redis.keys.prefix(), "ncy");
        assert_eq!(s.telemetry.log_format, LogFormat::Json);
        assert_eq!(s.shutdown_grace, Duration::from_secs(25));
    }

    #[test]
    fn runtime_threads_default_per_service_and_are_checked() {
        assert_eq!(load(&[]).expect("valid").runtime_threads, 0);
        let single = ServiceSpec {
            default_runtime_threads: 1,
            ..SPEC
        };
        let s = CommonSettings::load(single, &Env::from_pairs(base())).expect("valid");
        assert_eq!(s.runtime_threads, 1);
        let s = load(&[("NCY_RUNTIME_THREADS", "4")]).expect("valid");
        assert_eq!(s.runtime_threads, 4);
        for bad in ["-1", "many", "1025"] {
            let err = load(&[("NCY_RUNTIME_THREADS", bad)]).expect_err(bad);
            assert_eq!(err.var, "NCY_RUNTIME_THREADS", "{bad}");
        }
    }

    #[test]
    fn missing_redis_url_names_the_variable() {
        let err =
            CommonSettings::load(SPEC, &Env::from_pairs([("DATABASE_URL", "postgres://x/y")]))
                .expect_err("must fail");
        assert_eq!(err.var, "REDIS_URL");
        assert!(err.to_string().contains("is required"), "{err}");
    }

    #[test]
    fn missing_database_url_only_matters_when_needed() {
        let env = Env::from_pairs([("REDIS_URL", "redis://127.0.0.1:6379")]);
        assert_eq!(
            CommonSettings::load(SPEC, &env).expect_err("needs pg").var,
            "DATABASE_URL"
        );
        let spec = ServiceSpec {
            needs_postgres: false,
            default_runtime_threads: 0,
            ..SPEC
        };
        assert!(
            CommonSettings::load(spec, &env)
                .expect("no pg needed")
                .postgres
                .is_none()
        );
    }

    #[test]
    fn malformed_values_name_their_variable() {
        let cases: [(&str, &str); 8] = [
            ("NCY_GRPC_ADDR", "not-an-addr"),
            ("NCY_REDIS_CLUSTER", "maybe"),
            ("NCY_REDIS_PREFIX", "has:colon"),
            ("NCY_REDIS_POOL_SIZE", "0"),
            ("NCY_SHUTDOWN_GRACE_SECS", "0"),
            ("NCY_LOG_FORMAT", "xml"),
            ("REDIS_URL", "http://localhost"),
            ("DATABASE_URL", "mysql://localhost/x"),
        ];
        for (var, value) in cases {
            let mut pairs: Vec<(&str, &str)> =
                base().into_iter().filter(|(k, _)| *k != var).collect();
            pairs.push((var, value));
            let err = CommonSettings::load(SPEC, &Env::from_pairs(pairs)).expect_err(var);
            assert_eq!(err.var, var, "{err}");
        }
    }

    #[test]
    fn several_redis_nodes_need_cluster_mode() {
        let nodes = "redis://127.0.0.1:7000,redis://127.0.0.1:7001";
        let err = load(&[("REDIS_URL", nodes)]);
        // `base()` already sets REDIS_URL; the later pair wins in the map.
        assert_eq!(err.expect_err("needs cluster").var, "REDIS_URL");
        let ok = load(&[("REDIS_URL", nodes), ("NCY_REDIS_CLUSTER", "true")]).expect("cluster");
        assert_eq!(ok.redis.urls().len(), 2);
    }

    #[test]
    fn secrets_do_not_print() {
        let s = load(&[("REDIS_URL", "redis://:hunter2@127.0.0.1:6379")]).expect("valid");
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
