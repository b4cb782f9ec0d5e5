//! `loadgen cache`: the cache gateway's figures, one JSON line each.
//!
//! - `cache-l1-hit`: Get of one key held in the instance's L1, at the given concurrency;
//! - `cache-l2-hit`: Get of keys written through a second instance (so they are in Redis but not
//!   in the first instance's L1), each read once;
//! - `cache-l1-hit-stream`, `cache-l2-hit-stream`: the same reads over GetStream, one stream per
//!   concurrent reader with one read in flight on it (like `redis-benchmark -c 64`, pipelining 1);
//! - `cache-miss-load`: GetOrLoad of never-seen ids (kind `user`, random UUIDs): each runs the
//!   loader's SQL query (which finds no row) and fills the negative cache;
//! - `cache-invalidation`: a Set on instance A, then Gets on instance B (which held the old value
//!   in L1) until B serves the new value: the backplane's propagation delay, from A's
//!   acknowledgement to B's first fresh answer.
use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use ncy_proto::cache::v1::{
    CacheLayer, GetOrLoadRequest, GetRequest, SetRequest, cache_service_client::CacheServiceClient,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

type Client = CacheServiceClient<Channel>;
type Call = Arc<
    dyn Fn(Client, u64) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>> + Send + Sync,
>;

/// What `loadgen cache` was asked to do.
pub struct Options {
    /// First gateway.
    pub addr: String,
    /// Second gateway (L2-hit and invalidation figures).
    pub addr2: Option<String>,
    /// In-flight requests.
    pub concurrency: usize,
    /// HTTP/2 connections per gateway.
    pub connections: usize,
    /// Requests per throughput figure.
    pub requests: u64,
    /// GetOrLoad calls for the miss figure.
    pub loads: u64,
    /// Invalidation round trips measured.
    pub invalidations: u64,
    /// The figures to run (names without `cache-`); empty: all.
    pub only: Vec<String>,
}

impl Options {
    fn wants(&self, figure: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|f| f == figure)
    }
}

async fn channels(addr: &str, n: usize) -> anyhow::Result<Vec<Channel>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        out.push(
            tonic::transport::Endpoint::from_shared(addr.to_owned())?
                .connect_timeout(Duration::from_secs(5))
                .connect()
                .await?,
        );
    }
    Ok(out)
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?)
}

/// Runs `concurrency` tasks, task `i` doing calls `i * per_task ..` of `total` and returning their
/// latencies; prints one JSON line for them all.
async fn fan_out<F, Fut>(
    scenario: &str,
    concurrency: usize,
    total: u64,
    task: F,
) -> anyhow::Result<()>
where
    F: Fn(usize, std::ops::Range<u64>) -> Fut,
    Fut: Future<Output = anyhow::Result<Histogram<u64>>> + Send + 'static,
{
    let per_task = total.div_ceil(concurrency as u64);
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|i| {
            let first = i as u64 * per_task;
            tokio::spawn(task(i, first..first + per_task))
        })
        .collect();
    let mut all = histogram()?;
    for task in tasks {
        all.add(task.await??)?;
    }
    report(scenario, concurrency, &all, started.elapsed().as_secs_f64());
    Ok(())
}

/// Runs `total` calls of `call(client, n)` over `concurrency` tasks; prints one JSON line.
async fn drive(
    scenario: &str,
    chans: &[Channel],
    concurrency: usize,
    total: u64,
    call: Call,
) -> anyhow::Result<()> {
    fan_out(scenario, concurrency, total, |i, calls| {
        let client = Client::new(chans[i % chans.len()].clone()).max_decoding_message_size(8 << 20);
        let call = call.clone();
        async move {
            let mut hist = histogram()?;
            for n in calls {
                let t = Instant::now();
                call(client.clone(), n).await?;
                hist.record(t.elapsed().as_micros().max(1) as u64)?;
            }
            Ok(hist)
        }
    })
    .await
}

/// Like `drive`, over GetStream: each of `concurrency` tasks opens one stream and sends its reads
/// one at a time (the next after the previous answer); `key(n)` names read n, and every answer must
/// be a hit from `layer`.
async fn drive_stream(
    scenario: &str,
    chans: &[Channel],
    concurrency: usize,
    total: u64,
    key: Arc<dyn Fn(u64) -> String + Send + Sync>,
    layer: CacheLayer,
) -> anyhow::Result<()> {
    fan_out(scenario, concurrency, total, |i, reads| {
        let mut client = Client::new(chans[i % chans.len()].clone());
        let key = key.clone();
        async move {
            let mut hist = histogram()?;
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            let mut answers = client
                .get_stream(ReceiverStream::new(rx))
                .await?
                .into_inner();
            for n in reads {
                let t = Instant::now();
                tx.send(get(key(n))).await?;
                let a = answers
                    .message()
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("GetStream ended early"))?;
                let r = a
                    .response
                    .ok_or_else(|| anyhow::anyhow!("GetStream error: {}", a.error_message))?;
                anyhow::ensure!(r.found && r.layer() == layer, "expected a {layer:?} hit");
                hist.record(t.elapsed().as_micros().max(1) as u64)?;
            }
            drop(tx);
            anyhow::ensure!(answers.message().await?.is_none(), "an extra answer");
            Ok(hist)
        }
    })
    .await
}

