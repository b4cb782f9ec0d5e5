//! `loadgen realtime`: fan-out through two realtime-gateway instances, mirroring the Socket.IO
//! harness (../shared/peer-bench/sio_bench.mjs) so the figures compare one to one.
//!
//! C WebSocket clients connect (half to each gateway, up to `--inflight` handshakes at once),
//! authenticate with a token minted here, and join one project room (a member of its organization,
//! seeded in PostgreSQL). Then M messages `{i, t, body: 100 B}` are sent to the room through gateway
//! A's gRPC `SendToProject`, either at a steady rate or back to back (`burst`, 64 in flight), and
//! every client records receive time − `t`. Reported: connect time (first connect → last join),
//! deliveries/s (deliveries ÷ (first send → last delivery)), latency p50/p99/max over all
//! deliveries, server RSS per connection ((RSS after joins − before) ÷ C, summed over both gateways,
//! from /proc), and CPU seconds of each gateway, this process and Redis over the publish window.
use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use ncy_proto::realtime::v1::{
    SendToProjectRequest, realtime_service_client::RealtimeServiceClient,
};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

/// What `loadgen realtime` was asked to do.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// WebSocket addresses (host:port) of the gateways, comma-separated; clients alternate.
    #[arg(long, default_value = "127.0.0.1:8181,127.0.0.1:8182")]
    pub ws: String,
    /// gRPC address of the gateway that publishes (instance A).
    #[arg(long, default_value = "http://127.0.0.1:50181")]
    pub grpc: String,
    /// PIDs of the gateways (comma-separated) for RSS and CPU from /proc; empty to skip.
    #[arg(long, default_value = "")]
    pub pids: String,
    /// HS256 secret the gateways verify tokens with.
    #[arg(long, env = "JWT_SECRET")]
    pub secret: String,
    /// PostgreSQL where an organization, a user and a project are seeded for the run.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// Redis URL (for its CPU figure).
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// Clients, messages and the steady rate.
    #[command(flatten)]
    pub fanout: Fanout,
    /// `steady` or `burst`.
    #[arg(long, default_value = "steady")]
    pub mode: String,
    /// Handshakes in flight while connecting.
    #[arg(long, default_value_t = 200)]
    pub inflight: usize,
    /// Give up waiting for deliveries after this many seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout_s: u64,
}

/// The shape of a fan-out run, shared with `loadgen fanout-floor` so both measure the same one.
#[derive(Debug, clap::Args)]
pub struct Fanout {
    /// Receiving clients (sockets).
    #[arg(long, default_value_t = 2000)]
    pub clients: usize,
    /// Messages, each delivered to every client.
    #[arg(long, default_value_t = 200)]
    pub messages: u64,
    /// Messages per second (steady mode).
    #[arg(long, default_value_t = 20)]
    pub rate: u64,
}

fn wall_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// RSS (bytes) of a process, from /proc.
fn rss(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next().map(str::to_owned))
        })
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// CPU seconds (user + system) of a process (a pid or `self`) or of the calling thread
/// (`thread-self`), from /proc.
pub(crate) fn cpu_s(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds (user + system) Redis at `url` has used, from `INFO cpu`; 0 when unreachable.
pub(crate) async fn redis_cpu(url: &str) -> f64 {
    let Ok(client) = redis::Client::open(url) else {
        return 0.0;
    };
    let Ok(mut c) = client.get_multiplexed_async_connection().await else {
        return 0.0;
    };
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .query_async(&mut c)
        .await
        .unwrap_or_default();
    info.lines()
        .filter_map(|l| {
            l.strip_prefix("used_cpu_sys:")
                .or_else(|| l.strip_prefix("used_cpu_user:"))
        })
        .filter_map(|v| v.trim().parse::<f64>().ok())
        .sum()
}

/// Seeds an organization with one member and one project; returns (user, org, project).
async fn seed(database_url: &str) -> anyhow::Result<(Uuid, Uuid, Uuid)> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(database_url)
        .await?;
    let (user, org, project) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let slug = format!("bench-{}", &org.simple().to_string()[..12]);
    sqlx::query("INSERT INTO organizations (id, name, slug) VALUES ($1, 'bench', $2)")
        .bind(org)
        .bind(&slug)
        .execute(&pool)
        .await?;
    sqlx::query("INSERT INTO users (id, email, name) VALUES ($1, $2, 'bench')")
        .bind(user)
        .bind(format!("{slug}@bench.invalid"))
        .execute(&pool)
        .await?;
    sqlx::query("INSERT INTO organization_members (organization_id, user_id) VALUES ($1, $2)")
        .bind(org)
        .bind(user)
        .execute(&pool)
        .await?;
    sqlx::query("INSERT INTO projects (id, organization_id, name) VALUES ($1, $2, 'bench')")
        .bind(project)
        .bind(org)
        .execute(&pool)
        .await?;
    pool.close().await;
    Ok((user, org, project))
}

