//! The queue page filtered by job type and owner: only matching jobs are listed, the filter rides
//! along in the "Next page" and tab links, and a bad filter is the scheduler's INVALID_ARGUMENT
//! shown as the 400 page, escaped.
use std::collections::BTreeSet;

use ncy_proto::jobs::v1 as pb;

use crate::support::{Backbone, Console, VIEWER};

const ALICE: &str = "0b6f3a4e-2c1d-4e8f-9a7b-1c2d3e4f5a6b";
const BOB: &str = "7d8e9f0a-1b2c-4d3e-8f4a-5b6c7d8e9f0a";

/// The job ids of a queue page's rows.
fn rows(body: &str) -> Vec<String> {
    body.split("<tr data-job=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

/// An attribute value with the HTML escapes of `&` undone.
fn unescape(attr: &str) -> String {
    attr.replace("&amp;", "&").replace("&#38;", "&")
}

/// The target of the page's "Next page" link, unescaped.
fn next_link(body: &str) -> Option<String> {
    body.split("rel=\"next\" href=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .map(unescape)
}

#[tokio::test]
async fn a_filtered_queue_page_lists_only_matching_jobs_and_keeps_the_filter_on_next_page()
-> anyhow::Result<()> {
    let backbone = Backbone::start().await?;
    // 130 waiting jobs: owners alternate, every fifth is another type; 52 are Alice's noops.
    let reqs: Vec<pb::EnqueueRequest> = (0..130)
        .map(|i| pb::EnqueueRequest {
            queue: "email".into(),
            job_type: if i % 5 == 0 { "sleep" } else { "noop" }.into(),
            payload_json: "{}".into(),
            owner_user_id: if i % 2 == 0 { ALICE } else { BOB }.into(),
            ..Default::default()
        })
        .collect();
    let ids: Vec<String> = backbone
        .jobs
        .clone()
        .enqueue_bulk(pb::EnqueueBulkRequest { jobs: reqs })
        .await?
        .into_inner()
        .results
        .into_iter()
        .map(|r| r.job_id)
        .collect();
    let want: BTreeSet<String> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 2 == 0 && i % 5 != 0)
        .map(|(_, id)| id.clone())
        .collect();
    assert_eq!(want.len(), 52);
    let console = Console::start(backbone.addr).await?;
    let mut browser = console.signed_in(VIEWER).await?;

    let first = browser
        .get(&format!(
            "/queues/email?state=waiting&type=noop&owner={}",
            ALICE.to_uppercase()
        ))
        .await?;
    assert_eq!(first.status, 200, "{}", first.body);
    let mut seen = rows(&first.body);
    assert_eq!(seen.len(), 50, "{}", first.body);
    assert!(first.body.contains("<option value=\"noop\" selected>"));
    assert!(
        first
            .body
            .contains(&format!("value=\"{}\"", ALICE.to_uppercase()))
    );
    let filter = format!("&type=noop&owner={}", ALICE.to_uppercase());
    assert!(
        unescape(&first.body).contains(&format!("href=\"/queues/email?state=delayed{filter}\"")),
        "tabs keep the filter: {}",
        first.body
    );
    let next = next_link(&first.body).ok_or_else(|| anyhow::anyhow!("no next link"))?;
    assert!(next.ends_with(&filter), "{next}");

    let second = browser.get(&next).await?;
    assert_eq!(second.status, 200, "{}", second.body);
    seen.extend(rows(&second.body));
    assert!(second.body.contains("<option value=\"noop\" selected>"));
    if let Some(more) = next_link(&second.body) {
        let third = browser.get(&more).await?;
        assert_eq!(third.status, 200);
        seen.extend(rows(&third.body));
        assert!(next_link(&third.body).is_none(), "{}", third.body);
    }
    let unique: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no job twice");
    assert_eq!(unique, want, "exactly Alice's noops");

    // Without the filter the first page holds others' jobs too.
    let all = browser.get("/queues/email?state=waiting").await?;
    assert!(rows(&all.body).iter().any(|id| !want.contains(id)));

    // A bad filter is the scheduler's refusal, naming the field, escaped.
    let bad_owner = browser.get("/queues/email?state=waiting&owner=bob").await?;
    assert_eq!(bad_owner.status, 400, "{}", bad_owner.body);
    assert!(
        bad_owner.body.contains("owner_user_id"),
        "{}",
        bad_owner.body
    );
    let bad_type = browser
        .get("/queues/email?state=waiting&type=%3Cb%3Email")
        .await?;
    assert_eq!(bad_type.status, 400, "{}", bad_type.body);
    assert!(bad_type.body.contains("job_type"), "{}", bad_type.body);
    assert!(
        !bad_type.body.contains("<b>mail"),
        "escaped: {}",
        bad_type.body
    );
    console.stop().await?;
    backbone.stop().await
}
