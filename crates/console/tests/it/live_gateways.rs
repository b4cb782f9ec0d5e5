//! The overview's gateway sections, in the page and in its Server-Sent Events, against real
//! gateways with two replicas each (the console talks to one): a row per instance, a browser on the
//! other realtime replica counted in that replica's row with its messages out per second, and a
//! gateway that is down (or goes down) named in its section while the queue counts keep coming.
use std::time::Duration;

use ncy_proto::cache::v1::StatsRequest as CacheStats;
use ncy_proto::realtime::v1::{SendToProjectRequest, StatsRequest as RealtimeStats};
use tokio::time::Instant;

use crate::support::{
    Backbone, Console, EventStream, VIEWER,
    gateways::{CacheGateway, RealtimeGateway, no_scheduler},
    instance_row,
};

const WAIT: Duration = Duration::from_secs(20);

/// The number shown for instance `id` in column `key` of an overview fragment.
fn instance_cell(html: &str, id: &str, key: &str) -> Option<String> {
    let marker = format!("data-instance-cell=\"{id}:{key}\">");
    let rest = &html[html.find(&marker)? + marker.len()..];
    Some(rest[..rest.find('<')?].trim().to_owned())
}

/// The number of waiting jobs the fragment shows for `queue`.
fn waiting(html: &str, queue: &str) -> Option<String> {
    let marker = format!("data-cell=\"{queue}:waiting\"");
    let rest = &html[html.find(&marker)? + marker.len()..];
    let rest = &rest[rest.find('>')? + 1..];
    Some(rest[..rest.find('<')?].trim().to_owned())
}

async fn realtime_id(gateway: &RealtimeGateway) -> anyhow::Result<String> {
    let stats = gateway
        .client
        .clone()
        .stats(RealtimeStats::default())
        .await?;
    Ok(stats.into_inner().instance_id)
}

async fn cache_id(gateway: &CacheGateway) -> anyhow::Result<String> {
    let stats = gateway.client.clone().stats(CacheStats::default()).await?;
    Ok(stats.into_inner().instance_id)
}

/// Reads events until one satisfies `done` (within [`WAIT`] overall); that event's data.
async fn until(
    stream: &mut EventStream,
    what: &str,
    mut done: impl FnMut(&str) -> bool,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + WAIT;
    let mut last = String::new();
    while Instant::now() < deadline {
        let event = stream.next(WAIT).await?;
        if done(&event.data) {
            return Ok(event.data);
        }
        last = event.data;
    }
    anyhow::bail!("{what}: not shown within {WAIT:?}; last event: {last}")
}

#[tokio::test]
async fn the_overview_shows_every_gateway_instance_live() -> anyhow::Result<()> {
    let backbone = Backbone::start().await?;
    backbone.enqueue("email", "noop", "{}").await?;
    let cache_a = CacheGateway::start().await?;
    let cache_b = cache_a.replica().await?;
    let realtime_a = RealtimeGateway::start().await?;
    let realtime_b = realtime_a.replica().await?;
    let (rt_a, rt_b) = (
        realtime_id(&realtime_a).await?,
        realtime_id(&realtime_b).await?,
    );
    let caches = [cache_id(&cache_a).await?, cache_id(&cache_b).await?];
    let console = Console::start_with(
        backbone.addr,
        &[
            ("NCY_CONSOLE_CACHE_URL", &cache_a.url()),
            ("NCY_CONSOLE_REALTIME_URL", &realtime_a.url()),
        ],
    )
    .await?;
    let mut browser = console.signed_in(VIEWER).await?;

    // The page: a row per instance of each gateway (each reports when it starts), the queues too.
    let every_row = |html: &str| {
        caches
            .iter()
            .chain([&rt_a, &rt_b])
            .all(|id| instance_row(html, id).is_some())
    };
    let page = browser
        .get_until("/", WAIT, "every instance", |page| {
            page.status == 200 && every_row(&page.body)
        })
        .await?;
    assert_eq!(page.cell("email", "waiting").as_deref(), Some("1"));
    for id in &caches {
        let l1 = instance_cell(&page.body, id, "l1").unwrap_or_default();
        assert!(l1.ends_with(" %"), "{id}'s L1 hit ratio: {l1:?}");
    }
    assert!(
        instance_row(&page.body, &caches[0]).is_some_and(|r| r.contains(">answered<")),
        "the instance the console asked is marked: {}",
        page.body
    );
    assert!(
        instance_row(&page.body, &caches[1]).is_some_and(|r| !r.contains(">answered<")),
        "{}",
        page.body
    );
    assert_eq!(
        instance_cell(&page.body, &rt_b, "out_per_sec").as_deref(),
        Some("—"),
        "a rate needs two snapshots"
    );

    // Live: a browser on the replica the console does not talk to shows in that replica's row,
    // and messages sent to its room show as messages out per second.
    let mut stream = browser.events("/events/overview").await?;
    let first = stream.next(WAIT).await?;
    assert!(every_row(&first.data), "{}", first.data);
    let _ws = realtime_b.member_in_project().await?;
    until(&mut stream, "the replica's connection", |html| {
        instance_cell(html, &rt_b, "connections").as_deref() == Some("1")
            && instance_cell(html, &rt_a, "connections").as_deref() == Some("0")
            && instance_cell(html, &rt_a, "rooms").as_deref() == Some("0")
            && instance_cell(html, &rt_b, "rooms").is_some_and(|n| n != "0")
    })
    .await?;
    let mut sender = realtime_a.client.clone();
    let project = realtime_a.project.to_string();
    let deadline = Instant::now() + WAIT;
    loop {
        // One message per event read: whatever two snapshots the poller compares, some of
        // these were sent between them.
        sender
            .send_to_project(SendToProjectRequest {
                project_id: project.clone(),
                event: "console.test".into(),
                data_json: "{}".into(),
                idempotency_key: String::new(),
            })
            .await?;
        let event = stream.next(WAIT).await?;
        let rate = instance_cell(&event.data, &rt_b, "out_per_sec").unwrap_or_default();
        if rate.parse::<f64>().is_ok_and(|r| r > 0.0) {
            break;
        }
        assert!(Instant::now() < deadline, "no rate: {}", event.data);
    }
    assert!(console.hub.is_polling());
    drop(stream);

    console.stop().await?;
    realtime_b.stop().await?;
    realtime_a.stop().await?;
    cache_b.stop().await?;
    cache_a.stop().await?;
    backbone.stop().await
}

