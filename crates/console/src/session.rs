//! The session cookie: stateless and signed, so any replica accepts a session another one issued.
//!
//! The value is `<payload>.<mac>`, both base64url: the payload is JSON with the user's name, role,
//! when the session was issued and when it was last used; the MAC is HMAC-SHA256 over the payload
//! with `NCY_CONSOLE_SESSION_SECRET`, checked in constant time. A session is refused when the MAC
//! does not match (tampered, or signed with another secret), when it was last used more than the
//! idle timeout ago, when it is older than [`MAX_AGE`] whatever its use, or (see
//! [`crate::access`]) when the users file no longer lists that user with that role. Every
//! signed-in response sends the cookie again with a new last-use time, so the idle timeout slides.
//!
//! **No server-side revocation in this slice**: logout clears the browser's cookie, but a copy of
//! the cookie taken before (a stolen one) stays valid until its idle timeout runs out (or
//! [`MAX_AGE`]), unless the user is removed from the users file or the secret is changed (which
//! signs everyone out).
//!
//! The cookie is `HttpOnly` (no script reads it), `SameSite=Strict` (never sent on a cross-site
//! request), `Path=/`, and with `NCY_CONSOLE_SECURE_COOKIE=true` also `Secure` under the name
//! `__Host-ncy_console`, which browsers accept only from HTTPS and never from a sibling domain.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac, digest::KeyInit};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::users::Role;

/// The longest a session lives however often it is used: a work shift and some.
pub const MAX_AGE: Duration = Duration::from_secs(12 * 3600);

/// How far in the future a session's times may be: replicas' clocks differ a little, and a
/// session issued by one is used on another.
pub const CLOCK_SKEW_SECS: u64 = 60;

/// Domain separation: a MAC made for anything else with the same secret is no session.
const MAC_CONTEXT: &[u8] = b"ncy-console-session-v1\n";

/// What a session says. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user's name in the users file.
    #[serde(rename = "u")]
    pub user: String,
    /// The role when the session was issued (checked against the file on every use).
    #[serde(rename = "r")]
    pub role: String,
    /// When the user signed in.
    #[serde(rename = "iat")]
    pub issued_at: u64,
    /// When the session was last used.
    #[serde(rename = "seen")]
    pub last_seen: u64,
}

/// Why a cookie is not a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Not `<payload>.<mac>` in base64url, or not the expected JSON.
    #[error("malformed")]
    Malformed,
    /// The MAC does not match: tampered, or made with another secret.
    #[error("bad signature")]
    BadSignature,
    /// Unused for longer than the idle timeout.
    #[error("idle timeout")]
    Idle,
    /// Issued longer ago than [`MAX_AGE`], or in the future.
    #[error("too old")]
    TooOld,
    /// The users file no longer lists the user.
    #[error("unknown user")]
    UnknownUser,
    /// The users file gives the user another role now.
    #[error("role changed")]
    RoleChanged,
}

impl Refused {
    /// A short label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::BadSignature => "bad_signature",
            Self::Idle => "idle",
            Self::TooOld => "too_old",
            Self::UnknownUser => "unknown_user",
            Self::RoleChanged => "role_changed",
        }
    }
}

/// Signs and checks session cookies.
#[derive(Clone)]
pub struct SessionKey {
    /// HMAC keyed with the secret, the context already fed in; cloned for each MAC.
    keyed: Hmac<Sha256>,
    idle: Duration,
    secure: bool,
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKey")
            .field("idle", &self.idle)
            .field("secure", &self.secure)
            .finish_non_exhaustive()
    }
}

