//! Every metric the Grafana dashboard (`deploy/grafana/ncy-overview.json`) and the helm
//! PrometheusRule (`helm/ncy/templates/prometheusrule.yaml`) query exists in the services' real
//! `/metrics` output, with the label values the queries select on — after the ordinary traffic that
//! makes each series appear: cache reads and loads, a job completing, one dying and one postponed by
//! an SMTP outage, a WebSocket client receiving a message and disconnecting.
//!
//! The four services run in this process and so share one metrics recorder: every admin port serves
//! the same exposition. The check is therefore on names and labels, not on which service emits them.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::support::{metrics::postponed, promql};
use futures_util::{SinkExt, StreamExt};
use ncy_proto::{
    cache::v1::{self as cache_pb, cache_service_client::CacheServiceClient},
    jobs::v1::{self as jobs_pb, JobState, job_service_client::JobServiceClient},
    realtime::v1::{self as rt_pb, realtime_service_client::RealtimeServiceClient},
};
use ncy_testkit::{InProcess, TestDatabase, env_of, service_env, set_env, unique_prefix};
use tokio_tungstenite::{connect_async, tungstenite::Message};

const SECRET: &str = "metrics-test-secret-metrics-test-secret";
const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_alert_queries_name_series_the_services_export() -> anyhow::Result<()> {
    let db = TestDatabase::migrated().await?;
    let user = uuid::Uuid::new_v4();
    let pool = db.pool().await?;
    sqlx::query("INSERT INTO users (id, email, name) VALUES ($1, 'ada@example.com', 'Ada')")
        .bind(user)
        .execute(&pool)
        .await?;
    pool.close().await;
    let mut env = service_env(&unique_prefix(), Some(&db.url));
    set_env(&mut env, "NCY_JOBS_TEST_JOB_TYPES", "true");
    set_env(&mut env, "NCY_CRON_INSTALL_DEFAULTS", "false");
    set_env(&mut env, "JWT_SECRET", SECRET);
    set_env(&mut env, "NCY_WS_ADDR", "127.0.0.1:0");
    // An SMTP server that is down: the email job below is postponed, not failed.
    set_env(
        &mut env,
        "NCY_SMTP_URL",
        &format!("smtp://127.0.0.1:{}", ncy_testkit::free_port()),
    );
    let env = env_of(&env);
    let cache = cache_gateway::Application::build(cache_gateway::Settings::load(&env)?).await?;
    let jobs = job_scheduler::Application::build(job_scheduler::Settings::load(&env)?).await?;
    let work = worker::Application::build(worker::Settings::load(&env)?).await?;
    let realtime =
        realtime_gateway::Application::build(realtime_gateway::Settings::load(&env)?).await?;
    let addrs = [
        cache.local_addrs(),
        jobs.local_addrs(),
        work.local_addrs(),
        realtime.local_addrs(),
    ];
    let running = [
        InProcess::spawn(|stop| cache.run_until_stopped(stop)),
        InProcess::spawn(|stop| jobs.run_until_stopped(stop)),
        InProcess::spawn(|stop| work.run_until_stopped(stop)),
        InProcess::spawn(|stop| realtime.run_until_stopped(stop)),
    ];
    for a in &addrs {
        ncy_testkit::wait_until_serving(a.grpc).await;
    }

    // Cache: a write, an L1 hit, a miss, a database load.
    let mut c = CacheServiceClient::connect(format!("http://{}", addrs[0].grpc)).await?;
    c.set(cache_pb::SetRequest {
        key: "note:1".into(),
        value_json: "{}".into(),
        ..Default::default()
    })
    .await?;
    for key in ["note:1", "note:2"] {
        c.get(cache_pb::GetRequest {
            key: key.into(),
            api: None,
        })
        .await?;
    }
    c.get_or_load(cache_pb::GetOrLoadRequest {
        kind: "user".into(),
        id: user.to_string(),
        ..Default::default()
    })
    .await?;

    // Jobs: one completes, one dies.
    let mut j = JobServiceClient::connect(format!("http://{}", addrs[1].grpc)).await?;
    let mut ids = Vec::new();
    for (queue, job_type, payload) in [
        ("report", "sleep", r#"{"ms":10}"#),
        ("notification", "fail", r#"{"retryable":false}"#),
    ] {
        let request = jobs_pb::EnqueueRequest {
            queue: queue.into(),
            job_type: job_type.into(),
            payload_json: payload.into(),
            ..Default::default()
        };
        ids.push(j.enqueue(request).await?.into_inner().job_id);
    }
    for (id, state) in ids.iter().zip([JobState::Completed, JobState::Dead]) {
        ncy_testkit::assert_eventually(&format!("{id} {state:?}"), WAIT, || {
            let (mut j, id) = (j.clone(), id.clone());
            async move {
                let request = jobs_pb::GetJobRequest { job_id: id };
                j.get_job(request)
                    .await
                    .is_ok_and(|r| r.into_inner().job.is_some_and(|job| job.state() == state))
            }
        })
        .await;
    }

    // Jobs: an email while its SMTP server is down is postponed (the outage panel's series). Other
    // tests of this process postpone jobs too: this one is seen postponed through the API (FAILED,
    // its attempt given back) and the counter as a delta.
    let worker_admin = addrs[2].admin;
    let before = postponed(worker_admin, "email", "smtp").await;
    let email = j
        .enqueue(jobs_pb::EnqueueRequest {
            queue: "email".into(),
            job_type: "send-email".into(),
            payload_json: r#"{"to":"ada@example.com","subject":"s","template":"notification","data":{"message":"hi"}}"#.into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .job_id;
    ncy_testkit::assert_eventually("the postponement is counted", WAIT, || {
        let (mut j, id) = (j.clone(), email.clone());
        async move {
            let request = jobs_pb::GetJobRequest { job_id: id };
            j.get_job(request).await.is_ok_and(|r| {
                r.into_inner()
                    .job
                    .is_some_and(|job| job.state() == JobState::Failed && job.attempts_made == 0)
            }) && postponed(worker_admin, "email", "smtp").await >= before + 1.0
        }
    })
    .await;

    // Realtime: a signed-in tab receives a message, then closes.
    let ws = addrs[3].websocket.unwrap();
    let (mut tab, _) = connect_async(format!("ws://{ws}/ws")).await?;
    let claims = serde_json::json!({"userId": user, "exp": chrono::Utc::now().timestamp() + 600});
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )?;
    let auth = serde_json::json!({"type": "authenticate", "token": token}).to_string();
    tab.send(Message::Text(auth.into())).await?;
    next_of_type(&mut tab, "authenticated").await;
    let mut r = RealtimeServiceClient::connect(format!("http://{}", addrs[3].grpc)).await?;
    r.send_to_user(rt_pb::SendToUserRequest {
        user_id: user.to_string(),
        event: "hello".into(),
        data_json: "{}".into(),
        idempotency_key: String::new(),
    })
    .await?;
    next_of_type(&mut tab, "message").await;
    tab.close(None).await?;
    let admin = addrs[3].admin;
    ncy_testkit::assert_eventually("the disconnect is counted", WAIT, || async move {
        ncy_testkit::http_get(admin, "/metrics")
            .await
            .is_ok_and(|(_, body)| body.contains("ncy_realtime_disconnects_total{"))
    })
    .await;

    let mut all = Vec::new();
    for a in &addrs {
        let (code, body) = ncy_testkit::http_get(a.admin, "/metrics").await?;
        assert_eq!(code, 200);
        all.extend(promql::series(&body));
    }
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(format!(
        "{root}/deploy/grafana/ncy-overview.json"
    ))?)?;
    let rules = std::fs::read_to_string(format!("{root}/helm/ncy/templates/prometheusrule.yaml"))?;
    let exprs: Vec<(String, String)> = promql::dashboard_exprs(&dashboard)
        .into_iter()
        .map(|e| ("dashboard".to_owned(), e))
        .chain(
            promql::rule_exprs(&rules)
                .into_iter()
                .map(|e| ("PrometheusRule".to_owned(), e)),
        )
        .collect();
    assert!(exprs.len() >= 20, "found the queries: {exprs:#?}");
    let mut problems = Vec::new();
    let mut checked = 0;
    for (source, expr) in &exprs {
        for selector in promql::selectors(expr) {
            checked += 1;
            if let Err(why) = promql::satisfied(&selector, &all) {
                problems.push(format!("{source}: {why}\n  in {expr}"));
            }
        }
    }
    assert!(checked >= 20, "{checked} selectors");
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    drop(tab);
    for service in running {
        service.stop(WAIT).await.map_err(anyhow::Error::msg)?;
    }
    Ok(())
}

type Tab =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_of_type(tab: &mut Tab, ty: &str) {
    loop {
        let frame = tokio::time::timeout(WAIT, tab.next())
            .await
            .unwrap_or_else(|_| panic!("no {ty} frame"))
            .unwrap_or_else(|| panic!("closed before {ty}"))
            .unwrap();
        if let Message::Text(text) = frame {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            if v["type"] == ty {
                return;
            }
        }
    }
}
