//! `loadgen jobs-floor`: the least Redis work a durable, at-least-once stream queue does per job,
//! with no engine around it. It is the machine's floor under `loadgen jobs --mode drain`, as
//! `fanout-floor` is under `realtime`.
//!
//! N jobs are pre-filled the way our engine stores them: a hash with the engine's fields and a
//! stream entry naming it, read through one consumer group. Then `--loops` claim loops, each on its
//! own connection (like worker replicas), repeat until the stream is empty:
//! 1. claim up to `--concurrency` jobs with one `XREADGROUP`;
//! 2. mark them ACTIVE, one `HSET` per job in one pipeline (`--activate false` leaves this out, as
//!    if the pending list alone said which jobs run);
//! 3. "run" them (nothing) and record them in one pipeline: an `HSET` per job (state, result,
//!    finish time), then one `ZADD` of the batch to the finished set, one `XACK` and one `XDEL`.
//!
//! No Lua, no checks that the job is still the worker's, no events, no retention: what an engine
//! adds for safety comes on top of this. Prints jobs/s and Redis's CPU per job (`INFO cpu` around
//! the claim phase) and removes every key it wrote. Redis must be on a loopback address.
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use redis::aio::MultiplexedConnection;
use redis::streams::StreamReadReply;

/// `loadgen jobs-floor` options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Redis to measure (loopback only). Use a Redis of its own: its CPU is read around the run.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// Jobs pre-filled and then drained.
    #[arg(long, default_value_t = 20_000)]
    jobs: u64,
    /// Jobs claimed by one `XREADGROUP` (a worker's concurrency).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Claim loops at once, each on its own connection.
    #[arg(long, default_value_t = 2)]
    loops: usize,
    /// Mark each claimed job ACTIVE in its hash (one `HSET` per job).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    activate: bool,
}

const GROUP: &str = "workers";

pub async fn run(a: Args) -> anyhow::Result<()> {
    if !loopback(&a.redis_url) {
        eprintln!("error: --redis-url must name a loopback address (127.0.0.0/8, ::1, localhost)");
        std::process::exit(2);
    }
    let (concurrency, loops, n) = (a.concurrency.max(1), a.loops.max(1), a.jobs.max(1));
    let client = redis::Client::open(a.redis_url.as_str())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let tag = format!("{{ncy-jobs-floor:{}}}", std::process::id());
    let keys = Keys {
        stream: format!("{tag}:ready"),
        done: format!("{tag}:done"),
        job: format!("{tag}:job:"),
    };
    let result = measure(&client, &mut conn, &keys, &a, n, concurrency, loops).await;
    cleanup(&mut conn, &keys, n).await?;
    let mut figures = result?;
    figures["key_tag"] = serde_json::Value::from(tag);
    println!("{figures}");
    Ok(())
}

struct Keys {
    stream: String,
    done: String,
    job: String,
}

async fn measure(
    client: &redis::Client,
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    a: &Args,
    n: u64,
    concurrency: usize,
    loops: usize,
) -> anyhow::Result<serde_json::Value> {
    let () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&keys.stream)
        .arg(GROUP)
        .arg("$")
        .arg("MKSTREAM")
        .query_async(conn)
        .await?;
    prefill(conn, keys, n).await?;
    let redis0 = crate::realtime::redis_cpu(&a.redis_url).await;
    let own0 = crate::realtime::cpu_s("self");
    let done = Arc::new(AtomicU64::new(0));
    let t = Instant::now();
    let mut tasks = Vec::with_capacity(loops);
    for i in 0..loops {
        let conn = client.get_multiplexed_async_connection().await?;
        let (stream, done_key, job) = (keys.stream.clone(), keys.done.clone(), keys.job.clone());
        let (done, activate) = (done.clone(), a.activate);
        tasks.push(tokio::spawn(async move {
            claim_loop(
                conn,
                &format!("floor-{i}"),
                [&stream, &done_key, &job],
                concurrency,
                activate,
                &done,
            )
            .await
        }));
    }
    for task in tasks {
        task.await??;
    }
    let secs = t.elapsed().as_secs_f64();
    let redis_cpu = crate::realtime::redis_cpu(&a.redis_url).await - redis0;
    let own_cpu = crate::realtime::cpu_s("self") - own0;
    let finished: u64 = redis::cmd("ZCARD")
        .arg(&keys.done)
        .query_async(conn)
        .await?;
    let per_job = |s: f64| (s / n as f64 * 1e7).round() / 10.0;
    Ok(serde_json::json!({
        "bench": "jobs-floor",
        "scenario": format!("jobs-floor-c{concurrency}"),
        "jobs": n,
        "finished": finished,
        "claimed": done.load(Ordering::Relaxed),
        "concurrency": concurrency,
        "loops": loops,
        "activate": a.activate,
        "jobs_per_sec": (n as f64 / secs).round(),
        "redis_cpu_us_per_job": per_job(redis_cpu),
        "loadgen_cpu_us_per_job": per_job(own_cpu),
    }))
}

