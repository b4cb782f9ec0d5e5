//! ListJobs filtered by job type and owner: pages of any size return exactly the matching jobs,
//! none twice; a filter matching nothing still ends, each call examining a bounded number of
//! jobs; a bad filter is INVALID_ARGUMENT naming its field.
use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use ncy_proto::jobs::v1 as pb;
use ncy_queue::FILTERED_SCAN_BUDGET;
use ncy_testkit::unique_prefix;

use crate::support::{Client, start};

const Q: &str = "report";
const ALICE: &str = "0b6f3a4e-2c1d-4e8f-9a7b-1c2d3e4f5a6b";
const BOB: &str = "7d8e9f0a-1b2c-4d3e-8f4a-5b6c7d8e9f0a";
const NOBODY: &str = "123e4567-e89b-12d3-a456-426614174000";

/// A job of `job_type` owned by `owner` ("" for none) at `priority`, due after `delay_ms`.
fn job(job_type: &str, owner: &str, priority: i32, delay_ms: i64) -> pb::EnqueueRequest {
    pb::EnqueueRequest {
        queue: Q.into(),
        job_type: job_type.into(),
        payload_json: if job_type == "sleep" {
            r#"{"ms":1}"#.into()
        } else {
            "{}".into()
        },
        priority,
        attempts: 1,
        delay_ms,
        owner_user_id: owner.into(),
        ..Default::default()
    }
}

/// Enqueues `jobs` (at most 1,000) in one call; their ids in order.
async fn enqueue_all(c: &mut Client, jobs: Vec<pb::EnqueueRequest>) -> anyhow::Result<Vec<String>> {
    let out = c
        .enqueue_bulk(pb::EnqueueBulkRequest { jobs })
        .await?
        .into_inner();
    Ok(out.results.into_iter().map(|r| r.job_id).collect())
}

/// What paging through a filtered listing saw.
struct Listing {
    ids: Vec<String>,
    calls: usize,
    examined: Vec<u32>,
}

