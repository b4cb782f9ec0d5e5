//! `loadgen`: the benchmark driver behind `make bench`. Each scenario drives a running service over
//! its public interface from this process, bounded in count, and prints one JSON line of figures.
//!
//! Scenarios so far:
//! - `grpc-health`: unary `grpc.health.v1.Health/Check` round trips at a given concurrency. It is the
//!   ceiling of any unary RPC through the shared gRPC stack (tonic, HTTP/2, tracing and metrics
//!   layers) and the baseline the cache scenarios are compared with.
//! - `cache`: the cache gateway's L1-hit, L2-hit, miss→load and invalidation figures (see `cache.rs`).
//! - `jobs`: the job engine through job-scheduler and a worker (see `jobs.rs`).
//! - `realtime`: WebSocket fan-out through two realtime gateways (see [`realtime`]).
//! - `fanout-floor`: the same fan-out over bare loopback TCP sockets, the machine's floor under
//!   the `realtime` latency (see [`floor`]).
//! - `jobs-floor`: the least Redis work per job of a durable stream queue, with no engine around
//!   it: the machine's floor under the `jobs` drain (see [`jobfloor`]).

mod cache;
mod floor;
mod jobfloor;
mod jobs;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

mod realtime;

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    about = "NCY benchmark driver (loopback targets only)"
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Unary gRPC health checks against one service.
    GrpcHealth {
        /// gRPC address of the service.
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        addr: String,
        /// Concurrent in-flight requests (each its own task; requests share HTTP/2 connections).
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// HTTP/2 connections to spread the tasks over.
        #[arg(long, default_value_t = 4)]
        connections: usize,
        /// Total requests (after warm-up).
        #[arg(long, default_value_t = 200_000)]
        requests: u64,
    },
    /// Cache gateway figures: L1 hits, L2 hits, miss→load, invalidation propagation.
    Cache {
        /// gRPC address of the gateway measured.
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        addr: String,
        /// A second gateway of the same deployment (L2-hit and invalidation figures need it).
        #[arg(long)]
        addr2: Option<String>,
        /// Concurrent in-flight requests.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// HTTP/2 connections per gateway.
        #[arg(long, default_value_t = 4)]
        connections: usize,
        /// Requests per hit figure.
        #[arg(long, default_value_t = 200_000)]
        requests: u64,
        /// GetOrLoad calls for the miss→load figure.
        #[arg(long, default_value_t = 20_000)]
        loads: u64,
        /// Invalidation round trips.
        #[arg(long, default_value_t = 1_000)]
        invalidations: u64,
        /// Run only these figures (scenario names without `cache-`, comma-separated); all by default.
        #[arg(long, value_delimiter = ',', value_parser = [
            "l1-hit", "l1-hit-stream", "l2-hit", "l2-hit-stream", "invalidation", "miss-load",
        ])]
        only: Vec<String>,
    },
    /// Job engine scenarios through job-scheduler and a worker (see scripts/bench/jobs.sh).
    Jobs(jobs::JobsArgs),
    /// WebSocket fan-out through two realtime gateways (mirrors the Socket.IO harness).
    Realtime(realtime::Args),
    /// One message to many bare loopback TCP sockets: the machine's floor under `realtime`.
    FanoutFloor(floor::Args),
    /// The least Redis work per job of a stream queue, no engine: the machine's floor under `jobs`.
    JobsFloor(jobfloor::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().scenario {
        Scenario::Jobs(args) => jobs::run(args).await,
        Scenario::JobsFloor(args) => jobfloor::run(args).await,
        Scenario::Realtime(args) => realtime::run(args).await,
        Scenario::FanoutFloor(args) => {
            tokio::task::spawn_blocking(move || floor::run(&args)).await?
        }
        Scenario::GrpcHealth {
            addr,
            concurrency,
            connections,
            requests,
        } => {
            grpc_health(
                &addr,
                concurrency.max(1),
                connections.max(1),
                requests.max(1),
            )
            .await
        }
        Scenario::Cache {
            addr,
            addr2,
            concurrency,
            connections,
            requests,
            loads,
            invalidations,
            only,
        } => {
            cache::run(cache::Options {
                addr,
                addr2,
                concurrency,
                connections,
                requests: requests.max(1),
                loads: loads.max(1),
                invalidations,
                only,
            })
            .await
        }
    }
}

async fn grpc_health(
    addr: &str,
    concurrency: usize,
    connections: usize,
    requests: u64,
) -> anyhow::Result<()> {
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections {
        let channel = tonic::transport::Endpoint::from_shared(addr.to_owned())?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await?;
        channels.push(channel);
    }
    let per_task = requests.div_ceil(concurrency as u64);
    let warmup = (per_task / 10).max(10);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(concurrency);
    for i in 0..concurrency {
        let mut client = HealthClient::new(channels[i % connections].clone());
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            for n in 0..warmup + per_task {
                let t = Instant::now();
                client
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await?;
                if n >= warmup {
                    hist.record(t.elapsed().as_micros().max(1) as u64)?;
                }
            }
            anyhow::Ok(hist)
        }));
    }
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for task in tasks {
        total.add(task.await??)?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let done = total.len();
    let figures = serde_json::json!({
        "scenario": "grpc-health",
        "concurrency": concurrency,
        "connections": connections,
        "requests": done,
        // Throughput over the whole run including warm-up requests, so it is a slight underestimate.
        "ops_per_sec": ((done + warmup * concurrency as u64) as f64 / elapsed).round(),
        "p50_us": total.value_at_quantile(0.50),
        "p99_us": total.value_at_quantile(0.99),
        "max_us": total.max(),
    });
    println!("{figures}");
    Ok(())
}
