//! The live pages over Server-Sent Events: the overview's table pushed to every listener by one
//! poller per console, stopped when nobody listens; a job page's state followed to its end; and
//! the streams ended by the drain.
use std::time::Duration;

use ncy_testkit::assert_eventually;

use crate::pages::{shows_escaped, urlencode};
use crate::support::{Backbone, Console, EventStream, VIEWER};

const WAIT: Duration = Duration::from_secs(15);

/// Reads events until the table shows `waiting` jobs in `email`; the last event read.
async fn until_waiting(
    stream: &mut EventStream,
    waiting: u64,
) -> anyhow::Result<crate::support::Event> {
    let marker =
        format!("data-cell=\"email:waiting\" href=\"/queues/email?state=waiting\">{waiting}<");
    loop {
        let event = stream.next(WAIT).await?;
        if event.data.contains(&marker) {
            return Ok(event);
        }
    }
}

#[tokio::test]
async fn the_overview_is_pushed_to_every_listener_by_one_poller() -> anyhow::Result<()> {
    let backbone = Backbone::start().await?;
    backbone.enqueue("email", "noop", "{}").await?;
    backbone.enqueue("email", "noop", "{}").await?;
    let console = Console::start_with(backbone.addr, &[("NCY_SHUTDOWN_GRACE_SECS", "120")]).await?;
    let browser = console.signed_in(VIEWER).await?;
    assert!(!console.hub.is_polling(), "nobody listens yet");

    let mut first = browser.events("/events/overview").await?;
    let shown = first.next(WAIT).await?;
    assert!(
        shown.data.contains("<table class=\"stats\">"),
        "{}",
        shown.data
    );
    until_waiting(&mut first, 2).await?;
    backbone.enqueue("email", "noop", "{}").await?;
    let seen = until_waiting(&mut first, 3).await?;
    let seen_id: u64 = seen.id.parse()?;
    assert!(seen_id >= 2, "a new poll per update: {seen_id}");
    assert!(console.hub.is_polling());

    // A second listener gets the poller's latest table at once (not a poll of its own: the
    // sequence goes on), then the same events as the first one.
    let mut second = browser.events("/events/overview").await?;
    let joined = second.next(WAIT).await?;
    let joined_id: u64 = joined.id.parse()?;
    assert!(
        joined_id >= seen_id,
        "joined at {joined_id}, after {seen_id}"
    );
    let next = second.next(WAIT).await?;
    let next_id: u64 = next.id.parse()?;
    assert!(next_id > joined_id);
    let later = loop {
        let event = first.next(WAIT).await?;
        if event.id.parse::<u64>()? >= next_id {
            break event;
        }
    };
    if later.id == next.id {
        assert_eq!(
            later.data, next.data,
            "one poll, one table for every listener"
        );
    }
    let (_, metrics) = ncy_testkit::http_get(console.admin, "/metrics").await?;
    assert!(
        metrics.contains("console_sse_clients{stream=\"overview\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("console_overview_polls_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "console_http_requests_total{route=\"/events/overview\",method=\"GET\",status=\"200\"}"
        ),
        "route templates label the requests: {metrics}"
    );

    // Everyone gone: the poller stops.
    drop(first);
    drop(second);
    assert_eventually("the poller stops", WAIT, || async {
        !console.hub.is_polling()
    })
    .await;

    // The drain ends an open stream (else it would hold the stop for the 120 s grace period).
    let open = browser.events("/events/overview").await?;
    console.stop().await?;
    assert!(
        open.ends_within(WAIT).await,
        "the stream ended with the drain"
    );
    backbone.stop().await
}

#[tokio::test]
async fn a_job_page_follows_its_job_to_the_end() -> anyhow::Result<()> {
    let backbone = Backbone::start().await?;
    let id = backbone.enqueue("email", "noop", "{}").await?;
    let console = Console::start(backbone.addr).await?;
    let browser = console.signed_in(VIEWER).await?;
    let mut stream = browser
        .events(&format!("/events/jobs/{}", urlencode(&id)))
        .await?;
    let snapshot = stream.next(WAIT).await?;
    assert!(
        snapshot.data.contains("data-state=\"waiting\""),
        "{}",
        snapshot.data
    );
    assert!(snapshot.data.contains("<progress max=\"100\" value=\"0\""));

    backbone
        .jobs
        .clone()
        .cancel_job(ncy_proto::jobs::v1::CancelJobRequest {
            job_id: id.clone(),
            reason: "<i>enough</i>".into(),
        })
        .await?;
    let changed = stream.next(WAIT).await?;
    assert!(
        changed.data.contains("data-state=\"cancelled\""),
        "{}",
        changed.data
    );
    assert!(
        !changed.data.contains("<i>") && shows_escaped(&changed.data, "<i>enough</i>"),
        "event text is escaped: {}",
        changed.data
    );
    let end = stream.next(WAIT).await?;
    assert_eq!(end.name, "end");
    assert!(stream.ends_within(WAIT).await);

    let unknown = browser.events("/events/jobs/email:no-such-job").await;
    assert!(unknown.is_err(), "no stream for a job that does not exist");
    console.stop().await?;
    backbone.stop().await
}

#[tokio::test]
async fn a_live_stream_ends_when_its_session_expires() -> anyhow::Result<()> {
    let backbone = Backbone::start().await?;
    let console =
        Console::start_with(backbone.addr, &[("NCY_CONSOLE_SESSION_IDLE_SECS", "5")]).await?;
    let browser = console.signed_in(VIEWER).await?;
    let mut stream = browser.events("/events/overview").await?;
    let expired = loop {
        let event = stream.next(WAIT).await?;
        if event.name == "expired" {
            break event;
        }
    };
    assert_eq!(expired.data, "session expired");
    assert!(stream.ends_within(WAIT).await, "and the stream ends");
    console.stop().await?;
    backbone.stop().await
}
