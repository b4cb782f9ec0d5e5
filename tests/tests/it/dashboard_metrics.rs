//! Every metric the Grafana dashboard (`deploy/grafana/ncy-overview.json`) and the helm
//! PrometheusRule (`helm/ncy/templates/prometheusrule.yaml`) query exists in the services' real
//! `/metrics` output, with the label values the queries select on — after the ordinary traffic that
//! makes each series appear: cache reads and loads, a job completing, one dying and one postponed by
//! an SMTP outage, a WebSocket client receiving a message and disconnecting.
//!
//! The four services run in this process and so share one metrics recorder with every other test
//! of the binary: every admin port serves the same exposition. The check is therefore on names and
//! labels, not on which service emits them; this test's own traffic is seen through the API, and
//! the counters it waits on as deltas.
use std::time::Duration;

use crate::support::backbone::Backbone;
use crate::support::jobs::{enqueue, job, wait_postponed, wait_state};
use crate::support::metrics::{postponed, sample};
use crate::support::{promql, ws};
use ncy_proto::{cache::v1 as cache_pb, jobs::v1::JobState, realtime::v1 as rt_pb};
use ncy_testkit::{TestDatabase, service_env, set_env, unique_prefix};

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
    let backbone = Backbone::start(&env).await?;

    // Cache: a write, an L1 hit, a miss, a database load.
    let mut c = backbone.cache_client().await?;
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
    let mut j = backbone.jobs_client().await?;
    let done = enqueue(&mut j, job("report", "sleep", r#"{"ms":10}"#)).await?;
    let dead = enqueue(
        &mut j,
        job("notification", "fail", r#"{"retryable":false}"#),
    )
    .await?;
    wait_state(&j, &done, JobState::Completed, WAIT).await;
    wait_state(&j, &dead, JobState::Dead, WAIT).await;

    // Jobs: an email while its SMTP server is down is postponed (the outage panel's series).
    let worker_admin = backbone.worker.admin;
    let before = postponed(worker_admin, "email", "smtp").await;
    let email = r#"{"to":"ada@example.com","subject":"s","template":"notification","data":{"message":"hi"}}"#;
    let email = enqueue(&mut j, job("email", "send-email", email)).await?;
    wait_postponed(&j, &email, "unreachable", WAIT).await;
    ncy_testkit::assert_eventually("the postponement is counted", WAIT, || async move {
        postponed(worker_admin, "email", "smtp").await > before
    })
    .await;

    // Realtime: a signed-in tab receives a message, then closes.
    let mut tab = ws::browser(backbone.ws, SECRET, user, None).await?;
    let mut r = backbone.realtime_client().await?;
    r.send_to_user(rt_pb::SendToUserRequest {
        user_id: user.to_string(),
        event: "hello".into(),
        data_json: "{}".into(),
        idempotency_key: String::new(),
    })
    .await?;
    ws::next_event(&mut tab, "hello").await?;
    let admin = backbone.realtime.admin;
    let before = sample(admin, "ncy_realtime_disconnects_total", &[]).await;
    tab.close(None).await?;
    ncy_testkit::assert_eventually("the disconnect is counted", WAIT, || async move {
        sample(admin, "ncy_realtime_disconnects_total", &[]).await > before
    })
    .await;

    let mut all = Vec::new();
    for a in backbone.all() {
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
    backbone.stop().await
}
