//! TriggerSchedule, PauseSchedule and ResumeSchedule through gRPC against the real Redis: a manual
//! run is a job of its own beside the ticks; a schedule paused on one replica fires no tick on
//! another (told without a sleep: a schedule firing every second beside it is the clock), keeps its
//! pause through an upsert, and once resumed fires from its next tick on, not the ticks it missed
//! while paused (a daily schedule left three days behind, against one never paused); bad names
//! and unknown schedules.
use std::time::Duration;

use ncy_proto::jobs::v1 as pb;
use ncy_testkit::{assert_eventually, unique_prefix};
use tonic::Code;

use crate::support::{Client, start};

const QUEUE: &str = "notification";
const T: Duration = Duration::from_secs(30);

fn schedule(name: &str, cron: &str) -> pb::UpsertScheduleRequest {
    pb::UpsertScheduleRequest {
        name: name.into(),
        cron: cron.into(),
        queue: QUEUE.into(),
        job_type: "noop".into(),
        payload_json: "{}".into(),
        ..Default::default()
    }
}

/// The jobs of the queue (waiting: no worker runs them) that `name` fired: (id, tick or None for a
/// manual run).
async fn fired(c: &mut Client, name: &str) -> anyhow::Result<Vec<(String, Option<i64>)>> {
    let prefix = format!("cron:{name}:");
    let jobs = c
        .list_jobs(pb::ListJobsRequest {
            queue: QUEUE.into(),
            state: pb::JobState::Waiting as i32,
            page_size: 500,
            ..Default::default()
        })
        .await?
        .into_inner()
        .jobs;
    Ok(jobs
        .into_iter()
        .filter(|j| j.schedule_name == name)
        .map(|j| {
            let tick = j
                .idempotency_key
                .strip_prefix(&prefix)
                .and_then(|t| t.parse().ok());
            (j.id, tick)
        })
        .collect())
}

/// Waits until `name` has fired a tick later than `after_ms`.
async fn fires_after(c: &Client, name: &str, after_ms: i64) {
    assert_eventually(&format!("{name} fired a tick after {after_ms}"), T, || {
        let mut c = c.clone();
        let name = name.to_owned();
        async move {
            fired(&mut c, &name)
                .await
                .map(|f| f.iter().any(|(_, t)| t.is_some_and(|t| t > after_ms)))
                .unwrap_or(false)
        }
    })
    .await;
}

async fn listed(c: &mut Client, name: &str) -> anyhow::Result<pb::Schedule> {
    c.list_schedules(pb::ListSchedulesRequest::default())
        .await?
        .into_inner()
        .schedules
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| anyhow::anyhow!("{name} not listed"))
}

