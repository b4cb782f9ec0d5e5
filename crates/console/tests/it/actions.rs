//! Operators' actions through the pages, checked through the scheduler's own API: cancel, pause
//! and resume, retry and delete of dead letters; and the same actions refused to a viewer.
use std::time::Duration;

use ncy_testkit::assert_eventually;

use crate::pages::{shows_escaped, urlencode};
use crate::support::{Backbone, Console, OPERATOR, Origin, VIEWER};

#[tokio::test]
async fn an_operator_cancels_a_waiting_job_and_a_viewer_cannot() -> anyhow::Result<()> {
    let backbone = Backbone::start().await?;
    let id = backbone.enqueue("email", "noop", "{}").await?;
    let console = Console::start(backbone.addr).await?;
    let path = format!("/jobs/{}/cancel", urlencode(&id));

    let mut viewer = console.signed_in(VIEWER).await?;
    let refused = viewer.post(&path, &[], Origin::Console).await?;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        refused.body.contains("only an operator may act"),
        "{}",
        refused.body
    );
    let job = backbone.job(&id).await?;
    assert_eq!(
        job.state(),
        ncy_proto::jobs::v1::JobState::Waiting,
        "unchanged"
    );

    let mut operator = console.signed_in(OPERATOR).await?;
    let page = operator.get(&format!("/jobs/{}", urlencode(&id))).await?;
    assert!(page.body.contains("Cancel job"), "operators see the button");
    assert!(
        page.body.contains("data-confirm="),
        "and are asked to confirm"
    );
    for from in [Origin::Evil, Origin::Absent] {
        assert_eq!(
            operator.post(&path, &[], from).await?.status,
            403,
            "{from:?}"
        );
    }
    assert_eq!(
        backbone.job(&id).await?.state(),
        ncy_proto::jobs::v1::JobState::Waiting
    );

    let done = operator.post(&path, &[], Origin::Console).await?;
    assert_eq!(done.status, 303, "{}", done.body);
    let back = done.location().unwrap_or_default().to_owned();
    assert_eq!(back, format!("/jobs/{}?done=cancelled", urlencode(&id)));
    assert_eq!(
        backbone.job(&id).await?.state(),
        ncy_proto::jobs::v1::JobState::Cancelled
    );
    let page = operator.get(&back).await?;
    assert!(page.body.contains("Job cancelled."), "{}", page.body);
    assert!(!page.body.contains("Cancel job"), "nothing left to cancel");
    assert!(
        !page.body.contains("data-sse="),
        "a terminal job is not watched"
    );

    // Cancelling again is a no-op; a job that does not exist is a 404 page.
    let missing = operator
        .post("/jobs/email:no-such-job/cancel", &[], Origin::Console)
        .await?;
    assert_eq!(missing.status, 404, "{}", missing.body);
    console.stop().await?;
    backbone.stop().await
}

#[tokio::test]
async fn pause_and_resume_through_the_queue_page() -> anyhow::Result<()> {
    let backbone = Backbone::start().await?;
    let console = Console::start(backbone.addr).await?;
    let mut viewer = console.signed_in(VIEWER).await?;
    let page = viewer.get("/queues/email").await?;
    assert!(
        !page.body.contains("Pause queue"),
        "no buttons for a viewer"
    );
    assert_eq!(
        viewer
            .post("/queues/email/pause", &[], Origin::Console)
            .await?
            .status,
        403
    );
    assert!(!backbone.stats("email").await?.paused);

    let mut operator = console.signed_in(OPERATOR).await?;
    assert!(
        operator
            .get("/queues/email")
            .await?
            .body
            .contains("Pause queue")
    );
    let paused = operator
        .post("/queues/email/pause", &[], Origin::Console)
        .await?;
    assert_eq!(paused.status, 303);
    assert_eq!(paused.location(), Some("/queues/email?done=paused"));
    assert!(backbone.stats("email").await?.paused);
    let page = operator.get("/queues/email?done=paused").await?;
    assert!(page.body.contains("Queue paused") && page.body.contains("Resume queue"));
    let overview = operator.get("/").await?;
    assert!(
        overview
            .body
            .contains("data-cell=\"email:paused\"><span class=\"badge paused\">paused</span>"),
        "{}",
        overview.body
    );

    let resumed = operator
        .post("/queues/email/resume", &[], Origin::Console)
        .await?;
    assert_eq!(resumed.location(), Some("/queues/email?done=resumed"));
    assert!(!backbone.stats("email").await?.paused);
    assert_eq!(
        operator
            .post("/queues/no-such-queue/pause", &[], Origin::Console)
            .await?
            .status,
        404
    );
    console.stop().await?;
    backbone.stop().await
}

