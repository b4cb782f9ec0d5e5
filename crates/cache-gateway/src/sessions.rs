//! Sessions: `<p>:session:<id>` (a hash: user, data, created, updated, expires, ttl) and
//! `<p>:user_sessions:<userId>` (a sorted set of the user's session ids by creation time).
//!
//! Cluster safety: the two keys live in different slots (the key builders give them no shared
//! hash tag, by the seed's names), so no script touches both. Instead the session key is the
//! truth and the index is a superset hint: Put adds to the index *before* writing the session,
//! Delete removes the session *before* the index entry, and every ownership decision is made by a
//! one-key script on the session itself. A crash between the two steps leaves at most a dangling
//! index id, which List and DeleteUserSessions verify against the session and drop on the way.
//! Both keys are written here only, so the order above holds for every RPC.
use std::collections::HashMap;

use redis::Script;

use ncy_types::KeySpace;

use crate::{error::CacheError, l2::L2};

const PUT: &str = r"
local owner = redis.call('HGET', KEYS[1], 'u')
if owner and owner ~= ARGV[1] then return {-1, 0} end
local created = redis.call('HGET', KEYS[1], 'c') or ARGV[3]
redis.call('HSET', KEYS[1], 'u', ARGV[1], 'd', ARGV[2], 'c', created, 'm', ARGV[3], 'e', ARGV[4], 't', ARGV[5])
redis.call('PEXPIREAT', KEYS[1], ARGV[4])
if owner then return {0, tonumber(created)} end
return {1, tonumber(created)}";

const TOUCH: &str = r"
local ttl = redis.call('HGET', KEYS[1], 't')
if not ttl then return 0 end
local e = tonumber(ARGV[1]) + tonumber(ttl) * 1000
redis.call('HSET', KEYS[1], 'e', e)
redis.call('PEXPIREAT', KEYS[1], e)
return 1";

/// Deletes the session, of anyone (no ARGV) or only of the user ARGV[1]; returns the owner of
/// the session deleted, or false.
const DELETE: &str = r"
local owner = redis.call('HGET', KEYS[1], 'u')
if not owner then return false end
if ARGV[1] and owner ~= ARGV[1] then return false end
redis.call('DEL', KEYS[1])
return owner";

/// A stored session.
#[derive(Debug, Clone)]
pub struct Session {
    /// Id.
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// JSON text.
    pub data: String,
    /// Created (ms).
    pub created_ms: i64,
    /// Updated (ms).
    pub updated_ms: i64,
    /// Expires (ms).
    pub expires_ms: i64,
    /// TTL (s).
    pub ttl_secs: i64,
}

impl Session {
    fn from_hash(id: &str, h: &HashMap<String, String>) -> Option<Self> {
        let num = |f: &str| h.get(f).and_then(|v| v.parse::<i64>().ok());
        Some(Self {
            id: id.to_owned(),
            user_id: h.get("u")?.clone(),
            data: h.get("d")?.clone(),
            created_ms: num("c")?,
            updated_ms: num("m")?,
            expires_ms: num("e")?,
            ttl_secs: num("t")?,
        })
    }
}

/// Validates a session id: 16 to 128 characters of `[A-Za-z0-9_-]`.
pub fn validate_id(field: &str, id: &str) -> Result<(), CacheError> {
    if !(16..=128).contains(&id.len())
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(CacheError::invalid(
            field,
            "must be 16 to 128 characters of [A-Za-z0-9_-]",
        ));
    }
    Ok(())
}

/// The index score: creation time in microseconds, so sessions created in the same millisecond
/// still list in creation order (exact in a double up to the year 2255).
fn index_score() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// The session store.
pub struct Sessions {
    put: Script,
    touch: Script,
    delete: Script,
}

impl Default for Sessions {
    fn default() -> Self {
        Self {
            put: Script::new(PUT),
            touch: Script::new(TOUCH),
            delete: Script::new(DELETE),
        }
    }
}

/// How long a user's index lives after its last Put: the longest a session can.
const INDEX_TTL_SECS: i64 = 30 * 86_400;

