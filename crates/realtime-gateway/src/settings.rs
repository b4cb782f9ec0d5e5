//! Settings of the realtime gateway: the shared block plus the WebSocket listener, the browser
//! origin (`FRONTEND_URL`) and how JWTs are verified.
//!
//! The JWT algorithm is pinned by settings (never taken from the token, never `none`). HS256 needs a
//! `JWT_SECRET` of at least 32 bytes (RFC 7518 §3.2: a key as long as the hash output); RS256 needs a
//! PEM public key file. A key that does not parse stops the service at start, not at the first login.
use std::{net::SocketAddr, time::Duration};

use jsonwebtoken::{Algorithm, DecodingKey};
use ncy_runtime::{CommonSettings, ConfigError, Env, ServiceSpec};
use secrecy::{ExposeSecret, SecretString};

use crate::SERVICE;

const SPEC: ServiceSpec = ServiceSpec {
    name: SERVICE,
    default_grpc_addr: "0.0.0.0:50054",
    default_admin_addr: "0.0.0.0:9104",
    needs_postgres: true,
    default_runtime_threads: 0,
};

/// The shortest HS256 secret accepted, in bytes.
pub const MIN_HS256_SECRET_BYTES: usize = 32;

/// How browser tokens are verified.
#[derive(Clone)]
pub struct JwtSettings {
    /// `NCY_JWT_ALGORITHM`: `HS256` (default) or `RS256`.
    pub algorithm: Algorithm,
    /// The verification key built from `JWT_SECRET` or `NCY_JWT_PUBLIC_KEY_FILE`.
    pub key: DecodingKey,
    /// `NCY_JWT_AUDIENCE`: required `aud`, if set.
    pub audience: Option<String>,
    /// `NCY_JWT_ISSUER`: required `iss`, if set.
    pub issuer: Option<String>,
}

impl std::fmt::Debug for JwtSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSettings")
            .field("algorithm", &self.algorithm)
            .field("key", &"[redacted]")
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .finish()
    }
}

/// Limits and timings of the WebSocket protocol and the room bus.
#[derive(Debug, Clone)]
pub struct Limits {
    /// `NCY_WS_AUTH_TIMEOUT_MS` (10000): a socket not authenticated by then is closed (4001).
    pub auth_timeout: Duration,
    /// `NCY_WS_PING_INTERVAL_SECS` (20): how often the server pings each socket.
    pub ping_interval: Duration,
    /// `NCY_WS_IDLE_TIMEOUT_SECS` (60): a socket that sent nothing (not even a pong) is closed (4000).
    pub idle_timeout: Duration,
    /// `NCY_WS_MAX_FRAME_BYTES` (65536): larger inbound frames close the socket with 1009.
    pub max_frame_bytes: usize,
    /// `NCY_WS_OUTBOUND_QUEUE` (1024): frames queued per socket before it counts as slow (4008).
    pub outbound_queue: usize,
    /// `NCY_WS_COMMANDS_PER_SEC` (20): client commands per second per socket (burst of the same size).
    pub commands_per_sec: u32,
    /// `NCY_WS_MAX_CONNECTIONS` (20000): sockets per instance; more get HTTP 503.
    pub max_connections: usize,
    /// `NCY_ROOM_HISTORY_LEN` (100): messages kept per room for recovery.
    pub history_len: u64,
    /// `NCY_ROOM_HISTORY_TTL_SECS` (300): a room's history expires this long after its last message.
    pub history_ttl: Duration,
    /// `NCY_PRESENCE_TTL_SECS` (60): a presence entry lives this long past its last heartbeat
    /// (refreshed every third of it).
    pub presence_ttl: Duration,
    /// `NCY_BUS_PROBE_MS` (5000): interval of the pub/sub liveness probe.
    pub bus_probe: Duration,
    /// `NCY_DEDUP_WINDOW_SECS` (600): how long an idempotency key suppresses repeats.
    pub dedup_window: Duration,
    /// `NCY_MAX_DATA_BYTES` (65536): largest `data_json` / `changes_json` accepted over gRPC.
    pub max_data_bytes: usize,
    /// `NCY_PRESENCE_MAX_USERS` (100): most users one presence answer lists. A `presence` frame
    /// lists the first ones by user id with `total` (users online in the room) and `truncated`;
    /// the gRPC `Presence` pages are at most this long (`page_size` 0 or larger means this).
    pub presence_max_users: usize,
    /// `NCY_WS_QUERY_TOKEN` (false): accept the token as `/ws?token=<JWT>`. Off by default: a URL
    /// ends up in proxy and ingress access logs, and a token there is a credential anyone reading
    /// the logs can replay until it expires. Off, a socket opened so is not authenticated by it
    /// (it is told so with an `unauthenticated` error frame and may still send `authenticate`).
    pub query_token: bool,
    /// `NCY_WS_CLOSE_TIMEOUT_MS` (2000): how long a socket being closed is given to take the close
    /// frame — behind whatever it has not read yet, a slow consumer's data included — and to
    /// answer it with its own; then the connection is dropped. Its rooms and presence are left at
    /// once, not after this.
    pub close_timeout: Duration,
    /// `NCY_MEMBERSHIP_CACHE_SECS` (30): how long a "member" answer (project or organization) is
    /// cached; "not a member" is never cached, and a change in the database drops the answers it
    /// affects.
    pub membership_cache: Duration,
    /// `NCY_ACCESS_RECHECK_SECS` (60): every local socket's `project:` and `org:` rooms are
    /// re-checked against PostgreSQL this often — the backstop behind the change notifications,
    /// which revoke within about a second.
    pub access_recheck: Duration,
}

