//! The email processors end to end: jobs enqueued through the job-scheduler's gRPC API, run by a
//! worker in this process, delivered to a real SMTP server (aiosmtpd, `ncy_testkit::SmtpServer`)
//! and read back from it; and each failure path: unknown template, render error, a link that does
//! not point at FRONTEND_URL, SMTP refusing (permanently, transiently) and SMTP down (with
//! postponing off; an outage within its grace is `processors_email_outage.rs`).

use std::time::Duration;

use crate::support::email::{APP, stack};
use crate::support::jobs::{Client, dead_letters_of, enqueue, get, job, retried, wait_state};
use crate::support::stop;
use ncy_proto::jobs::v1::{self as pb, JobState};
use ncy_testkit::SmtpServer;
use serde_json::json;

const T: Duration = Duration::from_secs(30);

fn email_job(payload: serde_json::Value, attempts: i32) -> pb::EnqueueRequest {
    retried(
        job("email", "send-email", &payload.to_string()),
        attempts,
        100,
    )
}

async fn dead_letter(c: &mut Client, job_id: &str) -> anyhow::Result<pb::DeadLetter> {
    dead_letters_of(c, "email")
        .await?
        .into_iter()
        .find(|d| d.job_id == job_id)
        .ok_or_else(|| anyhow::anyhow!("no dead letter for {job_id}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn send_email_arrives_as_text_and_html_with_the_rendered_data() -> anyhow::Result<()> {
    let smtp = SmtpServer::start().await?;
    let env = stack(&smtp.url(), &[]).await?;
    let (mut c, sched) = env.scheduler().await?;
    let (work, admin) = env.worker_with_admin().await?;

    let payload = json!({
        "to": "ada@example.com",
        "cc": ["bob@example.com"],
        "subject": "You have a new task",
        "template": "task-assigned",
        "data": {
            "name": "Ada",
            "assignedBy": "Grace",
            "taskTitle": "Ship <v2> & more",
            "projectName": "Apollo",
            "taskUrl": "https://app.ncy.test/tasks/42"
        }
    });
    let id = enqueue(&mut c, email_job(payload, 1)).await?;
    wait_state(&c, &id, JobState::Completed, T).await;
    let done = get(&mut c, &id).await?;
    let result: serde_json::Value = serde_json::from_str(&done.result_json)?;
    assert_eq!(
        result,
        json!({"to": "ada@example.com", "template": "task-assigned"})
    );

    let got = smtp.wait_for(1, T).await;
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(m.content_type, "multipart/alternative");
    assert_eq!(m.subject, "You have a new task");
    assert_eq!(m.mail_from, "noreply@ncy.test");
    assert!(m.from.contains("NCY Tests"), "{}", m.from);
    assert_eq!(m.rcpt_tos, ["ada@example.com", "bob@example.com"]);
    assert!(m.cc.contains("bob@example.com"), "{}", m.cc);
    let html = m.html.as_deref().expect("an HTML part");
    let text = m.text.as_deref().expect("a text part");
    // Rendered data, escaped in HTML and verbatim in text.
    assert!(html.contains("Hi Ada,"), "{html}");
    assert!(html.contains("Grace assigned you"), "{html}");
    assert!(html.contains("Ship &lt;v2&gt; &amp; more"), "{html}");
    assert!(!html.contains("Ship <v2>"), "{html}");
    assert!(
        html.contains(r#"href="https:&#x2f;&#x2f;app.ncy.test&#x2f;tasks&#x2f;42""#)
            || html.contains(r#"href="https://app.ncy.test/tasks/42""#),
        "{html}"
    );
    assert!(
        text.contains(r#"the task "Ship <v2> & more" in Apollo"#),
        "{text}"
    );
    assert!(
        text.contains("View the task: https://app.ncy.test/tasks/42"),
        "{text}"
    );

    ncy_testkit::assert_eventually("emails_sent_total on /metrics", T, || async move {
        let Ok((_, body)) = ncy_testkit::http_get(admin, "/metrics").await else {
            return false;
        };
        body.lines().any(|l| {
            l.starts_with("emails_sent_total{")
                && l.contains(r#"template="task-assigned""#)
                && l.contains(r#"status="sent""#)
        })
    })
    .await;
    stop(work).await?;
    stop(sched).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn welcome_email_renders_name_email_user_id_and_app_url() -> anyhow::Result<()> {
    let smtp = SmtpServer::start().await?;
    let env = stack(&smtp.url(), &[]).await?;
    let (mut c, sched) = env.scheduler().await?;
    let work = env.worker().await?;

    let user_id = uuid::Uuid::new_v4().to_string();
    let payload = json!({"userId": user_id, "email": "grace@example.com", "name": "Grace"});
    let id = enqueue(
        &mut c,
        job("email", "send-welcome-email", &payload.to_string()),
    )
    .await?;
    wait_state(&c, &id, JobState::Completed, T).await;
    let got = smtp.wait_for(1, T).await;
    let m = &got[0];
    assert_eq!(m.subject, "Welcome to NCY, Grace!");
    assert_eq!(m.rcpt_tos, ["grace@example.com"]);
    assert_eq!(m.content_type, "multipart/alternative");
    for part in [m.html.as_deref(), m.text.as_deref()] {
        let part = part.expect("both parts");
        assert!(part.contains("Welcome, Grace!"), "{part}");
        assert!(part.contains("grace@example.com"), "{part}");
        assert!(part.contains(&user_id), "{part}");
    }
    assert!(
        m.text.as_deref().is_some_and(|t| t.contains(APP)),
        "{:?}",
        m.text
    );
    stop(work).await?;
    stop(sched).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_app_url_in_the_payload_is_refused_and_the_links_point_at_frontend_url()
-> anyhow::Result<()> {
    let smtp = SmtpServer::start().await?;
    let env = stack(&smtp.url(), &[]).await?;
    let (mut c, sched) = env.scheduler().await?;
    let work = env.worker().await?;

    // A payload cannot point our templates' links elsewhere: refused at enqueue, naming the field.
    let user_id = uuid::Uuid::new_v4().to_string();
    let evil = json!({"to": "ada@example.com", "subject": "Welcome", "template": "welcome",
        "data": {"name": "Ada", "email": "ada@example.com", "userId": user_id,
                 "appUrl": "https://evil.example"}});
    let refused = c
        .enqueue(email_job(evil, 1))
        .await
        .expect_err("data.appUrl is refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(
        refused.message().starts_with("payload_json.data.appUrl: "),
        "{}",
        refused.message()
    );

    // Without it, every link of the email is the configured FRONTEND_URL.
    let payload = json!({"to": "ada@example.com", "subject": "Welcome", "template": "welcome",
        "data": {"name": "Ada", "email": "ada@example.com", "userId": user_id}});
    let id = enqueue(&mut c, email_job(payload, 1)).await?;
    wait_state(&c, &id, JobState::Completed, T).await;
    let got = smtp.wait_for(1, T).await;
    assert_eq!(got.len(), 1, "only the accepted job sent an email");
    got[0].assert_links_point_at(APP);
    stop(work).await?;
    stop(sched).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_link_of_an_email_must_point_at_frontend_url_or_nothing_is_sent() -> anyhow::Result<()>
{
    let smtp = SmtpServer::start().await?;
    let env = stack(&smtp.url(), &[]).await?;
    let (mut c, sched) = env.scheduler().await?;
    let work = env.worker().await?;

    // What is never a link to the app is refused at enqueue, naming the field.
    let js = json!({"to": "ada@example.com", "subject": "A task", "template": "task-assigned",
        "data": {"taskTitle": "Fix it", "taskUrl": "javascript:alert(document.cookie)"}});
    let refused = c
        .enqueue(email_job(js, 1))
        .await
        .expect_err("a javascript: link is refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(
        refused.message().starts_with("payload_json.data.taskUrl: "),
        "{}",
        refused.message()
    );

    // An http(s) link to another origin passes enqueue (the scheduler does not know FRONTEND_URL)
    // and is dead-lettered by the worker at its first attempt, whatever attempts remain.
    let elsewhere = [
        (
            "password-reset",
            "resetUrl",
            "https://app.ncy.test.evil.io/reset?t=1",
            "https://app.ncy.test.evil.io",
        ),
        (
            "task-assigned",
            "taskUrl",
            "http://app.ncy.test/tasks/1",
            "http://app.ncy.test",
        ),
        (
            "notification",
            "actionUrl",
            "//evil.example/login",
            "https://evil.example",
        ),
        (
            "report-ready",
            "downloadUrl",
            "https://app.ncy.test@evil.example/r.csv",
            "https://evil.example",
        ),
    ];
    for (template, key, link, origin) in elsewhere {
        let payload = json!({"to": "ada@example.com", "subject": "Hello", "template": template,
            "data": {"taskTitle": "Fix it", "message": "Hi", key: link}});
        let id = enqueue(&mut c, email_job(payload, 3)).await?;
        wait_state(&c, &id, JobState::Dead, T).await;
        let dead = get(&mut c, &id).await?;
        assert_eq!(dead.attempts_made, 1, "no retry: {link}");
        assert_eq!(
            dead.last_error,
            format!(
                "data.{key} points at {origin}, not at FRONTEND_URL {APP}: a link of our emails \
                 must be an absolute URL there or a relative path"
            )
        );
        assert!(dead_letter(&mut c, &id).await?.non_retryable, "{link}");
    }
    assert!(smtp.messages()?.is_empty(), "nothing was sent");

    // Links to FRONTEND_URL are sent; a relative path is resolved against it.
    let task = json!({"to": "ada@example.com", "subject": "A task", "template": "task-assigned",
        "data": {"taskTitle": "Fix it", "taskUrl": "/tasks/42"}});
    let reset = json!({"to": "bob@example.com", "subject": "Reset", "template": "password-reset",
        "data": {"resetUrl": "https://app.ncy.test:443/reset?token=t0k"}});
    for payload in [task, reset] {
        let id = enqueue(&mut c, email_job(payload, 1)).await?;
        wait_state(&c, &id, JobState::Completed, T).await;
    }
    let got = smtp.wait_for(2, T).await;
    assert_eq!(got.len(), 2);
    for m in &got {
        m.assert_links_point_at(APP);
    }
    let texts: Vec<&str> = got.iter().filter_map(|m| m.text.as_deref()).collect();
    for link in [
        "https://app.ncy.test/tasks/42",
        "https://app.ncy.test/reset?token=t0k",
    ] {
        assert!(
            texts.iter().any(|t| t.contains(link)),
            "{link} in {texts:?}"
        );
    }
    stop(work).await?;
    stop(sched).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_template_and_render_errors_dead_letter_after_one_attempt() -> anyhow::Result<()> {
    let smtp = SmtpServer::start().await?;
    let env = stack(&smtp.url(), &[]).await?;
    let (mut c, sched) = env.scheduler().await?;
    let (work, admin) = env.worker_with_admin().await?;

    let unknown = json!({"to": "a@example.com", "subject": "s", "template": "no-such-template"});
    let id = enqueue(&mut c, email_job(unknown, 3)).await?;
    wait_state(&c, &id, JobState::Dead, T).await;
    let dead = get(&mut c, &id).await?;
    assert_eq!(dead.attempts_made, 1, "no retry for an unknown template");
    assert_eq!(
        dead.last_error,
        r#"unknown email template "no-such-template""#
    );
    let letter = dead_letter(&mut c, &id).await?;
    assert!(letter.non_retryable);
    assert_eq!(letter.error, dead.last_error);

    // `welcome` needs `email`, `userId`, `appUrl` is added: a missing variable is a render error.
    let missing = json!({"to": "a@example.com", "subject": "s", "template": "welcome",
        "data": {"name": "Ada"}});
    let id = enqueue(&mut c, email_job(missing, 3)).await?;
    wait_state(&c, &id, JobState::Dead, T).await;
    let dead = get(&mut c, &id).await?;
    assert_eq!(dead.attempts_made, 1);
    assert!(
        dead.last_error
            .starts_with(r#"cannot render email template "welcome."#),
        "{}",
        dead.last_error
    );
    assert!(dead_letter(&mut c, &id).await?.non_retryable);
    assert!(smtp.messages()?.is_empty(), "nothing was sent");
    // A template name from a payload never becomes a metric series of its own.
    let (_, metrics) = ncy_testkit::http_get(admin, "/metrics").await?;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("emails_sent_total{") && l.contains(r#"template="unknown""#)),
        "{metrics}"
    );
    assert!(!metrics.contains("no-such-template"), "{metrics}");
    stop(work).await?;
    stop(sched).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn smtp_refusing_dead_letters_with_the_alert_and_transient_refusals_are_retried()
-> anyhow::Result<()> {
    let smtp = SmtpServer::start().await?;
    let mut env = stack(&smtp.url(), &[]).await?;
    let admin = env.alert_recipient().await?;
    let pg = env.db.pool().await?;
    let (mut c, sched) = env.scheduler().await?;
    let work = env.worker().await?;

    // 550: permanent, dead at once whatever attempts remain, and the operator is alerted.
    let refused = json!({"to": "reject@example.com", "subject": "s", "template": "notification",
        "data": {"message": "hello"}});
    let id = enqueue(&mut c, email_job(refused, 3)).await?;
    wait_state(&c, &id, JobState::Dead, T).await;
    let dead = get(&mut c, &id).await?;
    assert_eq!(dead.attempts_made, 1);
    let server = format!("127.0.0.1:{}", smtp.port);
    assert!(
        dead.last_error
            .starts_with(&format!("SMTP server {server} refused the email"))
            && dead.last_error.contains("550"),
        "{}",
        dead.last_error
    );
    assert!(dead_letter(&mut c, &id).await?.non_retryable);
    ncy_testkit::assert_eventually("dead-letter alert row", T, || {
        let (pg, id) = (pg.clone(), id.clone());
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM notifications
                 WHERE user_id = $1 AND type = 'job_dead_letter' AND metadata->>'jobId' = $2",
            )
            .bind(admin)
            .bind(id)
            .fetch_one(&pg)
            .await
            .is_ok_and(|n| n == 1)
        }
    })
    .await;

    // 451: transient, retried per attempts, then dead.
    let busy = json!({"to": "busy@example.com", "subject": "s", "template": "notification",
        "data": {"message": "hello"}});
    let id = enqueue(&mut c, email_job(busy, 2)).await?;
    wait_state(&c, &id, JobState::Dead, T).await;
    let dead = get(&mut c, &id).await?;
    assert_eq!(dead.attempts_made, 2, "a transient refusal is retried");
    assert!(
        dead.last_error.contains("refused the email for now") && dead.last_error.contains("451"),
        "{}",
        dead.last_error
    );
    assert!(!dead_letter(&mut c, &id).await?.non_retryable);
    assert!(smtp.messages()?.is_empty());
    stop(work).await?;
    stop(sched).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn smtp_down_is_retried_per_attempts_then_dead_lettered() -> anyhow::Result<()> {
    // A port nothing listens on.
    let port = ncy_testkit::free_port();
    let mut env = stack(&format!("smtp://127.0.0.1:{port}"), &[]).await?;
    // An unreachable server is an outage, which the worker waits out without using attempts for
    // NCY_JOBS_OUTAGE_GRACE_SECS (processors_email_outage.rs tests that). Here the grace is 0
    // (postponing off), so what is tested is the ordinary path every outage takes once its grace
    // is over: each attempt fails and counts, then the dead letter.
    env.set("NCY_JOBS_OUTAGE_GRACE_SECS", "0");
    let (mut c, sched) = env.scheduler().await?;
    let work = env.worker().await?;

    let payload = json!({"to": "a@example.com", "subject": "s", "template": "notification",
        "data": {"message": "hello"}});
    let id = enqueue(&mut c, email_job(payload, 2)).await?;
    wait_state(&c, &id, JobState::Dead, T).await;
    let dead = get(&mut c, &id).await?;
    assert_eq!(dead.attempts_made, 2, "every attempt ran");
    assert!(
        dead.last_error
            .starts_with(&format!("SMTP server 127.0.0.1:{port} unreachable")),
        "{}",
        dead.last_error
    );
    let letter = dead_letter(&mut c, &id).await?;
    assert!(!letter.non_retryable);
    assert_eq!(letter.attempts_made, 2);
    stop(work).await?;
    stop(sched).await
}