/// Writes `n` jobs as the engine does (the hash of `NewJob::initial_hash`, then an entry naming
/// the job), 1,000 per pipeline.
async fn prefill(conn: &mut MultiplexedConnection, keys: &Keys, n: u64) -> anyhow::Result<()> {
    let now = now_ms();
    // A noop job as Enqueue makes it (priority 0, three attempts, the default backoff): the floor
    // then reads and rewrites the same hash as the engine does.
    let job = ncy_queue::NewJob {
        job_type: "noop".to_owned(),
        data: "{}".to_owned(),
        priority: 0,
        max_attempts: 3,
        backoff: ncy_types::jobs::Backoff::default(),
        delay_ms: 0,
        idempotency_key: String::new(),
        owner_user_id: String::new(),
        schedule_name: String::new(),
        trace: String::new(),
    };
    let mut from = 0;
    while from < n {
        let to = (from + 1000).min(n);
        let mut pipe = redis::pipe();
        for i in from..to {
            pipe.cmd("HSET")
                .arg(format!("{}{i}", keys.job))
                .arg(job.initial_hash("notification", i64::try_from(now)?))
                .ignore();
            pipe.cmd("XADD")
                .arg(&keys.stream)
                .arg("*")
                .arg("j")
                .arg(i)
                .ignore();
        }
        let () = pipe.query_async(conn).await?;
        from = to;
    }
    Ok(())
}

/// Claims, activates and records batches until the stream has nothing left for this consumer.
async fn claim_loop(
    mut conn: MultiplexedConnection,
    consumer: &str,
    [stream, done_key, job]: [&str; 3],
    concurrency: usize,
    activate: bool,
    done: &AtomicU64,
) -> anyhow::Result<()> {
    loop {
        let read: Option<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(concurrency)
            .arg("STREAMS")
            .arg(stream)
            .arg(">")
            .query_async(&mut conn)
            .await?;
        let batch: Vec<(String, String)> = read
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .filter_map(|e| {
                let id: Option<String> = e.get("j");
                id.map(|id| (e.id, id))
            })
            .collect();
        if batch.is_empty() {
            return Ok(());
        }
        if activate {
            let now = now_ms();
            let mut pipe = redis::pipe();
            for (_, id) in &batch {
                pipe.cmd("HSET")
                    .arg(format!("{job}{id}"))
                    .arg(&[("state", "active"), ("worker", consumer)])
                    .arg(&[("attempts", 1), ("started", now), ("updated", now)])
                    .ignore();
            }
            let () = pipe.query_async(&mut conn).await?;
        }
        let now = now_ms();
        let mut pipe = redis::pipe();
        let mut zadd = redis::cmd("ZADD");
        zadd.arg(done_key);
        let mut xack = redis::cmd("XACK");
        xack.arg(stream).arg(GROUP);
        let mut xdel = redis::cmd("XDEL");
        xdel.arg(stream);
        for (entry, id) in &batch {
            pipe.cmd("HSET")
                .arg(format!("{job}{id}"))
                .arg(&[("state", "completed"), ("result", "")])
                .arg(&[("finished", now), ("updated", now)])
                .ignore();
            zadd.arg(now).arg(id);
            xack.arg(entry);
            xdel.arg(entry);
        }
        pipe.add_command(zadd)
            .ignore()
            .add_command(xack)
            .ignore()
            .add_command(xdel)
            .ignore();
        let () = pipe.query_async(&mut conn).await?;
        done.fetch_add(batch.len() as u64, Ordering::Relaxed);
    }
}

/// Removes every key the run wrote (the job hashes by name, 1,000 per pipeline; no `KEYS`).
async fn cleanup(conn: &mut MultiplexedConnection, keys: &Keys, n: u64) -> anyhow::Result<()> {
    let mut from = 0;
    while from < n {
        let to = (from + 1000).min(n);
        let mut unlink = redis::cmd("UNLINK");
        for i in from..to {
            unlink.arg(format!("{}{i}", keys.job));
        }
        let _: u64 = unlink.query_async(conn).await?;
        from = to;
    }
    let _: u64 = redis::cmd("UNLINK")
        .arg(&keys.stream)
        .arg(&keys.done)
        .query_async(conn)
        .await?;
    Ok(())
}

/// Whether a Redis URL names this machine (a loopback address, `localhost` or a unix socket).
fn loopback(url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else {
        return false;
    };
    if scheme == "unix" || scheme == "redis+unix" {
        return true;
    }
    let authority = rest.split('/').next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host_port.split(':').next().unwrap_or(""),
    };
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::loopback;

    #[test]
    fn only_loopback_redis_urls_pass() {
        for ok in [
            "redis://127.0.0.1:6379",
            "redis://127.0.0.9/2",
            "redis://:pw@localhost:6380",
            "redis://[::1]:6379",
            "unix:///tmp/redis.sock",
        ] {
            assert!(loopback(ok), "{ok}");
        }
        for bad in [
            "redis://10.0.0.1:6379",
            "redis://example.com",
            "127.0.0.1:6379",
        ] {
            assert!(!loopback(bad), "{bad}");
        }
    }
}
