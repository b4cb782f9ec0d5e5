//! The console's typed settings, read from the environment once at start; a bad value is a
//! [`ConfigError`] naming the variable (exit 64 from `main`).
//!
//! Of the block every service shares, the console reads the same variables for what it has:
//! `NCY_ADMIN_ADDR`, `NCY_SHUTDOWN_GRACE_SECS`, `NCY_RUNTIME_THREADS`, `NCY_LOG_FORMAT`,
//! `RUST_LOG`, `OTEL_EXPORTER_OTLP_ENDPOINT`. Not the rest of [`ncy_runtime::CommonSettings`]:
//! that block requires `REDIS_URL` and a gRPC listener, and the console has neither — it talks to
//! the services only through their gRPC APIs, so it works against any deployment.
use std::{net::SocketAddr, path::PathBuf, time::Duration};

use ncy_runtime::settings::{LogFormat, TelemetrySettings};
use ncy_runtime::{ConfigError, Env};
use secrecy::{ExposeSecret, SecretString};

use crate::users::UserTable;

/// Service name in logs and metrics.
pub const SERVICE: &str = "console";

/// Default for `NCY_ADMIN_ADDR`, next to the other services' admin ports (9101–9104).
const DEFAULT_ADMIN_ADDR: &str = "0.0.0.0:9105";

/// The HMAC key must be at least this long: 32 random characters are well over 128 bits.
pub const MIN_SESSION_SECRET_LEN: usize = 32;

/// The longest idle timeout accepted (a week): a longer one is an always-valid stolen cookie.
const MAX_IDLE_SECS: u64 = 7 * 24 * 3600;

/// Settings of the console.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `NCY_ADMIN_ADDR` (default `0.0.0.0:9105`): `/healthz`, `/readyz`, `/metrics`.
    pub admin_addr: SocketAddr,
    /// `NCY_SHUTDOWN_GRACE_SECS` (default 25): the drain deadline after SIGTERM.
    pub shutdown_grace: Duration,
    /// `NCY_RUNTIME_THREADS` (default 2; 0 = one per CPU, 1 = single-threaded).
    pub runtime_threads: usize,
    /// `NCY_LOG_FORMAT`, `RUST_LOG`, `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub telemetry: TelemetrySettings,
    /// `NCY_CONSOLE_ADDR` (default `127.0.0.1:8090`): where the pages are served.
    pub addr: SocketAddr,
    /// `NCY_CONSOLE_JOBS_URL` (default `http://127.0.0.1:50052`): the job-scheduler's gRPC API.
    pub jobs_url: String,
    /// `NCY_CONSOLE_CACHE_URL` (default `http://127.0.0.1:50051`): the cache-gateway's gRPC API.
    pub cache_url: String,
    /// `NCY_CONSOLE_REALTIME_URL` (default `http://127.0.0.1:50054`): the realtime-gateway's
    /// gRPC API.
    pub realtime_url: String,
    /// `NCY_CONSOLE_API_KEY`: the key sent as `authorization: Bearer …` on every gRPC call.
    pub api_key: Option<SecretString>,
    /// `NCY_CONSOLE_USERS_FILE` (required): who may sign in, with which role.
    pub users_file: PathBuf,
    /// The users file as read at start (it is read again while serving, see [`crate::users`]).
    pub users: UserTable,
    /// `NCY_CONSOLE_SESSION_SECRET` (required, ≥ 32 characters): the key signing session cookies.
    pub session_secret: SecretString,
    /// `NCY_CONSOLE_SESSION_IDLE_SECS` (default 1800): a session unused this long is refused.
    pub session_idle: Duration,
    /// `NCY_CONSOLE_SECURE_COOKIE` (default false): mark the cookie `Secure` (behind TLS).
    pub secure_cookie: bool,
}

impl Settings {
    /// Reads settings from `env`, including the users file.
    pub fn load(env: &Env) -> Result<Self, ConfigError> {
        let jobs_url = service_url(
            env,
            "NCY_CONSOLE_JOBS_URL",
            "http://127.0.0.1:50052",
            "http://job-scheduler:50052",
        )?;
        let cache_url = service_url(
            env,
            "NCY_CONSOLE_CACHE_URL",
            "http://127.0.0.1:50051",
            "http://cache-gateway:50051",
        )?;
        let realtime_url = service_url(
            env,
            "NCY_CONSOLE_REALTIME_URL",
            "http://127.0.0.1:50054",
            "http://realtime-gateway:50054",
        )?;
        let api_key = env.get("NCY_CONSOLE_API_KEY").map(|k| k.trim().to_owned());
        if let Some(key) = &api_key
            && !key.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(ConfigError::new(
                "NCY_CONSOLE_API_KEY",
                "must be printable ASCII without spaces",
            ));
        }
        let users_file: PathBuf = env
            .required("NCY_CONSOLE_USERS_FILE", "/etc/ncy/console-users.toml")?
            .trim()
            .into();
        let users = UserTable::load(&users_file).map_err(|e| {
            ConfigError::new(
                "NCY_CONSOLE_USERS_FILE",
                format!("{}: {e}", users_file.display()),
            )
        })?;
        let session_secret = SecretString::from(env.required(
            "NCY_CONSOLE_SESSION_SECRET",
            "the output of `openssl rand -base64 48`",
        )?);
        if session_secret.expose_secret().chars().count() < MIN_SESSION_SECRET_LEN {
            return Err(ConfigError::new(
                "NCY_CONSOLE_SESSION_SECRET",
                format!("must be at least {MIN_SESSION_SECRET_LEN} characters"),
            ));
        }
        let runtime_threads = env.parse_or(
            "NCY_RUNTIME_THREADS",
            2,
            "a number of threads (0 = one per CPU)",
        )?;
        if runtime_threads > 1024 {
            return Err(ConfigError::new(
                "NCY_RUNTIME_THREADS",
                "must be at most 1024",
            ));
        }
        Ok(Self {
            admin_addr: env.addr_or("NCY_ADMIN_ADDR", DEFAULT_ADMIN_ADDR)?,
            shutdown_grace: env.secs_or("NCY_SHUTDOWN_GRACE_SECS", 25, 3600)?,
            runtime_threads,
            telemetry: telemetry(env)?,
            addr: env.addr_or("NCY_CONSOLE_ADDR", "127.0.0.1:8090")?,
            jobs_url,
            cache_url,
            realtime_url,
            api_key: api_key.map(SecretString::from),
            users_file,
            users,
            session_secret,
            session_idle: env.secs_or("NCY_CONSOLE_SESSION_IDLE_SECS", 1800, MAX_IDLE_SECS)?,
            secure_cookie: env.bool_or("NCY_CONSOLE_SECURE_COOKIE", false)?,
        })
    }
}

