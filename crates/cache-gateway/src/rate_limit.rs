//! CheckRateLimit: GCRA (the generic cell rate algorithm) in one Lua script on one key,
//! `<p>:rate_limit:<type>:<id>`.
//!
//! Why GCRA: it is exact (unlike a fixed or two-window approximation), stores one number per key
//! (unlike a sliding log), and a denied request changes nothing. Time comes from Redis (`TIME`),
//! so instances with skewed clocks still share one exact limit. `limit` requests may come in a
//! burst; after that they are admitted at one per `window / limit`.
use redis::Script;

use crate::{error::CacheError, l2::L2};

const GCRA: &str = r"
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = window / limit
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then tat = now end
local new_tat = tat + cost * interval
local allow_at = new_tat - window
if allow_at > now then
  local remaining = math.floor((window - (tat - now)) / interval + 1e-9)
  return {0, remaining, math.ceil(allow_at - now), math.ceil(tat)}
end
redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX', math.ceil(new_tat - now) + 1)
local remaining = math.floor((window - (new_tat - now)) / interval + 1e-9)
return {1, remaining, 0, math.ceil(new_tat)}
";

/// The limiter's answer.
#[derive(Debug, Clone, Copy)]
pub struct Decision {
    /// Allowed and counted.
    pub allowed: bool,
    /// Requests left in the window.
    pub remaining: i64,
    /// Wait before retrying (ms), 0 when allowed.
    pub retry_after_ms: i64,
    /// When the limiter is back to full (Unix ms).
    pub reset_at_ms: i64,
}

/// The rate limiter.
#[derive(Clone)]
pub struct RateLimiter {
    script: std::sync::Arc<Script>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self {
            script: std::sync::Arc::new(Script::new(GCRA)),
        }
    }
}

impl RateLimiter {
    /// Counts `cost` against `limit` per `window_ms` on `key`.
    pub async fn check(
        &self,
        l2: &L2,
        key: &str,
        limit: i64,
        window_ms: i64,
        cost: i64,
    ) -> Result<Decision, CacheError> {
        let args = [limit.to_string(), window_ms.to_string(), cost.to_string()];
        let argv: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        let reply: Vec<i64> = l2.script(&self.script, &[key], &argv).await?;
        let [allowed, remaining, retry_after_ms, reset_at_ms] = reply[..] else {
            return Err(CacheError::Internal("rate limit script reply".into()));
        };
        Ok(Decision {
            allowed: allowed == 1,
            remaining: remaining.max(0),
            retry_after_ms,
            reset_at_ms,
        })
    }
}

/// Validates a CheckRateLimit request's fields (INVALID_ARGUMENT naming the field).
pub fn validate(
    kind: &str,
    identifier: &str,
    limit: i32,
    window_seconds: i64,
    cost: i32,
) -> Result<i64, CacheError> {
    if kind.is_empty()
        || kind.len() > 64
        || !kind
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    {
        return Err(CacheError::invalid("type", "must match [a-z0-9_-]{1,64}"));
    }
    if identifier.is_empty()
        || identifier.len() > 256
        || identifier
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(CacheError::invalid(
            "identifier",
            "must be 1 to 256 bytes without whitespace",
        ));
    }
    if !(1..=1_000_000).contains(&limit) {
        return Err(CacheError::invalid(
            "limit",
            "must be between 1 and 1000000",
        ));
    }
    if !(1..=86_400).contains(&window_seconds) {
        return Err(CacheError::invalid(
            "window_seconds",
            "must be between 1 and 86400",
        ));
    }
    if cost < 0 || cost > limit {
        return Err(CacheError::invalid("cost", "must be between 0 and limit"));
    }
    Ok(i64::from(cost.max(1)))
}
