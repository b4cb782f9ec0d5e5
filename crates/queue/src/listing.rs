//! Listing a queue's jobs by state, a page at a time, with bounded work per call.
//!
//! Where each state lives: WAITING jobs are entries of the band streams (listed band 10 down to 0,
//! oldest first), among the entries of ACTIVE jobs, which stay in their stream while pending in
//! the consumer group; ACTIVE jobs are the group's pending entries (same band order); DELAYED and
//! FAILED (retry pending) share the delayed set, by due time; COMPLETED, DEAD and CANCELLED have a
//! set each, newest first.
//!
//! Why a call's work is bounded: a listing skips what is not in the state asked for (ACTIVE entries
//! among the WAITING ones, DELAYED jobs among the FAILED ones, records removed by retention). One
//! call examines at most [`SCAN_BUDGET`] entries, in round trips of up to [`MAX_PAGE`] entries; when
//! the budget runs out before the page is full it answers the jobs found so far with a cursor after
//! the last entry examined. So a listing always moves forward, a page is never empty while jobs of
//! the state follow within the budget, and no cursor makes a call cost more than a few round trips.
//!
//! A [`JobFilter`] (job type, owner) is applied while scanning, on the same budget: each entry's job
//! hash is read for `state`, `type` and `owner` in one pipelined HMGET per round trip. A filtered
//! page may therefore hold fewer than `page_size` jobs, even none, while the cursor still moves
//! forward: the caller pages on while a next cursor comes back. [`JobPage::examined`] says how many
//! entries the call looked at, at most [`FILTERED_SCAN_BUDGET`] with a filter. Without a filter a
//! listing reads only `state`, as it always has. A payload text is matched inside Redis
//! (`search.lua`), and a call also ends once the payloads it searched reach
//! [`SEARCH_BYTE_BUDGET`], with a cursor after the last job searched.
use std::collections::HashMap;

use ncy_types::ValidationError;
use ncy_types::jobs::QueueName;
use redis::{AsyncCommands, Value};

use crate::engine::{BANDS, Engine, GROUP};
use crate::error::{QueueError, Result};
use crate::job::{JobRecord, JobState};

mod filter;
mod stream_id;
pub(crate) use filter::ByteBudget;
pub use filter::{JobFilter, MAX_PAYLOAD_CONTAINS, SEARCH_BYTE_BUDGET};
pub use stream_id::StreamId;

/// Most jobs in one page.
pub const MAX_PAGE: usize = 500;
/// Most entries one call examines (jobs listed plus entries skipped).
pub const SCAN_BUDGET: usize = 2_000;
/// Most entries one filtered call examines: each costs an HMGET of three fields rather than one
/// HGET, and a filter matching few jobs spends the whole budget on every call.
pub const FILTERED_SCAN_BUDGET: usize = 1_000;
/// Largest offset a cursor may hold.
pub const MAX_OFFSET: u64 = 1_000_000_000;
/// Fewest entries read per round trip: a page of one among many skipped entries must not cost a
/// round trip per entry.
const MIN_CHUNK: usize = 100;

/// Where the next page of a listing starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// WAITING: after entry `after` of band `band` (bands are listed from 10 down to 0).
    Stream { band: u8, after: StreamId },
    /// Any other state: this many entries of the state's list come before the page.
    Offset(u64),
}

impl Cursor {
    /// Whether this cursor can continue a listing of `state`: the kind the state uses, in bounds.
    /// The error names `pageToken`.
    pub fn check(&self, state: JobState) -> std::result::Result<(), ValidationError> {
        let ok = match (*self, state) {
            (Cursor::Stream { band, .. }, JobState::Waiting) => band < BANDS,
            (Cursor::Offset(offset), s) => s != JobState::Waiting && offset <= MAX_OFFSET,
            (Cursor::Stream { .. }, _) => false,
        };
        if ok {
            Ok(())
        } else {
            Err(ValidationError::new(
                "pageToken",
                "is not a position in this listing",
            ))
        }
    }
}

