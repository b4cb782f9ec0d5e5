//! `loadgen jobs`: the job engine through the real services (job-scheduler over gRPC, a worker
//! process started by scripts/bench/jobs.sh), with `noop` jobs on one queue. One JSON line per
//! figure. Timings come from the jobs' own timestamps (`created_at_ms`, `due_at_ms`,
//! `started_at_ms`, `finished_at_ms`; read back with GetJob after the measured window), so the
//! client's own speed does not bias latency.
//!
//! Modes (the script runs each, restarting the worker per concurrency level):
//! - `enqueue`: Enqueue one by one (`--clients` in flight) and EnqueueBulk ×1000, queue paused.
//! - `drain`: pre-fill N jobs while paused, resume, time until the last finishes (consumer speed).
//! - `e2e`: worker running; bulk producer as fast as it can; N / (first add → last finish), and
//!   enqueue-to-start p50/p99.
//! - `stream`: awaited Enqueue one at a time; enqueue-to-start p50/p99 (compare BullMQ c1).
//! - `delayed`: jobs with a 1000 ms delay added at 500/s; lateness = start − due, p50/p99.
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use ncy_proto::jobs::v1::{self as pb, job_service_client::JobServiceClient};
use tonic::transport::Channel;

type Client = JobServiceClient<Channel>;

/// Arguments of `loadgen jobs`.
#[derive(Debug, Args)]
pub struct JobsArgs {
    /// enqueue | drain | e2e | stream | delayed
    #[arg(long)]
    pub mode: String,
    /// job-scheduler gRPC address.
    #[arg(long, default_value = "http://127.0.0.1:50052")]
    pub addr: String,
    /// Queue the noop jobs go to.
    #[arg(long, default_value = "notification")]
    pub queue: String,
    /// Jobs per scenario.
    #[arg(long, default_value_t = 20_000)]
    pub jobs: usize,
    /// Concurrent Enqueue calls in flight (enqueue mode).
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// The worker's concurrency, for the label only (the script sets the worker's setting).
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Redis the engine runs on: `drain` reports its CPU per job over the drain window.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
}

fn noop(queue: &str, delay_ms: i64) -> pb::EnqueueRequest {
    pb::EnqueueRequest {
        queue: queue.into(),
        job_type: "noop".into(),
        payload_json: "{}".into(),
        delay_ms,
        ..Default::default()
    }
}

/// Runs one mode.
pub async fn run(a: JobsArgs) -> anyhow::Result<()> {
    let channel = tonic::transport::Endpoint::from_shared(a.addr.clone())?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await?;
    let mut c = JobServiceClient::new(channel).max_decoding_message_size(64 << 20);
    let n = a.jobs.max(1);
    match a.mode.as_str() {
        "enqueue" => {
            c.pause_queue(pb::PauseQueueRequest {
                queue: a.queue.clone(),
            })
            .await?;
            let t = Instant::now();
            let per = n.div_ceil(a.clients.max(1));
            let mut tasks = Vec::new();
            for _ in 0..a.clients.max(1) {
                let mut c = c.clone();
                let q = a.queue.clone();
                tasks.push(tokio::spawn(async move {
                    for _ in 0..per {
                        c.enqueue(noop(&q, 0)).await?;
                    }
                    anyhow::Ok(())
                }));
            }
            for task in tasks {
                task.await??;
            }
            let single = (per * a.clients.max(1)) as f64 / t.elapsed().as_secs_f64();
            line(
                "jobs-enqueue-single",
                serde_json::json!({"clients": a.clients, "jobs": per * a.clients.max(1), "jobs_per_sec": single.round()}),
            );
            let t = Instant::now();
            bulk(&mut c, &a.queue, n, 0).await?;
            let rate = n as f64 / t.elapsed().as_secs_f64();
            line(
                "jobs-enqueue-bulk",
                serde_json::json!({"jobs": n, "batch": 1000, "jobs_per_sec": rate.round()}),
            );
            c.resume_queue(pb::ResumeQueueRequest {
                queue: a.queue.clone(),
            })
            .await?;
        }
        "drain" => {
            // Jobs left queued by an earlier mode (`enqueue` leaves its jobs for the worker) would
            // run first and inflate Redis's CPU over the drain window: wait until none is left.
            settle(&mut c, &a.queue).await?;
            c.pause_queue(pb::PauseQueueRequest {
                queue: a.queue.clone(),
            })
            .await?;
            let ids = bulk(&mut c, &a.queue, n, 0).await?;
            let redis_cpu = async || match &a.redis_url {
                Some(url) => Some(crate::realtime::redis_cpu(url).await),
                None => None,
            };
            let cpu0 = redis_cpu().await;
            c.resume_queue(pb::ResumeQueueRequest {
                queue: a.queue.clone(),
            })
            .await?;
            // The last job added finishes among the last (FIFO): Redis's CPU until then is the
            // drain's, before the read-back below adds its own.
            wait_done(&mut c, &ids[ids.len().saturating_sub(1)..]).await?;
            let cpu = redis_cpu().await.zip(cpu0).map(|(now, then)| now - then);
            let jobs = wait_done(&mut c, &ids).await?;
            let first = jobs.iter().map(|j| j.started_at_ms).min().unwrap_or(0);
            let last = jobs.iter().map(|j| j.finished_at_ms).max().unwrap_or(0);
            let rate = n as f64 * 1000.0 / ((last - first).max(1) as f64);
            let mut figures = serde_json::json!({"jobs": n, "jobs_per_sec": rate.round()});
            if let Some(cpu) = cpu.filter(|_| n > 0) {
                figures["redis_cpu_us_per_job"] =
                    serde_json::json!((cpu / n as f64 * 1e7).round() / 10.0);
            }
            line(&format!("jobs-drain-c{}", a.concurrency), figures);
        }
        "e2e" => {
            let ids = bulk(&mut c, &a.queue, n, 0).await?;
            let jobs = wait_done(&mut c, &ids).await?;
            let first = jobs.iter().map(|j| j.created_at_ms).min().unwrap_or(0);
            let last = jobs.iter().map(|j| j.finished_at_ms).max().unwrap_or(0);
            let rate = n as f64 * 1000.0 / ((last - first).max(1) as f64);
            let (p50, p99) = quantiles(jobs.iter().map(|j| j.started_at_ms - j.created_at_ms))?;
            line(
                &format!("jobs-e2e-bulk-c{}", a.concurrency),
                serde_json::json!({"jobs": n, "jobs_per_sec": rate.round(), "start_p50_ms": p50, "start_p99_ms": p99}),
            );
        }
        "stream" => {
            let t = Instant::now();
            let mut ids = Vec::with_capacity(n);
            for _ in 0..n {
                ids.push(c.enqueue(noop(&a.queue, 0)).await?.into_inner().job_id);
            }
            let adds = n as f64 / t.elapsed().as_secs_f64();
            let jobs = wait_done(&mut c, &ids).await?;
            let (p50, p99) = quantiles(jobs.iter().map(|j| j.started_at_ms - j.created_at_ms))?;
            line(
                &format!("jobs-stream-serial-c{}", a.concurrency),
                serde_json::json!({"jobs": n, "jobs_per_sec": adds.round(), "start_p50_ms": p50, "start_p99_ms": p99}),
            );
        }
        "delayed" => {
            let n = n.min(1000);
            let t = Instant::now();
            let mut ids = Vec::with_capacity(n);
            for i in 0..n {
                let due = t + Duration::from_millis(i as u64 * 2);
                tokio::time::sleep_until(due.into()).await;
                ids.push(c.enqueue(noop(&a.queue, 1000)).await?.into_inner().job_id);
            }
            let jobs = wait_done(&mut c, &ids).await?;
            let (p50, p99) = quantiles(jobs.iter().map(|j| j.started_at_ms - j.due_at_ms))?;
            line(
                "jobs-delayed-1000ms-500ps",
                serde_json::json!({"jobs": n, "lateness_p50_ms": p50, "lateness_p99_ms": p99}),
            );
        }
        other => anyhow::bail!("unknown mode {other:?}"),
    }
    Ok(())
}

