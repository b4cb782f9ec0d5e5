//! Publishing to a room: one Lua script does the whole step atomically on the room's slot.
//!
//! Why one script: the offset, the history entry and the live PUBLISH must agree. If they were
//! separate commands, a crash between XADD and PUBLISH would leave a message in history that live
//! subscribers never saw (or the reverse), and two publishers could interleave offsets and channel
//! order. Inside the script Redis serializes publishes per room, so the pub/sub order of a room's
//! channel is its offset order — the subscriber relies on that to detect gaps.
//!
//! The history stream's entry ids are `<offset>-0`, so recovery is a plain `XRANGE <offset+1>-0 +`.
//! When the epoch is created (first publish, or the meta hash expired / Redis lost its data) the old
//! history is deleted, so offsets restart at 1 under the new epoch.
use std::time::Duration;

use ncy_runtime::RedisPool;
use ncy_types::{KeySpace, ValidationError, realtime::Room, realtime::validate_event};
use redis::Script;

use crate::BusError;

/// Default number of messages kept per room.
pub const DEFAULT_HISTORY_LEN: u64 = 100;
/// Default lifetime of an idle room's history.
pub const DEFAULT_HISTORY_TTL: Duration = Duration::from_secs(300);
/// Default idempotency window.
pub const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(600);
/// Longest idempotency key.
pub const MAX_IDEMPOTENCY_KEY: usize = 128;

const PUBLISH: &str = r#"
local meta, hist, dedup = KEYS[1], KEYS[2], KEYS[3]
local dwin = tonumber(ARGV[7])
if dwin > 0 then
  local prev = redis.call('GET', dedup)
  if prev then return {0, prev} end
end
if redis.call('HSETNX', meta, 'epoch', ARGV[1]) == 1 then
  redis.call('DEL', hist)
end
local epoch = redis.call('HGET', meta, 'epoch')
local offset = redis.call('HINCRBY', meta, 'offset', 1)
local payload = ARGV[2] .. '"offset":' .. offset .. ',"epoch":"' .. epoch .. '","ts":' .. ARGV[3] .. '}'
redis.call('XADD', hist, 'MAXLEN', '~', ARGV[4], offset .. '-0', 'm', payload)
redis.call('EXPIRE', hist, ARGV[5])
redis.call('EXPIRE', meta, ARGV[5])
redis.call('PUBLISH', ARGV[6], payload)
local rec = offset .. ' ' .. epoch .. ' ' .. ARGV[3]
if dwin > 0 then redis.call('SET', dedup, rec, 'EX', dwin) end
return {1, rec}
"#;

/// Where a message landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The message's offset in the room.
    pub offset: u64,
    /// The room history's epoch.
    pub epoch: String,
    /// Publish time (ms since the Unix epoch).
    pub ts_ms: i64,
    /// True when an earlier publish with the same idempotency key was found; nothing new was sent.
    pub deduplicated: bool,
}

/// Optional publish settings.
#[derive(Debug, Clone, Default)]
pub struct PublishOptions {
    /// Per-room idempotency key (≤ 128 chars): a repeat within the window publishes nothing.
    pub idempotency_key: Option<String>,
}

/// Publishes messages to rooms. Cheap to clone.
#[derive(Clone, Debug)]
pub struct BusPublisher {
    redis: RedisPool,
    keys: KeySpace,
    history_len: u64,
    history_ttl: Duration,
    dedup_window: Duration,
    script: Script,
}

impl BusPublisher {
    /// A publisher with the default history length (100), TTL (5 min) and dedup window (10 min).
    pub fn new(redis: RedisPool, keys: KeySpace) -> Self {
        Self {
            redis,
            keys,
            history_len: DEFAULT_HISTORY_LEN,
            history_ttl: DEFAULT_HISTORY_TTL,
            dedup_window: DEFAULT_DEDUP_WINDOW,
            script: Script::new(PUBLISH),
        }
    }

    /// Sets how many messages a room keeps (at least 1) and for how long after the last publish.
    pub fn with_history(mut self, len: u64, ttl: Duration) -> Self {
        self.history_len = len.max(1);
        self.history_ttl = ttl.max(Duration::from_secs(1));
        self
    }