/// The fields of a server frame the clients look at (typed and borrowed: parsing every delivery
/// into a `serde_json::Value` made this process the bottleneck of the burst figure).
#[derive(serde::Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    ty: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    room: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    event: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    data: Option<Sample>,
}

/// What the publisher puts in each message: its send time.
#[derive(serde::Deserialize)]
struct Sample {
    #[serde(default)]
    t: Option<f64>,
}

struct Counters {
    delivered: AtomicU64,
    /// Wall clock of the last delivery, µs since the epoch.
    last_recv_us: AtomicU64,
    hist: Mutex<Histogram<u64>>,
}

/// Connects one client and joins the room; then records deliveries until the socket closes.
async fn client(
    addr: String,
    token: String,
    project: Uuid,
    counters: Arc<Counters>,
    messages: u64,
    joined: tokio::sync::oneshot::Sender<bool>,
) {
    let Ok((mut ws, _)) = tokio_tungstenite::connect_async_with_config(
        format!("ws://{addr}/ws"),
        // tungstenite zero-fills its read buffer up to this size on every read: the 128 KiB
        // default cost this process more than the gateways it measures.
        Some(
            tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
                .read_buffer_size(8 * 1024),
        ),
        false,
    )
    .await
    else {
        let _ = joined.send(false);
        return;
    };
    // The token goes in the first frame, as browsers send it (the `?token=` form is off by default).
    let authenticate = json!({"type": "authenticate", "token": token}).to_string();
    let join = json!({"type": "join_project", "projectId": project}).to_string();
    if ws.send(Message::Text(authenticate.into())).await.is_err()
        || ws.send(Message::Text(join.into())).await.is_err()
    {
        let _ = joined.send(false);
        return;
    }
    let mut joined = Some(joined);
    // Latencies (µs) go to the shared histogram in batches. Not a histogram per client: one
    // covering 10 minutes at 3 significant digits is ~200 KB, and zeroing 10,000 of them made this
    // process, not the gateways, the bottleneck of the connect figure.
    let mut local: Vec<u64> = Vec::new();
    let mut n = 0u64;
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(text) = msg else { continue };
        let Ok(v) = serde_json::from_str::<Frame<'_>>(&text) else {
            continue;
        };
        match &*v.ty {
            "joined" if v.room.as_deref().is_some_and(|r| r.starts_with("project:")) => {
                if let Some(tx) = joined.take() {
                    let _ = tx.send(true);
                }
            }
            "error" => {
                if let Some(tx) = joined.take() {
                    let _ = tx.send(false);
                }
            }
            "message" if v.event.as_deref() == Some("msg") => {
                let now = wall_ms();
                let sent = v.data.and_then(|d| d.t).unwrap_or(now);
                local.push(((now - sent).max(0.001) * 1000.0) as u64);
                n += 1;
                counters.delivered.fetch_add(1, Ordering::Relaxed);
                counters
                    .last_recv_us
                    .fetch_max((now * 1000.0) as u64, Ordering::Relaxed);
                if n.is_multiple_of(50) || n == messages {
                    record(&counters, &mut local);
                }
            }
            _ => {}
        }
    }
    record(&counters, &mut local);
}

/// Moves `samples` into the shared histogram.
fn record(counters: &Counters, samples: &mut Vec<u64>) {
    if samples.is_empty() {
        return;
    }
    let mut hist = counters.hist.lock().unwrap_or_else(|p| p.into_inner());
    for v in samples.drain(..) {
        let _ = hist.record(v.clamp(1, 600_000_000));
    }
}