/// A page of jobs.
#[derive(Debug, Clone, Default)]
pub struct JobPage {
    /// The jobs found; with a filter, possibly fewer than the page size (even none) though more
    /// may follow: `next` says whether to go on.
    pub jobs: Vec<JobRecord>,
    /// Where the next page starts; `None` when this is the last page.
    pub next: Option<Cursor>,
    /// Entries this call examined (at most the filter's [`JobFilter::budget`]).
    pub examined: usize,
}

/// Entries read per round trip for a page of `page_size`.
fn chunk_for(page_size: usize) -> usize {
    page_size.clamp(MIN_CHUNK, MAX_PAGE)
}

impl Engine {
    /// Lists the jobs of `queue` in `state` (see the proto for the order), `page_size` 1 to
    /// [`MAX_PAGE`], from the start or from a cursor of a previous page of the same listing.
    pub async fn list_jobs(
        &self,
        queue: QueueName,
        state: JobState,
        page_size: usize,
        from: Option<Cursor>,
    ) -> Result<JobPage> {
        self.list_jobs_filtered(queue, state, page_size, from, &JobFilter::default())
            .await
    }

    /// [`Engine::list_jobs`] keeping only the jobs `filter` keeps. The cursor is a position in
    /// the state's structure, so the caller passes the same filter with each page.
    pub async fn list_jobs_filtered(
        &self,
        queue: QueueName,
        state: JobState,
        page_size: usize,
        from: Option<Cursor>,
        filter: &JobFilter,
    ) -> Result<JobPage> {
        if page_size == 0 || page_size > MAX_PAGE {
            return Err(
                ValidationError::new("pageSize", format!("must be 1 to {MAX_PAGE}")).into(),
            );
        }
        if let Some(cursor) = from {
            cursor.check(state)?;
        }
        let offset = match from {
            Some(Cursor::Offset(offset)) => offset,
            _ => 0,
        };
        match state {
            JobState::Waiting => self.list_waiting(queue, page_size, from, filter).await,
            JobState::Active => self.list_active(queue, page_size, offset, filter).await,
            _ => self.list_set(queue, state, page_size, offset, filter).await,
        }
    }

    /// DELAYED, FAILED (both from the delayed set), COMPLETED, DEAD, CANCELLED: by offset into
    /// the state's sorted set, skipping members in another state.
    async fn list_set(
        &self,
        queue: QueueName,
        state: JobState,
        page_size: usize,
        offset: u64,
        filter: &JobFilter,
    ) -> Result<JobPage> {
        let q = self.queue_keys(queue);
        let (key, newest_first) = match state {
            JobState::Completed => (q.done(), true),
            JobState::Dead => (q.failed(), true),
            JobState::Cancelled => (q.cancelled(), true),
            _ => (q.delayed(), false),
        };
        let chunk = chunk_for(page_size);
        let mut conn = self.conn().await?;
        let mut pos = offset;
        let mut found: Vec<String> = Vec::new();
        let mut examined = 0usize;
        let mut exhausted = false;
        let budget = filter.budget();
        let mut bytes = ByteBudget::default();
        while found.len() < page_size && examined < budget {
            // Never read past the budget.
            let n = chunk.min(budget - examined);
            let start = isize::try_from(pos).unwrap_or(isize::MAX);
            let stop = start.saturating_add(isize::try_from(n).unwrap_or(isize::MAX) - 1);
            let ids: Vec<String> = if newest_first {
                conn.zrevrange(&key, start, stop).await?
            } else {
                conn.zrange(&key, start, stop).await?
            };
            let kept = self
                .matching(&mut conn, queue, &ids, state, filter, &mut bytes)
                .await?;
            let mut consumed = 0usize;
            for (id, keep) in ids.iter().zip(&kept) {
                if found.len() >= page_size {
                    break;
                }
                consumed += 1;
                if *keep {
                    found.push(id.clone());
                }
            }
            pos += consumed as u64;
            examined += consumed;
            if ids.len() < n && consumed == ids.len() {
                exhausted = true;
                break;
            }
            // A search that used up the call's payload bytes ends the call here.
            if kept.len() < ids.len() {
                break;
            }
        }
        Ok(JobPage {
            jobs: self.read_in_state(queue, state, &found).await?,
            next: (!exhausted).then_some(Cursor::Offset(pos)),
            examined,
        })
    }

