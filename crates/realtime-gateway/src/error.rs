//! Every error of the gateway mapped to the outside world in one place: gRPC statuses for the
//! internal API, WebSocket close codes and error frames for browsers.
//!
//! Internal causes (Redis, PostgreSQL) are logged here with their chain and reach the caller only
//! as a code (`UNAVAILABLE`, `unavailable`), never as a message with internals.
use ncy_bus::BusError;
use ncy_types::ValidationError;

/// What can go wrong serving a request.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Bad input; names the field.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// A row the request names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The room bus (Redis) failed.
    #[error("bus: {0}")]
    Bus(BusError),
    /// PostgreSQL failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

impl From<BusError> for GatewayError {
    fn from(e: BusError) -> Self {
        match e {
            BusError::Invalid(v) => Self::Invalid(v),
            other => Self::Bus(other),
        }
    }
}

impl From<GatewayError> for tonic::Status {
    fn from(e: GatewayError) -> Self {
        match e {
            GatewayError::Invalid(v) => tonic::Status::invalid_argument(v.to_string()),
            GatewayError::NotFound(what) => tonic::Status::not_found(what),
            GatewayError::Bus(e) => {
                tracing::warn!(error = %e, "realtime request failed: redis");
                tonic::Status::unavailable("redis unavailable")
            }
            GatewayError::Db(e) => {
                tracing::warn!(error = %e, "realtime request failed: postgres");
                tonic::Status::unavailable("postgres unavailable")
            }
        }
    }
}

impl GatewayError {
    /// The `code` of the error frame a browser gets for this error.
    pub fn frame_code(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "bad_request",
            Self::NotFound(_) => "not_found",
            Self::Bus(_) | Self::Db(_) => "unavailable",
        }
    }

    /// The error frame for a browser (internals logged, not sent).
    pub fn frame(&self) -> String {
        match self {
            Self::Invalid(v) => error_frame("bad_request", &v.to_string()),
            Self::NotFound(what) => error_frame("not_found", what),
            other => {
                tracing::warn!(error = %other, "websocket command failed");
                error_frame(other.frame_code(), "temporarily unavailable, retry")
            }
        }
    }
}

/// `{"type":"error","code":…,"message":…}` plus an optional `ref` (the command it answers).
pub fn error_frame(code: &str, message: &str) -> String {
    serde_json::json!({"type": "error", "code": code, "message": message}).to_string()
}

/// Why the server closed a socket; each has its own close code (documented in the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// No (valid) `authenticate` within the auth timeout: 4001.
    AuthTimeout,
    /// `authenticate` with a bad token: 4003 (after an `authentication_failed` frame).
    AuthFailed,
    /// The token expired without a `refresh`: 4004.
    TokenExpired,
    /// The outbound queue was full (client too slow): 4008.
    SlowConsumer,
    /// Nothing received within the idle timeout: 4000.
    Idle,
    /// Closed by `DisconnectUser` (server-side control): 4010, with the operator's reason text in
    /// the close frame.
    ServerDisconnect,
    /// Repeated bad or rate-limited frames: 1008 (policy violation).
    Abuse,
    /// Inbound frame over the size limit: 1009 (message too big).
    TooBig,
    /// The instance is draining: 1012 (service restart — reconnect elsewhere).
    Restart,
    /// The client closed or the connection broke (no close frame sent by us).
    ClientGone,
}

impl CloseReason {
    /// The WebSocket close code.
    pub fn code(self) -> u16 {
        match self {
            Self::AuthTimeout => 4001,
            Self::AuthFailed => 4003,
            Self::TokenExpired => 4004,
            Self::SlowConsumer => 4008,
            Self::Idle => 4000,
            Self::ServerDisconnect => 4010,
            Self::Abuse => 1008,
            Self::TooBig => 1009,
            Self::Restart => 1012,
            Self::ClientGone => 1000,
        }
    }

    /// The close reason text, also the `reason` label of the disconnect metric.
    pub fn text(self) -> &'static str {
        match self {
            Self::AuthTimeout => "authentication_timeout",
            Self::AuthFailed => "authentication_failed",
            Self::TokenExpired => "token_expired",
            Self::SlowConsumer => "slow_consumer",
            Self::Idle => "idle_timeout",
            Self::ServerDisconnect => "disconnected_by_server",
            Self::Abuse => "too_many_bad_frames",
            Self::TooBig => "frame_too_big",
            Self::Restart => "going_away",
            Self::ClientGone => "client_closed",
        }
    }
}
