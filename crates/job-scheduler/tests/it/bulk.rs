//! RetryDeadLetters and PurgeDeadLetters through gRPC against the real Redis, with this test
//! playing the worker through the engine (jobs fail for good and become dead letters): a filtered
//! retry retries exactly the matching dead letters as new WAITING jobs, paging visits every entry
//! once and ends, a dry run changes nothing, a run never reaches dead letters added after it
//! started, a token is bound to its selection, purge removes exactly the matching ones, dead letters
//! retried or deleted by someone else during a run are not counted, and every bad input is
//! INVALID_ARGUMENT naming the field with nothing changed.
use std::collections::BTreeSet;
use std::time::Duration;

use ncy_proto::jobs::v1 as pb;
use ncy_queue::{Engine, Fetched};
use ncy_testkit::unique_prefix;
use ncy_types::jobs::QueueName;
use tonic::Code;

use crate::support::{Client, start, worker_engine};

const QUEUE: &str = "notification";
const Q: QueueName = QueueName::Notification;
pub const ALICE: &str = "0b6f3a4e-2c1d-4e8f-9a7b-1c2d3e4f5a6b";
pub const BOB: &str = "7d8e9f0a-1b2c-4d3e-8f4a-5b6c7d8e9f0a";

/// A one-attempt job of `job_type` owned by `owner` ("" for none) on `queue`.
pub fn job(queue: &str, job_type: &str, owner: &str) -> pb::EnqueueRequest {
    pb::EnqueueRequest {
        queue: queue.into(),
        job_type: job_type.into(),
        payload_json: "{}".into(),
        attempts: 1,
        owner_user_id: owner.into(),
        ..Default::default()
    }
}

/// Enqueues `jobs` on the notification queue and has the worker fail each for good: their ids,
/// each now DEAD with a dead letter.
async fn kill(
    c: &mut Client,
    w: &Engine,
    jobs: Vec<pb::EnqueueRequest>,
) -> anyhow::Result<Vec<String>> {
    let ids: Vec<String> = c
        .enqueue_bulk(pb::EnqueueBulkRequest { jobs })
        .await?
        .into_inner()
        .results
        .into_iter()
        .map(|r| r.job_id)
        .collect();
    let mut left: BTreeSet<String> = ids.iter().cloned().collect();
    for _ in 0..100 {
        if left.is_empty() {
            break;
        }
        let Fetched::Jobs(got) = w.fetch(Q, "w1", 100, &[]).await? else {
            anyhow::bail!("fetch did not hand out jobs");
        };
        for j in &got {
            w.fail(Q, "w1", j, "broken for good", false).await?;
            left.remove(&j.id);
        }
    }
    anyhow::ensure!(left.is_empty(), "never fetched {left:?}");
    Ok(ids)
}

/// Every dead letter of the notification queue.
async fn letters(c: &mut Client) -> anyhow::Result<Vec<pb::DeadLetter>> {
    let r = c
        .list_dead_letters(pb::ListDeadLettersRequest {
            queue: QUEUE.into(),
            page_size: 500,
            page_token: String::new(),
        })
        .await?
        .into_inner();
    anyhow::ensure!(r.next_page_token.is_empty(), "more than one page");
    Ok(r.dead_letters)
}

fn selection(
    job_type: &str,
    owner: &str,
    failed_before_ms: i64,
) -> Option<pb::DeadLetterSelection> {
    Some(pb::DeadLetterSelection {
        queue: QUEUE.into(),
        job_type: job_type.into(),
        owner_user_id: owner.into(),
        failed_before_ms,
    })
}

/// What a whole run answered, summed over its calls.
#[derive(Debug, Default)]
struct Run {
    done: u32,
    examined: u32,
    calls: u32,
    job_ids: Vec<String>,
}

