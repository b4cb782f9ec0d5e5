//! Gives the operating system back the memory a burst of work freed.
//!
//! glibc's allocator keeps what a thread freed in that thread's arena and returns pages only from
//! the top of each heap. After a burst of short-lived work interleaved with long-lived objects
//! (a realtime gateway accepting 1,000 WebSocket handshakes, 200 at a time, each with its HTTP
//! buffers, while the sockets' own state stays), the freed pages stay resident: measured here,
//! 3.3–3.7 MB of a gateway's 8–11 MB after 1,000 connections. `malloc_trim(0)` walks every
//! arena and hands whole free pages back with `madvise`.
//!
//! [`Churn`] counts the events that leave such garbage (connections opened or closed);
//! [`trim_after_bursts`] trims once a burst has ended (a quiet tick after at least
//! [`MIN_EVENTS`] events), or every [`MAX_DELAY`] while the churn goes on.
use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// Events since the last trim below which a quiet moment does not trim.
pub const MIN_EVENTS: u64 = 64;
/// How often the churn is sampled: a burst counts as over after one quiet tick.
pub const TICK: Duration = Duration::from_millis(100);
/// Longest time between trims while events keep coming.
pub const MAX_DELAY: Duration = Duration::from_secs(5);

/// Asks the allocator to return its free pages; whether anything was returned. Off glibc
/// (musl, other systems) it does nothing: those allocators have no such call.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn release_free_memory() -> bool {
    // SAFETY: malloc_trim takes no pointer and has no precondition; glibc takes each arena's
    // lock in turn, like any other allocator call.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Asks the allocator to return its free pages (nothing to do off glibc).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_memory() -> bool {
    false
}

/// A count of events that free memory in bulk (connections opened and closed).
#[derive(Debug, Default)]
pub struct Churn(AtomicU64);

impl Churn {
    /// One event.
    pub fn note(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn total(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Trims after bursts of `churn` until `cancel` fires. Each trim runs on a blocking thread (it
/// locks the arenas one by one for up to a few milliseconds) and counts in
/// `ncy_memory_trims_total{released}`.
pub async fn trim_after_bursts(churn: Arc<Churn>, cancel: CancellationToken) {
    metrics::describe_counter!(
        "ncy_memory_trims_total",
        "Times the allocator was asked to return free memory after a burst of connections; \
         released=true when it returned some"
    );
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut trimmed_at = churn.total();
    let mut seen = trimmed_at;
    let mut last_trim = Instant::now();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = churn.total();
        let quiet = now == seen;
        seen = now;
        if now - trimmed_at < MIN_EVENTS || !(quiet || last_trim.elapsed() >= MAX_DELAY) {
            continue;
        }
        trimmed_at = now;
        last_trim = Instant::now();
        let released = tokio::task::spawn_blocking(release_free_memory)
            .await
            .unwrap_or(false);
        tracing::debug!(events = now, released, "returned free memory after a burst");
        metrics::counter!("ncy_memory_trims_total", "released" => if released { "true" } else { "false" })
            .increment(1);
    }
}
