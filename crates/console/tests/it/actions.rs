//! Operators' actions through the pages, checked through the scheduler's own API: cancel, retry,
//! promote and delete of a job, pause and resume of a queue, retry and delete of dead letters; and
//! the same actions refused to a viewer, who is shown no button for them.
use std::time::Duration;

use ncy_proto::jobs::v1::{self as pb, JobState};
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

/// A `fail` job with `attempts` and an hour between them: it stays FAILED after its first run.
fn failing(attempts: i32) -> pb::EnqueueRequest {
    pb::EnqueueRequest {
        queue: "email".into(),
        job_type: "fail".into(),
        payload_json: r#"{"message":"boom"}"#.into(),
        attempts,
        backoff: Some(pb::Backoff {
            r#type: pb::BackoffType::Fixed as i32,
            delay_ms: 3_600_000,
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn failed_and_dead_jobs_are_retried_from_their_page() -> anyhow::Result<()> {
    let backbone = Backbone::start().await?.with_worker().await?;
    let failed = backbone.enqueue_with(failing(3)).await?;
    let dead = backbone.enqueue_with(failing(1)).await?;
    backbone.reaches(&failed, JobState::Failed).await;
    backbone.reaches(&dead, JobState::Dead).await;
    // Paused, the queue keeps a retried job WAITING, where the test can see it.
    let pause = pb::PauseQueueRequest {
        queue: "email".into(),
    };
    backbone.jobs.clone().pause_queue(pause).await?;
    let console = Console::start(backbone.addr).await?;
    let page_of = |id: &str| format!("/jobs/{}", urlencode(id));
    let retry_of = |id: &str| format!("/jobs/{}/retry", urlencode(id));

    let mut viewer = console.signed_in(VIEWER).await?;
    let page = viewer.get(&page_of(&failed)).await?;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(!page.body.contains("Retry now") && !page.body.contains("Delete job"));
    for id in [&failed, &dead] {
        let refused = viewer.post(&retry_of(id), &[], Origin::Console).await?;
        assert_eq!(refused.status, 403, "{}", refused.body);
    }
    assert_eq!(backbone.job(&failed).await?.state(), JobState::Failed);
    assert_eq!(backbone.stats("email").await?.dead_letters, 1);

    let mut operator = console.signed_in(OPERATOR).await?;
    let page = operator.get(&page_of(&failed)).await?;
    assert!(
        page.body
            .contains(&format!("action=\"{}\"", retry_of(&failed)))
    );
    assert!(page.body.contains(">Retry now<") && page.body.contains(">Delete job<"));
    assert!(
        !page.body.contains(">Promote<"),
        "only a delayed job is promoted"
    );
    let done = operator
        .post(&retry_of(&failed), &[], Origin::Console)
        .await?;
    assert_eq!(done.status, 303, "{}", done.body);
    let back = format!("{}?done=retried", page_of(&failed));
    assert_eq!(
        done.location(),
        Some(back.as_str()),
        "the same job runs again"
    );
    assert_eq!(backbone.job(&failed).await?.state(), JobState::Waiting);
    let page = operator.get(&back).await?;
    assert!(
        page.body.contains("waiting to run again now"),
        "{}",
        page.body
    );

    // A dead job is retried as a new job from its dead letter: the page leads to that one.
    let done = operator
        .post(&retry_of(&dead), &[], Origin::Console)
        .await?;
    assert_eq!(done.status, 303, "{}", done.body);
    let waiting = backbone.waiting("email").await?;
    let new = waiting
        .iter()
        .find(|j| !j.retried_from_dead_letter_id.is_empty())
        .ok_or_else(|| anyhow::anyhow!("no job retried from a dead letter"))?;
    assert_ne!(new.id, dead);
    let back = format!("{}?done=retried", page_of(&new.id));
    assert_eq!(done.location(), Some(back.as_str()));
    assert_eq!(backbone.job(&dead).await?.state(), JobState::Dead, "stays");
    assert_eq!(backbone.stats("email").await?.dead_letters, 0);
    let page = operator.get(&back).await?;
    assert!(
        page.body.contains("made from the dead job"),
        "{}",
        page.body
    );

    // Its dead letter is gone: a second retry is not possible, and the page says why.
    let again = operator
        .post(&retry_of(&dead), &[], Origin::Console)
        .await?;
    assert_eq!(again.status, 409, "{}", again.body);
    assert!(again.body.contains("Not possible now"), "{}", again.body);
    console.stop().await?;
    backbone.stop().await
}

#[tokio::test]
async fn a_delayed_job_is_promoted_then_deleted() -> anyhow::Result<()> {
    let backbone = Backbone::start().await?;
    let id = backbone
        .enqueue_with(pb::EnqueueRequest {
            queue: "email".into(),
            job_type: "noop".into(),
            payload_json: "{}".into(),
            delay_ms: 3_600_000,
            ..Default::default()
        })
        .await?;
    let console = Console::start(backbone.addr).await?;
    let page = format!("/jobs/{}", urlencode(&id));
    let promote = format!("{page}/promote");
    let delete = format!("{page}/delete");

    let mut viewer = console.signed_in(VIEWER).await?;
    let shown = viewer.get(&page).await?;
    assert!(!shown.body.contains(">Promote<") && !shown.body.contains(">Delete job<"));
    let mut operator = console.signed_in(OPERATOR).await?;
    for path in [&promote, &delete] {
        assert_eq!(viewer.post(path, &[], Origin::Console).await?.status, 403);
        let cross_site = operator.post(path, &[], Origin::Evil).await?;
        assert_eq!(cross_site.status, 403, "{}", cross_site.body);
    }
    assert_eq!(backbone.job(&id).await?.state(), JobState::Delayed);

    let shown = operator.get(&page).await?;
    assert!(shown.body.contains(">Promote<"), "{}", shown.body);
    assert!(
        shown
            .body
            .contains(&format!("action=\"{delete}\" data-confirm=\"Delete job")),
        "deleting asks first: {}",
        shown.body
    );
    let done = operator.post(&promote, &[], Origin::Console).await?;
    assert_eq!(
        done.location(),
        Some(format!("{page}?done=promoted").as_str())
    );
    assert_eq!(backbone.job(&id).await?.state(), JobState::Waiting);
    let shown = operator.get(&format!("{page}?done=promoted")).await?;
    assert!(
        shown.body.contains("Promoted: the job is waiting"),
        "{}",
        shown.body
    );
    assert!(!shown.body.contains(">Promote<"), "waiting now");
    let again = operator.post(&promote, &[], Origin::Console).await?;
    assert_eq!(again.status, 409, "{}", again.body);
    assert!(
        again.body.contains("is waiting"),
        "the state is named: {}",
        again.body
    );

    let done = operator.post(&delete, &[], Origin::Console).await?;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.location(), Some("/queues/email?done=deleted"));
    let gone = backbone
        .job(&id)
        .await
        .err()
        .and_then(|e| e.downcast_ref::<tonic::Status>().map(tonic::Status::code));
    assert_eq!(gone, Some(tonic::Code::NotFound), "deleted");
    let queue = operator.get("/queues/email?done=deleted").await?;
    assert!(queue.body.contains("Job deleted."), "{}", queue.body);
    assert!(!queue.body.contains(&format!("data-job=\"{id}\"")));
    assert_eq!(
        operator.post(&delete, &[], Origin::Console).await?.status,
        404
    );
    console.stop().await?;
    backbone.stop().await
}

#[tokio::test]
async fn a_running_job_is_not_deleted() -> anyhow::Result<()> {
    let backbone = Backbone::start().await?.with_worker().await?;
    let id = backbone
        .enqueue("email", "sleep", r#"{"ms":600000}"#)
        .await?;
    backbone.reaches(&id, JobState::Active).await;
    let console = Console::start(backbone.addr).await?;
    let page = format!("/jobs/{}", urlencode(&id));
    let mut operator = console.signed_in(OPERATOR).await?;
    let shown = operator.get(&page).await?;
    assert!(shown.body.contains(">Cancel job<"), "{}", shown.body);
    assert!(
        !shown.body.contains(">Delete job<"),
        "no Delete while it runs"
    );

    let refused = operator
        .post(&format!("{page}/delete"), &[], Origin::Console)
        .await?;
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(
        refused.body.contains("Not possible now"),
        "{}",
        refused.body
    );
    assert_eq!(
        backbone.job(&id).await?.state(),
        JobState::Active,
        "still runs"
    );

    let cancel = operator
        .post(&format!("{page}/cancel"), &[], Origin::Console)
        .await?;
    assert_eq!(cancel.status, 303, "{}", cancel.body);
    backbone.reaches(&id, JobState::Cancelled).await;
    console.stop().await?;
    backbone.stop().await
}