#[tokio::test]
async fn a_dead_letter_is_retried_as_a_new_job() -> anyhow::Result<()> {
    let backbone = Backbone::start().await?.with_worker().await?;
    let request = ncy_proto::jobs::v1::EnqueueRequest {
        queue: "email".into(),
        job_type: "fail".into(),
        payload_json: r#"{"message":"boom <b>bold</b>"}"#.into(),
        attempts: 1,
        ..Default::default()
    };
    let failed = backbone
        .jobs
        .clone()
        .enqueue(request)
        .await?
        .into_inner()
        .job_id;
    assert_eventually("the job is dead", Duration::from_secs(30), || {
        let backbone = &backbone;
        let failed = failed.clone();
        async move {
            backbone
                .job(&failed)
                .await
                .is_ok_and(|j| j.state() == ncy_proto::jobs::v1::JobState::Dead)
        }
    })
    .await;
    let console = Console::start(backbone.addr).await?;

    let mut viewer = console.signed_in(VIEWER).await?;
    let page = viewer.get("/dead?queue=email").await?;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains(&failed),
        "the letter names its job: {}",
        page.body
    );
    assert!(
        shows_escaped(&page.body, "boom <b>bold</b>"),
        "{}",
        page.body
    );
    assert!(!page.body.contains(">Retry<"), "no buttons for a viewer");
    let letter = page
        .body
        .split("data-letter=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .ok_or_else(|| anyhow::anyhow!("no letter row"))?
        .to_owned();
    let retry = format!("/dead/{}/retry", urlencode(&letter));
    assert_eq!(
        viewer
            .post(&retry, &[("queue", "email")], Origin::Console)
            .await?
            .status,
        403
    );
    assert_eq!(backbone.stats("email").await?.dead_letters, 1);

    let mut operator = console.signed_in(OPERATOR).await?;
    let done = operator
        .post(&retry, &[("queue", "email")], Origin::Console)
        .await?;
    assert_eq!(done.status, 303, "{}", done.body);
    let back = done.location().unwrap_or_default().to_owned();
    assert!(
        back.starts_with("/dead?queue=email&done=retried&job="),
        "{back}"
    );
    let page = operator.get(&back).await?;
    let new_job = page
        .body
        .split("class=\"new-job\" href=\"/jobs/")
        .nth(1)
        .and_then(|rest| rest.split('>').nth(1))
        .and_then(|rest| rest.split('<').next())
        .ok_or_else(|| anyhow::anyhow!("no new job shown: {}", page.body))?
        .to_owned();
    assert_ne!(new_job, failed);
    let retried = backbone.job(&new_job).await?;
    assert_eq!(retried.job_type, "fail");
    assert!(
        !page.body.contains(&format!("data-letter=\"{letter}\"")),
        "the letter is gone"
    );
    assert_eq!(
        operator.post(&retry, &[], Origin::Console).await?.status,
        404,
        "retried already"
    );

    // The new job fails for good too (one attempt): its letter is deleted, not retried.
    let letter_of = |job: String| {
        let jobs = backbone.jobs.clone();
        async move {
            let list = jobs
                .clone()
                .list_dead_letters(ncy_proto::jobs::v1::ListDeadLettersRequest {
                    queue: "email".into(),
                    ..Default::default()
                })
                .await
                .ok()?
                .into_inner();
            list.dead_letters
                .into_iter()
                .find(|d| d.job_id == job)
                .map(|d| d.id)
        }
    };
    assert_eventually(
        "the retried job is a dead letter",
        Duration::from_secs(30),
        || {
            let letter = letter_of(new_job.clone());
            async move { letter.await.is_some() }
        },
    )
    .await;
    let second = letter_of(new_job.clone())
        .await
        .ok_or_else(|| anyhow::anyhow!("no letter"))?;
    let delete = format!("/dead/{}/delete", urlencode(&second));
    assert_eq!(
        viewer.post(&delete, &[], Origin::Console).await?.status,
        403
    );
    let deleted = operator
        .post(&delete, &[("queue", "email")], Origin::Console)
        .await?;
    assert_eq!(deleted.location(), Some("/dead?queue=email&done=deleted"));
    assert!(letter_of(new_job.clone()).await.is_none(), "deleted");
    let page = operator.get("/dead?queue=email&done=deleted").await?;
    assert!(page.body.contains("Dead letter deleted."));
    assert!(!page.body.contains(&format!("data-letter=\"{second}\"")));
    console.stop().await?;
    backbone.stop().await
}