    /// The jobs `ids` still in `state` when read (a job may move on meanwhile).
    async fn read_in_state(
        &self,
        queue: QueueName,
        state: JobState,
        ids: &[String],
    ) -> Result<Vec<JobRecord>> {
        Ok(self
            .read_jobs(queue, ids)
            .await?
            .into_iter()
            .filter(|j| j.get("state") == state.as_str())
            .collect())
    }

    /// ACTIVE jobs: the consumer group's pending entries, band 10 down to 0, oldest entry first
    /// (the order they started in, within a band), by offset into that sequence.
    async fn list_active(
        &self,
        queue: QueueName,
        page_size: usize,
        offset: u64,
        filter: &JobFilter,
    ) -> Result<JobPage> {
        let q = self.queue_keys(queue);
        let skip = usize::try_from(offset).unwrap_or(usize::MAX);
        let want = skip.saturating_add(filter.budget());
        let mut conn = self.conn().await?;
        // One pipeline over the bands (pending entries are bounded by the workers' concurrency).
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for band in (0..BANDS).rev() {
            pipe.cmd("XPENDING")
                .arg(q.ready(band))
                .arg(GROUP)
                .arg("-")
                .arg("+")
                .arg(want);
        }
        let replies: Vec<Value> = pipe.query_async(&mut conn).await?;
        let mut entries: Vec<(u8, String)> = Vec::new();
        for (band, reply) in (0..BANDS).rev().zip(replies) {
            let pending: Vec<(String, String, u64, u64)> = match reply {
                // A band whose stream or group does not exist yet has nothing pending.
                Value::ServerError(e) if e.code() == "NOGROUP" => Vec::new(),
                Value::ServerError(e) => return Err(redis::RedisError::from(e).into()),
                other => redis::from_redis_value(other)
                    .map_err(|e| QueueError::Corrupt(format!("XPENDING reply: {e}")))?,
            };
            entries.extend(pending.into_iter().map(|(entry, ..)| (band, entry)));
            if entries.len() >= want {
                break;
            }
        }
        let more_pending = entries.len() >= want;
        let candidates: Vec<(u8, String)> = entries.into_iter().skip(skip).collect();
        let mut found: Vec<String> = Vec::new();
        let mut consumed = 0usize;
        let mut bytes = ByteBudget::default();
        for part in candidates.chunks(chunk_for(page_size)) {
            if found.len() >= page_size {
                break;
            }
            let mut pipe = redis::pipe();
            for (band, entry) in part {
                pipe.cmd("XRANGE").arg(q.ready(*band)).arg(entry).arg(entry);
            }
            let read: Vec<Vec<(String, HashMap<String, String>)>> =
                pipe.query_async(&mut conn).await?;
            let ids: Vec<String> = read
                .iter()
                .map(|e| {
                    e.first()
                        .and_then(|(_, f)| f.get("j").cloned())
                        .unwrap_or_default()
                })
                .collect();
            let kept = self
                .matching(&mut conn, queue, &ids, JobState::Active, filter, &mut bytes)
                .await?;
            for (id, keep) in ids.iter().zip(&kept) {
                if found.len() >= page_size {
                    break;
                }
                consumed += 1;
                if *keep {
                    found.push(id.clone());
                }
            }
            if kept.len() < ids.len() {
                break;
            }
        }
        let exhausted = !more_pending && consumed == candidates.len();
        Ok(JobPage {
            jobs: self.read_in_state(queue, JobState::Active, &found).await?,
            next: (!exhausted).then_some(Cursor::Offset(offset + consumed as u64)),
            examined: consumed,
        })
    }

