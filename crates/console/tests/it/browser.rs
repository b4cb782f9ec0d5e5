//! The console in a real headless Chromium, used as an operator and a viewer would, against a
//! job-scheduler and a worker running in this process.
//!
//! The operator signs in through the form (the session cookie is HttpOnly and SameSite=Strict);
//! the overview's counts change while jobs are enqueued and run, without a reload (SSE); from the
//! overview they open the running job's page through the queue page and watch its progress bar
//! move; they retry a dead letter with its button, confirm the dialog, and see the new job. A form
//! on another loopback port (same site, so the browser sends the session cookie along) that posts
//! to the console is refused. Signed out, then in as a viewer: no action buttons on the job and
//! dead-letter pages, a POST forged from the page's JavaScript is refused (403) and changes
//! nothing, and after signing out every page leads to the sign-in form. Once the finished jobs are
//! in the scheduler's history, a console started then (the same session secret, so the same
//! cookie) draws them in the overview's charts.
//!
//! With `NCY_CONSOLE_SCREENSHOTS=<dir>` the test writes PNGs of the overview, a queue page, a job
//! page and the dead letters page there (1280×800): the docs' screenshots. Without Chromium the
//! test is skipped with a note, or fails when `CI` is set (see `ncy_testkit::chromium`).
use std::{collections::HashMap, net::SocketAddr, path::PathBuf};

use ncy_proto::jobs::v1::{self as pb, JobState};
use ncy_testkit::chromium::{self, Chromium, Page};
use serde_json::json;

use crate::pages::urlencode;
use crate::support::{Backbone, Console, OPERATOR, VIEWER};

/// Where the screenshots go (`NCY_CONSOLE_SCREENSHOTS`); none are taken without it.
struct Screenshots(Option<PathBuf>);

impl Screenshots {
    fn from_env() -> anyhow::Result<Self> {
        let dir = std::env::var_os("NCY_CONSOLE_SCREENSHOTS").map(PathBuf::from);
        if let Some(dir) = &dir {
            std::fs::create_dir_all(dir)?;
        }
        Ok(Self(dir))
    }

    async fn take(&self, page: &mut Page, name: &str) {
        if let Some(dir) = &self.0 {
            page.save_screenshot(&dir.join(format!("{name}.png"))).await;
        }
    }
}

