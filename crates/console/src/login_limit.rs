//! How many sign-in attempts the console accepts, counted across every console replica through
//! the cache-gateway's `CheckRateLimit` (a shared sliding window in Redis), so guessing passwords
//! is slow however many replicas a load balancer spreads the guesses over.
//!
//! Every `POST /login` counts, before any password is verified:
//!
//! - per client address (the TCP peer's IP): at most [`PER_ADDRESS`] attempts per
//!   [`WINDOW`], limit family `console_login_addr`. Behind a proxy or ingress the peer is the
//!   proxy, so this limit is then shared by everyone behind it (forwarded headers are not
//!   trusted: a client could write any address in them);
//! - per user name tried (whether or not the name exists, so the answer reveals nothing):
//!   at most [`PER_NAME`] attempts per [`WINDOW`], limit family `console_login_name`, the name
//!   sent as its SHA-256 (any text may be typed; the limiter's identifiers are bounded).
//!
//! Successful sign-ins count too. An attempt over either limit is answered 429 with the sign-in
//! page, a message saying how long to wait and `Retry-After`, audited, and costs no argon2 work.
//!
//! **Fail open**: when the cache-gateway cannot be reached or does not answer within
//! [`CHECK_TIMEOUT`], the attempt goes on unchecked (logged at warn, counted in
//! `console_login_limit_unchecked_total`): an operator must be able to sign in during an incident
//! that took the cache-gateway down. The bound on concurrent verifications
//! ([`crate::LOGIN_CONCURRENCY`]) still caps the CPU a flood of attempts can take then.
use std::{net::IpAddr, time::Duration};

use ncy_proto::cache::v1::CheckRateLimitRequest;
use sha2::{Digest, Sha256};

use crate::upstream::{self, CacheClient};

/// Attempts allowed per user name tried, per [`WINDOW`].
pub const PER_NAME: i32 = 10;
/// Attempts allowed per client address, per [`WINDOW`].
pub const PER_ADDRESS: i32 = 30;
/// The window both limits count over.
pub const WINDOW: Duration = Duration::from_secs(5 * 60);
/// How long a sign-in waits for the limiter before going on unchecked.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

const NAME_FAMILY: &str = "console_login_name";
const ADDRESS_FAMILY: &str = "console_login_addr";

/// What the limiter says about one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Counted and within both limits.
    Allowed,
    /// Over a limit: which, and how long until an attempt would be allowed (whole seconds, ≥ 1).
    Denied {
        /// `name` or `address`.
        limit: &'static str,
        /// Seconds to wait.
        retry_after_secs: u64,
    },
    /// The limiter could not be asked; the attempt goes on.
    Unchecked,
}

/// Counts an attempt to sign in as `name` from `peer`: the address first (a spray of names from
/// one place stops there), then the name.
pub async fn check(cache: &CacheClient, name: &str, peer: Option<IpAddr>) -> Verdict {
    let mut checks = Vec::with_capacity(2);
    if let Some(ip) = peer {
        checks.push(("address", ADDRESS_FAMILY, ip.to_string(), PER_ADDRESS));
    }
    checks.push(("name", NAME_FAMILY, name_key(name), PER_NAME));
    for (limit, family, identifier, allowed) in checks {
        let request = CheckRateLimitRequest {
            r#type: family.to_owned(),
            identifier,
            limit: allowed,
            window_seconds: WINDOW.as_secs() as i64,
            cost: 1,
        };
        let answer = tokio::time::timeout(CHECK_TIMEOUT, cache.clone().check_rate_limit(request))
            .await
            .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("no answer in time")));
        match upstream::cache(answer) {
            Ok(r) if r.allowed => {}
            Ok(r) => {
                let ms = u64::try_from(r.retry_after_ms).unwrap_or(0);
                return Verdict::Denied {
                    limit,
                    retry_after_secs: ms.div_ceil(1000).max(1),
                };
            }
            Err(e) => {
                metrics::counter!("console_login_limit_unchecked_total").increment(1);
                tracing::warn!(
                    error = %e,
                    "the sign-in rate limit could not be checked; letting the attempt through"
                );
                return Verdict::Unchecked;
            }
        }
    }
    Verdict::Allowed
}

/// The limiter's identifier of a name: its SHA-256 in hex (bounded, no whitespace, whatever was
/// typed).
fn name_key(name: &str) -> String {
    Sha256::digest(name.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// How long to wait, as a person reads it.
pub fn wait_words(secs: u64) -> String {
    match secs {
        0..=1 => "a second".to_owned(),
        2..=59 => format!("{secs} seconds"),
        60..=119 => "a minute".to_owned(),
        _ => format!("{} minutes", secs.div_ceil(60)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_bounded_identifiers() {
        let k = name_key("ana with spaces\n and more");
        assert_eq!(k.len(), 64);
        assert!(k.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(name_key("ana"), name_key("Ana"));
    }

    #[test]
    fn waits_read_as_words() {
        assert_eq!(wait_words(1), "a second");
        assert_eq!(wait_words(42), "42 seconds");
        assert_eq!(wait_words(61), "a minute");
        assert_eq!(wait_words(299), "5 minutes");
    }
}
