//! Every metric the Grafana dashboard (`deploy/grafana/ncy-overview.json`) and the helm
//! PrometheusRule (`helm/ncy/templates/prometheusrule.yaml`) query exists in the services' real
//! `/metrics` output, with the label values the queries select on — after the ordinary traffic that
//! makes each series appear: cache reads and loads, a job completing, one dying and one postponed by
//! an SMTP outage, a WebSocket client receiving a message and disconnecting, a worker whose history
//! flush fails because its Redis went away, and the operator console signed into (once refused)
//! with its cache-gateway unreachable and its live overview opened.
//!
//! The services and the console run in this process and so share one metrics recorder with every
//! other test of the binary: every admin port serves the same exposition. The check is therefore on
//! names and labels, not on which service emits them; this test's own traffic is seen through the
//! API, and the counters it waits on as deltas.
use std::{net::SocketAddr, time::Duration};

use crate::support::backbone::Backbone;
use crate::support::jobs::{StackEnv, enqueue, job, wait_postponed, wait_state};
use crate::support::metrics::{postponed, sample};
use crate::support::{promql, stop, ws};
use ncy_proto::{cache::v1 as cache_pb, jobs::v1::JobState, realtime::v1 as rt_pb};
use ncy_testkit::{
    InProcess, RedisServer, TestDatabase, env_of, free_port, service_env, set_env, unique_prefix,
};

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

    // Jobs: a worker's history flush fails (its Redis is gone when it drains).
    a_history_flush_fails(backbone.worker.admin).await?;

    // The console: sign-ins, its limiter and a gateway unreachable, a request timed, a live stream.
    let (console, console_admin) = console_traffic(&backbone).await?;

    let mut all = Vec::new();
    let admins = backbone.all().map(|a| a.admin);
    for admin in admins.into_iter().chain([console_admin]) {
        let (code, body) = ncy_testkit::http_get(admin, "/metrics").await?;
        assert_eq!(code, 200);
        all.extend(promql::series(&body));
    }
    stop(console).await?;
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

/// A scheduler and a worker on a Redis of their own run one job; Redis is killed before the worker
/// adds the job to the queue history (its periodic flush is a minute away), so the flush of its
/// drain fails and is counted in `queue_history_flush_failures_total`, read on `admin` (the
/// services of this process share one recorder).
async fn a_history_flush_fails(admin: SocketAddr) -> anyhow::Result<()> {
    const FAILURES: &str = "queue_history_flush_failures_total";
    let mut redis = RedisServer::start().await?;
    let mut stack = StackEnv::new(&[("NCY_JOBS_HISTORY_FLUSH_MS", "60000")]).await?;
    stack.set("REDIS_URL", &redis.url());
    let (mut jobs, scheduler) = stack.scheduler().await?;
    let worker = stack.worker().await?;
    let before = unlabelled(admin, FAILURES).await;
    let done = enqueue(&mut jobs, job("report", "sleep", r#"{"ms":10}"#)).await?;
    wait_state(&jobs, &done, JobState::Completed, WAIT).await;
    redis.stop();
    stop(worker).await?;
    stop(scheduler).await?;
    let after = unlabelled(admin, FAILURES).await;
    anyhow::ensure!(
        after > before,
        "the failed flush is counted: {before} then {after}"
    );
    Ok(())
}

/// The value of the series `name` without labels on `admin`'s `/metrics` (0 while it is absent).
async fn unlabelled(admin: SocketAddr, name: &str) -> f64 {
    let Ok((_, body)) = ncy_testkit::http_get(admin, "/metrics").await else {
        return 0.0;
    };
    body.lines()
        .filter_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .sum()
}

/// The operator console in front of the backbone, its cache-gateway URL one where nothing listens:
/// a refused sign-in and a good one (neither limited: the limiter cannot be asked), then the live
/// overview until its first table. The console and its admin address.
async fn console_traffic(backbone: &Backbone) -> anyhow::Result<(InProcess, SocketAddr)> {
    const USER: (&str, &str) = ("ops", "console metrics password");
    let dir = tempfile::tempdir()?;
    let users = dir.path().join("users.toml");
    std::fs::write(
        &users,
        format!(
            "[[users]]\nname = \"{}\"\nrole = \"viewer\"\npassword_hash = \"{}\"\n",
            USER.0,
            ncy_console::users::hash_password(USER.1).map_err(|e| anyhow::anyhow!("{e}"))?
        ),
    )?;
    let env: Vec<(String, String)> = [
        ("NCY_CONSOLE_ADDR", "127.0.0.1:0".to_owned()),
        ("NCY_ADMIN_ADDR", "127.0.0.1:0".to_owned()),
        (
            "NCY_CONSOLE_JOBS_URL",
            format!("http://{}", backbone.jobs.grpc),
        ),
        (
            "NCY_CONSOLE_CACHE_URL",
            format!("http://127.0.0.1:{}", free_port()),
        ),
        (
            "NCY_CONSOLE_REALTIME_URL",
            format!("http://{}", backbone.realtime.grpc),
        ),
        (
            "NCY_CONSOLE_USERS_FILE",
            users.to_string_lossy().into_owned(),
        ),
        ("NCY_CONSOLE_SESSION_SECRET", SECRET.to_owned()),
        ("NCY_SHUTDOWN_GRACE_SECS", "5".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let app = ncy_console::Application::build(ncy_console::Settings::load(&env_of(&env))?).await?;
    let addrs = app.local_addrs();
    let console = InProcess::spawn(|stop| app.run_until_stopped(stop));
    let base = format!("http://{}", addrs.http);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let sign_in = |password: &'static str| {
        http.post(format!("{base}/login"))
            .header("origin", &base)
            .form(&[("name", USER.0), ("password", password)])
            .send()
    };
    let refused = sign_in("not the password").await?;
    anyhow::ensure!(refused.status() == 401, "refused: {}", refused.status());
    let signed_in = sign_in(USER.1).await?;
    anyhow::ensure!(signed_in.status() == 303, "sign-in: {}", signed_in.status());
    let cookie = signed_in
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| {
            c.split(';')
                .next()
                .filter(|c| c.starts_with("ncy_console="))
        })
        .ok_or_else(|| anyhow::anyhow!("no session cookie"))?
        .to_owned();
    let mut events = http
        .get(format!("{base}/events/overview"))
        .header("cookie", &cookie)
        .header("accept", "text/event-stream")
        .send()
        .await?;
    anyhow::ensure!(events.status() == 200, "events: {}", events.status());
    let mut read = String::new();
    while !read.contains("data:") {
        let chunk = tokio::time::timeout(WAIT, events.chunk())
            .await
            .map_err(|_| anyhow::anyhow!("no overview event within {WAIT:?}: {read}"))??
            .ok_or_else(|| anyhow::anyhow!("the overview stream ended: {read}"))?;
        read.push_str(&String::from_utf8_lossy(&chunk));
    }
    Ok((console, addrs.admin))
}
