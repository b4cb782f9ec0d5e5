//! One trace from an `Enqueue` call to the job's I/O, exported over OTLP/gRPC to a real receiver
//! (`ncy_testkit::OtlpReceiver`, the collector's trace service from its published protobuf
//! definitions): the scheduler's Enqueue span continues the caller's `traceparent`, the job keeps
//! that context, each attempt of the worker is its child (retries are siblings), and the
//! processor's SMTP send is a child of the attempt. Also EnqueueBulk (each job under the call's
//! span), a cron tick (its job under the tick's span), and a caller that does not sample (nothing
//! stored with the job).
//!
//! Its own test binary, not a module of `it`: telemetry is process-global (subscriber, propagator,
//! tracer provider, installed once), and installing it in `it` would export every other test's
//! spans and turn tracing on under them. Here it is installed once, on a runtime shared by this
//! binary's tests (the exporter's gRPC channel lives on the runtime it was made on), and the tests
//! tell their spans apart by the trace id each chooses.
use std::sync::OnceLock;
use std::time::Duration;

/// The two helpers of `it` this binary needs (not all of `it/support`: its own tests would run
/// here a second time).
#[allow(dead_code)]
#[path = "it/support"]
mod support {
    pub mod email;
    pub mod jobs;

    /// Stops a service started in this process; an error if it does not drain within 15 s.
    pub async fn stop(p: ncy_testkit::InProcess) -> anyhow::Result<()> {
        p.stop(std::time::Duration::from_secs(15))
            .await
            .map_err(anyhow::Error::msg)
    }
}

use ncy_proto::jobs::v1::{self as pb, JobState};
use ncy_runtime::{CommonSettings, ServiceSpec, telemetry};
use ncy_testkit::{OtlpReceiver, ReceivedSpan, SmtpServer, env_of, service_env, unique_prefix};
use serde_json::json;
use support::jobs::{Client, StackEnv, job, retried, wait_state};
use support::{email, stop};

const T: Duration = Duration::from_secs(30);

struct Shared {
    runtime: tokio::runtime::Runtime,
    receiver: OtlpReceiver,
    _telemetry: telemetry::TelemetryGuard,
}

/// The runtime, the receiver and telemetry exporting to it, made by the first test that asks.
fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let (receiver, telemetry) = runtime.block_on(async {
            let receiver = OtlpReceiver::start().await.expect("the OTLP receiver");
            let spec = ServiceSpec {
                name: "traces-test",
                default_grpc_addr: "127.0.0.1:0",
                default_admin_addr: "127.0.0.1:0",
                needs_postgres: false,
                default_runtime_threads: 0,
            };
            let mut env = service_env(&unique_prefix(), None);
            env.push((
                "OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(),
                receiver.endpoint(),
            ));
            let settings = CommonSettings::load(spec, &env_of(&env)).expect("settings");
            let guard = telemetry::init("ncy-e2e", &settings.telemetry);
            (receiver, guard)
        });
        Shared {
            runtime,
            receiver,
            _telemetry: telemetry,
        }
    })
}

/// A trace id and a span id of the test's own, as a caller's `traceparent` would carry them.
fn caller_ids() -> (String, String) {
    let trace = uuid::Uuid::new_v4().simple().to_string();
    let span = uuid::Uuid::new_v4().simple().to_string()[..16].to_owned();
    (trace, span)
}

/// Enqueues `req` with `traceparent` naming the caller's trace and span.
async fn enqueue_traced(
    c: &mut Client,
    req: pb::EnqueueRequest,
    (trace, span): &(String, String),
) -> anyhow::Result<String> {
    let mut request = tonic::Request::new(req);
    request
        .metadata_mut()
        .insert("traceparent", format!("00-{trace}-{span}-01").parse()?);
    Ok(c.enqueue(request).await?.into_inner().job_id)
}

fn named<'a>(spans: &'a [ReceivedSpan], name: &str) -> Vec<&'a ReceivedSpan> {
    spans.iter().filter(|s| s.name == name).collect()
}

const ENQUEUE: &str = "/ncy.jobs.v1.JobService/Enqueue";

