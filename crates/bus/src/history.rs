//! Reading a room's history: recovery for a reconnecting client and gap filling for a subscriber.
//!
//! The meta hash and the history stream are read in one MULTI (same slot), so the epoch, the last
//! offset and the entries are one consistent snapshot. A gap is recoverable only when the epoch is
//! the same and the first entry still kept is at most `since + 1`; otherwise the client is told
//! `recovered: false` and reloads its state — never a silent hole.
use ncy_runtime::RedisPool;
use ncy_types::KeySpace;
use redis::Value;

use crate::{BusError, BusMessage};

/// The answer to "what did I miss in this room since (offset, epoch)?".
#[derive(Debug, Clone, PartialEq)]
pub struct Recovery {
    /// The room's current epoch (empty when the room has no history).
    pub epoch: String,
    /// The room's last offset (0 when it has no history).
    pub offset: u64,
    /// Whether every message after the client's position was still available (and is in `messages`).
    pub recovered: bool,
    /// The missed messages, in offset order (empty unless `recovered`).
    pub messages: Vec<BusMessage>,
}

/// Reads room histories.
#[derive(Clone, Debug)]
pub struct History {
    redis: RedisPool,
    keys: KeySpace,
}

impl History {
    /// A reader over `redis` under `keys`.
    pub fn new(redis: RedisPool, keys: KeySpace) -> Self {
        Self { redis, keys }
    }

    /// The room's epoch and messages after `after` (all kept ones for 0), plus whether the first
    /// kept message is at most `after + 1` (the range is complete).
    async fn snapshot(&self, room: &str, after: u64) -> Result<Snapshot, BusError> {
        let keys = self.keys.room(room);
        let mut conn = self.redis.get().await?;
        let (meta, first, entries): (Vec<Option<String>>, Value, Value) = redis::pipe()
            .atomic()
            .cmd("HMGET")
            .arg(keys.meta())
            .arg("epoch")
            .arg("offset")
            .cmd("XRANGE")
            .arg(keys.history())
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .cmd("XRANGE")
            .arg(keys.history())
            .arg(format!("{}-0", after.saturating_add(1)))
            .arg("+")
            .query_async(&mut conn)
            .await?;
        let epoch = meta.first().cloned().flatten().unwrap_or_default();
        let offset: u64 = meta
            .get(1)
            .cloned()
            .flatten()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let first = stream_entries(first)?
            .first()
            .map(|m| m.offset)
            .unwrap_or(offset.saturating_add(1));
        Ok(Snapshot {
            epoch,
            offset,
            first,
            messages: stream_entries(entries)?,
        })
    }

    /// What a client at `(since_offset, since_epoch)` missed in `room`. With no position (`None`)
    /// it only reports the room's current epoch and offset (`recovered: false`, no messages).
    pub async fn recover(
        &self,
        room: &str,
        since: Option<(u64, &str)>,
    ) -> Result<Recovery, BusError> {
        let after = since.map_or(u64::MAX - 1, |(o, _)| o);
        let snap = self.snapshot(room, after).await?;
        let recovered = match since {
            None => false,
            Some((o, e)) => {
                if snap.epoch.is_empty() {
                    o == 0 && e.is_empty()
                } else {
                    e == snap.epoch && o <= snap.offset && snap.first <= o.saturating_add(1)
                }
            }
        };
        Ok(Recovery {
            epoch: snap.epoch,
            offset: snap.offset,
            recovered,
            messages: if recovered { snap.messages } else { Vec::new() },
        })
    }

    /// What a subscriber whose cursor is `(epoch, after)` missed: the messages after `after` when
    /// the epoch is unchanged, or every kept message of a new epoch (a new epoch means everything
    /// in it is new to the subscriber). `None` when part of the gap is no longer in history.
    pub async fn catch_up(
        &self,
        room: &str,
        epoch: &str,
        after: u64,
    ) -> Result<Option<Vec<BusMessage>>, BusError> {
        let mut snap = self.snapshot(room, after).await?;
        let mut from = after;
        if snap.epoch != epoch {
            if snap.epoch.is_empty() {
                return Ok(Some(Vec::new()));
            }
            snap = self.snapshot(room, 0).await?;
            from = 0;
        }
        if snap.first > from.saturating_add(1) {
            return Ok(None);
        }
        Ok(Some(snap.messages))
    }

    /// The room's current (epoch, offset); empty epoch and 0 when it has no history.
    pub async fn position(&self, room: &str) -> Result<(String, u64), BusError> {
        let keys = self.keys.room(room);
        let mut conn = self.redis.get().await?;
        let meta: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(keys.meta())
            .arg("epoch")
            .arg("offset")
            .query_async(&mut conn)
            .await?;
        let epoch = meta.first().cloned().flatten().unwrap_or_default();
        let offset = meta
            .get(1)
            .cloned()
            .flatten()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Ok((epoch, offset))
    }
}

struct Snapshot {
    epoch: String,
    offset: u64,
    first: u64,
    messages: Vec<BusMessage>,
}

/// Decodes an XRANGE reply (`[[id, [field, value, …]], …]`) into messages; malformed entries are
/// an error rather than a panic or a silent skip.
fn stream_entries(value: Value) -> Result<Vec<BusMessage>, BusError> {
    let Value::Array(entries) = value else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let Value::Array(mut parts) = entry else {
            return Err(BusError::Protocol("history entry is not an array".into()));
        };
        let fields = parts.pop();
        let Some(Value::Array(fields)) = fields else {
            return Err(BusError::Protocol("history entry has no fields".into()));
        };
        let payload = fields.into_iter().nth(1);
        let bytes = match payload {
            Some(Value::BulkString(b)) => b,
            _ => return Err(BusError::Protocol("history entry has no payload".into())),
        };
        out.push(BusMessage::parse(bytes)?);
    }
    Ok(out)
}
