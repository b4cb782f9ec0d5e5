//! Every error of the gateway mapped to the outside world in one place: gRPC statuses for the
//! internal API, WebSocket close codes and error frames for browsers.
//!
//! Internal causes (Redis, PostgreSQL) are logged here with their chain and reach the caller only
//! as a code (`UNAVAILABLE`, `unavailable`), never as a message with internals. A browser's error
//! frame is always [`GatewayError::frame`]: its `code` comes from the variant, its `message` from
//! the variant's text.
use std::{borrow::Cow, sync::Arc};

use ncy_bus::BusError;
use ncy_store::StoreError;
use ncy_types::ValidationError;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};

/// What can go wrong serving a request or a socket's frame.
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
    /// PostgreSQL failed. Shared, as concurrent membership checks of one (user, scope) share
    /// one query and its error.
    #[error("{0}")]
    Db(#[source] Arc<StoreError>),
    /// A frame the protocol does not accept (not a known frame, a malformed field, binary).
    #[error("{0}")]
    BadFrame(Cow<'static, str>),
    /// The socket sent commands faster than its per-second budget.
    #[error("too many commands, slow down")]
    RateLimited,
    /// A command other than `authenticate` before authenticating.
    #[error("authenticate first")]
    Unauthenticated,
    /// A token in the URL while `NCY_WS_QUERY_TOKEN` is off: the socket stays open for an
    /// `authenticate` frame.
    #[error("tokens in the URL are not accepted: send an authenticate frame")]
    QueryTokenRefused,
    /// A second `authenticate` on an authenticated socket.
    #[error("already authenticated")]
    AlreadyAuthenticated,
    /// The socket's user may not do this (join a room, ask a room's presence).
    #[error("{0}")]
    Forbidden(Cow<'static, str>),
    /// A `refresh` whose token was refused (the verifier's reason) or is another user's.
    #[error("{0}")]
    RefreshFailed(String),
}

impl From<BusError> for GatewayError {
    fn from(e: BusError) -> Self {
        match e {
            BusError::Invalid(v) => Self::Invalid(v),
            other => Self::Bus(other),
        }
    }
}

impl From<sqlx::Error> for GatewayError {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(Arc::new(e.into()))
    }
}

/// Redis reached outside the bus (the control channel, user statuses) fails like the bus.
impl From<redis::RedisError> for GatewayError {
    fn from(e: redis::RedisError) -> Self {
        Self::Bus(e.into())
    }
}

/// No pooled Redis connection: as [`From<redis::RedisError>`].
impl From<ncy_runtime::RuntimeError> for GatewayError {
    fn from(e: ncy_runtime::RuntimeError) -> Self {
        Self::Bus(e.into())
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
            // Socket errors never reach the gRPC API; should one, it is a bug of this service.
            other => {
                tracing::error!(error = %other, "websocket error answered over gRPC");
                tonic::Status::internal("internal error")
            }
        }
    }
}

impl GatewayError {
    /// The `code` of the error frame a browser gets for this error.
    pub fn frame_code(&self) -> &'static str {
        match self {
            Self::Invalid(_) | Self::BadFrame(_) => "bad_request",
            Self::NotFound(_) => "not_found",
            Self::Bus(_) | Self::Db(_) => "unavailable",
            Self::RateLimited => "rate_limited",
            Self::Unauthenticated | Self::QueryTokenRefused => "unauthenticated",
            Self::AlreadyAuthenticated => "already_authenticated",
            Self::Forbidden(_) => "forbidden",
            Self::RefreshFailed(_) => "refresh_failed",
        }
    }

    /// Whether the error is the client misusing the protocol, so it counts towards the bad frames
    /// a socket is allowed before it is closed (1008). Refusals of a well-formed command
    /// (forbidden, refresh failed) and the server's own failures do not.
    pub fn is_abuse(&self) -> bool {
        matches!(
            self,
            Self::BadFrame(_) | Self::RateLimited | Self::Unauthenticated
        )
    }

    /// The error frame for a browser, `{"type":"error","code":…,"message":…}` (internals logged,
    /// not sent).
    pub fn frame(&self) -> String {
        let message = match self {
            Self::Bus(_) | Self::Db(_) => {
                tracing::warn!(error = %self, "websocket command failed");
                Cow::Borrowed("temporarily unavailable, retry")
            }
            other => Cow::Owned(other.to_string()),
        };
        serde_json::json!({"type": "error", "code": self.frame_code(), "message": message})
            .to_string()
    }
}

