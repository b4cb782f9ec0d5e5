//! `loadgen fanout-floor`: what one message to C loopback TCP sockets costs on this machine with no
//! gateway, WebSocket, runtime or Redis in the way — the floor under `loadgen realtime`'s latency.
//!
//! C socket pairs on 127.0.0.1. A writer thread sends each of M messages (`--bytes` long, about
//! the size of a gateway's `message` frame, its send time in the first 8 bytes) to every server-side
//! socket in turn with one blocking `write` each, at `--rate` messages per second; a reader thread
//! waits on all client-side sockets with one epoll set and records, per delivery, receive time −
//! send time. Both threads do nothing else, so the figure is the kernel's own cost of a loopback
//! TCP delivery on both sides (the gateway's `sendto` and the client's `epoll_wait` + `read`),
//! spread over the machine's cores. A WebSocket server cannot deliver a message to C sockets faster
//! than this on the same machine.
use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use hdrhistogram::Histogram;
use mio::{Events, Interest, Poll, Token};

/// What `loadgen fanout-floor` was asked to do.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Sockets, messages and rate, as in `loadgen realtime`.
    #[command(flatten)]
    pub fanout: crate::realtime::Fanout,
    /// Bytes per message (at least 8).
    #[arg(long, default_value_t = 300)]
    pub bytes: usize,
    /// Writer threads, each sending to its share of the sockets (two, like two gateway instances).
    #[arg(long, default_value_t = 2)]
    pub writers: usize,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// CPU seconds of the calling thread.
fn thread_cpu_s() -> f64 {
    crate::realtime::cpu_s("thread-self")
}

/// Runs the scenario and prints one JSON line.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let size = args.bytes.max(8);
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let mut servers = Vec::with_capacity(args.fanout.clients);
    let mut clients = Vec::with_capacity(args.fanout.clients);
    for _ in 0..args.fanout.clients {
        let c = TcpStream::connect(addr)?;
        let (s, _) = listener.accept()?;
        c.set_nodelay(true)?;
        s.set_nodelay(true)?;
        c.set_nonblocking(true)?;
        clients.push(mio::net::TcpStream::from_std(c));
        servers.push(s);
    }
    let expected = args.fanout.clients as u64 * args.fanout.messages;
    let reader = std::thread::spawn(move || -> anyhow::Result<(Histogram<u64>, u64, f64)> {
        let mut poll = Poll::new()?;
        for (i, c) in clients.iter_mut().enumerate() {
            poll.registry().register(c, Token(i), Interest::READABLE)?;
        }
        let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
        // Bytes of a message already read, per socket (a read may end inside a message).
        let mut partial = vec![Vec::<u8>::new(); clients.len()];
        let mut events = Events::with_capacity(1024);
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0u64;
        let mut last_ns = 0u64;
        let mut idle = Instant::now();
        while got < expected && idle.elapsed() < Duration::from_secs(10) {
            poll.poll(&mut events, Some(Duration::from_millis(200)))?;
            for ev in &events {
                let i = ev.token().0;
                loop {
                    match clients[i].read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            let now = now_ns();
                            let pending = &mut partial[i];
                            pending.extend_from_slice(&buf[..n]);
                            let whole = pending.len() / size * size;
                            for msg in pending[..whole].chunks_exact(size) {
                                let mut ts = [0u8; 8];
                                ts.copy_from_slice(&msg[..8]);
                                let sent = u64::from_le_bytes(ts);
                                let _ = hist.record((now.saturating_sub(sent) / 1000).max(1));
                                got += 1;
                                last_ns = now;
                            }
                            pending.drain(..whole);
                            idle = Instant::now();
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Ok((hist, last_ns, thread_cpu_s()))
    });
    let first_ns = now_ns();
    let writers = args.writers.clamp(1, servers.len().max(1));
    let share = servers.len().div_ceil(writers).max(1);
    let (messages, rate) = (args.fanout.messages, args.fanout.rate.max(1));
    let t0 = Instant::now();
    let mut handles = Vec::new();
    let mut rest = servers;
    while !rest.is_empty() {
        let mut mine: Vec<TcpStream> = rest.drain(..share.min(rest.len())).collect();
        handles.push(std::thread::spawn(move || -> anyhow::Result<f64> {
            let cpu0 = thread_cpu_s();
            let mut msg = vec![b'x'; size];
            for i in 0..messages {
                let due = t0 + Duration::from_secs_f64(i as f64 / rate as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                msg[..8].copy_from_slice(&now_ns().to_le_bytes());
                for s in &mut mine {
                    s.write_all(&msg)?;
                }
            }
            Ok(thread_cpu_s() - cpu0)
        }));
    }
    let mut writer_cpu = 0.0;
    for h in handles {
        writer_cpu += h
            .join()
            .map_err(|_| anyhow::anyhow!("writer thread panicked"))??;
    }
    let (hist, last_ns, reader_cpu) = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader thread panicked"))??;
    let window_s = (last_ns.saturating_sub(first_ns) as f64 / 1e9).max(0.001);
    let ms = |us: u64| (us as f64 / 10.0).round() / 100.0;
    let per_delivery_us = |cpu: f64| (cpu / expected.max(1) as f64 * 1e7).round() / 10.0;
    let figures = serde_json::json!({
        "bench": "fanout-floor",
        "clients": args.fanout.clients,
        "messages": args.fanout.messages,
        "rate": args.fanout.rate,
        "bytes": size,
        "writers": writers,
        "delivered": hist.len(),
        "expected_deliveries": expected,
        "delivered_per_sec": (hist.len() as f64 / window_s).round(),
        "p50_ms": ms(hist.value_at_quantile(0.50)),
        "p99_ms": ms(hist.value_at_quantile(0.99)),
        "max_ms": ms(hist.max()),
        "cpu_us_per_delivery": {"writer": per_delivery_us(writer_cpu), "reader": per_delivery_us(reader_cpu)},
    });
    println!("{figures}");
    Ok(())
}