    /// WAITING jobs in run order: band 10 down to 0, oldest entry first, skipping the entries of
    /// ACTIVE jobs and of jobs cancelled since.
    async fn list_waiting(
        &self,
        queue: QueueName,
        page_size: usize,
        from: Option<Cursor>,
        filter: &JobFilter,
    ) -> Result<JobPage> {
        let q = self.queue_keys(queue);
        let (mut band, mut after) = match from {
            Some(Cursor::Stream { band, after }) => (band, Some(after)),
            _ => (BANDS - 1, None),
        };
        let chunk = chunk_for(page_size);
        let mut conn = self.conn().await?;
        let mut found: Vec<String> = Vec::new();
        let mut last: Option<Cursor> = None;
        let mut examined = 0usize;
        let mut exhausted = false;
        let budget = filter.budget();
        let mut bytes = ByteBudget::default();
        while found.len() < page_size && examined < budget {
            // Never read past the budget.
            let n = chunk.min(budget - examined);
            let entries: Vec<(String, HashMap<String, String>)> = match after {
                // Nothing follows the largest id (and Redis refuses it as an exclusive start).
                Some(a) if a == StreamId::MAX => Vec::new(),
                _ => {
                    redis::cmd("XRANGE")
                        .arg(q.ready(band))
                        .arg(after.map_or_else(|| "-".to_owned(), |a| format!("({a}")))
                        .arg("+")
                        .arg("COUNT")
                        .arg(n)
                        .query_async(&mut conn)
                        .await?
                }
            };
            // An entry without a job (the wake that resume writes) is skipped like any other.
            let ids: Vec<String> = entries
                .iter()
                .map(|(_, f)| f.get("j").cloned().unwrap_or_default())
                .collect();
            let kept = self
                .matching(
                    &mut conn,
                    queue,
                    &ids,
                    JobState::Waiting,
                    filter,
                    &mut bytes,
                )
                .await?;
            let mut consumed = 0usize;
            for ((entry, _), (id, keep)) in entries.iter().zip(ids.iter().zip(&kept)) {
                if found.len() >= page_size {
                    break;
                }
                let at = StreamId::parse(entry)
                    .ok_or_else(|| QueueError::Corrupt(format!("stream entry id {entry:?}")))?;
                consumed += 1;
                after = Some(at);
                last = Some(Cursor::Stream { band, after: at });
                if *keep {
                    found.push(id.clone());
                }
            }
            examined += consumed;
            if kept.len() < ids.len() {
                break;
            }
            if entries.len() < n && consumed == entries.len() {
                if band == 0 {
                    exhausted = true;
                    break;
                }
                band -= 1;
                after = None;
            }
        }
        Ok(JobPage {
            jobs: self.read_in_state(queue, JobState::Waiting, &found).await?,
            next: if exhausted { None } else { last.or(from) },
            examined,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_fit_their_state_and_bounds() {
        let at = StreamId { ms: 1, seq: 0 };
        assert!(
            Cursor::Stream {
                band: 10,
                after: at
            }
            .check(JobState::Waiting)
            .is_ok()
        );
        assert!(
            Cursor::Stream {
                band: 11,
                after: at
            }
            .check(JobState::Waiting)
            .is_err()
        );
        assert!(
            Cursor::Stream { band: 3, after: at }
                .check(JobState::Delayed)
                .is_err()
        );
        assert!(Cursor::Offset(0).check(JobState::Waiting).is_err());
        assert!(Cursor::Offset(MAX_OFFSET).check(JobState::Failed).is_ok());
        assert_eq!(
            Cursor::Offset(MAX_OFFSET + 1)
                .check(JobState::Completed)
                .expect_err("too far")
                .field,
            "pageToken"
        );
    }
}
