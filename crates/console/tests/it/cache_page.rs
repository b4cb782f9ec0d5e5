//! The Cache page in front of a real cache-gateway: its Stats counters, a key looked up (the
//! value escaped and cut), an operator's tag invalidation taking effect (checked through gRPC)
//! while a viewer's is refused with nothing removed, and the page when the gateway is down.
use ncy_proto::cache::v1::{GetRequest, SetRequest, StatsRequest};

use crate::support::{
    Console, OPERATOR, Origin, Page, VIEWER,
    gateways::{CacheGateway, no_scheduler},
};

fn set(key: &str, value: &str, tags: &[&str]) -> SetRequest {
    SetRequest {
        key: key.to_owned(),
        api: None,
        value_json: value.to_owned(),
        ttl_seconds: Some(600),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
    }
}

fn get(key: &str) -> GetRequest {
    GetRequest {
        key: key.to_owned(),
        api: None,
    }
}

/// The hits the page shows for the layer named `layer`.
fn hits(page: &Page, layer: &str) -> Option<u64> {
    let row = &page.body[page.body.find(&format!("data-layer=\"{layer}\""))?..];
    let cell = &row[row.find("data-hits>")? + "data-hits>".len()..];
    cell[..cell.find('<')?].trim().parse().ok()
}

#[tokio::test]
async fn the_cache_page_shows_stats_and_a_key_and_only_an_operator_invalidates()
-> anyhow::Result<()> {
    let gateway = CacheGateway::start().await?;
    let mut grpc = gateway.client.clone();
    let console =
        Console::start_with(no_scheduler(), &[("NCY_CONSOLE_CACHE_URL", &gateway.url())]).await?;
    let key = format!("console:{}", uuid::Uuid::new_v4().simple());
    let tag = format!("console-tag-{}", uuid::Uuid::new_v4().simple());
    grpc.set(set(
        &key,
        r#"{"note":"<script>alert(1)</script>"}"#,
        &[&tag],
    ))
    .await?;
    assert!(grpc.get(get(&key)).await?.into_inner().found);

    let mut viewer = console.signed_in(VIEWER).await?;
    let page = viewer.get("/cache").await?;
    assert_eq!(page.status, 200, "{}", page.body);
    let stats = grpc.stats(StatsRequest::default()).await?.into_inner();
    let l1 = stats
        .layers
        .iter()
        .find(|l| l.layer == 1)
        .map(|l| l.hits)
        .unwrap_or_default();
    assert!(l1 >= 1, "the Get above was an L1 hit: {stats:?}");
    assert_eq!(hits(&page, "L1 (in-process)"), Some(l1), "{}", page.body);
    assert!(page.body.contains(&stats.instance_id), "{}", page.body);
    assert!(
        !page.body.contains("/cache/invalidate/"),
        "a viewer is shown no invalidation forms"
    );

    let path = format!("/cache?key={key}");
    let page = viewer.get(&path).await?;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body
            .contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("<script>alert"), "{}", page.body);
    assert!(
        page.body.contains("data-layer-answered>L1"),
        "{}",
        page.body
    );

    let big = format!("console:{}", uuid::Uuid::new_v4().simple());
    grpc.set(set(&big, &format!("\"{}\"", "x".repeat(6000)), &[]))
        .await?;
    let page = viewer.get(&format!("/cache?key={big}")).await?;
    assert!(page.body.contains("6002 bytes"), "{}", page.body);
    assert!(page.body.contains("Only the first 4 KB"), "{}", page.body);
    assert!(!page.body.contains(&"x".repeat(4100)), "the value is cut");

    let refused = viewer
        .post("/cache/invalidate/tag", &[("tag", &tag)], Origin::Console)
        .await?;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        grpc.get(get(&key)).await?.into_inner().found,
        "a viewer's invalidation removes nothing"
    );

    let mut operator = console.signed_in(OPERATOR).await?;
    let page = operator.get("/cache").await?;
    assert!(
        page.body.contains("data-confirm-field=\"pattern\""),
        "{}",
        page.body
    );
    let done = operator
        .post("/cache/invalidate/tag", &[("tag", &tag)], Origin::Console)
        .await?;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.location(), Some("/cache?done=tag"));
    assert!(
        !grpc.get(get(&key)).await?.into_inner().found,
        "the tagged key is gone"
    );
    assert!(
        grpc.get(get(&big)).await?.into_inner().found,
        "an untagged key stays"
    );
    let page = operator.get("/cache?done=tag").await?;
    assert!(page.body.contains("Tag invalidated"), "{}", page.body);

    let done = operator
        .post(
            "/cache/invalidate/pattern",
            &[("pattern", &big)],
            Origin::Console,
        )
        .await?;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.location(), Some("/cache?done=pattern&count=1"));
    assert!(!grpc.get(get(&big)).await?.into_inner().found);

    let empty = operator
        .post("/cache/invalidate/tag", &[("tag", " ")], Origin::Console)
        .await?;
    assert_eq!(empty.status, 400, "{}", empty.body);
    assert!(empty.body.contains("tag is required"), "{}", empty.body);
    console.stop().await?;
    gateway.stop().await
}

