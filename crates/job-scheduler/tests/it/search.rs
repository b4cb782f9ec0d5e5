//! ListJobs' `payload_contains` through gRPC against the real Redis: paging with small pages finds
//! exactly the jobs whose payload holds the text (case-sensitive), in WAITING (streams) and DELAYED
//! (a sorted set), combined with the job type filter; one call stops after about 8 MiB of payloads
//! with a token to go on; a text over 256 bytes is refused naming the field.
use std::collections::BTreeSet;
use std::time::Duration;

use ncy_proto::jobs::v1 as pb;
use ncy_testkit::unique_prefix;

use crate::bulk::assert_invalid;
use crate::support::{Client, start};

const QUEUE: &str = "email";

fn noop(note: &str, delay_ms: i64) -> pb::EnqueueRequest {
    pb::EnqueueRequest {
        queue: QUEUE.into(),
        job_type: "noop".into(),
        payload_json: serde_json::json!({ "note": note }).to_string(),
        delay_ms,
        ..Default::default()
    }
}

fn failing(message: &str, delay_ms: i64) -> pb::EnqueueRequest {
    pb::EnqueueRequest {
        queue: QUEUE.into(),
        job_type: "fail".into(),
        payload_json: serde_json::json!({ "message": message }).to_string(),
        delay_ms,
        ..Default::default()
    }
}

async fn enqueue(c: &mut Client, jobs: Vec<pb::EnqueueRequest>) -> anyhow::Result<Vec<String>> {
    Ok(c.enqueue_bulk(pb::EnqueueBulkRequest { jobs })
        .await?
        .into_inner()
        .results
        .into_iter()
        .map(|r| r.job_id)
        .collect())
}

/// Every page of a search; the ids found (none twice) and each call's `examined`.
async fn search(
    c: &mut Client,
    state: pb::JobState,
    text: &str,
    job_type: &str,
    page_size: i32,
) -> anyhow::Result<(BTreeSet<String>, Vec<u32>)> {
    let mut found = BTreeSet::new();
    let mut examined = Vec::new();
    let mut token = String::new();
    for _ in 0..200 {
        let page = c
            .list_jobs(pb::ListJobsRequest {
                queue: QUEUE.into(),
                state: state as i32,
                page_size,
                page_token: token,
                job_type: job_type.into(),
                payload_contains: text.into(),
                ..Default::default()
            })
            .await?
            .into_inner();
        assert!(page.jobs.len() <= page_size as usize);
        for j in page.jobs {
            assert!(j.payload_json.contains(text), "{j:?}");
            assert!(found.insert(j.id.clone()), "{} seen twice", j.id);
        }
        examined.push(page.examined);
        token = page.next_page_token;
        if token.is_empty() {
            return Ok((found, examined));
        }
    }
    anyhow::bail!("the search did not end")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_search_finds_exactly_the_matching_jobs_across_pages() -> anyhow::Result<()> {
    let prefix = unique_prefix();
    let (mut c, running) = start(&prefix, &[]).await?;
    for (state, delay) in [
        (pb::JobState::Waiting, 0),
        (pb::JobState::Delayed, 3_600_000),
    ] {
        let mut jobs = Vec::new();
        for i in 0..30 {
            jobs.push(match i % 5 {
                0 => noop(&format!("a zebra, number {i}"), delay),
                1 => failing(&format!("zebra {i} failed"), delay),
                2 => noop(&format!("a Zebra {i}"), delay),
                _ => noop(&format!("a horse {i}"), delay),
            });
        }
        let ids = enqueue(&mut c, jobs).await?;
        let of = |rem: &[usize]| -> BTreeSet<String> {
            ids.iter()
                .enumerate()
                .filter(|(i, _)| rem.contains(&(i % 5)))
                .map(|(_, id)| id.clone())
                .collect()
        };
        let (found, _) = search(&mut c, state, "zebra", "", 2).await?;
        assert_eq!(found, of(&[0, 1]), "{state:?}");
        let (found, _) = search(&mut c, state, "zebra", "noop", 3).await?;
        assert_eq!(found, of(&[0]), "{state:?} with job_type");
        let (found, _) = search(&mut c, state, "Zebra", "", 50).await?;
        assert_eq!(found, of(&[2]), "case-sensitive");
        let (found, _) = search(&mut c, state, "\"note\":\"a horse", "noop", 4).await?;
        assert_eq!(found, of(&[3, 4]), "the JSON text as stored");
        let (found, examined) = search(&mut c, state, "giraffe", "", 10).await?;
        assert!(found.is_empty());
        assert_eq!(examined.iter().sum::<u32>(), 30, "{examined:?}");
    }

    // Up to 256 bytes; more is refused.
    let longest = "x".repeat(256);
    search(&mut c, pb::JobState::Waiting, &longest, "", 10).await?;
    assert_invalid(
        c.list_jobs(pb::ListJobsRequest {
            queue: QUEUE.into(),
            state: pb::JobState::Waiting as i32,
            payload_contains: "x".repeat(257),
            ..Default::default()
        })
        .await,
        "payload_contains",
    );
    running
        .stop(Duration::from_secs(10))
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_search_call_reads_a_bounded_amount_of_payload() -> anyhow::Result<()> {
    let prefix = unique_prefix();
    let (mut c, running) = start(&prefix, &[]).await?;
    // Twelve payloads of almost 1 MiB; the text is in the last two.
    let filler = "y".repeat(1_000_000);
    let mut ids = Vec::new();
    for i in 0..12 {
        let note = if i >= 10 {
            format!("needle {filler}")
        } else {
            filler.clone()
        };
        ids.extend(enqueue(&mut c, vec![noop(&note, 0)]).await?);
    }
    let (found, examined) = search(&mut c, pb::JobState::Waiting, "needle", "", 50).await?;
    assert_eq!(found, ids[10..].iter().cloned().collect());
    assert!(examined.len() >= 2, "{examined:?}");
    assert!(examined[0] < 12 && examined[0] >= 1, "{examined:?}");
    assert_eq!(examined.iter().sum::<u32>(), 12, "{examined:?}");
    running
        .stop(Duration::from_secs(10))
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(())
}