/// Unix seconds now.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl SessionKey {
    /// A key from the session secret; sessions idle longer than `idle` are refused; `secure`
    /// marks the cookie `Secure` (and gives it the `__Host-` name).
    pub fn new(secret: SecretString, idle: Duration, secure: bool) -> Self {
        // The secret's SHA-256, zero-padded to the block size, is the HMAC key: HMAC pads a short
        // key with zeros itself, and a key of fixed size makes the constructor infallible.
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(&Sha256::digest(secret.expose_secret().as_bytes()));
        let mut keyed = <Hmac<Sha256> as KeyInit>::new(&block.into());
        keyed.update(MAC_CONTEXT);
        Self {
            keyed,
            idle,
            secure,
        }
    }

    fn mac(&self) -> Hmac<Sha256> {
        self.keyed.clone()
    }

    /// The cookie value for `claims`.
    pub fn sign(&self, claims: &Claims) -> String {
        let json = serde_json::to_vec(claims).unwrap_or_default();
        let payload = URL_SAFE_NO_PAD.encode(json);
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        let tag = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{payload}.{tag}")
    }

    /// The claims of a cookie value whose MAC matches and whose times are valid at `now`.
    pub fn open(&self, value: &str, now: u64) -> Result<Claims, Refused> {
        let (payload, tag) = value.split_once('.').ok_or(Refused::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| Refused::Malformed)?;
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        mac.verify_slice(&tag).map_err(|_| Refused::BadSignature)?;
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| Refused::Malformed)?;
        let claims: Claims = serde_json::from_slice(&json).map_err(|_| Refused::Malformed)?;
        let future = |t: u64| t > now + CLOCK_SKEW_SECS;
        if future(claims.issued_at) || now.saturating_sub(claims.issued_at) > MAX_AGE.as_secs() {
            return Err(Refused::TooOld);
        }
        if future(claims.last_seen) || now.saturating_sub(claims.last_seen) >= self.idle.as_secs() {
            return Err(Refused::Idle);
        }
        Ok(claims)
    }

    /// When a session last used at `last_seen` stops being valid (Unix seconds).
    pub fn expires_at(&self, claims: &Claims) -> u64 {
        (claims.last_seen + self.idle.as_secs()).min(claims.issued_at + MAX_AGE.as_secs())
    }

    /// The cookie's name: `__Host-ncy_console` when secure, `ncy_console` otherwise.
    pub fn cookie_name(&self) -> &'static str {
        cookie_name(self.secure)
    }

    /// A `Set-Cookie` value carrying `claims`.
    pub fn set_cookie(&self, claims: &Claims) -> String {
        format!(
            "{}={}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{}",
            self.cookie_name(),
            self.sign(claims),
            self.idle.as_secs(),
            if self.secure { "; Secure" } else { "" }
        )
    }

    /// A `Set-Cookie` value that removes the cookie.
    pub fn clear_cookie(&self) -> String {
        format!(
            "{}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{}",
            self.cookie_name(),
            if self.secure { "; Secure" } else { "" }
        )
    }

    /// The session cookie's value among a request's `Cookie` headers.
    pub fn cookie_of<'a>(&self, headers: &'a http::HeaderMap) -> Option<&'a str> {
        let name = self.cookie_name();
        headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.trim())
    }
}

/// The cookie's name for a console with `NCY_CONSOLE_SECURE_COOKIE` = `secure`.
pub fn cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-ncy_console"
    } else {
        "ncy_console"
    }
}

/// Claims for `user` with `role` signing in at `now`.
pub fn new_claims(user: &str, role: Role, now: u64) -> Claims {
    Claims {
        user: user.to_owned(),
        role: role.as_str().to_owned(),
        issued_at: now,
        last_seen: now,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn key(idle: u64) -> SessionKey {
        SessionKey::new(
            SecretString::from("k".repeat(32)),
            Duration::from_secs(idle),
            false,
        )
    }

    #[test]
    fn a_signed_session_opens_until_idle() {
        let k = key(60);
        let claims = new_claims("ana", Role::Operator, 1_000);
        let value = k.sign(&claims);
        assert_eq!(k.open(&value, 1_000).unwrap(), claims);
        assert_eq!(k.open(&value, 1_059).unwrap(), claims);
        assert_eq!(k.open(&value, 1_060), Err(Refused::Idle));
        assert!(
            k.open(&value, 1_000 - CLOCK_SKEW_SECS).is_ok(),
            "another replica's clock"
        );
        assert_eq!(
            k.open(&value, 999 - CLOCK_SKEW_SECS),
            Err(Refused::TooOld),
            "from the future"
        );
    }

    #[test]
    fn sliding_use_stops_at_the_max_age() {
        let k = key(600);
        let mut claims = new_claims("ana", Role::Viewer, 1_000);
        claims.last_seen = 1_000 + MAX_AGE.as_secs();
        let value = k.sign(&claims);
        assert!(k.open(&value, claims.last_seen).is_ok());
        assert_eq!(k.open(&value, claims.last_seen + 1), Err(Refused::TooOld));
    }

    #[test]
    fn any_change_breaks_the_signature() {
        let k = key(60);
        let value = k.sign(&new_claims("ana", Role::Viewer, 1_000));
        for i in 0..value.len() {
            let mut bytes = value.clone().into_bytes();
            bytes[i] ^= 0x01;
            let Ok(changed) = String::from_utf8(bytes) else {
                continue;
            };
            assert!(
                k.open(&changed, 1_000).is_err(),
                "byte {i} flipped: {changed}"
            );
        }
        let other = SessionKey::new(
            SecretString::from("o".repeat(32)),
            Duration::from_secs(60),
            false,
        );
        assert_eq!(other.open(&value, 1_000), Err(Refused::BadSignature));
        assert_eq!(k.open("nodot", 1_000), Err(Refused::Malformed));
    }

    #[test]
    fn cookie_attributes_and_lookup() {
        let k = key(60);
        let set = k.set_cookie(&new_claims("ana", Role::Viewer, 1_000));
        assert!(set.starts_with("ncy_console="));
        for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=60"] {
            assert!(set.contains(attr), "{set}");
        }
        assert!(!set.contains("Secure"));
        let secure = SessionKey::new(
            SecretString::from("k".repeat(32)),
            Duration::from_secs(60),
            true,
        );
        let set = secure.set_cookie(&new_claims("ana", Role::Viewer, 1_000));
        assert!(
            set.starts_with("__Host-ncy_console=") && set.ends_with("; Secure"),
            "{set}"
        );

        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::COOKIE,
            http::HeaderValue::from_static("a=b; ncy_console=v.t; c=d"),
        );
        assert_eq!(k.cookie_of(&headers), Some("v.t"));
        assert_eq!(secure.cookie_of(&headers), None);
    }
}