impl Limits {
    fn load(env: &Env) -> Result<Self, ConfigError> {
        let ms = |var: &str, default: u64| -> Result<Duration, ConfigError> {
            let v: u64 = env.parse_or(var, default, "a whole number of milliseconds")?;
            if v == 0 {
                return Err(ConfigError::new(var, "must be at least 1"));
            }
            Ok(Duration::from_millis(v))
        };
        let count = |var: &str, default: u64| -> Result<u64, ConfigError> {
            let v: u64 = env.parse_or(var, default, "a positive whole number")?;
            if v == 0 {
                return Err(ConfigError::new(var, "must be at least 1"));
            }
            Ok(v)
        };
        let size = |var: &str, default: u64| -> Result<usize, ConfigError> {
            usize::try_from(count(var, default)?).map_err(|_| ConfigError::new(var, "too large"))
        };
        Ok(Self {
            auth_timeout: ms("NCY_WS_AUTH_TIMEOUT_MS", 10_000)?,
            ping_interval: env.secs_or("NCY_WS_PING_INTERVAL_SECS", 20, 3600)?,
            idle_timeout: env.secs_or("NCY_WS_IDLE_TIMEOUT_SECS", 60, 3600)?,
            max_frame_bytes: size("NCY_WS_MAX_FRAME_BYTES", 65_536)?,
            outbound_queue: size("NCY_WS_OUTBOUND_QUEUE", 1024)?,
            commands_per_sec: u32::try_from(count("NCY_WS_COMMANDS_PER_SEC", 20)?)
                .map_err(|_| ConfigError::new("NCY_WS_COMMANDS_PER_SEC", "too large"))?,
            max_connections: size("NCY_WS_MAX_CONNECTIONS", 20_000)?,
            history_len: count("NCY_ROOM_HISTORY_LEN", 100)?,
            history_ttl: env.secs_or("NCY_ROOM_HISTORY_TTL_SECS", 300, 7 * 86_400)?,
            presence_ttl: env.secs_or("NCY_PRESENCE_TTL_SECS", 60, 86_400)?,
            bus_probe: ms("NCY_BUS_PROBE_MS", 5_000)?,
            dedup_window: env.secs_or("NCY_DEDUP_WINDOW_SECS", 600, 86_400)?,
            max_data_bytes: size("NCY_MAX_DATA_BYTES", 65_536)?,
            presence_max_users: size("NCY_PRESENCE_MAX_USERS", 100)?,
            query_token: env.bool_or("NCY_WS_QUERY_TOKEN", false)?,
            close_timeout: ms("NCY_WS_CLOSE_TIMEOUT_MS", 2_000)?,
            membership_cache: env.secs_or("NCY_MEMBERSHIP_CACHE_SECS", 30, 3600)?,
            access_recheck: env.secs_or("NCY_ACCESS_RECHECK_SECS", 60, 86_400)?,
        })
    }
}

/// Settings of the realtime gateway.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The block every service shares.
    pub common: CommonSettings,
    /// `NCY_WS_ADDR`: where browsers connect (`/ws`).
    pub ws_addr: SocketAddr,
    /// `FRONTEND_URL`: the allowed browser `Origin`.
    pub frontend_url: String,
    /// Token verification.
    pub jwt: JwtSettings,
    /// Protocol limits and bus timings.
    pub limits: Limits,
    /// `NCY_ACCESS_NOTIFY_CHANNEL` (`ncy_cache_invalidation`): the PostgreSQL NOTIFY channel of the
    /// row-change triggers (migration `20261125000002`) that tell every instance access changed.
    pub access_notify_channel: String,
    /// `NCY_MEMORY_TRIM` (true): after a burst of connections opened or closed, ask the allocator
    /// to return the memory their handshakes freed (`ncy_runtime::memory`).
    pub memory_trim: bool,
}