/// A JavaScript string literal of `text`.
fn js(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

/// The page's path and query.
async fn path(page: &mut Page) -> String {
    let at = page.evaluate("location.pathname + location.search").await;
    at.as_str().unwrap_or_default().to_owned()
}

/// The HTTP status the current document was served with.
async fn status(page: &mut Page) -> u64 {
    let status = page
        .evaluate("performance.getEntriesByType('navigation')[0].responseStatus")
        .await;
    status.as_u64().unwrap_or_default()
}

/// Waits until the overview cell `queue:state` shows `n`.
async fn wait_cell(page: &mut Page, cell: &str, n: u64) {
    let sel = js(&format!("[data-cell=\"{cell}\"]"));
    page.wait_for(
        &format!("the overview to show {n} in {cell}"),
        &format!("document.querySelector({sel})?.textContent.trim() === '{n}'"),
    )
    .await;
}

/// Whether the document is still the one marked by [`mark_document`] (it was not reloaded).
async fn same_document(page: &mut Page) -> bool {
    page.evaluate("window.__ncyNotReloaded === true").await == json!(true)
}

async fn mark_document(page: &mut Page) {
    page.evaluate("window.__ncyNotReloaded = true").await;
}

/// How many state-changing forms the page's content offers (the Log out form is in the header).
async fn action_forms(page: &mut Page) -> u64 {
    let n = page
        .evaluate("document.querySelectorAll('main form[method=post]').length")
        .await;
    n.as_u64().unwrap_or_default()
}

/// Signs in through the form from wherever the browser is; ends on the overview.
async fn sign_in(page: &mut Page, base: &str, (name, password): (&str, &str)) {
    page.goto(&format!("{base}/")).await;
    assert_eq!(
        path(page).await,
        "/login",
        "signed out, / leads to the form"
    );
    page.type_into("form.login input[name=name]", name).await;
    page.type_into("form.login input[name=password]", password)
        .await;
    page.click_and_wait_load("form.login button[type=submit]")
        .await;
    assert_eq!(path(page).await, "/", "signed in as {name}");
    let who = page.text("header .who").await.unwrap_or_default();
    assert!(who.starts_with(name), "the header names {name}: {who}");
}

/// Clicks Log out; ends on the sign-in form with no session cookie left.
async fn sign_out(page: &mut Page) {
    page.click_and_wait_load("form.logout button").await;
    assert_eq!(path(page).await, "/login");
    assert!(
        session_cookie(page).await.is_none(),
        "the cookie is cleared"
    );
}

async fn session_cookie(page: &mut Page) -> Option<chromium::Cookie> {
    let cookies = page.cookies().await;
    cookies.into_iter().find(|c| c.name == "ncy_console")
}

/// Enqueues on `email` with `attempts` (0: the default) and `delay_ms`; the job's id.
async fn enqueue(
    backbone: &Backbone,
    job_type: &str,
    payload: &str,
    attempts: i32,
    delay_ms: i64,
) -> anyhow::Result<String> {
    let request = pb::EnqueueRequest {
        queue: "email".into(),
        job_type: job_type.into(),
        payload_json: payload.into(),
        attempts,
        delay_ms,
        ..Default::default()
    };
    let reply = backbone.jobs.clone().enqueue(request).await?;
    Ok(reply.into_inner().job_id)
}

/// The ids of `email`'s dead letters.
async fn dead_letters(backbone: &Backbone) -> anyhow::Result<Vec<String>> {
    let request = pb::ListDeadLettersRequest {
        queue: "email".into(),
        ..Default::default()
    };
    let reply = backbone.jobs.clone().list_dead_letters(request).await?;
    Ok(reply
        .into_inner()
        .dead_letters
        .into_iter()
        .map(|d| d.id)
        .collect())
}

/// Serves, on another port of 127.0.0.1, a page whose form posts to `http://{console}{to}` (its
/// query's `to`): another origin of the same site, so the browser sends the session cookie.
async fn serve_foreign_page(console: SocketAddr) -> anyhow::Result<SocketAddr> {
    use axum::{extract::Query, response::Html, routing::get};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let page = move |Query(q): Query<HashMap<String, String>>| async move {
        let to = q.get("to").cloned().unwrap_or_default();
        Html(format!(
            "<!doctype html><title>Win a prize</title>\
             <form method=\"post\" action=\"http://{console}{to}\">\
             <input type=\"hidden\" name=\"queue\" value=\"email\">\
             <button type=\"submit\">Claim your prize</button></form>"
        ))
    };
    let app = axum::Router::new().route("/", get(page));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

/// Submits the foreign page's form aimed at `to`; it must land on the console's refusal.
async fn foreign_post_is_refused(page: &mut Page, foreign: SocketAddr, to: &str) {
    page.goto(&format!("http://{foreign}/?to={}", urlencode(to)))
        .await;
    page.click_and_wait_load("form button").await;
    assert_eq!(path(page).await, to, "the form was sent to the console");
    assert_eq!(status(page).await, 403, "a cross-origin POST to {to}");
    assert_eq!(page.text("h1").await.as_deref(), Some("Request refused"));
}

#[tokio::test]
async fn an_operator_and_a_viewer_use_the_console_in_a_browser() -> anyhow::Result<()> {
    let Some(binary) = chromium::binary_or_skip("browser") else {
        return Ok(());
    };
    let shots = Screenshots::from_env()?;
    let backbone = Backbone::start_with(&[("NCY_JOBS_HISTORY_FLUSH_MS", "200")]).await?;
    let console = Console::start(backbone.addr).await?;
    let base = format!("http://{}", console.addr);
    let foreign = serve_foreign_page(console.addr).await?;
    let browser = Chromium::launch(&binary).await;
    let mut page = browser.open_page("about:blank").await;
    page.set_viewport(1280, 800).await;
    page.answer_dialogs(true).await;

    // The operator signs in; the browser keeps the session where page scripts cannot read it.
    sign_in(&mut page, &base, OPERATOR).await;
    let cookie = session_cookie(&mut page).await.expect("a session cookie");
    assert!(cookie.http_only, "{cookie:?}");
    assert_eq!(cookie.same_site.as_deref(), Some("Strict"), "{cookie:?}");
    assert_eq!(
        page.evaluate("document.cookie.includes('ncy_console')")
            .await,
        json!(false)
    );

    // The overview follows the queue live: jobs enqueued (no worker yet), then run by a worker.
    wait_cell(&mut page, "email:waiting", 0).await;
    mark_document(&mut page).await;
    for _ in 0..3 {
        backbone.enqueue("email", "noop", "{}").await?;
    }
    wait_cell(&mut page, "email:waiting", 3).await;
    let backbone = backbone.with_worker().await?;
    wait_cell(&mut page, "email:completed", 3).await;
    wait_cell(&mut page, "email:waiting", 0).await;
    // A long job that reports progress every 3 s, two jobs that die at once, one due in an hour.
    let sleeping = enqueue(&backbone, "sleep", r#"{"ms":30000}"#, 0, 0).await?;
    let mut failed = Vec::new();
    for n in 1..=2 {
        let payload = format!(r#"{{"message":"mailbox {n} is full"}}"#);
        failed.push(enqueue(&backbone, "fail", &payload, 1, 0).await?);
    }
    let delayed = enqueue(&backbone, "noop", "{}", 0, 3_600_000).await?;
    wait_cell(&mut page, "email:active", 1).await;
    wait_cell(&mut page, "email:dead", 2).await;
    wait_cell(&mut page, "email:delayed", 1).await;
    assert!(same_document(&mut page).await, "updated without a reload");
    // The charts are drawn at page load from a history fetched at most once a minute: a console
    // started once the history has the finished jobs shows them at once.
    ncy_testkit::assert_eventually(
        "QueueHistory has the finished jobs",
        std::time::Duration::from_secs(30),
        || async { crate::history::email_history(&backbone).await == (3, 2) },
    )
    .await;
    let charted = Console::start(backbone.addr).await?;
    page.goto(&format!("http://{}/", charted.addr)).await;
    assert_eq!(
        page.text("[data-total=\"hour:completed\"]")
            .await
            .as_deref(),
        Some("3")
    );
    wait_cell(&mut page, "email:active", 1).await;
    shots.take(&mut page, "overview").await;
    charted.stop().await?;
    page.goto(&format!("{base}/")).await;

    // From the overview to the queue's jobs, then to the running job.
    page.click_and_wait_load("a[data-cell=\"email:completed\"]")
        .await;
    assert_eq!(path(&mut page).await, "/queues/email?state=completed");
    let rows = page
        .evaluate("document.querySelectorAll('tr[data-job]').length")
        .await;
    assert_eq!(rows, json!(3), "the three completed jobs are listed");
    shots.take(&mut page, "queue").await;
    page.click_and_wait_load("nav.tabs a[href$=\"state=active\"]")
        .await;
    page.click_and_wait_load(&format!("tr[data-job={}] a.id", js(&sleeping)))
        .await;
    assert_eq!(
        path(&mut page).await,
        format!("/jobs/{}", urlencode(&sleeping))
    );
    assert_eq!(
        page.text(".live [data-state]").await.as_deref(),
        Some("active")
    );
    assert!(
        action_forms(&mut page).await > 0,
        "an operator may cancel it"
    );
    let progress = "document.querySelector('.live progress').value";
    let before = page.evaluate(progress).await.as_f64().unwrap_or_default();
    mark_document(&mut page).await;
    page.wait_for(
        "the progress bar to move",
        &format!("window.__ncyNotReloaded && {progress} > {before}"),
    )
    .await;
    shots.take(&mut page, "job").await;

    // The job due in an hour can be cancelled by an operator (a viewer gets no button below).
    let delayed_page = format!("{base}/jobs/{}", urlencode(&delayed));
    page.goto(&delayed_page).await;
    assert!(
        page.text("form[action$=\"/cancel\"] button")
            .await
            .is_some(),
        "the operator sees Cancel on a delayed job"
    );

    // A dead letter retried with its button, after the confirmation dialog.
    page.click_and_wait_load("header nav a[href=\"/dead\"]")
        .await;
    let letter_of = |job: &str| {
        format!(
            "[...document.querySelectorAll('tr[data-letter]')]\
             .find((r) => r.querySelector('a.id').textContent.trim() === {})?.dataset.letter",
            js(job)
        )
    };
    let letter = page.evaluate(&letter_of(&failed[0])).await;
    let letter = letter.as_str().expect("the first job's letter").to_owned();
    let kept = page.evaluate(&letter_of(&failed[1])).await;
    let kept = kept.as_str().expect("the second job's letter").to_owned();
    let retry_form =
        |letter: &str| format!("tr[data-letter={}] form[action$=\"/retry\"]", js(letter));
    // The URL of the other letter's Retry form, which the viewer's script will post to.
    let kept_retry = page
        .evaluate(&format!(
            "document.querySelector({}).getAttribute('action')",
            js(&retry_form(&kept))
        ))
        .await;
    let kept_retry = kept_retry.as_str().expect("a Retry form").to_owned();
    shots.take(&mut page, "dead-letters").await;
    page.click_and_wait_load(&format!("{} button", retry_form(&letter)))
        .await;
    assert_eq!(page.dialogs(), ["Retry this dead letter as a new job?"]);
    assert!(path(&mut page).await.contains("done=retried"));
    let new_job = page.text("a.new-job").await.expect("the new job is shown");
    assert!(!failed.contains(&new_job), "a new job: {new_job}");
    let job = backbone.job(&new_job).await?;
    assert_eq!(
        (job.job_type.as_str(), job.queue.as_str()),
        ("fail", "email")
    );
    assert_eq!(job.retried_from_dead_letter_id, letter);
    let row = format!("document.querySelector('tr[data-letter={}]')", js(&letter));
    assert_eq!(page.evaluate(&row).await, json!(null), "the letter is gone");
    assert!(!dead_letters(&backbone).await?.contains(&letter));

    // A page of another origin (127.0.0.1, another port) posts a form to the console with the
    // operator's cookie: refused, and the queue is not paused.
    foreign_post_is_refused(&mut page, foreign, "/queues/email/pause").await;
    assert!(!backbone.stats("email").await?.paused);
    page.goto(&format!("{base}/")).await;
    sign_out(&mut page).await;

    // The viewer reads every page and finds nothing to act with.
    sign_in(&mut page, &base, VIEWER).await;
    assert_eq!(page.text("header .role").await.as_deref(), Some("viewer"));
    page.goto(&delayed_page).await;
    assert_eq!(
        page.text(".live [data-state]").await.as_deref(),
        Some("delayed")
    );
    assert_eq!(action_forms(&mut page).await, 0, "no buttons on a job");
    page.goto(&format!("{base}/dead")).await;
    let kept_row = format!(
        "document.querySelector('tr[data-letter={}]') !== null",
        js(&kept)
    );
    assert_eq!(page.evaluate(&kept_row).await, json!(true));
    assert_eq!(
        action_forms(&mut page).await,
        0,
        "no buttons on dead letters"
    );

    // A POST forged from the page's own script (same origin, the viewer's cookie) is refused.
    let cancel_path = format!("/jobs/{}/cancel", urlencode(&delayed));
    for to in [kept_retry.as_str(), cancel_path.as_str()] {
        let sent = page
            .evaluate(&format!(
                "fetch({}, {{method: 'POST', body: new URLSearchParams({{queue: 'email'}})}})\
                 .then(async (r) => [r.status, await r.text()])",
                js(to)
            ))
            .await;
        assert_eq!(sent[0], json!(403), "{to}: {sent}");
        let body = sent[1].as_str().unwrap_or_default();
        assert!(body.contains("only an operator may act"), "{to}: {body}");
    }
    assert_eq!(backbone.job(&delayed).await?.state(), JobState::Delayed);
    assert!(dead_letters(&backbone).await?.contains(&kept));

    // The same from another origin with the viewer's cookie: refused as cross-site.
    foreign_post_is_refused(&mut page, foreign, &kept_retry).await;
    assert!(dead_letters(&backbone).await?.contains(&kept));

    // Signed out, every page leads to the sign-in form.
    page.goto(&format!("{base}/")).await;
    sign_out(&mut page).await;
    for wanted in ["/", "/dead", "/queues/email"] {
        page.goto(&format!("{base}{wanted}")).await;
        let at = path(&mut page).await;
        assert!(at.starts_with("/login"), "{wanted} leads to {at}");
        assert!(page.text("form.login").await.is_some());
    }
    page.goto(&delayed_page).await;
    assert!(path(&mut page).await.starts_with("/login?next="));

    // The sleeping job need not run to its end for the worker to stop.
    let cancel = pb::CancelJobRequest {
        job_id: sleeping,
        reason: "test over".into(),
    };
    let _ = backbone.jobs.clone().cancel_job(cancel).await;
    drop(page);
    drop(browser);
    console.stop().await?;
    backbone.stop().await
}