#[tokio::test]
async fn a_cache_gateway_that_is_down_is_a_503_page_naming_it() -> anyhow::Result<()> {
    let down = format!("http://{}", no_scheduler());
    let console = Console::start_with(no_scheduler(), &[("NCY_CONSOLE_CACHE_URL", &down)]).await?;
    let mut viewer = console.signed_in(VIEWER).await?;
    let page = viewer.get("/cache").await?;
    assert_eq!(page.status, 503, "{}", page.body);
    assert!(
        page.body.contains("cache-gateway is unavailable"),
        "{}",
        page.body
    );
    let metrics = reqwest::get(format!("http://{}/metrics", console.admin))
        .await?
        .text()
        .await?;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("console_upstream_errors_total")
                && l.contains("service=\"cache-gateway\"")),
        "{metrics}"
    );
    console.stop().await
}

#[tokio::test]
async fn the_cache_page_lists_every_replica_whichever_answers() -> anyhow::Result<()> {
    let a = CacheGateway::start().await?;
    let b = a.replica().await?;
    let id = |g: &CacheGateway| {
        let mut client = g.client.clone();
        async move {
            anyhow::Ok(
                client
                    .stats(StatsRequest::default())
                    .await?
                    .into_inner()
                    .instance_id,
            )
        }
    };
    let (a_id, b_id) = (id(&a).await?, id(&b).await?);
    assert_ne!(a_id, b_id);
    let console =
        Console::start_with(no_scheduler(), &[("NCY_CONSOLE_CACHE_URL", &a.url())]).await?;
    let mut viewer = console.signed_in(VIEWER).await?;

    // Each instance reports when it starts, so both are listed at once.
    let page = viewer.get("/cache").await?;
    assert_eq!(page.status, 200, "{}", page.body);
    let row_a = page
        .instance_row(&a_id)
        .unwrap_or_else(|| panic!("{a_id}: {}", page.body));
    let row_b = page
        .instance_row(&b_id)
        .unwrap_or_else(|| panic!("{b_id}: {}", page.body));
    assert!(row_a.contains(">answered<"), "{row_a}");
    assert!(row_a.contains(">now<"), "{row_a}");
    assert!(!row_b.contains(">answered<"), "{row_b}");
    assert!(row_b.contains(" s ago<"), "{row_b}");

    // A replica stopped gracefully leaves the list when its drain starts.
    b.stop().await?;
    let page = viewer.get("/cache").await?;
    assert!(page.instance_row(&a_id).is_some(), "{}", page.body);
    assert!(page.instance_row(&b_id).is_none(), "{}", page.body);
    console.stop().await?;
    a.stop().await
}