    /// Sets the idempotency window.
    pub fn with_dedup_window(mut self, window: Duration) -> Self {
        self.dedup_window = window.max(Duration::from_secs(1));
        self
    }

    /// The key space this publisher writes under.
    pub fn keys(&self) -> &KeySpace {
        &self.keys
    }

    /// The Redis pool this publisher uses.
    pub fn redis(&self) -> &RedisPool {
        &self.redis
    }

    /// Publishes `event` with `data` to `room`.
    pub async fn publish(
        &self,
        room: &Room,
        event: &str,
        data: &serde_json::Value,
    ) -> Result<Published, BusError> {
        self.publish_with(room, event, data, &PublishOptions::default())
            .await
    }

    /// Publishes with options (idempotency key).
    pub async fn publish_with(
        &self,
        room: &Room,
        event: &str,
        data: &serde_json::Value,
        options: &PublishOptions,
    ) -> Result<Published, BusError> {
        validate_event(event)?;
        let dedup_key = match options.idempotency_key.as_deref() {
            None | Some("") => None,
            Some(k) if k.len() > MAX_IDEMPOTENCY_KEY => {
                return Err(ValidationError::new(
                    "idempotency_key",
                    format!("must be at most {MAX_IDEMPOTENCY_KEY} characters"),
                )
                .into());
            }
            Some(k) => Some(k),
        };
        let name = room.name();
        let keys = self.keys.room(&name);
        let head = frame_head(&name, event, data)?;
        let ts_ms = now_ms();
        let candidate_epoch = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let mut conn = self.redis.get().await?;
        let (fresh, record): (i64, String) = self
            .script
            .key(keys.meta())
            .key(keys.history())
            .key(keys.dedup(dedup_key.unwrap_or("-")))
            .arg(candidate_epoch)
            .arg(head)
            .arg(ts_ms)
            .arg(self.history_len)
            .arg(self.history_ttl.as_secs())
            .arg(keys.channel())
            .arg(if dedup_key.is_some() {
                self.dedup_window.as_secs()
            } else {
                0
            })
            .invoke_async(&mut conn)
            .await?;
        parse_record(&record, fresh == 0)
    }
}

/// `{"type":"message","room":…,"event":…,"data":…,` — the script appends offset, epoch and ts.
fn frame_head(room: &str, event: &str, data: &serde_json::Value) -> Result<String, BusError> {
    let enc = |v: &serde_json::Value| {
        serde_json::to_string(v).map_err(|e| BusError::Protocol(format!("encode: {e}")))
    };
    let room = enc(&serde_json::Value::from(room))?;
    let event = enc(&serde_json::Value::from(event))?;
    let data = enc(data)?;
    Ok(format!(
        r#"{{"type":"message","room":{room},"event":{event},"data":{data},"#
    ))
}

fn parse_record(record: &str, deduplicated: bool) -> Result<Published, BusError> {
    let mut parts = record.split(' ');
    let bad = || BusError::Protocol(format!("publish record {record:?}"));
    let offset = parts.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let epoch = parts.next().ok_or_else(bad)?.to_owned();
    let ts_ms = parts.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    Ok(Published {
        offset,
        epoch,
        ts_ms,
        deduplicated,
    })
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BusMessage;

    #[test]
    fn head_plus_script_tail_is_a_valid_frame() {
        let head = frame_head("broadcast", "e", &serde_json::json!({"q": "\"x\""})).expect("head");
        let frame = format!(r#"{head}"offset":7,"epoch":"ab","ts":9}}"#);
        let m = BusMessage::parse(frame.into_bytes()).expect("frame");
        assert_eq!(m.offset, 7);
        assert_eq!(m.envelope().expect("env").data["q"], "\"x\"");
    }

    #[test]
    fn records_parse_or_fail_cleanly() {
        let p = parse_record("3 ab 99", true).expect("ok");
        assert_eq!(
            (p.offset, p.epoch.as_str(), p.ts_ms, p.deduplicated),
            (3, "ab", 99, true)
        );
        assert!(parse_record("x", false).is_err());
    }
}