/// Prints one figure's JSON line.
fn report(scenario: &str, concurrency: usize, all: &Histogram<u64>, elapsed: f64) {
    println!(
        "{}",
        serde_json::json!({
            "scenario": scenario,
            "concurrency": concurrency,
            "requests": all.len(),
            "ops_per_sec": (all.len() as f64 / elapsed).round(),
            "p50_us": all.value_at_quantile(0.50),
            "p99_us": all.value_at_quantile(0.99),
            "max_us": all.max(),
        })
    );
}

fn get(key: String) -> GetRequest {
    GetRequest { key, api: None }
}

fn set(key: String, value: String) -> SetRequest {
    SetRequest {
        key,
        api: None,
        value_json: value,
        ttl_seconds: Some(3600),
        tags: Vec::new(),
    }
}

/// Runs every figure.
pub async fn run(o: Options) -> anyhow::Result<()> {
    let concurrency = o.concurrency.max(1);
    let a = channels(&o.addr, o.connections).await?;
    let run_id = std::process::id();
    let value = serde_json::json!({"id": 1, "name": "benchmark value", "tags": ["a", "b", "c"]})
        .to_string();

    // L1 hits: one hot key, written through A (so A holds it in L1).
    let hot = format!("bench:{run_id}:hot");
    Client::new(a[0].clone())
        .set(set(hot.clone(), value.clone()))
        .await?;
    let key = hot.clone();
    let call: Call = Arc::new(move |mut c, _| {
        let key = key.clone();
        Box::pin(async move {
            let r = c.get(get(key)).await?.into_inner();
            anyhow::ensure!(r.found && r.layer() == CacheLayer::L1, "expected an L1 hit");
            Ok(())
        })
    });
    if o.wants("l1-hit") {
        drive("cache-l1-hit", &a, concurrency, o.requests, call).await?;
    }
    let key = Arc::new(move |_| hot.clone());
    if o.wants("l1-hit-stream") {
        drive_stream(
            "cache-l1-hit-stream",
            &a,
            concurrency,
            o.requests,
            key,
            CacheLayer::L1,
        )
        .await?;
    }

    if let Some(addr2) = &o.addr2 {
        let b = channels(addr2, o.connections).await?;
        // L2 hits: keys written through B, each read once through A.
        let fill = |prefix: String| {
            let v = value.clone();
            let call: Call = Arc::new(move |mut c, n| {
                let (key, v) = (format!("{prefix}{n}"), v.clone());
                Box::pin(async move {
                    c.set(set(key, v)).await?;
                    Ok(())
                })
            });
            drive("cache-set", &b, concurrency, o.requests, call)
        };
        let prefix = format!("bench:{run_id}:l2:");
        if o.wants("l2-hit") {
            fill(prefix.clone()).await?;
        }
        let read: Call = Arc::new(move |mut c, n| {
            let key = format!("{prefix}{n}");
            Box::pin(async move {
                let r = c.get(get(key)).await?.into_inner();
                anyhow::ensure!(r.found && r.layer() == CacheLayer::L2, "expected an L2 hit");
                Ok(())
            })
        });
        if o.wants("l2-hit") {
            drive("cache-l2-hit", &a, concurrency, o.requests, read).await?;
        }
        if o.wants("l2-hit-stream") {
            let prefix = format!("bench:{run_id}:l2s:");
            fill(prefix.clone()).await?;
            let key = Arc::new(move |n| format!("{prefix}{n}"));
            drive_stream(
                "cache-l2-hit-stream",
                &a,
                concurrency,
                o.requests,
                key,
                CacheLayer::L2,
            )
            .await?;
        }
        if o.wants("invalidation") {
            invalidation(&a[0], &b[0], o.invalidations, run_id).await?;
        }
    }

    let load: Call = Arc::new(|mut c, _| {
        Box::pin(async move {
            let req = GetOrLoadRequest {
                kind: "user".into(),
                id: uuid::Uuid::new_v4().to_string(),
                ttl_seconds: None,
                force_refresh: false,
            };
            match c.get_or_load(req).await {
                Err(s) if s.code() == tonic::Code::NotFound => Ok(()),
                Err(s) => Err(s.into()),
                Ok(_) => Ok(()),
            }
        })
    });
    if o.wants("miss-load") {
        drive("cache-miss-load", &a, concurrency, o.loads, load).await?;
    }
    Ok(())
}

/// Set on A, then Get on B until B answers the new value.
async fn invalidation(a: &Channel, b: &Channel, rounds: u64, run_id: u32) -> anyhow::Result<()> {
    let (mut ca, mut cb) = (Client::new(a.clone()), Client::new(b.clone()));
    let key = format!("bench:{run_id}:inval");
    let mut hist = histogram()?;
    let mut polls = 0u64;
    ca.set(set(key.clone(), "0".into())).await?;
    for i in 1..=rounds.max(1) {
        // B holds the current value in L1.
        while cb.get(get(key.clone())).await?.into_inner().value_json != (i - 1).to_string() {}
        ca.set(set(key.clone(), i.to_string())).await?;
        let acked = Instant::now();
        let deadline = acked + Duration::from_secs(5);
        loop {
            polls += 1;
            if cb.get(get(key.clone())).await?.into_inner().value_json == i.to_string() {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "B never saw the new value");
        }
        hist.record(acked.elapsed().as_micros().max(1) as u64)?;
    }
    println!(
        "{}",
        serde_json::json!({
            "scenario": "cache-invalidation",
            "rounds": hist.len(),
            "p50_us": hist.value_at_quantile(0.50),
            "p99_us": hist.value_at_quantile(0.99),
            "max_us": hist.max(),
            "polls_per_round": polls as f64 / hist.len().max(1) as f64,
        })
    );
    Ok(())
}
