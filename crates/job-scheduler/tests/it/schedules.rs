//! Schedules through gRPC against the real Redis: a client cannot suppress a cron tick by
//! enqueueing the tick's idempotency key first, and a cron field out of range is refused with its
//! real bounds.
use std::collections::HashSet;
use std::time::Duration;

use ncy_proto::jobs::v1 as pb;
use ncy_testkit::{assert_eventually, unique_prefix};

use crate::support::{Client, start};

const SCHEDULE: &str = "every-second";

fn schedule(cron: &str) -> pb::UpsertScheduleRequest {
    pb::UpsertScheduleRequest {
        name: SCHEDULE.into(),
        cron: cron.into(),
        queue: "notification".into(),
        job_type: "noop".into(),
        payload_json: "{}".into(),
        ..Default::default()
    }
}

fn planted(tick_ms: i64) -> pb::EnqueueRequest {
    pb::EnqueueRequest {
        queue: "notification".into(),
        job_type: "noop".into(),
        payload_json: "{}".into(),
        idempotency_key: format!("cron:{SCHEDULE}:{tick_ms}"),
        ..Default::default()
    }
}

/// The waiting jobs of the notification queue: (id, schedule name, idempotency key).
async fn jobs(c: &mut Client) -> anyhow::Result<Vec<(String, String, String)>> {
    Ok(c.list_jobs(pb::ListJobsRequest {
        queue: "notification".into(),
        state: pb::JobState::Waiting as i32,
        page_size: 500,
        ..Default::default()
    })
    .await?
    .into_inner()
    .jobs
    .into_iter()
    .map(|j| (j.id, j.schedule_name, j.idempotency_key))
    .collect())
}

/// The ticks among `ticks` the schedule enqueued a job of its own for.
async fn fired(c: &mut Client, ticks: &HashSet<i64>) -> anyhow::Result<HashSet<i64>> {
    let prefix = format!("cron:{SCHEDULE}:");
    Ok(jobs(c)
        .await?
        .into_iter()
        .filter(|(_, schedule, _)| schedule == SCHEDULE)
        .filter_map(|(_, _, key)| key.strip_prefix(&prefix)?.parse().ok())
        .filter(|tick| ticks.contains(tick))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_key_planted_for_a_coming_tick_does_not_suppress_it() -> anyhow::Result<()> {
    let (mut c, running) =
        start(&unique_prefix(), &[("NCY_CRON_INSTALL_DEFAULTS", "false")]).await?;
    // Plant the keys of the next ten ticks of a schedule firing every second, from 3 s on.
    let first = (ncy_queue::now_ms() / 1000 + 3) * 1000;
    let ticks: Vec<i64> = (0..10).map(|i| first + i * 1000).collect();
    let mut planted_ids = HashSet::new();
    for tick in &ticks {
        let r = c.enqueue(planted(*tick)).await?.into_inner();
        assert!(!r.deduplicated, "accepted as the client's own key");
        planted_ids.insert(r.job_id);
    }
    c.upsert_schedule(schedule("*/1 * * * * *")).await?;
    let ticks: HashSet<i64> = ticks.into_iter().collect();
    assert_eventually(
        "three planted ticks fired jobs of the schedule",
        Duration::from_secs(20),
        || {
            let mut c = c.clone();
            let ticks = ticks.clone();
            async move {
                fired(&mut c, &ticks)
                    .await
                    .map(|f| f.len() >= 3)
                    .unwrap_or(false)
            }
        },
    )
    .await;
    c.delete_schedule(pb::DeleteScheduleRequest {
        name: SCHEDULE.into(),
    })
    .await?;
    let all = jobs(&mut c).await?;
    // The planted jobs are the client's, untouched; the ticks' jobs are others.
    for (id, schedule, _) in &all {
        assert_eq!(
            planted_ids.contains(id),
            schedule.is_empty(),
            "{id} {schedule:?}"
        );
    }
    assert_eq!(
        all.iter().filter(|(_, s, _)| s.is_empty()).count(),
        planted_ids.len()
    );
    // Client keys still deduplicate among clients.
    let again = c.enqueue(planted(first)).await?.into_inner();
    assert!(again.deduplicated);
    assert!(planted_ids.contains(&again.job_id));
    running
        .stop(Duration::from_secs(10))
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_field_out_of_range_is_refused_with_its_real_bounds() -> anyhow::Result<()> {
    let (mut c, running) = start(
        &unique_prefix(),
        &[
            ("NCY_CRON_INSTALL_DEFAULTS", "false"),
            ("NCY_CRON_ENABLED", "false"),
        ],
    )
    .await?;
    for (cron, message) in [
        ("61 * * * *", r#"cron: minute must be 0–59 (got "61")"#),
        ("0 24 * * *", r#"cron: hour must be 0–23 (got "24")"#),
        (
            "0 0 32 * *",
            r#"cron: day-of-month must be 1–31 (got "32")"#,
        ),
        ("0 0 * 0 *", r#"cron: month must be 1–12 (got "0")"#),
        ("0 0 * * 9", r#"cron: day-of-week must be 0–7 (got "9")"#),
        ("60 0 * * * *", r#"cron: second must be 0–59 (got "60")"#),
        (
            "*/0 * * * *",
            r#"cron: minute step must be 1–59 (got "*/0")"#,
        ),
    ] {
        let err = c.upsert_schedule(schedule(cron)).await.expect_err(cron);
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{cron}");
        assert_eq!(err.message(), message, "{cron}");
    }
    // The bounds themselves are accepted.
    c.upsert_schedule(schedule("59 23 31 12 7")).await?;
    c.upsert_schedule(schedule("0 0 1 1 0")).await?;
    running
        .stop(Duration::from_secs(10))
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(())
}