impl Settings {
    /// Reads settings from `env`.
    pub fn load(env: &Env) -> Result<Self, ConfigError> {
        let common = CommonSettings::load(SPEC, env)?;
        let frontend_url = env
            .get("FRONTEND_URL")
            .unwrap_or_else(|| "http://localhost:3000".to_owned());
        if !(frontend_url.starts_with("http://") || frontend_url.starts_with("https://")) {
            return Err(ConfigError::new(
                "FRONTEND_URL",
                "expected an http:// or https:// origin",
            ));
        }
        Ok(Self {
            common,
            ws_addr: env.addr_or("NCY_WS_ADDR", "0.0.0.0:8080")?,
            frontend_url: frontend_url.trim_end_matches('/').to_owned(),
            jwt: load_jwt(env)?,
            limits: Limits::load(env)?,
            memory_trim: env.bool_or("NCY_MEMORY_TRIM", true)?,
            access_notify_channel: env
                .get("NCY_ACCESS_NOTIFY_CHANNEL")
                .unwrap_or_else(|| "ncy_cache_invalidation".to_owned()),
        })
    }
}

fn load_jwt(env: &Env) -> Result<JwtSettings, ConfigError> {
    let algorithm = match env
        .get("NCY_JWT_ALGORITHM")
        .map(|a| a.to_ascii_uppercase())
        .as_deref()
    {
        None | Some("HS256") => Algorithm::HS256,
        Some("RS256") => Algorithm::RS256,
        Some(other) => {
            return Err(ConfigError::new(
                "NCY_JWT_ALGORITHM",
                format!("expected HS256 or RS256, got {other:?}"),
            ));
        }
    };
    let key = match algorithm {
        Algorithm::RS256 => {
            let path = env.required("NCY_JWT_PUBLIC_KEY_FILE", "/etc/ncy/jwt-public.pem")?;
            let pem = std::fs::read(&path).map_err(|e| {
                ConfigError::new(
                    "NCY_JWT_PUBLIC_KEY_FILE",
                    format!("cannot read {path}: {e}"),
                )
            })?;
            DecodingKey::from_rsa_pem(&pem).map_err(|e| {
                ConfigError::new(
                    "NCY_JWT_PUBLIC_KEY_FILE",
                    format!("not an RSA public key in PEM: {e}"),
                )
            })?
        }
        _ => {
            let secret =
                SecretString::from(env.required("JWT_SECRET", "a random string of 32+ bytes")?);
            if secret.expose_secret().len() < MIN_HS256_SECRET_BYTES {
                return Err(ConfigError::new(
                    "JWT_SECRET",
                    format!("must be at least {MIN_HS256_SECRET_BYTES} bytes for HS256"),
                ));
            }
            DecodingKey::from_secret(secret.expose_secret().as_bytes())
        }
    };
    Ok(JwtSettings {
        algorithm,
        key,
        audience: env.get("NCY_JWT_AUDIENCE"),
        issuer: env.get("NCY_JWT_ISSUER"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(extra: &[(&str, &str)]) -> Env {
        let mut pairs = vec![
            ("REDIS_URL", "redis://127.0.0.1:6379"),
            ("DATABASE_URL", "postgres://postgres@127.0.0.1/ncy"),
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
        ];
        for (k, v) in extra {
            pairs.retain(|(key, _)| key != k);
            pairs.push((k, v));
        }
        Env::from_pairs(pairs)
    }

    #[test]
    fn hs256_by_default() {
        let s = Settings::load(&env(&[])).expect("valid");
        assert_eq!(s.jwt.algorithm, Algorithm::HS256);
        assert_eq!(s.frontend_url, "http://localhost:3000");
        assert_eq!(s.limits.max_frame_bytes, 65_536);
        assert_eq!(s.limits.auth_timeout, Duration::from_secs(10));
        assert_eq!(s.limits.presence_max_users, 100);
        assert!(!s.limits.query_token, "tokens in URLs are off by default");
        assert!(!format!("{s:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn bad_jwt_settings_name_the_variable() {
        let cases: [(&[(&str, &str)], &str); 5] = [
            (&[("JWT_SECRET", "")], "JWT_SECRET"),
            (&[("JWT_SECRET", "short")], "JWT_SECRET"),
            (&[("NCY_JWT_ALGORITHM", "none")], "NCY_JWT_ALGORITHM"),
            (&[("NCY_JWT_ALGORITHM", "RS256")], "NCY_JWT_PUBLIC_KEY_FILE"),
            (
                &[
                    ("NCY_JWT_ALGORITHM", "RS256"),
                    ("NCY_JWT_PUBLIC_KEY_FILE", "/nonexistent.pem"),
                ],
                "NCY_JWT_PUBLIC_KEY_FILE",
            ),
        ];
        for (extra, var) in cases {
            let err = Settings::load(&env(extra)).expect_err(var);
            assert_eq!(err.var, var, "{err}");
        }
        assert_eq!(
            Settings::load(&env(&[("NCY_WS_OUTBOUND_QUEUE", "0")]))
                .expect_err("queue")
                .var,
            "NCY_WS_OUTBOUND_QUEUE"
        );
        assert_eq!(
            Settings::load(&env(&[("FRONTEND_URL", "localhost")]))
                .expect_err("origin")
                .var,
            "FRONTEND_URL"
        );
    }
}