impl Sessions {
    /// Creates or replaces a session; `Ok(None)` when it belongs to another user.
    pub async fn put(
        &self,
        l2: &L2,
        keys: (&str, &str),
        session: &Session,
    ) -> Result<Option<(bool, i64)>, CacheError> {
        let (session_key, index_key) = keys;
        let mut pipe = redis::pipe();
        pipe.cmd("ZADD")
            .arg(index_key)
            .arg("NX")
            .arg(index_score())
            .arg(&session.id)
            .cmd("EXPIRE")
            .arg(index_key)
            .arg(INDEX_TTL_SECS)
            .ignore();
        let (added,): (i64,) = l2.pipe(pipe).await?;
        let args = [
            session.user_id.clone(),
            session.data.clone(),
            session.updated_ms.to_string(),
            session.expires_ms.to_string(),
            session.ttl_secs.to_string(),
        ];
        let argv: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        let reply: Vec<i64> = l2.script(&self.put, &[session_key], &argv).await?;
        let [code, created_ms] = reply[..] else {
            return Err(CacheError::Internal("session script reply".into()));
        };
        if code < 0 {
            if added == 1 {
                unindex(l2, index_key, &session.id).await?;
            }
            return Ok(None);
        }
        Ok(Some((code == 1, created_ms)))
    }

    /// Reads a session, renewing it first when `touch`.
    pub async fn get(
        &self,
        l2: &L2,
        key: &str,
        id: &str,
        touch: bool,
        now: i64,
    ) -> Result<Option<Session>, CacheError> {
        if touch {
            let arg = now.to_string();
            let _: i64 = l2.script(&self.touch, &[key], &[arg.as_bytes()]).await?;
        }
        let h: HashMap<String, String> = l2.cmd(redis::cmd("HGETALL").arg(key).to_owned()).await?;
        Ok(Session::from_hash(id, &h))
    }

    /// Deletes session `id` whoever owns it, then its entry in the owner's index; returns whether
    /// it existed.
    pub async fn delete(&self, l2: &L2, keys: &KeySpace, id: &str) -> Result<bool, CacheError> {
        let owner: Option<String> = l2.script(&self.delete, &[&keys.session(id)], &[]).await?;
        if let Some(owner) = &owner {
            unindex(l2, &keys.user_sessions(owner), id).await?;
        }
        Ok(owner.is_some())
    }

    /// Deletes session `id` if `owner` owns it (the index entry is the caller's to remove);
    /// returns whether it did.
    async fn delete_owned(
        &self,
        l2: &L2,
        keys: &KeySpace,
        id: &str,
        owner: &str,
    ) -> Result<bool, CacheError> {
        let deleted: Option<String> = l2
            .script(&self.delete, &[&keys.session(id)], &[owner.as_bytes()])
            .await?;
        Ok(deleted.is_some())
    }
}

/// Removes `id` from the index `index_key` (the session itself is gone or never was written).
async fn unindex(l2: &L2, index_key: &str, id: &str) -> Result<(), CacheError> {
    l2.cmd::<i64>(redis::cmd("ZREM").arg(index_key).arg(id).to_owned())
        .await
        .map(drop)
}

impl Sessions {
    /// One page of a user's live sessions, dropping dead index entries on the way. The next offset
    /// accounts for the entries removed, so no live session is skipped.
    pub async fn list_page(
        &self,
        l2: &L2,
        keys: &KeySpace,
        user: &str,
        offset: i64,
        size: i64,
    ) -> Result<(Vec<Session>, Option<i64>), CacheError> {
        let index = keys.user_sessions(user);
        let ids: Vec<String> = l2
            .cmd(
                redis::cmd("ZREVRANGE")
                    .arg(&index)
                    .arg(offset)
                    .arg(offset + size - 1)
                    .to_owned(),
            )
            .await?;
        let scanned = i64::try_from(ids.len()).unwrap_or(0);
        let mut out = Vec::new();
        let mut removed = 0;
        for id in ids {
            let live = self
                .get(l2, &keys.session(&id), &id, false, 0)
                .await?
                .filter(|s| s.user_id == user);
            match live {
                Some(s) => out.push(s),
                None => {
                    unindex(l2, &index, &id).await?;
                    removed += 1;
                }
            }
        }
        let total: i64 = l2.cmd(redis::cmd("ZCARD").arg(&index).to_owned()).await?;
        let next = offset + scanned - removed;
        Ok((out, (scanned == size && next < total).then_some(next)))
    }

    /// Deletes every session of `user` except `keep`; returns how many were deleted. Each delete
    /// is a one-key script that checks the owner, so a stale index entry never removes another
    /// user's session.
    pub async fn delete_all(
        &self,
        l2: &L2,
        keys: &KeySpace,
        user: &str,
        keep: &[String],
    ) -> Result<u64, CacheError> {
        let index = keys.user_sessions(user);
        let ids: Vec<String> = l2
            .cmd(redis::cmd("ZRANGE").arg(&index).arg(0).arg(-1).to_owned())
            .await?;
        let mut deleted = 0;
        for id in ids.iter().filter(|id| !keep.contains(id)) {
            if self.delete_owned(l2, keys, id, user).await? {
                deleted += 1;
            }
            unindex(l2, &index, id).await?;
        }
        Ok(deleted)
    }
}