#[test]
fn one_trace_from_the_enqueue_call_to_the_smtp_send() -> anyhow::Result<()> {
    let shared = shared();
    shared.runtime.block_on(async {
        let smtp = SmtpServer::start().await?;
        let env = email::stack(&smtp.url(), &[]).await?;
        let (mut c, sched) = env.scheduler().await?;
        let work = env.worker().await?;

        let caller = caller_ids();
        let payload = json!({"to": "ada@example.com", "subject": "Traced", "template": "welcome",
            "data": {"name": "Ada", "email": "ada@example.com",
                     "userId": uuid::Uuid::new_v4().to_string()}});
        let req = job("email", "send-email", &payload.to_string());
        let id = enqueue_traced(&mut c, req, &caller).await?;
        wait_state(&c, &id, JobState::Completed, T).await;
        assert_eq!(smtp.wait_for(1, T).await.len(), 1);

        let spans = shared
            .receiver
            .wait_for_trace(&caller.0, T, |s| {
                [ENQUEUE, "job send-email", "smtp.send"]
                    .iter()
                    .all(|n| !named(s, n).is_empty())
            })
            .await;
        let enqueue = named(&spans, ENQUEUE);
        assert_eq!(enqueue.len(), 1, "{spans:#?}");
        assert_eq!(enqueue[0].parent_span_id, caller.1, "child of the caller");
        let attempt = named(&spans, "job send-email");
        assert_eq!(attempt.len(), 1, "{spans:#?}");
        assert_eq!(attempt[0].parent_span_id, enqueue[0].span_id);
        assert_eq!(attempt[0].attribute("job.id"), Some(id.as_str()));
        assert_eq!(attempt[0].attribute("job.attempt"), Some("1"));
        let send = named(&spans, "smtp.send");
        assert_eq!(send.len(), 1, "{spans:#?}");
        assert_eq!(send[0].parent_span_id, attempt[0].span_id);

        stop(work).await?;
        stop(sched).await
    })
}

#[test]
fn a_retried_jobs_attempts_are_siblings_under_the_enqueue_span() -> anyhow::Result<()> {
    let shared = shared();
    shared.runtime.block_on(async {
        let env = StackEnv::new(&[]).await?;
        let (mut c, sched) = env.scheduler().await?;
        let work = env.worker().await?;

        let caller = caller_ids();
        // `fail` with failAttempts 1: the first attempt fails, the second succeeds.
        let payload = json!({"message": "once", "retryable": true, "failAttempts": 1});
        let req = retried(job("notification", "fail", &payload.to_string()), 3, 10);
        let id = enqueue_traced(&mut c, req, &caller).await?;
        wait_state(&c, &id, JobState::Completed, T).await;

        let spans = shared
            .receiver
            .wait_for_trace(&caller.0, T, |s| {
                !named(s, ENQUEUE).is_empty() && named(s, "job fail").len() >= 2
            })
            .await;
        let enqueue = named(&spans, ENQUEUE);
        assert_eq!(enqueue.len(), 1, "{spans:#?}");
        let mut attempts = named(&spans, "job fail");
        attempts.sort_by_key(|s| s.attribute("job.attempt").map(str::to_owned));
        assert_eq!(attempts.len(), 2, "{spans:#?}");
        assert!(
            attempts[0].error,
            "the failed attempt's status: {:#?}",
            attempts[0]
        );
        assert_eq!(attempts[0].attribute("error.message"), Some("once"));
        assert!(!attempts[1].error, "{:#?}", attempts[1]);
        for (n, a) in attempts.iter().enumerate() {
            assert_eq!(
                a.attribute("job.attempt"),
                Some((n + 1).to_string().as_str())
            );
            assert_eq!(
                a.parent_span_id,
                enqueue[0].span_id,
                "attempt {} is a child of the Enqueue span, not of the attempt before",
                n + 1
            );
        }
        stop(work).await?;
        stop(sched).await
    })
}

