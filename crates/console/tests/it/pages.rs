//! The read pages against a real scheduler: the overview's counts, a queue's jobs page by page,
//! a job with its payload shown as text, the search, and the pages for what does not exist or
//! cannot be reached.
use crate::support::{Backbone, Console, VIEWER};

#[tokio::test]
async fn overview_shows_the_queue_counts() -> anyhow::Result<()> {
    let backbone = Backbone::start().await?;
    for _ in 0..3 {
        backbone.enqueue("email", "noop", "{}").await?;
    }
    let delayed = ncy_proto::jobs::v1::EnqueueRequest {
        queue: "email".into(),
        job_type: "noop".into(),
        payload_json: "{}".into(),
        delay_ms: 3_600_000,
        ..Default::default()
    };
    backbone.jobs.clone().enqueue(delayed).await?;
    let console = Console::start(backbone.addr).await?;
    let mut browser = console.signed_in(VIEWER).await?;
    let page = browser.get("/").await?;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(
        page.cell("email", "waiting").as_deref(),
        Some("3"),
        "{}",
        page.body
    );
    assert_eq!(page.cell("email", "delayed").as_deref(), Some("1"));
    assert_eq!(page.cell("email", "active").as_deref(), Some("0"));
    assert_eq!(page.cell("email", "dead").as_deref(), Some("0"));
    assert_eq!(page.cell("email", "paused").as_deref(), Some("running"));
    assert!(page.body.contains("href=\"/queues/email?state=waiting\""));
    assert!(page.body.contains("data-sse=\"/events/overview\""));
    assert!(page.body.contains("/static/console.js"));
    console.stop().await?;
    backbone.stop().await
}

#[tokio::test]
async fn a_queue_lists_its_jobs_fifty_at_a_time() -> anyhow::Result<()> {
    let backbone = Backbone::start().await?;
    let mut ids = Vec::new();
    for i in 0..60 {
        ids.push(
            backbone
                .enqueue("email", "noop", &format!("{{\"n\":{i}}}"))
                .await?,
        );
    }
    let console = Console::start(backbone.addr).await?;
    let mut browser = console.signed_in(VIEWER).await?;

    let first = browser.get("/queues/email?state=waiting").await?;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body.matches("<tr data-job=").count(), 50);
    assert!(
        first.body.contains(&format!("data-job=\"{}\"", ids[0])),
        "run order: first job first"
    );
    assert!(first.body.contains("data-tab=\"waiting\">60<"), "tab count");
    let next = first
        .body
        .split("rel=\"next\" href=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .ok_or_else(|| anyhow::anyhow!("no next link in {}", first.body))?
        .replace("&amp;", "&");
    assert!(
        next.starts_with("/queues/email?state=waiting&page="),
        "{next}"
    );

    let second = browser.get(&next).await?;
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(second.body.matches("<tr data-job=").count(), 10);
    assert!(second.body.contains(&format!("data-job=\"{}\"", ids[59])));
    assert!(
        !second.body.contains("rel=\"next\""),
        "the last page has no next link"
    );

    let empty = browser.get("/queues/email?state=completed").await?;
    assert_eq!(empty.status, 200);
    assert!(empty.body.contains("No completed jobs"));
    assert_eq!(browser.get("/queues/email?state=bogus").await?.status, 400);
    let unknown = browser.get("/queues/no-such-queue").await?;
    assert_eq!(unknown.status, 404);
    assert!(unknown.body.contains("no queue named"), "{}", unknown.body);
    assert_eq!(
        browser
            .get("/queues/email?state=waiting&page=garbage")
            .await?
            .status,
        400
    );
    console.stop().await?;
    backbone.stop().await
}

#[tokio::test]
async fn the_job_search_finds_a_job_or_says_so() -> anyhow::Result<()> {
    let backbone = Backbone::start().await?;
    let id = backbone.enqueue("email", "noop", "{}").await?;
    let console = Console::start(backbone.addr).await?;
    let mut browser = console.signed_in(VIEWER).await?;
    let found = browser
        .get(&format!("/queues/email?job={}", urlencode(&id)))
        .await?;
    assert_eq!(found.status, 303);
    assert_eq!(
        found.location(),
        Some(format!("/jobs/{}", urlencode(&id)).as_str())
    );
    let missing = browser.get("/queues/email?job=no-such-job").await?;
    assert_eq!(missing.status, 200);
    assert!(
        missing.body.contains("No job with id “no-such-job”"),
        "{}",
        missing.body
    );
    console.stop().await?;
    backbone.stop().await
}

#[tokio::test]
async fn a_job_page_shows_everything_and_escapes_the_payload() -> anyhow::Result<()> {
    let backbone = Backbone::start().await?;
    let id = backbone
        .enqueue(
            "email",
            "noop",
            r#"{"note":"<script>alert('x')</script>","n":12345678901234567}"#,
        )
        .await?;
    let console = Console::start(backbone.addr).await?;
    let mut browser = console.signed_in(VIEWER).await?;
    let page = browser.get(&format!("/jobs/{}", urlencode(&id))).await?;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(id.contains('.'), "ids look like email.<hex>: {id}");
    assert!(
        !page.body.contains("<script>alert"),
        "raw markup from a payload"
    );
    assert!(shows_escaped(&page.body, "<script>alert("), "{}", page.body);
    assert!(
        page.body.contains("12345678901234567"),
        "64-bit integers kept exact"
    );
    for shown in [
        "noop",
        "email",
        "waiting",
        "0 of 3",
        "<progress max=\"100\" value=\"0\"",
    ] {
        assert!(page.body.contains(shown), "{shown} in {}", page.body);
    }
    assert!(
        page.body
            .contains(&format!("data-sse=\"/events/jobs/{}\"", urlencode(&id)))
    );
    assert!(
        !page.body.contains("Cancel job"),
        "no action buttons for a viewer"
    );

    let missing = browser.get("/jobs/email:does-not-exist").await?;
    assert_eq!(missing.status, 404, "{}", missing.body);
    assert!(missing.body.contains("no job with id"), "{}", missing.body);
    console.stop().await?;
    backbone.stop().await
}

#[tokio::test]
async fn a_scheduler_that_cannot_be_reached_is_a_503_page_naming_it() -> anyhow::Result<()> {
    let backbone = Backbone::start().await?;
    let addr = backbone.addr;
    backbone.stop().await?;
    let console = Console::start(addr).await?;
    let mut browser = console.signed_in(VIEWER).await?;
    for path in ["/", "/queues/email", "/jobs/email:1", "/dead"] {
        let page = browser.get(path).await?;
        assert_eq!(page.status, 503, "{path}: {}", page.body);
        assert!(
            page.body.contains("job-scheduler is unavailable"),
            "{}",
            page.body
        );
    }
    let (_, metrics) = ncy_testkit::http_get(console.admin, "/metrics").await?;
    assert!(
        metrics.contains(
            "console_upstream_errors_total{service=\"job-scheduler\",code=\"UNAVAILABLE\"}"
        ),
        "{metrics}"
    );
    console.stop().await
}

/// Whether `body` shows `text` with its markup escaped (as `&lt;` or `&#60;`).
pub fn shows_escaped(body: &str, text: &str) -> bool {
    let named = text.replace('<', "&lt;").replace('>', "&gt;");
    let numeric = text.replace('<', "&#60;").replace('>', "&#62;");
    body.contains(&named) || body.contains(&numeric)
}

/// `text` as a URL part, as the console writes its links.
pub fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
