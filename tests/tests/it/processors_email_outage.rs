//! Email jobs while the SMTP server is down, end to end: enqueued through the
//! job-scheduler's gRPC API with the DEFAULT attempts and backoff, run by a worker in this process
//! against a real SMTP server (aiosmtpd, `ncy_testkit::SmtpServer`) that is stopped and later
//! restarted on the same port. An outage within the grace (`NCY_JOBS_OUTAGE_GRACE_SECS`) postpones
//! the jobs without using their attempts, so every email is sent once the server is back; a server
//! that never comes back still ends in the dead-letter queue once the grace is over.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::support::email;
use crate::support::jobs::{
    StackEnv, dead_letters_of, enqueue, get, job, wait_postponed, wait_state,
};
use crate::support::metrics::postponed;
use crate::support::stop;
use ncy_proto::jobs::v1::{self as pb, JobState};
use ncy_testkit::SmtpServer;
use serde_json::json;

/// How long the SMTP server stays down: the "failing SMTP server for 30 s".
const OUTAGE: Duration = Duration::from_secs(30);
const T: Duration = Duration::from_secs(90);

/// An email stack working the email queue alone, whose postponed jobs resume within 2 s of the
/// server's return instead of up to 30 s (the default).
async fn stack(smtp_url: &str, extra: &[(&str, &str)]) -> anyhow::Result<StackEnv> {
    let base = [
        ("NCY_WORKER_QUEUES", "email"),
        ("NCY_JOBS_OUTAGE_MAX_DELAY_MS", "2000"),
    ];
    email::stack(smtp_url, &[&base[..], extra].concat()).await
}

/// A `send-email` job to `to` with the default attempts (3) and backoff (exponential from 2 s).
fn email_to(to: &str) -> pb::EnqueueRequest {
    let payload = json!({"to": to, "subject": format!("For {to}"), "template": "notification",
        "data": {"message": "hello"}});
    job("email", "send-email", &payload.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_30_second_smtp_outage_delays_email_jobs_and_each_is_sent_once_afterwards()
-> anyhow::Result<()> {
    let mut smtp = SmtpServer::start().await?;
    let env = stack(&smtp.url(), &[]).await?;
    let (mut c, sched) = env.scheduler().await?;
    let (work, admin) = env.worker_with_admin().await?;

    // Other tests of this process postpone email jobs too: the counter is read as a delta.
    let postponed_before = postponed(admin, "email", "smtp").await;
    smtp.stop().await;
    let down_since = Instant::now();
    let recipients: Vec<String> = (0..5).map(|i| format!("user{i}@example.com")).collect();
    let mut ids = Vec::new();
    for to in &recipients {
        ids.push(enqueue(&mut c, email_to(to)).await?);
    }
    // Each job has failed against the dead server: it waits as FAILED with the error, its
    // attempt given back.
    for id in &ids {
        wait_postponed(&c, id, "unreachable", T).await;
    }
    // Hold the outage itself (the one wait on the clock: the outage is what is under test).
    tokio::time::sleep(OUTAGE.saturating_sub(down_since.elapsed())).await;
    // Without postponing, the default 3 attempts with a 2 s exponential backoff would have been
    // used up (and the jobs dead-lettered) within the first 10 s of these 30.
    // Each of the five jobs was seen postponed above, so each added at least one.
    let counted = postponed(admin, "email", "smtp").await - postponed_before;
    assert!(counted >= 5.0, "the postponements are counted: {counted}");
    for id in &ids {
        let j = get(&mut c, id).await?;
        assert_ne!(j.state(), JobState::Dead, "{j:?}");
        assert!(j.attempts_made <= 1, "no attempt used up: {j:?}");
    }
    assert!(dead_letters_of(&mut c, "email").await?.is_empty());

    smtp.restart().await?;
    for id in &ids {
        wait_state(&c, id, JobState::Completed, T).await;
        let j = get(&mut c, id).await?;
        assert_eq!(
            j.attempts_made, 1,
            "only the attempt that sent it counts: {j:?}"
        );
    }
    // Every job is finished, so nothing more is sent: exactly one email per job.
    let mut per_recipient: BTreeMap<String, usize> = BTreeMap::new();
    for m in smtp.messages()? {
        for to in m.rcpt_tos {
            *per_recipient.entry(to).or_default() += 1;
        }
    }
    let expected: BTreeMap<String, usize> = recipients.iter().map(|r| (r.clone(), 1)).collect();
    assert_eq!(per_recipient, expected);
    assert!(
        dead_letters_of(&mut c, "email").await?.is_empty(),
        "none lost"
    );
    stop(work).await?;
    stop(sched).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_smtp_server_that_never_returns_is_dead_lettered_once_the_grace_is_over()
-> anyhow::Result<()> {
    // A port nothing listens on (a misconfigured NCY_SMTP_URL), and a short grace.
    let port = ncy_testkit::free_port();
    let env = stack(
        &format!("smtp://127.0.0.1:{port}"),
        &[("NCY_JOBS_OUTAGE_GRACE_SECS", "5")],
    )
    .await?;
    let (mut c, sched) = env.scheduler().await?;
    let work = env.worker().await?;

    let id = enqueue(&mut c, email_to("ada@example.com")).await?;
    wait_postponed(&c, &id, "unreachable", T).await;
    wait_state(&c, &id, JobState::Dead, T).await;
    let dead = get(&mut c, &id).await?;
    assert_eq!(
        dead.attempts_made, 3,
        "after the grace, the default attempts apply"
    );
    assert!(
        dead.last_error
            .starts_with(&format!("SMTP server 127.0.0.1:{port} unreachable")),
        "{}",
        dead.last_error
    );
    let letters = dead_letters_of(&mut c, "email").await?;
    assert_eq!(letters.len(), 1);
    assert!(!letters[0].non_retryable);
    stop(work).await?;
    stop(sched).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_421_is_an_outage_and_other_transient_refusals_use_attempts() -> anyhow::Result<()> {
    let smtp = SmtpServer::start().await?;
    let env = stack(&smtp.url(), &[]).await?;
    let (mut c, sched) = env.scheduler().await?;
    let work = env.worker().await?;

    // 421, "service not available": the server, not this email; the job waits.
    let down = enqueue(&mut c, email_to("down@example.com")).await?;
    wait_postponed(&c, &down, "421", T).await;
    // 451 about one recipient: this email's problem, retried per its attempts, then dead.
    let busy = enqueue(&mut c, email_to("busy@example.com")).await?;
    wait_state(&c, &busy, JobState::Dead, T).await;
    assert_eq!(get(&mut c, &busy).await?.attempts_made, 3);
    let j = get(&mut c, &down).await?;
    assert_ne!(j.state(), JobState::Dead, "{j:?}");
    assert!(j.attempts_made <= 1, "{j:?}");
    assert!(smtp.messages()?.is_empty());
    stop(work).await?;
    stop(sched).await
}
