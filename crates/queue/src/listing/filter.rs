//! Which jobs of a state a listing keeps (job type, owner), and the one pipelined read per round
//! trip that decides it: HGET of `state` without a filter, as listings always did; HMGET of
//! `state`, `type` and `owner` with one.
use ncy_types::jobs::QueueName;

use super::{FILTERED_SCAN_BUDGET, SCAN_BUDGET};
use crate::engine::Engine;
use crate::error::Result;
use crate::job::JobState;

/// Which jobs of a state a listing keeps; the default keeps them all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// The job type's wire name (`send-email`): only jobs of this type.
    pub job_type: Option<String>,
    /// A user's UUID: only jobs this user owns (compared without regard to case, as a UUID).
    pub owner_user_id: Option<String>,
}

impl JobFilter {
    /// Whether the filter keeps every job (then a listing reads only each job's state).
    pub fn is_empty(&self) -> bool {
        self.job_type.is_none() && self.owner_user_id.is_none()
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

impl Engine {
    /// Whether each job is in `state` and kept by `filter` (`false` for an empty id or a job
    /// gone), one pipeline: HGET of `state` without a filter, HMGET of `state`, `type`, `owner`
    /// with one.
    pub(super) async fn matching(
        &self,
        conn: &mut ncy_runtime::RedisConn,
        queue: QueueName,
        ids: &[String],
        state: JobState,
        filter: &JobFilter,
    ) -> Result<Vec<bool>> {
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
        };
        assert!(f.keeps(Some("send-email"), Some(&owner.to_uppercase())));
        assert!(!f.keeps(Some("generate-report"), Some(owner)));
        assert!(!f.keeps(Some("send-email"), Some("")));
        assert!(!f.keeps(Some("send-email"), None));
        assert!(!f.keeps(None, Some(owner)));
    }
}
