//! ListJobs paging through gRPC: pages of any size visit every job of every state exactly once
//! (even where jobs of several states share one Redis structure), tokens are opaque and a token
//! that is crafted, edited or from another listing is INVALID_ARGUMENT naming `page_token` before
//! any Redis work, and an error Redis answers to a request is INTERNAL, not UNAVAILABLE.
use std::collections::HashSet;
use std::time::Duration;

use ncy_proto::jobs::v1 as pb;
use ncy_queue::{Fetched, FetchedJob};
use ncy_testkit::unique_prefix;
use ncy_types::jobs::QueueName;

use crate::support::{Client, start, start_unready, worker_engine};

const Q: &str = "report";
const MINUTE: i64 = 60_000;

fn noop(priority: i32) -> pb::EnqueueRequest {
    pb::EnqueueRequest {
        queue: Q.into(),
        job_type: "noop".into(),
        payload_json: "{}".into(),
        priority,
        attempts: 3,
        ..Default::default()
    }
}

async fn enqueue(c: &mut Client, req: pb::EnqueueRequest) -> anyhow::Result<String> {
    Ok(c.enqueue(req).await?.into_inner().job_id)
}

/// Every page of the listing of `state` with pages of `size`: the ids in order. Asserts each page
/// that has a next one is full, and that the listing ends.
async fn list_all(c: &mut Client, state: pb::JobState, size: i32) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    let mut token = String::new();
    for _ in 0..100 {
        let page = c
            .list_jobs(pb::ListJobsRequest {
                queue: Q.into(),
                state: state as i32,
                page_size: size,
                page_token: token.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        let n = page.jobs.len();
        assert!(
            n <= usize::try_from(size)?,
            "{state:?}/{size}: a page of {n}"
        );
        for job in page.jobs {
            assert_eq!(job.state(), state, "{}", job.id);
            ids.push(job.id);
        }
        if page.next_page_token.is_empty() {
            return Ok(ids);
        }
        assert_eq!(
            n,
            usize::try_from(size)?,
            "{state:?}/{size}: a page with a next page is full ({ids:?})"
        );
        token = page.next_page_token;
    }
    anyhow::bail!("{state:?}/{size}: the listing did not end")
}

async fn fetch(engine: &ncy_queue::Engine, n: usize) -> anyhow::Result<Vec<FetchedJob>> {
    match engine.fetch(QueueName::Report, "w1", n, &[]).await? {
        Fetched::Jobs(jobs) => Ok(jobs),
        other => anyhow::bail!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_of_any_size_visit_every_job_of_every_state_exactly_once() -> anyhow::Result<()> {
    let prefix = unique_prefix();
    let (mut c, running) = start(&prefix, &[("NCY_CRON_INSTALL_DEFAULTS", "false")]).await?;
    let worker = worker_engine(&prefix).await?;
    let q = QueueName::Report;

    // What a worker takes (priority 10, taken first): two stay ACTIVE, two complete, two die,
    // two fail with a retry due in about 15 and 45 minutes (fixed backoff, ±20 % jitter).
    let backoff = |minutes: i64| pb::Backoff {
        r#type: pb::BackoffType::Fixed as i32,
        delay_ms: minutes * MINUTE,
    };
    let mut taken = Vec::new();
    for i in 0..8 {
        let mut req = noop(10);
        if i == 6 {
            req.backoff = Some(backoff(15));
        } else if i == 7 {
            req.backoff = Some(backoff(45));
        }
        taken.push(enqueue(&mut c, req).await?);
    }
    let jobs = fetch(&worker, 8).await?;
    let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, taken, "taken in order");
    for j in &jobs[2..4] {
        assert!(worker.complete(q, "w1", &j.id, "{}").await?);
    }
    for j in &jobs[4..6] {
        worker.fail(q, "w1", j, "fatal", false).await?;
    }
    for j in &jobs[6..8] {
        worker.fail(q, "w1", j, "try again", true).await?;
    }

    // WAITING in three bands, behind the ACTIVE entries in band 10, with a cancelled job's entry
    // left in band 5; DELAYED due in 5, 25 and 58 minutes, between the retries.
    let mut waiting = Vec::new();
    for priority in [10, 10, 10, 5] {
        waiting.push(enqueue(&mut c, noop(priority)).await?);
    }
    let cancelled_waiting = enqueue(&mut c, noop(5)).await?;
    for priority in [5, 0, 0] {
        waiting.push(enqueue(&mut c, noop(priority)).await?);
    }
    let mut delayed = Vec::new();
    for minutes in [5, 25, 58] {
        delayed.push(
            enqueue(
                &mut c,
                pb::EnqueueRequest {
                    delay_ms: minutes * MINUTE,
                    ..noop(3)
                },
            )
            .await?,
        );
    }
    let cancelled_delayed = enqueue(
        &mut c,
        pb::EnqueueRequest {
            delay_ms: 30 * MINUTE,
            ..noop(3)
        },
    )
    .await?;
    for id in [&cancelled_waiting, &cancelled_delayed] {
        c.cancel_job(pb::CancelJobRequest {
            job_id: id.clone(),
            reason: String::new(),
        })
        .await?;
    }

    let unordered = |ids: &[String]| ids.iter().cloned().collect::<HashSet<String>>();
    for size in [1, 2, 3, 50] {
        // In run order / due order: compared as lists.
        assert_eq!(
            list_all(&mut c, pb::JobState::Waiting, size).await?,
            waiting,
            "WAITING/{size}"
        );
        assert_eq!(
            list_all(&mut c, pb::JobState::Delayed, size).await?,
            delayed,
            "DELAYED/{size}"
        );
        assert_eq!(
            list_all(&mut c, pb::JobState::Failed, size).await?,
            taken[6..8].to_vec(),
            "FAILED/{size}"
        );
        assert_eq!(
            list_all(&mut c, pb::JobState::Active, size).await?,
            taken[0..2].to_vec(),
            "ACTIVE/{size}"
        );
        // By finish time, newest first (ties within a millisecond in either order): exactly once.
        for (state, want) in [
            (pb::JobState::Completed, unordered(&taken[2..4])),
            (pb::JobState::Dead, unordered(&taken[4..6])),
            (
                pb::JobState::Cancelled,
                unordered(&[cancelled_waiting.clone(), cancelled_delayed.clone()]),
            ),
        ] {
            let got = list_all(&mut c, state, size).await?;
            assert_eq!(got.len(), want.len(), "{state:?}/{size}: {got:?}");
            assert_eq!(unordered(&got), want, "{state:?}/{size}");
        }
    }
    running
        .stop(Duration::from_secs(10))
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(())
}

/// A token in the real shape (hex of `v1|<queue>|<state>|<position>`): what a client could forge.
fn forged(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

async fn list(
    c: &mut Client,
    queue: &str,
    state: pb::JobState,
    token: &str,
) -> Result<pb::ListJobsResponse, tonic::Status> {
    let mut req = tonic::Request::new(pb::ListJobsRequest {
        queue: queue.into(),
        state: state as i32,
        page_size: 1,
        page_token: token.into(),
        ..Default::default()
    });
    req.set_timeout(Duration::from_secs(30));
    c.list_jobs(req).await.map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crafted_or_foreign_page_tokens_are_invalid_argument_naming_page_token()
-> anyhow::Result<()> {
    let prefix = unique_prefix();
    let (mut c, running) = start(&prefix, &[("NCY_CRON_INSTALL_DEFAULTS", "false")]).await?;
    // Two waiting jobs: the first page of one has a real token to misuse.
    for _ in 0..2 {
        enqueue(&mut c, noop(1)).await?;
    }
    let real = list(&mut c, Q, pb::JobState::Waiting, "")
        .await?
        .next_page_token;
    assert!(!real.is_empty());
    assert!(
        !real.contains(':'),
        "opaque, not the old `w:<band>:<entry>`: {real}"
    );
    let real_offset = {
        enqueue(
            &mut c,
            pb::EnqueueRequest {
                delay_ms: MINUTE,
                ..noop(1)
            },
        )
        .await?;
        enqueue(
            &mut c,
            pb::EnqueueRequest {
                delay_ms: 2 * MINUTE,
                ..noop(1)
            },
        )
        .await?;
        list(&mut c, Q, pb::JobState::Delayed, "")
            .await?
            .next_page_token
    };
    assert!(!real_offset.is_empty());
    use pb::JobState::{Completed, Delayed, Waiting};
    let cases: Vec<(&str, pb::JobState, String)> = vec![
        // A band number far past the last band (one Redis round trip per band number before).
        (Q, Waiting, "w:2147483647:0-0".into()),
        // Malformed stream ids (Redis refused them, answered as UNAVAILABLE before).
        (Q, Waiting, "w:10:abc".into()),
        (Q, Waiting, "w:10:1-".into()),
        // Negative offsets (accepted before).
        (Q, Delayed, "o:-5".into()),
        (Q, Completed, "o:-5".into()),
        (Q, Waiting, "not a token".into()),
        (Q, Waiting, "abcd".repeat(100)),
        // Forged in the real shape: every field is checked.
        (Q, Waiting, forged("v1|report|waiting|w|2147483647|0-0")),
        (Q, Waiting, forged("v1|report|waiting|w|11|0-0")),
        (Q, Waiting, forged("v1|report|waiting|w|10|1-")),
        (
            Q,
            Waiting,
            forged("v1|report|waiting|w|10|99999999999999999999-0"),
        ),
        (Q, Delayed, forged("v1|report|delayed|o|-5")),
        (Q, Completed, forged("v1|report|completed|o|10000000000")),
        (Q, Completed, forged("v9|report|completed|o|1")),
        // Real tokens of another listing: another queue, another state.
        ("email", Waiting, real.clone()),
        (Q, Delayed, real.clone()),
        (Q, Waiting, real_offset.clone()),
        (Q, Completed, real_offset.clone()),
    ];
    for (queue, state, token) in &cases {
        let err = list(&mut c, queue, *state, token).await.expect_err(token);
        assert_eq!(
            err.code(),
            tonic::Code::InvalidArgument,
            "{queue}/{state:?}/{token}: {err:?}"
        );
        assert!(
            err.message().starts_with("page_token:"),
            "{token}: {}",
            err.message()
        );
    }
    // The real tokens still work where they belong.
    assert_eq!(list(&mut c, Q, Waiting, &real).await?.jobs.len(), 1);
    assert_eq!(list(&mut c, Q, Delayed, &real_offset).await?.jobs.len(), 1);
    running
        .stop(Duration::from_secs(10))
        .await
        .map_err(anyhow::Error::msg)?;

    // Checked before any Redis work: with Redis unreachable a bad token is still INVALID_ARGUMENT
    // (a good request is UNAVAILABLE).
    let (mut c, running) = start_unready(
        &unique_prefix(),
        &[
            ("REDIS_URL", "redis://127.0.0.1:1"),
            ("NCY_CRON_ENABLED", "false"),
        ],
    )
    .await?;
    let err = list(&mut c, Q, Waiting, "").await.expect_err("no redis");
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    for (queue, state, token) in &cases {
        let err = list(&mut c, queue, *state, token).await.expect_err(token);
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{token}: {err:?}");
    }
    running
        .stop(Duration::from_secs(10))
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_redis_answers_to_the_request_is_internal_not_unavailable() -> anyhow::Result<()> {
    let prefix = unique_prefix();
    let (mut c, running) = start(&prefix, &[("NCY_CRON_INSTALL_DEFAULTS", "false")]).await?;
    // The completed set holds a string: Redis answers WRONGTYPE to every read of it, however
    // often the client retries.
    let keys = ncy_types::KeySpace::new(prefix.clone())?;
    let mut conn = redis::Client::open(ncy_testkit::redis_url())?
        .get_multiplexed_async_connection()
        .await?;
    let () = redis::cmd("SET")
        .arg(keys.queue(Q).done())
        .arg("not a sorted set")
        .query_async(&mut conn)
        .await?;
    let err = list(&mut c, Q, pb::JobState::Completed, "")
        .await
        .expect_err("wrong type");
    assert_eq!(err.code(), tonic::Code::Internal, "{err:?}");
    assert_eq!(err.message(), "internal error", "details are not leaked");
    running
        .stop(Duration::from_secs(10))
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(())
}
