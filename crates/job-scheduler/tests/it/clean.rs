//! CleanJobs through gRPC against the real Redis: only jobs of the state asked for that finished
//! before the cutoff (and match the filters) are deleted (GetJob NOT_FOUND, the others still
//! there), pages of any limit visit each once and end, a dry run changes nothing, a DEAD job's dead
//! letter stays, a token is bound to its request, and bad input is INVALID_ARGUMENT naming the
//! field with nothing changed. A job "finished two days ago" is one cancelled now whose finish
//! time this test moves back in Redis (the engine's sets and hash fields, by the shared key
//! builders), so nothing waits for time to pass.
use std::time::Duration;

use ncy_proto::jobs::v1 as pb;
use ncy_queue::{Engine, Fetched};
use ncy_testkit::unique_prefix;
use ncy_types::jobs::QueueName;
use tonic::Code;

use crate::bulk::{ALICE, BOB, assert_invalid, job};
use crate::support::{Client, start, worker_engine};

const QUEUE: &str = "report";
const Q: QueueName = QueueName::Report;
const DAY_MS: i64 = 86_400_000;

/// Enqueues `jobs` and cancels each: their ids, CANCELLED now.
async fn cancelled(c: &mut Client, jobs: Vec<pb::EnqueueRequest>) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    for j in jobs {
        let id = c.enqueue(j).await?.into_inner().job_id;
        c.cancel_job(pb::CancelJobRequest {
            job_id: id.clone(),
            reason: "test".into(),
        })
        .await?;
        ids.push(id);
    }
    Ok(ids)
}

/// Moves the finish time of `ids` (in the sorted set of their state) back by two days.
async fn age(w: &Engine, set: String, ids: &[String]) -> anyhow::Result<()> {
    let client = redis::Client::open(ncy_testkit::redis_url())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let then = ncy_queue::now_ms() - 2 * DAY_MS;
    for id in ids {
        let _: i64 = redis::cmd("ZADD")
            .arg(&set)
            .arg("XX")
            .arg(then)
            .arg(id)
            .query_async(&mut conn)
            .await?;
        let _: i64 = redis::cmd("HSET")
            .arg(w.queue_keys(Q).job(id))
            .arg("finished")
            .arg(then)
            .query_async(&mut conn)
            .await?;
    }
    Ok(())
}

async fn exists(c: &mut Client, id: &str) -> anyhow::Result<bool> {
    match c.get_job(pb::GetJobRequest { job_id: id.into() }).await {
        Ok(_) => Ok(true),
        Err(s) if s.code() == Code::NotFound => Ok(false),
        Err(s) => Err(s.into()),
    }
}

fn clean(state: pb::JobState, older_than_ms: i64, job_type: &str) -> pb::CleanJobsRequest {
    pb::CleanJobsRequest {
        queue: QUEUE.into(),
        state: state as i32,
        older_than_ms,
        job_type: job_type.into(),
        ..Default::default()
    }
}