/// Every page of the filtered listing of `state` with pages of `size`, passing the same filter
/// each time. Asserts no page is larger than `size` or examines more than the budget.
async fn list_filtered(
    c: &mut Client,
    state: pb::JobState,
    job_type: &str,
    owner: &str,
    size: i32,
) -> anyhow::Result<Listing> {
    let mut out = Listing {
        ids: Vec::new(),
        calls: 0,
        examined: Vec::new(),
    };
    let mut token = String::new();
    for _ in 0..1_000 {
        let page = c
            .list_jobs(pb::ListJobsRequest {
                queue: Q.into(),
                state: state as i32,
                page_size: size,
                page_token: token.clone(),
                job_type: job_type.into(),
                owner_user_id: owner.into(),
                ..Default::default()
            })
            .await?
            .into_inner();
        out.calls += 1;
        out.examined.push(page.examined);
        let what = format!("{state:?} type={job_type:?} owner={owner:?} size={size}");
        assert!(page.jobs.len() <= usize::try_from(size)?, "{what}");
        assert!(
            usize::try_from(page.examined)? <= FILTERED_SCAN_BUDGET,
            "{what}: examined {}",
            page.examined
        );
        for j in page.jobs {
            assert_eq!(j.state(), state, "{what}: {}", j.id);
            if !job_type.is_empty() {
                assert_eq!(j.job_type, job_type, "{what}: {}", j.id);
            }
            if !owner.is_empty() {
                assert!(j.owner_user_id.eq_ignore_ascii_case(owner), "{what}");
            }
            out.ids.push(j.id);
        }
        if page.next_page_token.is_empty() {
            return Ok(out);
        }
        token = page.next_page_token;
    }
    anyhow::bail!("{state:?}/{size}: the filtered listing did not end")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_pages_return_exactly_the_matching_jobs_once() -> anyhow::Result<()> {
    let prefix = unique_prefix();
    let (mut c, running) = start(&prefix, &[("NCY_CRON_INSTALL_DEFAULTS", "false")]).await?;

    // 120 waiting jobs over three bands, two types and three owners (one of them none), and
    // 30 delayed ones; what each is, by id.
    let owners = [ALICE, BOB, ""];
    let mut reqs = Vec::new();
    for i in 0..150usize {
        let ty = if i % 2 == 0 { "noop" } else { "sleep" };
        let delay = if i >= 120 { 3_600_000 } else { 0 };
        reqs.push(job(ty, owners[i % 3], [0, 5, 10][i % 5 % 3], delay));
    }
    let kinds: Vec<(String, String, bool)> = reqs
        .iter()
        .map(|r| (r.job_type.clone(), r.owner_user_id.clone(), r.delay_ms > 0))
        .collect();
    let ids = enqueue_all(&mut c, reqs).await?;
    assert_eq!(ids.len(), 150);
    let expect = |ty: &str, owner: &str, delayed: bool| -> BTreeSet<String> {
        ids.iter()
            .zip(&kinds)
            .filter(|(_, (t, o, d))| {
                (ty.is_empty() || t == ty) && (owner.is_empty() || o == owner) && *d == delayed
            })
            .map(|(id, _)| id.clone())
            .collect()
    };

    for (ty, owner) in [("noop", ""), ("", ALICE), ("sleep", BOB), ("noop", "")] {
        for size in [1, 7, 50] {
            let seen = list_filtered(&mut c, pb::JobState::Waiting, ty, owner, size).await?;
            let unique: HashSet<&String> = seen.ids.iter().collect();
            assert_eq!(
                unique.len(),
                seen.ids.len(),
                "{ty}/{owner}/{size}: none twice"
            );
            let got: BTreeSet<String> = seen.ids.into_iter().collect();
            let want = expect(ty, owner, false);
            assert!(!want.is_empty());
            assert_eq!(got, want, "waiting {ty:?}/{owner:?} in pages of {size}");
        }
    }
    // The owner is a UUID, compared as one: upper case finds the same jobs.
    let upper = list_filtered(&mut c, pb::JobState::Waiting, "", &BOB.to_uppercase(), 50).await?;
    assert_eq!(
        upper.ids.into_iter().collect::<BTreeSet<_>>(),
        expect("", BOB, false)
    );
    // A state kept in a sorted set filters the same way.
    for size in [1, 7, 50] {
        let seen = list_filtered(&mut c, pb::JobState::Delayed, "sleep", ALICE, size).await?;
        let got: BTreeSet<String> = seen.ids.iter().cloned().collect();
        assert_eq!(got.len(), seen.ids.len());
        assert_eq!(
            got,
            expect("sleep", ALICE, true),
            "delayed in pages of {size}"
        );
    }
    running
        .stop(Duration::from_secs(10))
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_matching_nothing_ends_examining_a_bounded_number_per_call() -> anyhow::Result<()>
{
    let prefix = unique_prefix();
    let (mut c, running) = start(&prefix, &[("NCY_CRON_INSTALL_DEFAULTS", "false")]).await?;
    let total = 2 * FILTERED_SCAN_BUDGET + FILTERED_SCAN_BUDGET / 2;
    let mut left = total;
    while left > 0 {
        let n = left.min(1_000);
        enqueue_all(&mut c, (0..n).map(|_| job("noop", ALICE, 0, 0)).collect()).await?;
        left -= n;
    }

    for (ty, owner) in [("", NOBODY), ("sleep", "")] {
        let seen = list_filtered(&mut c, pb::JobState::Waiting, ty, owner, 50).await?;
        assert!(seen.ids.is_empty(), "{ty}/{owner}: {:?}", seen.ids);
        assert_eq!(seen.calls, 3, "{ty}/{owner}: {:?}", seen.examined);
        let budget = u32::try_from(FILTERED_SCAN_BUDGET)?;
        assert_eq!(seen.examined, [budget, budget, budget / 2], "{ty}/{owner}");
    }
    // The same filter matching all: full pages, all jobs.
    let all = list_filtered(&mut c, pb::JobState::Waiting, "noop", ALICE, 500).await?;
    assert_eq!(all.ids.iter().collect::<HashSet<_>>().len(), total);
    running
        .stop(Duration::from_secs(10))
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_filters_are_invalid_arguments_naming_the_field() -> anyhow::Result<()> {
    let prefix = unique_prefix();
    let (mut c, running) = start(&prefix, &[("NCY_CRON_INSTALL_DEFAULTS", "false")]).await?;
    for (ty, owner, field) in [
        ("mail", "", "job_type"),
        ("SEND-EMAIL", "", "job_type"),
        ("", "bob", "owner_user_id"),
        ("", "123e4567e89b12d3a456426614174000", "owner_user_id"),
        (
            "noop",
            "123e4567-e89b-12d3-a456-42661417400g",
            "owner_user_id",
        ),
    ] {
        for state in [pb::JobState::Waiting, pb::JobState::Completed] {
            let err = c
                .list_jobs(pb::ListJobsRequest {
                    queue: Q.into(),
                    state: state as i32,
                    job_type: ty.into(),
                    owner_user_id: owner.into(),
                    ..Default::default()
                })
                .await
                .expect_err(field);
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{ty}/{owner}");
            assert!(
                err.message().starts_with(&format!("{field}:")),
                "{ty}/{owner}: {}",
                err.message()
            );
        }
    }
    running
        .stop(Duration::from_secs(10))
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(())
}