/// RetryDeadLetters from the first call until the token is empty.
async fn retry_run(
    c: &mut Client,
    sel: Option<pb::DeadLetterSelection>,
    limit: i32,
    dry_run: bool,
) -> anyhow::Result<Run> {
    let mut run = Run::default();
    let mut token = String::new();
    for _ in 0..100 {
        let r = c
            .retry_dead_letters(pb::RetryDeadLettersRequest {
                selection: sel.clone(),
                limit,
                page_token: token,
                dry_run,
            })
            .await?
            .into_inner();
        assert!(limit == 0 || r.examined <= limit as u32, "{r:?}");
        run.calls += 1;
        run.done += r.retried;
        run.examined += r.examined;
        run.job_ids.extend(r.job_ids);
        token = r.next_page_token;
        if token.is_empty() {
            return Ok(run);
        }
    }
    anyhow::bail!("the run did not end")
}

/// PurgeDeadLetters from `token` until the token is empty.
async fn purge_run(
    c: &mut Client,
    sel: Option<pb::DeadLetterSelection>,
    limit: i32,
    mut token: String,
) -> anyhow::Result<Run> {
    let mut run = Run::default();
    for _ in 0..100 {
        let r = c
            .purge_dead_letters(pb::PurgeDeadLettersRequest {
                selection: sel.clone(),
                limit,
                page_token: token,
                dry_run: false,
            })
            .await?
            .into_inner();
        run.calls += 1;
        run.done += r.deleted;
        run.examined += r.examined;
        token = r.next_page_token;
        if token.is_empty() {
            return Ok(run);
        }
    }
    anyhow::bail!("the run did not end")
}