/// CleanJobs from the first call until the token is empty: (deleted, examined, calls).
async fn clean_run(c: &mut Client, req: pb::CleanJobsRequest) -> anyhow::Result<(u32, u32, u32)> {
    let (mut deleted, mut examined) = (0, 0);
    let mut token = String::new();
    for calls in 1..=100 {
        let r = c
            .clean_jobs(pb::CleanJobsRequest {
                page_token: token,
                ..req.clone()
            })
            .await?
            .into_inner();
        assert!(req.limit == 0 || r.examined <= req.limit as u32, "{r:?}");
        deleted += r.deleted;
        examined += r.examined;
        token = r.next_page_token;
        if token.is_empty() {
            return Ok((deleted, examined, calls));
        }
    }
    anyhow::bail!("the run did not end")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_deletes_only_old_jobs_of_the_state_and_filters() -> anyhow::Result<()> {
    let prefix = unique_prefix();
    let (mut c, running) = start(&prefix, &[]).await?;
    let w = worker_engine(&prefix).await?;
    let old_noops = cancelled(&mut c, vec![job(QUEUE, "noop", ALICE); 4]).await?;
    let old_bobs = cancelled(&mut c, vec![job(QUEUE, "noop", BOB); 1]).await?;
    let old_sleep = cancelled(&mut c, vec![job(QUEUE, "sleep", ALICE); 1]).await?;
    let recent = cancelled(&mut c, vec![job(QUEUE, "noop", ALICE); 2]).await?;
    let set = w.queue_keys(Q).cancelled();
    age(&w, set.clone(), &old_noops).await?;
    age(&w, set.clone(), &old_bobs).await?;
    age(&w, set, &old_sleep).await?;
    // One completed and one dead job, both old.
    let finished = c
        .enqueue_bulk(pb::EnqueueBulkRequest {
            jobs: vec![job(QUEUE, "noop", ALICE); 2],
        })
        .await?
        .into_inner()
        .results;
    // The cancelled jobs' entries may still be in the stream: a fetch passes (drops) them.
    let mut got = Vec::new();
    for _ in 0..50 {
        if got.len() == 2 {
            break;
        }
        let Fetched::Jobs(more) = w.fetch(Q, "w1", 10, &[]).await? else {
            anyhow::bail!("no jobs");
        };
        got.extend(more);
    }
    assert_eq!(got.len(), 2);
    w.complete(Q, "w1", &got[0].id, "{}").await?;
    w.fail(Q, "w1", &got[1], "broken", false).await?;
    let (done, dead) = (got[0].id.clone(), got[1].id.clone());
    age(&w, w.queue_keys(Q).done(), std::slice::from_ref(&done)).await?;
    age(&w, w.queue_keys(Q).failed(), std::slice::from_ref(&dead)).await?;
    assert_eq!(finished.len(), 2);

    // A dry run counts the 6 old CANCELLED jobs (the 2 recent ones are past the cutoff, unread).
    let dry = clean_run(
        &mut c,
        pb::CleanJobsRequest {
            dry_run: true,
            ..clean(pb::JobState::Cancelled, DAY_MS, "")
        },
    )
    .await?;
    assert_eq!((dry.0, dry.1), (6, 6), "{dry:?}");
    for id in old_noops.iter().chain(&old_sleep).chain(&recent) {
        assert!(exists(&mut c, id).await?, "dry run deleted {id}");
    }

    // Alice's old noops, two at a time: 4 of the 6 examined.
    let run = clean_run(
        &mut c,
        pb::CleanJobsRequest {
            owner_user_id: ALICE.to_uppercase(),
            limit: 2,
            ..clean(pb::JobState::Cancelled, DAY_MS, "noop")
        },
    )
    .await?;
    assert_eq!((run.0, run.1), (4, 6), "{run:?}");
    assert!(run.2 >= 3, "{run:?}");
    for id in &old_noops {
        assert!(!exists(&mut c, id).await?, "{id} still there");
    }
    for id in old_bobs.iter().chain(&old_sleep).chain(&recent) {
        assert!(exists(&mut c, id).await?, "{id} deleted");
    }
    assert!(exists(&mut c, &done).await? && exists(&mut c, &dead).await?);

    // Every CANCELLED job, whatever its age: the other 4.
    let all = clean_run(&mut c, clean(pb::JobState::Cancelled, 0, "")).await?;
    assert_eq!((all.0, all.1), (4, 4), "{all:?}");
    // COMPLETED, then DEAD: the record goes, the dead letter stays.
    let completed = clean_run(&mut c, clean(pb::JobState::Completed, DAY_MS, "")).await?;
    assert_eq!((completed.0, completed.1), (1, 1));
    assert!(!exists(&mut c, &done).await?);
    assert!(exists(&mut c, &dead).await?);
    let dead_run = clean_run(&mut c, clean(pb::JobState::Dead, DAY_MS, "")).await?;
    assert_eq!((dead_run.0, dead_run.1), (1, 1));
    assert!(!exists(&mut c, &dead).await?);
    let letters = c
        .list_dead_letters(pb::ListDeadLettersRequest {
            queue: QUEUE.into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .dead_letters;
    assert_eq!(
        letters
            .iter()
            .map(|d| d.job_id.as_str())
            .collect::<Vec<_>>(),
        [dead.as_str()]
    );
    running
        .stop(Duration::from_secs(10))
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_clean_requests_are_refused_with_nothing_changed() -> anyhow::Result<()> {
    let prefix = unique_prefix();
    let (mut c, running) = start(&prefix, &[]).await?;
    let ids = cancelled(&mut c, vec![job(QUEUE, "noop", ALICE); 3]).await?;
    let good = clean(pb::JobState::Cancelled, 0, "");
    let first = c
        .clean_jobs(pb::CleanJobsRequest {
            limit: 1,
            dry_run: true,
            ..good.clone()
        })
        .await?
        .into_inner();
    assert_eq!((first.deleted, first.examined), (1, 1));
    assert!(!first.next_page_token.is_empty());
    let cases: Vec<(pb::CleanJobsRequest, &str)> = vec![
        (
            pb::CleanJobsRequest {
                queue: String::new(),
                ..good.clone()
            },
            "queue",
        ),
        (
            pb::CleanJobsRequest {
                queue: "nope".into(),
                ..good.clone()
            },
            "queue",
        ),
        (clean(pb::JobState::Unspecified, 0, ""), "state"),
        (clean(pb::JobState::Waiting, 0, ""), "state"),
        (clean(pb::JobState::Failed, 0, ""), "state"),
        (
            pb::CleanJobsRequest {
                state: 99,
                ..good.clone()
            },
            "state",
        ),
        (clean(pb::JobState::Cancelled, -1, ""), "older_than_ms"),
        (clean(pb::JobState::Cancelled, 0, "nope"), "job_type"),
        (
            pb::CleanJobsRequest {
                owner_user_id: "x".into(),
                ..good.clone()
            },
            "owner_user_id",
        ),
        (
            pb::CleanJobsRequest {
                limit: -1,
                ..good.clone()
            },
            "limit",
        ),
        (
            pb::CleanJobsRequest {
                page_token: "zz".into(),
                ..good.clone()
            },
            "page_token",
        ),
        // The dry run's token, for a real run or with another filter.
        (
            pb::CleanJobsRequest {
                page_token: first.next_page_token.clone(),
                ..good.clone()
            },
            "page_token",
        ),
        (
            pb::CleanJobsRequest {
                page_token: first.next_page_token.clone(),
                dry_run: true,
                ..clean(pb::JobState::Cancelled, 0, "noop")
            },
            "page_token",
        ),
    ];
    for (req, field) in cases {
        assert_invalid(c.clean_jobs(req).await, field);
    }
    for id in &ids {
        assert!(exists(&mut c, id).await?, "{id} deleted");
    }
    running
        .stop(Duration::from_secs(10))
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(())
}