fn line(scenario: &str, mut figures: serde_json::Value) {
    figures["scenario"] = serde_json::Value::from(scenario);
    println!("{figures}");
}

async fn bulk(c: &mut Client, queue: &str, n: usize, delay_ms: i64) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::with_capacity(n);
    let mut left = n;
    while left > 0 {
        let k = left.min(1000);
        let jobs = (0..k).map(|_| noop(queue, delay_ms)).collect();
        let r = c
            .enqueue_bulk(pb::EnqueueBulkRequest { jobs })
            .await?
            .into_inner();
        ids.extend(r.results.into_iter().map(|r| r.job_id));
        left -= k;
    }
    Ok(ids)
}

/// Waits until `queue` has no waiting or active job (at most 10 minutes), resuming it if paused.
async fn settle(c: &mut Client, queue: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let stats = c
            .queue_stats(pb::QueueStatsRequest {
                queue: queue.to_owned(),
            })
            .await?
            .into_inner();
        if stats.queues.iter().all(|q| q.waiting == 0 && q.active == 0) {
            return Ok(());
        }
        if stats.queues.iter().any(|q| q.paused) {
            // Left paused by an interrupted run: the worker must be able to empty it.
            c.resume_queue(pb::ResumeQueueRequest {
                queue: queue.to_owned(),
            })
            .await?;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "queue {queue} still had jobs after 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the last job is finished, then reads every job (16 reads in flight).
async fn wait_done(c: &mut Client, ids: &[String]) -> anyhow::Result<Vec<pb::Job>> {
    let deadline = Instant::now() + Duration::from_secs(600);
    for id in ids.iter().rev() {
        loop {
            let j = c
                .get_job(pb::GetJobRequest { job_id: id.clone() })
                .await?
                .into_inner()
                .job;
            if j.is_some_and(|j| j.finished_at_ms > 0) {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "jobs did not finish within 10 minutes"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(ids.len().div_ceil(16).max(1)) {
        let mut c = c.clone();
        let chunk = chunk.to_vec();
        out.push(tokio::spawn(async move {
            let mut jobs = Vec::with_capacity(chunk.len());
            for id in chunk {
                loop {
                    let j = c
                        .get_job(pb::GetJobRequest { job_id: id.clone() })
                        .await?
                        .into_inner()
                        .job;
                    match j {
                        Some(j) if j.finished_at_ms > 0 => {
                            jobs.push(j);
                            break;
                        }
                        _ => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            }
            anyhow::Ok(jobs)
        }));
    }
    let mut jobs = Vec::with_capacity(ids.len());
    for t in out {
        jobs.extend(t.await??);
    }
    Ok(jobs)
}

fn quantiles(values: impl Iterator<Item = i64>) -> anyhow::Result<(u64, u64)> {
    let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000, 3)?;
    for v in values {
        h.record(u64::try_from(v.max(0)).unwrap_or(0).max(1))?;
    }
    Ok((h.value_at_quantile(0.50), h.value_at_quantile(0.99)))
}
