//! The queue page's payload search and the bulk actions, against a real scheduler (and worker):
//! a search finds jobs by a payload substring, says how many jobs it examined and continues past
//! one call's budget; "retry all matching" confirms with the right count and retries exactly the
//! matching dead letters (checked through gRPC) while a viewer's attempts are refused with
//! nothing changed; purge removes the rest; "clean older than" removes old completed jobs only
//! past the age given.
use std::collections::BTreeSet;
use std::time::Duration;

use ncy_proto::jobs::v1::{self as pb, JobState};
use ncy_testkit::assert_eventually;

use crate::support::{Backbone, Console, OPERATOR, Origin, Page, VIEWER};

const ALICE: &str = "0b7d3c2e-0000-4000-8000-00000000a11c";
const BOB: &str = "0b7d3c2e-0000-4000-8000-000000000b0b";

/// The count a confirmation page states.
fn count(page: &Page) -> Option<String> {
    let marker = "data-count=\"";
    let rest = &page.body[page.body.find(marker)? + marker.len()..];
    Some(rest[..rest.find('"')?].to_owned())
}

/// The target of the page's next link, unescaped.
fn next_link(body: &str) -> Option<String> {
    body.split("rel=\"next\" href=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .map(|l| l.replace("&amp;", "&").replace("&#38;", "&"))
}

fn jobs_listed(body: &str) -> BTreeSet<String> {
    body.split("data-job=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn the_payload_search_finds_jobs_and_continues_past_its_budget() -> anyhow::Result<()> {
    let backbone = Backbone::start().await?;
    let paid = backbone
        .enqueue("email", "noop", r#"{"order":"A-17","note":"<b>x</b>"}"#)
        .await?;
    for chunk in 0..2 {
        let jobs = (0..600)
            .map(|i| pb::EnqueueRequest {
                queue: "email".into(),
                job_type: "noop".into(),
                payload_json: format!(r#"{{"order":"B-{chunk}-{i}"}}"#),
                ..Default::default()
            })
            .collect();
        backbone
            .jobs
            .clone()
            .enqueue_bulk(pb::EnqueueBulkRequest { jobs })
            .await?;
    }
    let late = backbone
        .enqueue("email", "noop", r#"{"order":"A-17 again"}"#)
        .await?;
    let console = Console::start(backbone.addr).await?;
    let mut viewer = console.signed_in(VIEWER).await?;

    let first = viewer
        .get("/queues/email?state=waiting&payload=A-17")
        .await?;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(jobs_listed(&first.body), BTreeSet::from([paid.clone()]));
    assert!(first.body.contains("value=\"A-17\""), "{}", first.body);
    assert!(
        first.body.contains("data-examined=\"1000\""),
        "{}",
        first.body
    );
    assert!(first.body.contains("Examined 1000 jobs"), "{}", first.body);
    let next = next_link(&first.body).expect("a Continue link");
    assert!(
        first.body.contains(">Continue search</a>"),
        "{}",
        first.body
    );
    assert!(next.contains("payload=A-17"), "{next}");
    let second = viewer.get(&next).await?;
    assert_eq!(jobs_listed(&second.body), BTreeSet::from([late]));
    assert!(second.body.contains("Examined 202 jobs"), "{}", second.body);
    assert!(next_link(&second.body).is_none(), "{}", second.body);

    // What is searched for is shown back escaped and carried escaped in links.
    let odd = viewer
        .get("/queues/email?payload=%3Cb%3Ex%3C%2Fb%3E%26")
        .await?;
    assert_eq!(odd.status, 200, "{}", odd.body);
    assert!(!odd.body.contains("<b>x</b>"), "{}", odd.body);
    assert!(
        odd.body.contains("payload=%3Cb%3Ex%3C%2Fb%3E%26"),
        "{}",
        odd.body
    );
    console.stop().await?;
    backbone.stop().await
}

/// A `fail` job of `owner` that goes DEAD at its first failure.
fn doomed(owner: &str) -> pb::EnqueueRequest {
    pb::EnqueueRequest {
        queue: "email".into(),
        job_type: "fail".into(),
        payload_json: r#"{"message":"boom"}"#.into(),
        owner_user_id: owner.into(),
        attempts: 1,
        ..Default::default()
    }
}

/// The ids of the email queue's dead letters and the jobs they came from.
async fn letters(backbone: &Backbone) -> anyhow::Result<Vec<pb::DeadLetter>> {
    let list = backbone
        .jobs
        .clone()
        .list_dead_letters(pb::ListDeadLettersRequest {
            queue: "email".into(),
            page_size: 500,
            page_token: String::new(),
        })
        .await?
        .into_inner();
    Ok(list.dead_letters)
}

#[tokio::test]
async fn retry_all_matching_retries_exactly_the_matching_dead_letters() -> anyhow::Result<()> {
    let backbone = Backbone::start().await?.with_worker().await?;
    let mut ids = Vec::new();
    for owner in [ALICE, ALICE, ALICE, BOB, BOB] {
        ids.push(backbone.enqueue_with(doomed(owner)).await?);
    }
    for id in &ids {
        backbone.reaches(id, JobState::Dead).await;
    }
    assert_eventually("five dead letters", Duration::from_secs(30), || async {
        letters(&backbone).await.is_ok_and(|l| l.len() == 5)
    })
    .await;
    // Retried jobs stay WAITING, so what the retry made can be checked.
    backbone
        .jobs
        .clone()
        .pause_queue(pb::PauseQueueRequest {
            queue: "email".into(),
        })
        .await?;
    let before = letters(&backbone).await?;
    let alices: BTreeSet<String> = before
        .iter()
        .filter(|d| ids[..3].contains(&d.job_id))
        .map(|d| d.id.clone())
        .collect();
    assert_eq!(alices.len(), 3);
    let console = Console::start(backbone.addr).await?;
    let path = format!("/queues/email/bulk/retry-dead?type=fail&owner={ALICE}");

    // A viewer sees no bulk button and is refused both steps; nothing changes.
    let mut viewer = console.signed_in(VIEWER).await?;
    let tab = viewer
        .get(&format!("/queues/email?state=dead&owner={ALICE}"))
        .await?;
    assert!(!tab.body.contains("/bulk/"), "{}", tab.body);
    let dead = viewer.get("/dead?queue=email").await?;
    assert!(!dead.body.contains("/bulk/"), "{}", dead.body);
    assert_eq!(viewer.get(&path).await?.status, 403);
    let form = [("type", "fail"), ("owner", ALICE)];
    let forged = viewer
        .post("/queues/email/bulk/retry-dead", &form, Origin::Console)
        .await?;
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert_eq!(letters(&backbone).await?.len(), 5);

    let mut operator = console.signed_in(OPERATOR).await?;
    let tab = operator
        .get(&format!("/queues/email?state=dead&owner={ALICE}"))
        .await?;
    assert!(
        tab.body
            .contains("action=\"/queues/email/bulk/retry-dead\""),
        "{}",
        tab.body
    );
    let dead = operator.get("/dead?queue=email").await?;
    assert!(
        dead.body
            .contains("action=\"/queues/email/bulk/retry-dead\"")
            && dead
                .body
                .contains("formaction=\"/queues/email/bulk/purge-dead\""),
        "{}",
        dead.body
    );
    let confirm = operator.get(&path).await?;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    assert_eq!(count(&confirm).as_deref(), Some("3"), "{}", confirm.body);
    assert!(
        confirm.body.contains("Retry 3 dead letters</button>"),
        "{}",
        confirm.body
    );
    // A cross-site POST is refused like every action.
    let evil = operator
        .post("/queues/email/bulk/retry-dead", &form, Origin::Evil)
        .await?;
    assert_eq!(evil.status, 403);
    assert_eq!(letters(&backbone).await?.len(), 5);

    let done = operator
        .post("/queues/email/bulk/retry-dead", &form, Origin::Console)
        .await?;
    assert_eq!(done.status, 303, "{}", done.body);
    let back = done.location().unwrap_or_default().to_owned();
    assert_eq!(back, "/dead?queue=email&done=retried-all&n=3");
    let page = operator.get(&back).await?;
    assert!(
        page.body.contains("Retried 3 dead letters."),
        "{}",
        page.body
    );

    let after = letters(&backbone).await?;
    let left: BTreeSet<&str> = after.iter().map(|d| d.job_id.as_str()).collect();
    assert_eq!(left, BTreeSet::from([ids[3].as_str(), ids[4].as_str()]));
    let retried_from: BTreeSet<String> = backbone
        .waiting("email")
        .await?
        .into_iter()
        .map(|j| j.retried_from_dead_letter_id)
        .collect();
    assert_eq!(retried_from, alices);

    // Purge takes the rest (no filter: any type, any owner).
    let confirm = operator.get("/queues/email/bulk/purge-dead").await?;
    assert_eq!(count(&confirm).as_deref(), Some("2"), "{}", confirm.body);
    let done = operator
        .post("/queues/email/bulk/purge-dead", &[], Origin::Console)
        .await?;
    assert_eq!(
        done.location(),
        Some("/dead?queue=email&done=purged-all&n=2")
    );
    assert!(letters(&backbone).await?.is_empty());
    console.stop().await?;
    backbone.stop().await
}

#[tokio::test]
async fn clean_older_than_removes_old_completed_jobs() -> anyhow::Result<()> {
    let backbone = Backbone::start().await?.with_worker().await?;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(backbone.enqueue("email", "noop", "{}").await?);
    }
    for id in &ids {
        backbone.reaches(id, JobState::Completed).await;
    }
    let console = Console::start(backbone.addr).await?;
    let mut operator = console.signed_in(OPERATOR).await?;
    let tab = operator.get("/queues/email?state=completed").await?;
    assert!(
        tab.body.contains("action=\"/queues/email/bulk/clean\""),
        "{}",
        tab.body
    );

    // Nothing finished a day ago.
    let none = operator
        .get("/queues/email/bulk/clean?state=completed&older=1&unit=days")
        .await?;
    assert_eq!(none.status, 200, "{}", none.body);
    assert_eq!(count(&none).as_deref(), Some("0"), "{}", none.body);
    assert!(none.body.contains("Nothing matches"), "{}", none.body);

    let bad = operator
        .get("/queues/email/bulk/clean?state=waiting&older=1&unit=days")
        .await?;
    assert_eq!(bad.status, 400, "{}", bad.body);

    let confirm = operator
        .get("/queues/email/bulk/clean?state=completed&older=0&unit=minutes")
        .await?;
    assert_eq!(count(&confirm).as_deref(), Some("3"), "{}", confirm.body);
    let form = [("state", "completed"), ("older", "0"), ("unit", "minutes")];
    let mut viewer = console.signed_in(VIEWER).await?;
    let forged = viewer
        .post("/queues/email/bulk/clean", &form, Origin::Console)
        .await?;
    assert_eq!(forged.status, 403);
    assert!(
        backbone.job(&ids[0]).await.is_ok(),
        "a viewer cleaned nothing"
    );

    let done = operator
        .post("/queues/email/bulk/clean", &form, Origin::Console)
        .await?;
    assert_eq!(
        done.location(),
        Some("/queues/email?state=completed&done=cleaned&n=3")
    );
    for id in &ids {
        let gone = backbone.job(id).await.err().map(|e| e.to_string());
        assert!(
            gone.as_deref()
                .is_some_and(|e| e.contains("NotFound") || e.contains("not found")),
            "{id}: {gone:?}"
        );
    }
    let page = operator
        .get("/queues/email?state=completed&done=cleaned&n=3")
        .await?;
    assert!(page.body.contains("Cleaned 3 jobs."), "{}", page.body);
    console.stop().await?;
    backbone.stop().await
}
