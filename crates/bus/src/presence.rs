//! Presence: who is online in a room — users, not sockets.
//!
//! One hash per room (`…:presence`), field `<user>|<connection>` → `<expiry ms>|<last seen ms>`.
//! Gateways refresh their connections' fields on a heartbeat; a field whose expiry passed (its
//! gateway died without cleaning up) is ignored and deleted lazily on the next read. Keying by
//! connection lets a user with sockets on two instances stay online until the last one leaves.
use std::{collections::BTreeMap, time::Duration};

use ncy_runtime::RedisPool;
use ncy_types::KeySpace;

use crate::{BusError, publish::now_ms};

/// One online user of a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceUser {
    /// User id.
    pub user_id: String,
    /// Live connections of this user in the room, over all instances.
    pub connections: u32,
    /// Latest heartbeat or join (ms).
    pub last_seen_ms: i64,
}

/// One change of a socket's presence in a room.
#[derive(Debug, Clone, Copy)]
pub enum PresenceChange<'a> {
    /// Online (joined, or a heartbeat).
    Online {
        /// Room name.
        room: &'a str,
        /// User id.
        user: &'a str,
        /// Connection key.
        conn: &'a str,
    },
    /// Gone from the room.
    Offline {
        /// Room name.
        room: &'a str,
        /// User id.
        user: &'a str,
        /// Connection key.
        conn: &'a str,
    },
}

/// Reads and writes room presence.
#[derive(Clone, Debug)]
pub struct Presence {
    redis: RedisPool,
    keys: KeySpace,
    ttl: Duration,
}

impl Presence {
    /// Presence whose entries live `ttl` past their last refresh.
    pub fn new(redis: RedisPool, keys: KeySpace, ttl: Duration) -> Self {
        Self { redis, keys, ttl }
    }

    fn value(&self) -> String {
        let now = now_ms();
        let ttl = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        format!("{}|{now}", now.saturating_add(ttl))
    }

    /// Marks `(user, connection)` online in each room (join or heartbeat), in one pipeline.
    pub async fn refresh(&self, entries: &[(String, String, String)]) -> Result<(), BusError> {
        let changes: Vec<PresenceChange<'_>> = entries
            .iter()
            .map(|(room, user, conn)| PresenceChange::Online { room, user, conn })
            .collect();
        self.apply(&changes).await
    }

    /// Removes `(user, connection)` from `room`.
    pub async fn leave(&self, room: &str, user: &str, conn: &str) -> Result<(), BusError> {
        self.apply(&[PresenceChange::Offline { room, user, conn }])
            .await
    }

    /// Applies `changes` in order, in one pipeline (a gateway batches those of many sockets).
    pub async fn apply(&self, changes: &[PresenceChange<'_>]) -> Result<(), BusError> {
        if changes.is_empty() {
            return Ok(());
        }
        let value = self.value();
        let ttl = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
        let mut pipe = redis::pipe();
        for change in changes {
            match *change {
                PresenceChange::Online { room, user, conn } => {
                    let key = self.keys.room(room).presence();
                    pipe.cmd("HSET")
                        .arg(&key)
                        .arg(format!("{user}|{conn}"))
                        .arg(&value)
                        .ignore();
                    // The hash lives as long as its longest-lived entry: set a TTL on a new key
                    // (NX), only ever extend it otherwise (GT), so a short-lived writer cannot
                    // expire others.
                    pipe.cmd("PEXPIRE").arg(&key).arg(ttl).arg("NX").ignore();
                    pipe.cmd("PEXPIRE").arg(&key).arg(ttl).arg("GT").ignore();
                }
                PresenceChange::Offline { room, user, conn } => {
                    pipe.cmd("HDEL")
                        .arg(self.keys.room(room).presence())
                        .arg(format!("{user}|{conn}"))
                        .ignore();
                }
            }
        }
        let mut c = self.redis.get().await?;
        pipe.query_async::<()>(&mut c).await?;
        Ok(())
    }

    /// Users online in `room`, ordered by user id; deletes expired entries on the way.
    pub async fn list(&self, room: &str) -> Result<Vec<PresenceUser>, BusError> {
        let key = self.keys.room(room).presence();
        let mut c = self.redis.get().await?;
        let all: Vec<(String, String)> =
            redis::cmd("HGETALL").arg(&key).query_async(&mut c).await?;
        let now = now_ms();
        let mut users: BTreeMap<String, PresenceUser> = BTreeMap::new();
        let mut expired = Vec::new();
        for (field, value) in all {
            let (expiry, seen) = value.split_once('|').unwrap_or((value.as_str(), "0"));
            let expiry: i64 = expiry.parse().unwrap_or(0);
            if expiry <= now {
                expired.push(field);
                continue;
            }
            let user = field.split_once('|').map_or(field.as_str(), |(u, _)| u);
            let seen: i64 = seen.parse().unwrap_or(0);
            let entry = users
                .entry(user.to_owned())
                .or_insert_with(|| PresenceUser {
                    user_id: user.to_owned(),
                    connections: 0,
                    last_seen_ms: 0,
                });
            entry.connections += 1;
            entry.last_seen_ms = entry.last_seen_ms.max(seen);
        }
        if !expired.is_empty() {
            redis::cmd("HDEL")
                .arg(&key)
                .arg(expired)
                .query_async::<()>(&mut c)
                .await?;
        }
        Ok(users.into_values().collect())
    }
}
