//! `send-email` jobs that never passed the job-scheduler's validation, put on the queue with
//! `ncy-queue` the way any producer with Redis access could (or left there from before a rule
//! existed): the worker still sends our templates' links to its own `FRONTEND_URL` only, and
//! dead-letters, sending nothing, a job whose links point anywhere else.
use crate::support::engine;
use std::time::Duration;

use ncy_queue::{JobState, NewJob};
use ncy_testkit::{
    InProcess, SmtpServer, TestDatabase, assert_eventually, env_of, service_env, set_env,
    unique_prefix,
};
use ncy_types::jobs::{Backoff, QueueName};
use serde_json::json;

const Q: QueueName = QueueName::Email;
const T: Duration = Duration::from_secs(30);
const APP: &str = "https://app.ncy.test";
const EVIL: &str = "https://evil.example";

fn email_job(payload: &serde_json::Value) -> NewJob {
    NewJob {
        job_type: "send-email".into(),
        data: payload.to_string(),
        priority: 0,
        max_attempts: 1,
        backoff: Backoff::default(),
        delay_ms: 0,
        idempotency_key: String::new(),
        owner_user_id: String::new(),
        schedule_name: String::new(),
        trace: String::new(),
    }
}

/// The environment of a worker of the email queue sending to `smtp`, with `FRONTEND_URL` [`APP`].
fn worker_env(smtp: &SmtpServer, db: &TestDatabase) -> Vec<(String, String)> {
    let mut env = service_env(&unique_prefix(), Some(&db.url));
    let smtp_url = smtp.url();
    for (k, v) in [
        ("NCY_WORKER_QUEUES", "email"),
        ("NCY_SMTP_URL", smtp_url.as_str()),
        ("NCY_SMTP_FROM", "NCY Tests <noreply@ncy.test>"),
        ("FRONTEND_URL", APP),
    ] {
        set_env(&mut env, k, v);
    }
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_app_url_in_a_queued_payload_is_replaced_by_frontend_url() -> anyhow::Result<()> {
    let smtp = SmtpServer::start().await?;
    let db = TestDatabase::migrated().await?;
    let env = worker_env(&smtp, &db);
    let e = engine(&env)?;
    e.ensure_groups(Q).await?;
    // The welcome template links to appUrl; task-assigned does too when there is no taskUrl.
    let welcome = json!({"to": "ada@example.com", "subject": "Welcome", "template": "welcome",
        "cc": [], "data": {"name": "Ada", "email": "ada@example.com", "userId": "u1",
                           "appUrl": EVIL}});
    let task = json!({"to": "bob@example.com", "subject": "A task", "template": "task-assigned",
        "cc": [], "data": {"taskTitle": "Reset your password", "appUrl": EVIL}});
    let ids: Vec<String> = e
        .enqueue(Q, &[email_job(&welcome), email_job(&task)])
        .await?
        .into_iter()
        .map(|r| r.job_id)
        .collect();
    let work = {
        let app = worker::Application::build(worker::Settings::load(&env_of(&env))?).await?;
        InProcess::spawn(|stop| app.run_until_stopped(stop))
    };
    assert_eventually("both emails are sent", T, || async {
        for id in &ids {
            let state = e.get_job(id).await.ok().and_then(|j| j.state().ok());
            if state != Some(JobState::Completed) {
                return false;
            }
        }
        true
    })
    .await;
    let got = smtp.wait_for(2, T).await;
    assert_eq!(got.len(), 2);
    for m in &got {
        m.assert_links_point_at(APP);
        let body = format!("{:?} {:?}", m.html, m.text);
        assert!(!body.contains("evil.example"), "{body}");
    }
    work.stop(Duration::from_secs(15))
        .await
        .map_err(anyhow::Error::msg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_queued_job_linking_outside_frontend_url_is_dead_lettered_and_sends_nothing()
-> anyhow::Result<()> {
    let smtp = SmtpServer::start().await?;
    let db = TestDatabase::migrated().await?;
    let env = worker_env(&smtp, &db);
    let e = engine(&env)?;
    e.ensure_groups(Q).await?;
    // The scheduler would refuse the javascript: link; here nothing did.
    let cases = [
        (
            "task-assigned",
            "taskUrl",
            "javascript:alert(1)",
            "is a javascript: URL",
        ),
        (
            "password-reset",
            "resetUrl",
            "https://app.ncy.test.evil.io/reset",
            "points at https://app.ncy.test.evil.io",
        ),
        (
            "notification",
            "actionUrl",
            "/\\evil.example/login",
            "points at https://evil.example",
        ),
    ];
    let mut jobs = Vec::new();
    for (template, key, link, _) in cases {
        let payload = json!({"to": "ada@example.com", "subject": "Hello", "template": template,
            "cc": [], "data": {"taskTitle": "Fix it", "message": "Hi", key: link}});
        let mut job = email_job(&payload);
        job.max_attempts = 3;
        jobs.push(job);
    }
    let ids: Vec<String> = e
        .enqueue(Q, &jobs)
        .await?
        .into_iter()
        .map(|r| r.job_id)
        .collect();
    let work = {
        let app = worker::Application::build(worker::Settings::load(&env_of(&env))?).await?;
        InProcess::spawn(|stop| app.run_until_stopped(stop))
    };
    assert_eventually("every job is dead", T, || async {
        for id in &ids {
            let state = e.get_job(id).await.ok().and_then(|j| j.state().ok());
            if state != Some(JobState::Dead) {
                return false;
            }
        }
        true
    })
    .await;
    let letters = e.dead_letters(Q, None, 100).await?;
    for (id, (_, key, link, what)) in ids.iter().zip(cases) {
        let letter = letters
            .iter()
            .find(|l| &l.job_id == id)
            .ok_or_else(|| anyhow::anyhow!("no dead letter for {id}: {letters:?}"))?;
        assert!(letter.non_retryable, "{link}: {letter:?}");
        assert_eq!(letter.attempts_made, 1, "{link}: {letter:?}");
        assert!(
            letter
                .error
                .starts_with(&format!("data.{key} {what}, not at FRONTEND_URL {APP}")),
            "{link}: {}",
            letter.error
        );
    }
    assert!(smtp.messages()?.is_empty(), "nothing was sent");
    work.stop(Duration::from_secs(15))
        .await
        .map_err(anyhow::Error::msg)
}
