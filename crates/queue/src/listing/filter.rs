//! Which jobs of a state a listing keeps (job type, owner, payload text), and the one read per
//! round trip that decides it: HGET of `state` without a filter, as listings always did; HMGET of
//! `state`, `type` and `owner` with one; with a payload text, `search.lua`, which matches inside
//! Redis so payloads never cross the network, and stops a step once the payloads it read reach
//! the call's byte budget ([`SEARCH_BYTE_BUDGET`]).
use ncy_types::jobs::QueueName;

use super::{FILTERED_SCAN_BUDGET, SCAN_BUDGET};
use crate::engine::Engine;
use crate::error::{QueueError, Result};
use crate::job::JobState;

/// Longest payload text a search takes (bytes).
pub const MAX_PAYLOAD_CONTAINS: usize = 256;
/// Payload bytes one listing call reads at most while searching: with 1 MiB payloads a call reads
/// about eight of them, so no call keeps Redis busy long, whatever the payloads hold.
pub const SEARCH_BYTE_BUDGET: u64 = 8 << 20;

/// Which jobs of a state a listing keeps; the default keeps them all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// The job type's wire name (`send-email`): only jobs of this type.
    pub job_type: Option<String>,
    /// A user's UUID: only jobs this user owns (compared without regard to case, as a UUID).
    pub owner_user_id: Option<String>,
    /// Text the payload JSON must contain, as stored (case-sensitive), up to
    /// [`MAX_PAYLOAD_CONTAINS`] bytes.
    pub payload_contains: Option<String>,
}

impl JobFilter {
    /// Whether the filter keeps every job (then a listing reads only each job's state).
    pub fn is_empty(&self) -> bool {
        self.job_type.is_none() && self.owner_user_id.is_none() && self.payload_contains.is_none()
    }

    /// Most entries one call examines with this filter.
    pub fn budget(&self) -> usize {
        if self.is_empty() {
            SCAN_BUDGET
        } else {
            FILTERED_SCAN_BUDGET
        }
    }

    /// Whether a job with this `type` and `owner` (hash fields, `None` when absent) is kept.
    pub(super) fn keeps(&self, job_type: Option<&str>, owner: Option<&str>) -> bool {
        let type_ok = self
            .job_type
            .as_deref()
            .is_none_or(|want| job_type == Some(want));
        let owner_ok = self
            .owner_user_id
            .as_deref()
            .is_none_or(|want| owner.is_some_and(|o| o.eq_ignore_ascii_case(want)));
        type_ok && owner_ok
    }
}

/// Payload bytes a listing call may still read while searching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ByteBudget(pub u64);

impl Default for ByteBudget {
    fn default() -> Self {
        Self(SEARCH_BYTE_BUDGET)
    }
}

impl Engine {
    /// Whether each job is in `state` and kept by `filter` (`false` for an empty id or a job
    /// gone), one round trip: HGET of `state` without a filter, HMGET of `state`, `type`, `owner`
    /// with one, `search.lua` with a payload text. A search answers for a prefix of `ids` only
    /// when the payloads it read used up `bytes` (then the caller stops there and ends its call).
    pub(crate) async fn matching(
        &self,
        conn: &mut ncy_runtime::RedisConn,
        queue: QueueName,
        ids: &[String],
        state: JobState,
        filter: &JobFilter,
        bytes: &mut ByteBudget,
    ) -> Result<Vec<bool>> {
        if let Some(needle) = &filter.payload_contains {
            return self
                .search(conn, queue, ids, state, filter, needle, bytes)
                .await;
        }
        if ids.iter().all(String::is_empty) {
            return Ok(vec![false; ids.len()]);
        }
        let q = self.queue_keys(queue);
        let mut pipe = redis::pipe();
        for id in ids.iter().filter(|id| !id.is_empty()) {
            if filter.is_empty() {
                pipe.hget(q.job(id), "state");
            } else {
                pipe.cmd("HMGET")
                    .arg(q.job(id))
                    .arg("state")
                    .arg("type")
                    .arg("owner");
            }
        }
        let kept: Vec<bool> = if filter.is_empty() {
            let found: Vec<Option<String>> = pipe.query_async(conn).await?;
            found
                .iter()
                .map(|st| st.as_deref() == Some(state.as_str()))
                .collect()
        } else {
            let found: Vec<(Option<String>, Option<String>, Option<String>)> =
                pipe.query_async(conn).await?;
            found
                .iter()
                .map(|(st, ty, owner)| {
                    st.as_deref() == Some(state.as_str())
                        && filter.keeps(ty.as_deref(), owner.as_deref())
                })
                .collect()
        };
        let mut kept = kept.into_iter();
        Ok(ids
            .iter()
            .map(|id| !id.is_empty() && kept.next().unwrap_or(false))
            .collect())
    }
}

impl Engine {
    /// The `search.lua` step of [`Engine::matching`].
    #[allow(clippy::too_many_arguments)]
    async fn search(
        &self,
        conn: &mut ncy_runtime::RedisConn,
        queue: QueueName,
        ids: &[String],
        state: JobState,
        filter: &JobFilter,
        needle: &str,
        bytes: &mut ByteBudget,
    ) -> Result<Vec<bool>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let q = self.queue_keys(queue);
        let mut call = self.scripts.search.key(q.job_prefix());
        call.arg(q.tag())
            .arg(state.as_str())
            .arg(filter.job_type.as_deref().unwrap_or(""))
            .arg(
                filter
                    .owner_user_id
                    .as_deref()
                    .unwrap_or("")
                    .to_ascii_lowercase(),
            )
            .arg(needle)
            .arg(bytes.0.max(1));
        for id in ids {
            call.arg(id);
        }
        let reply: Vec<i64> = call.invoke_async(conn).await?;
        let (examined, read) = match reply.get(..2) {
            Some([e, r]) => (
                usize::try_from(*e).unwrap_or(0),
                u64::try_from(*r).unwrap_or(0),
            ),
            _ => return Err(QueueError::Corrupt(format!("search reply {reply:?}"))),
        };
        if examined == 0 || examined > ids.len() {
            return Err(QueueError::Corrupt(format!("search reply {reply:?}")));
        }
        bytes.0 = bytes.0.saturating_sub(read);
        let mut kept = vec![false; examined];
        for pos in &reply[2..] {
            let at = usize::try_from(*pos).unwrap_or(0);
            if let Some(k) = at.checked_sub(1).and_then(|i| kept.get_mut(i)) {
                *k = true;
            }
        }
        Ok(kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_keep_by_type_and_owner() {
        let any = JobFilter::default();
        assert!(any.is_empty());
        assert!(any.keeps(None, None));
        let owner = "123e4567-e89b-12d3-a456-426614174000";
        let f = JobFilter {
            job_type: Some("send-email".to_owned()),
            owner_user_id: Some(owner.to_owned()),
            payload_contains: None,
        };
        assert!(f.keeps(Some("send-email"), Some(&owner.to_uppercase())));
        assert!(!f.keeps(Some("generate-report"), Some(owner)));
        assert!(!f.keeps(Some("send-email"), Some("")));
        assert!(!f.keeps(Some("send-email"), None));
        assert!(!f.keeps(None, Some(owner)));
    }
}