#[test]
fn every_job_of_an_enqueue_bulk_call_is_in_the_calls_trace() -> anyhow::Result<()> {
    let shared = shared();
    shared.runtime.block_on(async {
        let env = StackEnv::new(&[]).await?;
        let (mut c, sched) = env.scheduler().await?;
        let work = env.worker().await?;

        let (trace, span) = caller_ids();
        let noop = || job("notification", "noop", "{}");
        let mut request = tonic::Request::new(pb::EnqueueBulkRequest {
            jobs: vec![noop(), noop()],
        });
        request
            .metadata_mut()
            .insert("traceparent", format!("00-{trace}-{span}-01").parse()?);
        let ids: Vec<String> = c
            .enqueue_bulk(request)
            .await?
            .into_inner()
            .results
            .into_iter()
            .map(|r| r.job_id)
            .collect();
        for id in &ids {
            wait_state(&c, id, JobState::Completed, T).await;
        }

        const BULK: &str = "/ncy.jobs.v1.JobService/EnqueueBulk";
        let spans = shared
            .receiver
            .wait_for_trace(&trace, T, |s| {
                !named(s, BULK).is_empty() && named(s, "job noop").len() >= 2
            })
            .await;
        let bulk = named(&spans, BULK);
        assert_eq!(bulk.len(), 1, "{spans:#?}");
        assert_eq!(bulk[0].parent_span_id, span);
        let mut attempted: Vec<&str> = named(&spans, "job noop")
            .iter()
            .map(|a| {
                assert_eq!(a.parent_span_id, bulk[0].span_id, "{a:#?}");
                a.attribute("job.id").unwrap_or_default()
            })
            .collect();
        attempted.sort_unstable();
        let mut expected: Vec<&str> = ids.iter().map(String::as_str).collect();
        expected.sort_unstable();
        assert_eq!(attempted, expected);
        stop(work).await?;
        stop(sched).await
    })
}

#[test]
fn a_cron_ticks_job_is_attempted_under_the_ticks_span() -> anyhow::Result<()> {
    let shared = shared();
    shared.runtime.block_on(async {
        let env = StackEnv::new(&[]).await?;
        let (mut c, sched) = env.scheduler().await?;
        let work = env.worker().await?;

        // A name of this test's own: the receiver holds every test's spans.
        let name = format!(
            "traced-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        c.upsert_schedule(pb::UpsertScheduleRequest {
            name: name.clone(),
            cron: "* * * * * *".into(),
            queue: "notification".into(),
            job_type: "noop".into(),
            payload_json: "{}".into(),
            ..Default::default()
        })
        .await?;
        let tick_name = format!("cron tick {name}");
        let tick = shared
            .receiver
            .wait_for_span(&tick_name, T, |s| s.name == tick_name)
            .await;
        assert_eq!(tick.parent_span_id, "", "a tick starts its own trace");
        let spans = shared
            .receiver
            .wait_for_trace(&tick.trace_id, T, |s| !named(s, "job noop").is_empty())
            .await;
        let attempt = named(&spans, "job noop");
        assert_eq!(attempt.len(), 1, "{spans:#?}");
        assert_eq!(attempt[0].parent_span_id, tick.span_id);
        stop(work).await?;
        stop(sched).await
    })
}

#[test]
fn a_caller_that_does_not_sample_gets_nothing_stored_with_its_job() -> anyhow::Result<()> {
    let shared = shared();
    shared.runtime.block_on(async {
        let env = StackEnv::new(&[]).await?;
        let (mut c, sched) = env.scheduler().await?;
        let (trace, span) = caller_ids();
        let mut request = tonic::Request::new(job("notification", "noop", "{}"));
        // Flags 00: the caller's trace is not sampled, so neither is the Enqueue span.
        request
            .metadata_mut()
            .insert("traceparent", format!("00-{trace}-{span}-00").parse()?);
        let id = c.enqueue(request).await?.into_inner().job_id;
        let key = env.keys()?.queue("notification").job(&id);
        let hash: std::collections::HashMap<String, String> =
            redis::AsyncCommands::hgetall(&mut support::jobs::redis().await?, key).await?;
        assert_eq!(
            hash.get("type").map(String::as_str),
            Some("noop"),
            "{hash:?}"
        );
        assert!(!hash.contains_key("trace"), "{hash:?}");
        stop(sched).await
    })
}