/// Runs the scenario and prints one JSON line.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let addrs: Vec<String> = args.ws.split(',').map(str::to_owned).collect();
    let pids: Vec<String> = args
        .pids
        .split(',')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    let (user, org, project) = seed(&args.database_url).await?;
    let exp = chrono::Utc::now().timestamp() + 3600;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"userId": user, "organizationId": org, "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(args.secret.as_bytes()),
    )?;
    let counters = Arc::new(Counters {
        delivered: AtomicU64::new(0),
        last_recv_us: AtomicU64::new(0),
        hist: Mutex::new(Histogram::new_with_bounds(1, 600_000_000, 3)?),
    });
    let rss_before: u64 = pids.iter().map(|p| rss(p)).sum();

    let started = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(args.inflight.max(1)));
    let mut joins = Vec::with_capacity(args.fanout.clients);
    for i in 0..args.fanout.clients {
        let permit = sem.clone().acquire_owned().await?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(client(
            addrs[i % addrs.len()].clone(),
            token.clone(),
            project,
            counters.clone(),
            args.fanout.messages,
            tx,
        ));
        joins.push(tokio::spawn(async move {
            let ok = rx.await.unwrap_or(false);
            drop(permit);
            ok
        }));
    }
    let mut connected = 0usize;
    for j in joins {
        if j.await.unwrap_or(false) {
            connected += 1;
        }
    }
    let connect_ms = started.elapsed().as_secs_f64() * 1000.0;
    eprintln!(
        "connected {connected}/{} in {connect_ms:.0} ms",
        args.fanout.clients
    );
    // Let the gateways settle (allocations after the last join) before measuring RSS.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after: u64 = pids.iter().map(|p| rss(p)).sum();

    let cpu0: Vec<f64> = pids.iter().map(|p| cpu_s(p)).collect();
    let self0 = cpu_s("self");
    let redis0 = redis_cpu(&args.redis_url).await;
    let grpc = RealtimeServiceClient::connect(args.grpc.clone()).await?;
    let body = "x".repeat(100);
    let first_send = wall_ms();
    let publish = |i: u64| {
        let mut grpc = grpc.clone();
        let data = json!({"i": i, "t": wall_ms(), "body": body}).to_string();
        async move {
            grpc.send_to_project(SendToProjectRequest {
                project_id: project.to_string(),
                event: "msg".into(),
                data_json: data,
                idempotency_key: String::new(),
            })
            .await
            .map(|_| ())
        }
    };
    if args.mode == "burst" {
        let inflight = Arc::new(tokio::sync::Semaphore::new(64));
        let mut tasks = Vec::new();
        for i in 0..args.fanout.messages {
            let permit = inflight.clone().acquire_owned().await?;
            let f = publish(i);
            tasks.push(tokio::spawn(async move {
                let r = f.await;
                drop(permit);
                r
            }));
        }
        for t in tasks {
            t.await??;
        }
    } else {
        let t0 = Instant::now();
        for i in 0..args.fanout.messages {
            let due = t0 + Duration::from_secs_f64(i as f64 / args.fanout.rate.max(1) as f64);
            tokio::time::sleep_until(due.into()).await;
            publish(i).await?;
        }
    }
    let last_send = wall_ms();
    let expected = connected as u64 * args.fanout.messages;
    let deadline = Instant::now() + Duration::from_secs(args.timeout_s);
    let mut last_change = Instant::now();
    let mut seen = 0;
    loop {
        let got = counters.delivered.load(Ordering::Relaxed);
        if got != seen {
            seen = got;
            last_change = Instant::now();
        }
        if got >= expected
            || Instant::now() > deadline
            || last_change.elapsed() > Duration::from_secs(10)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let last_recv = counters.last_recv_us.load(Ordering::Relaxed) as f64 / 1000.0;
    let window_s = ((last_recv - first_send) / 1000.0).max(0.001);
    // Per-client histograms are flushed every 50 messages and at the last expected one.
    let hist = counters
        .hist
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let ms = |us: u64| (us as f64 / 1000.0 * 100.0).round() / 100.0;
    let cores = |s: f64| (s / window_s * 100.0).round() / 100.0;
    let gw_cpu: Vec<f64> = pids
        .iter()
        .zip(&cpu0)
        .map(|(p, c0)| cores(cpu_s(p) - c0))
        .collect();
    let figures = json!({
        "bench": "ncy-realtime",
        "mode": args.mode,
        "clients": args.fanout.clients,
        "connected": connected,
        "messages": args.fanout.messages,
        "target_rate": if args.mode == "burst" { Value::Null } else { json!(args.fanout.rate) },
        "connect_all_ms": connect_ms.round(),
        "expected_deliveries": expected,
        "delivered": seen,
        "delivered_per_sec": (seen as f64 / window_s).round(),
        "publish_duration_ms": (last_send - first_send).round(),
        "latency_samples": hist.len(),
        "p50_ms": ms(hist.value_at_quantile(0.50)),
        "p99_ms": ms(hist.value_at_quantile(0.99)),
        "max_ms": ms(hist.max()),
        "server_rss_per_conn_kb": ((rss_after.saturating_sub(rss_before)) as f64 / args.fanout.clients.max(1) as f64 / 1024.0 * 10.0).round() / 10.0,
        "server_rss_after_mb": pids.iter().map(|p| rss(p) / 1_048_576).collect::<Vec<_>>(),
        "cpu_cores": {"gateways": gw_cpu, "client": cores(cpu_s("self") - self0),
                      "redis": cores(redis_cpu(&args.redis_url).await - redis0)},
    });
    println!("{figures}");
    Ok(())
}
