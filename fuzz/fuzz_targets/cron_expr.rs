//! Cron schedules: `ncy_queue::cron::{check_name, parse, next_tick, latest_tick}`, what
//! UpsertSchedule runs on a client's schedule (job-scheduler `schedules::definition`) and what
//! every scheduler replica runs on each stored schedule (`Engine::tick`, the schedule views).
//!
//! Input: 6 bytes of "now" (any instant from 1970 to about 2400, in milliseconds; the engine passes
//! the clock), then text lines `expression`, `time zone`, `schedule name`. Nothing may panic.
//! Properties: the next tick is strictly after now and is itself a tick (the latest tick at or before
//! it is itself); the latest tick is at or before now.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ncy_queue::cron;

/// 2400-01-01T00:00:00Z in milliseconds.
const HORIZON_MS: u64 = 13_569_465_600_000;

fuzz_target!(|data: &[u8]| {
    let Some((clock, text)) = data.split_at_checked(6) else {
        return;
    };
    let mut ms = [0u8; 8];
    ms[2..].copy_from_slice(clock);
    let now = i64::try_from(u64::from_be_bytes(ms) % HORIZON_MS).expect("below the horizon");
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let mut lines = text.splitn(3, '\n');
    let expr = lines.next().unwrap_or_default();
    let time_zone = lines.next().unwrap_or_default();
    let name = lines.next().unwrap_or_default();

    let _ = cron::check_name(name);
    let Ok((schedule, tz)) = cron::parse(expr, time_zone) else {
        return;
    };
    if let Some(next) = cron::next_tick(&schedule, tz, now) {
        assert!(next > now, "next tick {next} is not after {now}");
        assert_eq!(
            cron::latest_tick(&schedule, tz, next),
            Some(next),
            "the next tick after {now} is not a tick"
        );
    }
    if let Some(latest) = cron::latest_tick(&schedule, tz, now) {
        assert!(latest <= now, "latest tick {latest} is after {now}");
    }
});
