//! Jobs that fail: retried with backoff, then dead-lettered with an alert to the operators and
//! retried from the dead-letter queue; non-retryable failures, types without a processor and
//! panicking processors.
use super::T;
use crate::support::jobs::{
    StackEnv, dead_letters, dead_letters_of, enqueue, get, job, retried, wait_state,
};
use crate::support::stop;
use ncy_proto::jobs::v1::{self as pb, JobState};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failures_retry_with_backoff_then_dead_letter_alert_and_retry_dead_letter()
-> anyhow::Result<()> {
    let mut env = StackEnv::new(&[]).await?;
    let admin = env.alert_recipient().await?;
    let pg = env.db.pool().await?;
    let (mut c, sched) = env.scheduler().await?;
    let work = env.worker().await?;

    let req = retried(
        job("notification", "fail", r#"{"message":"smtp down"}"#),
        3,
        100,
    );
    let id = enqueue(&mut c, req).await?;
    wait_state(&c, &id, JobState::Dead, T).await;
    let dead = get(&mut c, &id).await?;
    assert_eq!(dead.attempts_made, 3, "every attempt ran");
    assert_eq!(dead.last_error, "smtp down");
    let letters = dead_letters_of(&mut c, "notification").await?;
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.id, dead.dead_letter_id);
    assert_eq!(
        (letter.queue.as_str(), letter.job_type.as_str()),
        ("notification", "fail")
    );
    assert_eq!(letter.payload_json, r#"{"message":"smtp down"}"#);
    assert_eq!(letter.error, "smtp down");
    assert_eq!(letter.attempts_made, 3);
    assert!(letter.failed_at_ms > 0 && !letter.non_retryable);
    ncy_testkit::assert_eventually("alert notification row", T, || {
        let pg = pg.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM notifications WHERE user_id = $1 AND type = 'job_dead_letter'",
            )
            .bind(admin)
            .fetch_one(&pg)
            .await
            .map(|n| n == 1)
            .unwrap_or(false)
        }
    })
    .await;
    // The alert also went to the recipient's realtime room (its history is what a browser recovers).
    let entries = env.room_history(admin).await?;
    assert_eq!(
        entries.len(),
        1,
        "one job_dead_letter message in {entries:?}"
    );
    assert!(
        format!("{entries:?}").contains("job_dead_letter"),
        "{entries:?}"
    );

    let retried = c
        .retry_dead_letter(pb::RetryDeadLetterRequest {
            dead_letter_id: letter.id.clone(),
        })
        .await?
        .into_inner()
        .job_id;
    wait_state(&c, &retried, JobState::Dead, T).await;
    let again = get(&mut c, &retried).await?;
    assert_eq!(
        (again.priority, again.max_attempts, again.attempts_made),
        (10, 1, 1)
    );
    assert_eq!(again.retried_from_dead_letter_id, letter.id);
    let err = c
        .retry_dead_letter(pb::RetryDeadLetterRequest {
            dead_letter_id: letter.id.clone(),
        })
        .await
        .expect_err("already retried");
    assert_eq!(err.code(), tonic::Code::NotFound);
    let newest = dead_letters(&mut c).await?;
    assert_eq!(newest.len(), 1);
    c.delete_dead_letter(pb::DeleteDeadLetterRequest {
        dead_letter_id: newest[0].id.clone(),
    })
    .await?;
    stop(work).await?;
    stop(sched).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn non_retryable_failures_and_types_without_a_processor_go_straight_to_dead_letters()
-> anyhow::Result<()> {
    let mut env = StackEnv::new(&[]).await?;
    let (mut c, sched) = env.scheduler().await?;
    // Every domain type has a processor, so the missing one is `sleep`: this worker has the test
    // types off and only `fail` added, while the scheduler accepts both.
    env.set("NCY_JOBS_TEST_JOB_TYPES", "false");
    let mut app =
        worker::Application::build(worker::Settings::load(&ncy_testkit::env_of(&env.env))?).await?;
    app.register(worker::processors::FailProcessor);
    let work = ncy_testkit::InProcess::spawn(|stop| app.run_until_stopped(stop));
    let mut req = job(
        "report",
        "fail",
        r#"{"retryable":false,"message":"bad template"}"#,
    );
    req.attempts = 5;
    let fatal = enqueue(&mut c, req).await?;
    let mut req = job("email", "sleep", r#"{"ms":1}"#);
    req.attempts = 5;
    let missing = enqueue(&mut c, req).await?;
    wait_state(&c, &fatal, JobState::Dead, T).await;
    assert_eq!(get(&mut c, &fatal).await?.attempts_made, 1);
    wait_state(&c, &missing, JobState::Dead, T).await;
    let e = get(&mut c, &missing).await?;
    assert_eq!(e.attempts_made, 1);
    assert!(
        e.last_error.contains("no processor for job type \"sleep\""),
        "{}",
        e.last_error
    );
    let letters = dead_letters(&mut c).await?;
    assert_eq!(letters.len(), 2);
    assert!(letters.iter().all(|l| l.non_retryable));
    stop(work).await?;
    stop(sched).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_panicking_processor_fails_the_job_per_policy_and_the_worker_goes_on()
-> anyhow::Result<()> {
    let env = StackEnv::new(&[]).await?;
    let (mut c, sched) = env.scheduler().await?;
    let work = env.worker().await?;
    let req = retried(
        job(
            "notification",
            "fail",
            r#"{"panic":true,"message":"kaboom"}"#,
        ),
        2,
        50,
    );
    let id = enqueue(&mut c, req).await?;
    wait_state(&c, &id, JobState::Dead, T).await;
    let j = get(&mut c, &id).await?;
    assert_eq!(j.attempts_made, 2, "retried per policy");
    assert_eq!(j.last_error, "processor panicked: kaboom");
    // The same worker keeps running jobs.
    let after = enqueue(&mut c, job("notification", "noop", "{}")).await?;
    wait_state(&c, &after, JobState::Completed, T).await;
    stop(work).await?;
    stop(sched).await
}