pub fn assert_invalid<T: std::fmt::Debug>(r: Result<T, tonic::Status>, field: &str) {
    match r {
        Err(s) => assert!(
            s.code() == Code::InvalidArgument && s.message().starts_with(&format!("{field}: ")),
            "want INVALID_ARGUMENT naming {field}, got {s:?}"
        ),
        Ok(v) => panic!("want INVALID_ARGUMENT naming {field}, got {v:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_all_retries_exactly_the_matching_dead_letters() -> anyhow::Result<()> {
    let prefix = unique_prefix();
    let (mut c, running) = start(&prefix, &[]).await?;
    let w = worker_engine(&prefix).await?;
    let mut jobs = vec![job(QUEUE, "noop", ALICE); 5];
    jobs.extend([job(QUEUE, "noop", BOB), job(QUEUE, "noop", "")]);
    jobs.extend(vec![job(QUEUE, "fail", ALICE); 3]);
    kill(&mut c, &w, jobs).await?;
    let before = letters(&mut c).await?;
    assert_eq!(before.len(), 10);
    let alices_noops: BTreeSet<String> = before
        .iter()
        .filter(|d| d.job_type == "noop" && d.owner_user_id == ALICE)
        .map(|d| d.id.clone())
        .collect();
    assert_eq!(alices_noops.len(), 5);
    // The owner compares as a UUID, whatever its case.
    let sel = selection("noop", &ALICE.to_uppercase(), 0);

    // A dry run counts and changes nothing.
    let dry = retry_run(&mut c, sel.clone(), 0, true).await?;
    assert_eq!((dry.done, dry.examined, dry.calls), (5, 10, 1), "{dry:?}");
    assert!(dry.job_ids.is_empty());
    assert_eq!(letters(&mut c).await?, before);

    // Pages of 3 visit each of the 10 entries once and retry the 5.
    let run = retry_run(&mut c, sel.clone(), 3, false).await?;
    assert_eq!((run.done, run.examined, run.calls), (5, 10, 4), "{run:?}");
    assert_eq!(run.job_ids.len(), 5);
    let mut from = BTreeSet::new();
    for id in &run.job_ids {
        let job = c
            .get_job(pb::GetJobRequest { job_id: id.clone() })
            .await?
            .into_inner()
            .job
            .ok_or_else(|| anyhow::anyhow!("no job"))?;
        assert_eq!(job.state(), pb::JobState::Waiting, "{job:?}");
        assert_eq!(
            (job.job_type.as_str(), job.owner_user_id.as_str()),
            ("noop", ALICE)
        );
        assert_eq!((job.priority, job.max_attempts), (10, 1));
        from.insert(job.retried_from_dead_letter_id);
    }
    assert_eq!(from, alices_noops, "each matching dead letter retried once");
    let after = letters(&mut c).await?;
    let kept: BTreeSet<String> = after.iter().map(|d| d.id.clone()).collect();
    let others: BTreeSet<String> = before
        .iter()
        .map(|d| d.id.clone())
        .filter(|id| !alices_noops.contains(id))
        .collect();
    assert_eq!(kept, others, "the other dead letters remain");

    // Again: nothing matches any more, the run still ends.
    let again = retry_run(&mut c, sel, 0, false).await?;
    assert_eq!((again.done, again.examined), (0, 5), "{again:?}");
    // An empty stream ends at once.
    let none = c
        .retry_dead_letters(pb::RetryDeadLettersRequest {
            selection: Some(pb::DeadLetterSelection {
                queue: "email".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!((none.retried, none.examined), (0, 0));
    assert!(none.next_page_token.is_empty());
    running
        .stop(Duration::from_secs(10))
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_removes_the_matching_dead_letters_up_to_where_the_run_started() -> anyhow::Result<()>
{
    let prefix = unique_prefix();
    let (mut c, running) = start(&prefix, &[]).await?;
    let w = worker_engine(&prefix).await?;
    let mut jobs = vec![job(QUEUE, "noop", BOB); 3];
    jobs.extend(vec![job(QUEUE, "noop", ALICE); 2]);
    kill(&mut c, &w, jobs).await?;
    let sel = selection("", BOB, 0);
    let first = c
        .purge_dead_letters(pb::PurgeDeadLettersRequest {
            selection: sel.clone(),
            limit: 2,
            page_token: String::new(),
            dry_run: false,
        })
        .await?
        .into_inner();
    assert_eq!(first.examined, 2);
    assert!(!first.next_page_token.is_empty());

    // A token is bound to its selection, its action and dry_run: refused, nothing changed.
    let count = letters(&mut c).await?.len();
    assert_invalid(
        c.purge_dead_letters(pb::PurgeDeadLettersRequest {
            selection: selection("", ALICE, 0),
            page_token: first.next_page_token.clone(),
            ..Default::default()
        })
        .await,
        "page_token",
    );
    assert_invalid(
        c.purge_dead_letters(pb::PurgeDeadLettersRequest {
            selection: sel.clone(),
            page_token: first.next_page_token.clone(),
            dry_run: true,
            ..Default::default()
        })
        .await,
        "page_token",
    );
    assert_invalid(
        c.retry_dead_letters(pb::RetryDeadLettersRequest {
            selection: sel.clone(),
            page_token: first.next_page_token.clone(),
            ..Default::default()
        })
        .await,
        "page_token",
    );
    assert_eq!(letters(&mut c).await?.len(), count);

    // Bob's dead letters added after the run started are not reached by it.
    let late = kill(&mut c, &w, vec![job(QUEUE, "noop", BOB); 2]).await?;
    let rest = purge_run(&mut c, sel.clone(), 2, first.next_page_token.clone()).await?;
    assert_eq!(first.deleted + rest.done, 3, "{first:?} {rest:?}");
    assert_eq!(first.examined + rest.examined, 5, "{rest:?}");
    let left = letters(&mut c).await?;
    let mut owners: Vec<(&str, bool)> = left
        .iter()
        .map(|d| (d.owner_user_id.as_str(), late.contains(&d.job_id)))
        .collect();
    owners.sort();
    assert_eq!(
        owners,
        [(ALICE, false), (ALICE, false), (BOB, true), (BOB, true)]
    );

    // failed_before_ms: only the dead letters that failed before it.
    let newest_old = left.iter().map(|d| d.failed_at_ms).max().unwrap_or(0);
    // The next dead letters fail in a later millisecond than every one so far.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while ncy_queue::now_ms() <= newest_old {
        assert!(
            std::time::Instant::now() < deadline,
            "the clock stands still"
        );
        tokio::task::yield_now().await;
    }
    let newer = kill(&mut c, &w, vec![job(QUEUE, "noop", ALICE); 2]).await?;
    let run = purge_run(&mut c, selection("", "", newest_old + 1), 0, String::new()).await?;
    assert_eq!((run.done, run.examined), (4, 6), "{run:?}");
    let left: BTreeSet<String> = letters(&mut c)
        .await?
        .into_iter()
        .map(|d| d.job_id)
        .collect();
    assert_eq!(left, newer.into_iter().collect());
    // Their DEAD job records stay.
    let dead = c
        .get_job(pb::GetJobRequest {
            job_id: late[0].clone(),
        })
        .await?
        .into_inner()
        .job
        .ok_or_else(|| anyhow::anyhow!("no job"))?;
    assert_eq!(dead.state(), pb::JobState::Dead);
    running
        .stop(Duration::from_secs(10))
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_dead_letter_selections_are_refused_with_nothing_changed() -> anyhow::Result<()> {
    let prefix = unique_prefix();
    let (mut c, running) = start(&prefix, &[]).await?;
    let w = worker_engine(&prefix).await?;
    kill(&mut c, &w, vec![job(QUEUE, "noop", ALICE); 2]).await?;
    let good = selection("", "", 0);
    let cases: Vec<(Option<pb::DeadLetterSelection>, i32, &str, &str)> = vec![
        (None, 0, "", "selection.queue"),
        (
            selection("", "", 0).map(|s| pb::DeadLetterSelection {
                queue: String::new(),
                ..s
            }),
            0,
            "",
            "selection.queue",
        ),
        (
            selection("", "", 0).map(|s| pb::DeadLetterSelection {
                queue: "nope".into(),
                ..s
            }),
            0,
            "",
            "selection.queue",
        ),
        (selection("nope", "", 0), 0, "", "selection.job_type"),
        (
            selection("", "not-a-uuid", 0),
            0,
            "",
            "selection.owner_user_id",
        ),
        (selection("", "", -1), 0, "", "selection.failed_before_ms"),
        (good.clone(), -1, "", "limit"),
        (good.clone(), 0, "zz", "page_token"),
        (good.clone(), 0, "6431727c", "page_token"),
    ];
    for (sel, limit, token, field) in cases {
        for dry_run in [false, true] {
            assert_invalid(
                c.retry_dead_letters(pb::RetryDeadLettersRequest {
                    selection: sel.clone(),
                    limit,
                    page_token: token.into(),
                    dry_run,
                })
                .await,
                field,
            );
            assert_invalid(
                c.purge_dead_letters(pb::PurgeDeadLettersRequest {
                    selection: sel.clone(),
                    limit,
                    page_token: token.into(),
                    dry_run,
                })
                .await,
                field,
            );
        }
    }
    assert_eq!(letters(&mut c).await?.len(), 2, "nothing changed");
    let stats = c
        .queue_stats(pb::QueueStatsRequest {
            queue: QUEUE.into(),
        })
        .await?
        .into_inner();
    assert_eq!(stats.queues[0].waiting, 0, "nothing retried");
    running
        .stop(Duration::from_secs(10))
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_taken_by_someone_else_during_a_run_are_not_counted() -> anyhow::Result<()> {
    let prefix = unique_prefix();
    let (mut c, running) = start(&prefix, &[]).await?;
    let w = worker_engine(&prefix).await?;
    kill(&mut c, &w, vec![job(QUEUE, "noop", ALICE); 4]).await?;
    let mut ids: Vec<String> = letters(&mut c).await?.into_iter().map(|d| d.id).collect();
    // ListDeadLetters is newest first; the run goes oldest first.
    ids.reverse();
    let sel = selection("", "", 0);
    let first = c
        .retry_dead_letters(pb::RetryDeadLettersRequest {
            selection: sel.clone(),
            limit: 1,
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!((first.retried, first.examined), (1, 1), "{first:?}");
    // Another operator deletes the second and retries the third, one by one.
    c.delete_dead_letter(pb::DeleteDeadLetterRequest {
        dead_letter_id: ids[1].clone(),
    })
    .await?;
    c.retry_dead_letter(pb::RetryDeadLetterRequest {
        dead_letter_id: ids[2].clone(),
    })
    .await?;
    let rest = c
        .retry_dead_letters(pb::RetryDeadLettersRequest {
            selection: sel,
            page_token: first.next_page_token,
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!((rest.retried, rest.examined), (1, 1), "{rest:?}");
    assert!(rest.next_page_token.is_empty());
    assert!(letters(&mut c).await?.is_empty());
    running
        .stop(Duration::from_secs(10))
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(())
}