/// Logs and traces, read as every service reads them.
/// A service's gRPC URL from `var` (`default` when unset): http(s) and parseable, or an error
/// naming the variable with an `example`.
fn service_url(env: &Env, var: &str, default: &str, example: &str) -> Result<String, ConfigError> {
    let url = env
        .get(var)
        .map_or_else(|| default.to_owned(), |v| v.trim().to_owned());
    if !(url.starts_with("http://") || url.starts_with("https://"))
        || tonic::transport::Endpoint::from_shared(url.clone()).is_err()
    {
        return Err(ConfigError::new(
            var,
            format!("expected a URL such as {example}, got {url:?}"),
        ));
    }
    Ok(url)
}

fn telemetry(env: &Env) -> Result<TelemetrySettings, ConfigError> {
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
    Ok(TelemetrySettings {
        log_format,
        log_filter: env.get("RUST_LOG").unwrap_or_else(|| "info".to_owned()),
        otlp_endpoint: env.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::io::Write;

    use super::*;

    fn users_file() -> tempfile::NamedTempFile {
        let hash = crate::users::tests::cheap_hash("pw");
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            f,
            "[[users]]\nname = \"ops\"\nrole = \"operator\"\npassword_hash = \"{hash}\""
        )
        .unwrap();
        f
    }

    fn load(
        file: &tempfile::NamedTempFile,
        extra: &[(&str, &str)],
    ) -> Result<Settings, ConfigError> {
        let path = file.path().to_string_lossy().into_owned();
        let mut pairs: Vec<(String, String)> = vec![
            ("NCY_CONSOLE_USERS_FILE".into(), path),
            ("NCY_CONSOLE_SESSION_SECRET".into(), "x".repeat(32)),
        ];
        for (k, v) in extra {
            pairs.retain(|(key, _)| key != k);
            pairs.push(((*k).into(), (*v).into()));
        }
        Settings::load(&Env::from_pairs(pairs))
    }

    #[test]
    fn defaults_apply() {
        let f = users_file();
        let s = load(&f, &[]).unwrap();
        assert_eq!(s.addr.to_string(), "127.0.0.1:8090");
        assert_eq!(s.jobs_url, "http://127.0.0.1:50052");
        assert_eq!(s.cache_url, "http://127.0.0.1:50051");
        assert_eq!(s.realtime_url, "http://127.0.0.1:50054");
        assert_eq!(s.session_idle, Duration::from_secs(1800));
        assert!(!s.secure_cookie);
        assert!(s.api_key.is_none());
        assert!(s.users.get("ops").is_some());
        assert_eq!(s.admin_addr.to_string(), "0.0.0.0:9105");
        assert_eq!(s.shutdown_grace, Duration::from_secs(25));
        assert_eq!(s.runtime_threads, 2);
        assert_eq!(s.telemetry.log_format, LogFormat::Json);
    }

    #[test]
    fn bad_values_name_their_variable() {
        let f = users_file();
        for (var, value) in [
            ("NCY_CONSOLE_SESSION_SECRET", "too-short"),
            ("NCY_CONSOLE_SESSION_IDLE_SECS", "0"),
            ("NCY_CONSOLE_SECURE_COOKIE", "maybe"),
            ("NCY_CONSOLE_JOBS_URL", "job-scheduler:50052"),
            ("NCY_CONSOLE_CACHE_URL", "cache-gateway:50051"),
            ("NCY_CONSOLE_REALTIME_URL", "ftp://realtime-gateway:50054"),
            ("NCY_CONSOLE_API_KEY", "has space"),
            ("NCY_CONSOLE_ADDR", "nowhere"),
            ("NCY_CONSOLE_USERS_FILE", "/no/such/file.toml"),
            ("NCY_ADMIN_ADDR", "nowhere"),
            ("NCY_SHUTDOWN_GRACE_SECS", "0"),
            ("NCY_RUNTIME_THREADS", "many"),
            ("NCY_LOG_FORMAT", "xml"),
        ] {
            let err = load(&f, &[(var, value)]).expect_err(var);
            assert_eq!(err.var, var, "{err}");
        }
    }

    #[test]
    fn secrets_do_not_print() {
        let f = users_file();
        let secret = "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t";
        let s = load(
            &f,
            &[
                ("NCY_CONSOLE_SESSION_SECRET", secret),
                ("NCY_CONSOLE_API_KEY", "api-key-api-key-api-key-1234"),
            ],
        )
        .unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains(secret), "{shown}");
        assert!(!shown.contains("api-key-api-key"), "{shown}");
        assert!(!shown.contains("$argon2id$"), "{shown}");
    }
}