#[tokio::test]
async fn a_gateway_that_is_down_leaves_the_queue_counts_live() -> anyhow::Result<()> {
    let backbone = Backbone::start().await?;
    backbone.enqueue("email", "noop", "{}").await?;
    let realtime = RealtimeGateway::start().await?;
    // The test console's cache-gateway URL is one where nothing listens.
    let console = Console::start_with(
        backbone.addr,
        &[("NCY_CONSOLE_REALTIME_URL", &realtime.url())],
    )
    .await?;
    let mut browser = console.signed_in(VIEWER).await?;
    let page = browser.get("/").await?;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.cell("email", "waiting").as_deref(), Some("1"));
    assert!(
        page.body.contains("data-gateway-unavailable=\"cache\"")
            && page.body.contains("cache-gateway is unavailable"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("data-gateway=\"realtime\"")
            && !page.body.contains("data-gateway-unavailable=\"realtime\""),
        "{}",
        page.body
    );

    let mut stream = browser.events("/events/overview").await?;
    until(&mut stream, "the realtime instance", |html| {
        html.contains("data-instance-cell=\"")
            && html.contains("data-gateway-unavailable=\"cache\"")
    })
    .await?;

    // The realtime-gateway goes down too: its section says so, and the queues keep updating.
    realtime.stop().await?;
    until(&mut stream, "the realtime-gateway unavailable", |html| {
        html.contains("realtime-gateway is unavailable")
    })
    .await?;
    backbone.enqueue("email", "noop", "{}").await?;
    let shown = until(&mut stream, "two waiting jobs", |html| {
        waiting(html, "email").as_deref() == Some("2")
    })
    .await?;
    assert!(
        shown.contains("data-gateway-unavailable=\"cache\"")
            && shown.contains("data-gateway-unavailable=\"realtime\""),
        "{shown}"
    );
    assert!(
        !shown.contains("class=\"problem\" role=\"alert\""),
        "{shown}"
    );
    let metrics = reqwest::get(format!("http://{}/metrics", console.admin))
        .await?
        .text()
        .await?;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("console_upstream_errors_total")
                && l.contains("service=\"realtime-gateway\"")),
        "{metrics}"
    );
    drop(stream);
    console.stop().await?;
    backbone.stop().await
}

#[tokio::test]
async fn the_gateways_are_shown_while_the_scheduler_is_down() -> anyhow::Result<()> {
    let cache = CacheGateway::start().await?;
    let console =
        Console::start_with(no_scheduler(), &[("NCY_CONSOLE_CACHE_URL", &cache.url())]).await?;
    let browser = console.signed_in(VIEWER).await?;
    let mut stream = browser.events("/events/overview").await?;
    let shown = until(&mut stream, "the scheduler's problem", |html| {
        html.contains("job-scheduler is unavailable")
    })
    .await?;
    assert!(
        shown.contains("data-gateway=\"cache\"") && shown.contains("data-instance-row=\""),
        "{shown}"
    );
    drop(stream);
    console.stop().await?;
    cache.stop().await
}
