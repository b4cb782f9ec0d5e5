//! The overview's throughput charts against a real scheduler and worker: after jobs complete and
//! fail (and the worker has added its counts to QueueHistory), the page draws the charts as inline
//! SVG with a title, and prints the totals as text, for all queues and for the chosen queue.
use std::time::Duration;

use ncy_proto::jobs::v1::{self as pb, JobState};
use ncy_testkit::assert_eventually;

use crate::support::{Backbone, Console, Page, VIEWER};

/// The total a chart prints, e.g. `hour:completed`.
fn total(page: &Page, which: &str) -> Option<u64> {
    let marker = format!("data-total=\"{which}\">");
    let rest = &page.body[page.body.find(&marker)? + marker.len()..];
    rest[..rest.find('<')?].trim().parse().ok()
}

/// The email queue's completed and failed counts over the last hour, through gRPC.
pub async fn email_history(backbone: &Backbone) -> (u64, u64) {
    let answer = backbone
        .jobs
        .clone()
        .queue_history(pb::QueueHistoryRequest {
            queue: "email".into(),
            minutes: 60,
        })
        .await;
    answer.map_or((0, 0), |r| {
        r.into_inner()
            .queues
            .iter()
            .flat_map(|s| &s.points)
            .fold((0, 0), |(c, f), p| (c + p.completed, f + p.failed))
    })
}

#[tokio::test]
async fn the_overview_charts_jobs_completed_and_failed() -> anyhow::Result<()> {
    let backbone = Backbone::start_with(&[("NCY_JOBS_HISTORY_FLUSH_MS", "200")])
        .await?
        .with_worker()
        .await?;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push((
            backbone.enqueue("email", "noop", "{}").await?,
            JobState::Completed,
        ));
    }
    for _ in 0..2 {
        let id = backbone
            .enqueue_with(pb::EnqueueRequest {
                queue: "email".into(),
                job_type: "fail".into(),
                payload_json: r#"{"message":"boom"}"#.into(),
                attempts: 1,
                ..Default::default()
            })
            .await?;
        ids.push((id, JobState::Dead));
    }
    for (id, state) in &ids {
        backbone.reaches(id, *state).await;
    }
    assert_eventually(
        "QueueHistory counts 3 completed and 2 failed",
        Duration::from_secs(30),
        || async { email_history(&backbone).await == (3, 2) },
    )
    .await;

    // A console started now fetches the history at its first overview.
    let console = Console::start(backbone.addr).await?;
    let mut viewer = console.signed_in(VIEWER).await?;
    for path in ["/", "/?chart=email"] {
        let page = viewer.get(path).await?;
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.body.contains("<svg"), "{}", page.body);
        assert!(
            page.body.contains("completed, 2 failed attempts</title>"),
            "{}",
            page.body
        );
        for (which, want) in [
            ("hour:completed", 3),
            ("hour:failed", 2),
            ("day:completed", 3),
            ("day:failed", 2),
        ] {
            assert_eq!(total(&page, which), Some(want), "{path} {which}");
        }
        assert!(
            page.body.contains("<rect class=\"completed\""),
            "{}",
            page.body
        );
        assert!(
            page.body.contains("<rect class=\"failed\""),
            "{}",
            page.body
        );
    }
    let chosen = viewer.get("/?chart=email").await?;
    assert!(
        chosen.body.contains("Last hour, queue email"),
        "{}",
        chosen.body
    );
    let other = viewer.get("/?chart=report").await?;
    assert_eq!(total(&other, "hour:completed"), Some(0), "{}", other.body);
    console.stop().await?;
    backbone.stop().await
}