/// Why the server closed a socket; each has its own close code (table in
/// docs/protocol.md#close-codes).
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

    /// Why a socket whose read failed ends: a message over the size limit is `TooBig` (1009),
    /// told by tungstenite's error type; anything else means the connection broke.
    pub fn of_read_error(e: &axum::Error) -> Self {
        use std::error::Error as _;
        match e.source().and_then(|s| s.downcast_ref::<WsError>()) {
            Some(WsError::Capacity(CapacityError::MessageTooLong { .. })) => Self::TooBig,
            _ => Self::ClientGone,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(e: &GatewayError) -> (String, String) {
        let v: serde_json::Value = serde_json::from_str(&e.frame()).expect("json");
        assert_eq!(v["type"], "error", "{v}");
        let text = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
        (text("code"), text("message"))
    }

    #[test]
    fn every_error_has_its_frame() {
        let org = uuid::Uuid::nil();
        let cases = [
            (
                GatewayError::Invalid(ValidationError::new("since", "bad")),
                "bad_request",
                "since: bad",
                false,
            ),
            (
                GatewayError::BadFrame("binary frames are not supported".into()),
                "bad_request",
                "binary frames are not supported",
                true,
            ),
            (
                GatewayError::NotFound("room gone".into()),
                "not_found",
                "room gone",
                false,
            ),
            (
                GatewayError::Bus(BusError::PubSubClosed),
                "unavailable",
                "temporarily unavailable, retry",
                false,
            ),
            (
                GatewayError::from(sqlx::Error::PoolTimedOut),
                "unavailable",
                "temporarily unavailable, retry",
                false,
            ),
            (
                GatewayError::RateLimited,
                "rate_limited",
                "too many commands, slow down",
                true,
            ),
            (
                GatewayError::Unauthenticated,
                "unauthenticated",
                "authenticate first",
                true,
            ),
            (
                GatewayError::QueryTokenRefused,
                "unauthenticated",
                "tokens in the URL are not accepted: send an authenticate frame",
                false,
            ),
            (
                GatewayError::AlreadyAuthenticated,
                "already_authenticated",
                "already authenticated",
                false,
            ),
            (
                GatewayError::Forbidden(
                    format!("not a member of organization {org}: its room was not joined").into(),
                ),
                "forbidden",
                "not a member of organization 00000000-0000-0000-0000-000000000000: its room was not joined",
                false,
            ),
            (
                GatewayError::RefreshFailed("token expired".into()),
                "refresh_failed",
                "token expired",
                false,
            ),
        ];
        for (e, code, message, abuse) in cases {
            assert_eq!(frame(&e), (code.to_owned(), message.to_owned()), "{e:?}");
            assert_eq!(e.is_abuse(), abuse, "{e:?}");
        }
    }

    #[test]
    fn a_too_long_message_is_told_by_its_type() {
        let too_long = axum::Error::new(WsError::Capacity(CapacityError::MessageTooLong {
            size: 70_000,
            max_size: 65_536,
        }));
        assert_eq!(CloseReason::of_read_error(&too_long), CloseReason::TooBig);
        let reset = axum::Error::new(WsError::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )));
        assert_eq!(CloseReason::of_read_error(&reset), CloseReason::ClientGone);
        // The words are not what decides.
        let worded = axum::Error::new(std::io::Error::other("message too long"));
        assert_eq!(CloseReason::of_read_error(&worded), CloseReason::ClientGone);
    }
}