fn assert_status(r: Result<impl std::fmt::Debug, tonic::Status>, code: Code, message: &str) {
    match r {
        Err(s) => assert!(
            s.code() == code && s.message().contains(message),
            "want {code:?} {message:?}, got {s:?}"
        ),
        Ok(v) => panic!("want {code:?} {message:?}, got {v:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_enqueues_a_manual_run_beside_the_ticks() -> anyhow::Result<()> {
    let (mut c, running) = start(
        &unique_prefix(),
        &[
            ("NCY_CRON_INSTALL_DEFAULTS", "false"),
            ("NCY_CRON_ENABLED", "false"),
        ],
    )
    .await?;
    c.upsert_schedule(pb::UpsertScheduleRequest {
        enabled: Some(false),
        options: Some(pb::JobOptions {
            priority: 7,
            attempts: 2,
            backoff: None,
        }),
        payload_json: r#"{"n":1}"#.into(),
        ..schedule("yearly", "0 0 1 1 *")
    })
    .await?;
    for (name, code, message) in [
        ("", Code::InvalidArgument, "name: must match"),
        ("Bad Name", Code::InvalidArgument, "name: must match"),
        ("absent", Code::NotFound, "schedule absent not found"),
    ] {
        assert_status(
            c.trigger_schedule(pb::TriggerScheduleRequest { name: name.into() })
                .await,
            code,
            message,
        );
    }
    assert!(fired(&mut c, "yearly").await?.is_empty(), "nothing written");

    // A disabled schedule runs when asked; each call is a job of its own.
    let mut ids = Vec::new();
    for _ in 0..2 {
        let id = c
            .trigger_schedule(pb::TriggerScheduleRequest {
                name: "yearly".into(),
            })
            .await?
            .into_inner()
            .job_id;
        let job = c
            .get_job(pb::GetJobRequest { job_id: id.clone() })
            .await?
            .into_inner()
            .job
            .ok_or_else(|| anyhow::anyhow!("no job"))?;
        assert_eq!(job.state(), pb::JobState::Waiting);
        assert_eq!(
            (
                job.schedule_name.as_str(),
                job.idempotency_key.as_str(),
                job.payload_json.as_str(),
                job.priority,
                job.max_attempts
            ),
            ("yearly", "", r#"{"n":1}"#, 7, 2)
        );
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1]);
    let s = listed(&mut c, "yearly").await?;
    assert_eq!(
        (s.last_run_at_ms, s.last_job_id.as_str()),
        (0, ""),
        "a manual run is not a tick"
    );
    running
        .stop(Duration::from_secs(10))
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_schedule_fires_nothing_on_any_replica_until_resumed() -> anyhow::Result<()> {
    let prefix = unique_prefix();
    // The operator's replica (cron off) and the one that fires.
    let (mut a, ra) = start(
        &prefix,
        &[
            ("NCY_CRON_ENABLED", "false"),
            ("NCY_CRON_INSTALL_DEFAULTS", "false"),
        ],
    )
    .await?;
    let (b, rb) = start(&prefix, &[("NCY_CRON_INSTALL_DEFAULTS", "false")]).await?;
    a.upsert_schedule(schedule("clock", "*/1 * * * * *"))
        .await?;
    a.upsert_schedule(schedule("held", "*/1 * * * * *")).await?;
    fires_after(&b, "held", 0).await;

    for (name, code, message) in [
        ("-bad", Code::InvalidArgument, "name: must match"),
        ("absent", Code::NotFound, "schedule absent not found"),
    ] {
        assert_status(
            a.pause_schedule(pb::PauseScheduleRequest { name: name.into() })
                .await,
            code,
            message,
        );
        assert_status(
            a.resume_schedule(pb::ResumeScheduleRequest { name: name.into() })
                .await,
            code,
            message,
        );
    }
    let paused = a
        .pause_schedule(pb::PauseScheduleRequest {
            name: "held".into(),
        })
        .await?
        .into_inner();
    let paused_at = ncy_queue::now_ms();
    let s = paused
        .schedule
        .ok_or_else(|| anyhow::anyhow!("no schedule"))?;
    assert!(paused.changed && s.paused && s.enabled, "{s:?}");
    assert_eq!(s.next_run_at_ms, 0);
    let again = a
        .pause_schedule(pb::PauseScheduleRequest {
            name: "held".into(),
        })
        .await?
        .into_inner();
    assert!(!again.changed);
    // An upsert keeps the pause.
    a.upsert_schedule(pb::UpsertScheduleRequest {
        description: "edited".into(),
        ..schedule("held", "*/1 * * * * *")
    })
    .await?;
    let s = listed(&mut a, "held").await?;
    assert!(s.paused && s.description == "edited", "{s:?}");

    // Two ticks of the clock later every cron pass has seen the pause: none fired `held`.
    fires_after(&b, "clock", paused_at + 1_000).await;
    let late: Vec<_> = fired(&mut a, "held")
        .await?
        .into_iter()
        .filter(|(_, t)| t.is_some_and(|t| t > paused_at))
        .collect();
    assert!(late.is_empty(), "fired while paused: {late:?}");

    let resumed_from = ncy_queue::now_ms();
    let resumed = a
        .resume_schedule(pb::ResumeScheduleRequest {
            name: "held".into(),
        })
        .await?
        .into_inner();
    let s = resumed
        .schedule
        .ok_or_else(|| anyhow::anyhow!("no schedule"))?;
    assert!(
        resumed.changed && !s.paused && s.next_run_at_ms > resumed_from,
        "{s:?}"
    );
    let again = a
        .resume_schedule(pb::ResumeScheduleRequest {
            name: "held".into(),
        })
        .await?
        .into_inner();
    assert!(!again.changed);
    fires_after(&b, "held", resumed_from).await;
    let skipped: Vec<_> = fired(&mut a, "held")
        .await?
        .into_iter()
        .filter(|(_, t)| t.is_some_and(|t| t > paused_at && t <= resumed_from))
        .collect();
    assert!(
        skipped.is_empty(),
        "ticks of the pause fired late: {skipped:?}"
    );
    ra.stop(Duration::from_secs(10))
        .await
        .map_err(anyhow::Error::msg)?;
    rb.stop(Duration::from_secs(10))
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_schedule_does_not_fire_the_ticks_it_missed_while_paused() -> anyhow::Result<()> {
    let prefix = unique_prefix();
    let (mut a, ra) = start(
        &prefix,
        &[
            ("NCY_CRON_ENABLED", "false"),
            ("NCY_CRON_INSTALL_DEFAULTS", "false"),
        ],
    )
    .await?;
    // Daily, twelve hours from now: the latest tick was twelve hours ago, the next is as far away,
    // so no tick falls due while the test runs.
    let hour = (ncy_queue::now_ms() / 3_600_000 + 12) % 24;
    let daily = format!("0 {hour} * * *");
    for name in ["daily-paused", "daily-running"] {
        a.upsert_schedule(schedule(name, &daily)).await?;
    }
    a.upsert_schedule(schedule("clock", "*/1 * * * * *"))
        .await?;
    a.pause_schedule(pb::PauseScheduleRequest {
        name: "daily-paused".into(),
    })
    .await?;
    // Both last fired three days ago: the paused one missed its ticks while paused, the other
    // while no scheduler ran (FIRE_ONCE fires the latest once).
    let keys = ncy_types::KeySpace::new(prefix.clone())?;
    let mut conn = redis::Client::open(ncy_testkit::redis_url())?
        .get_multiplexed_async_connection()
        .await?;
    let three_days_ago = ncy_queue::now_ms() - 3 * 86_400_000;
    let _: () = redis::pipe()
        .hset(keys.schedule_last_fired(), "daily-paused", three_days_ago)
        .hset(keys.schedule_last_fired(), "daily-running", three_days_ago)
        .query_async(&mut conn)
        .await?;
    let resumed_from = ncy_queue::now_ms();
    a.resume_schedule(pb::ResumeScheduleRequest {
        name: "daily-paused".into(),
    })
    .await?;
    let (b, rb) = start(&prefix, &[("NCY_CRON_INSTALL_DEFAULTS", "false")]).await?;
    fires_after(&b, "clock", resumed_from + 1_000).await;
    assert_eq!(
        fired(&mut a, "daily-running").await?.len(),
        1,
        "the schedule never paused fires its missed tick"
    );
    assert!(
        fired(&mut a, "daily-paused").await?.is_empty(),
        "the resumed one waits for its next tick"
    );
    let s = listed(&mut a, "daily-paused").await?;
    assert_eq!(s.last_run_at_ms, three_days_ago);
    assert!(!s.paused && s.next_run_at_ms > resumed_from, "{s:?}");
    ra.stop(Duration::from_secs(10))
        .await
        .map_err(anyhow::Error::msg)?;
    rb.stop(Duration::from_secs(10))
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(())
}
