//! The Lua transition scripts, one per state change, each touching one queue's hash slot.
//!
//! `common.lua` (helpers: events, retention trim, dead-lettering, activation) is prepended to each
//! script at compile time. `redis::Script` computes the SHA once and calls `EVALSHA`, loading the
//! script only when Redis answers `NOSCRIPT` (first use, or after a Redis restart).
use redis::Script;

macro_rules! script {
    ($file:literal) => {
        Script::new(concat!(
            include_str!("scripts/common.lua"),
            "\n",
            include_str!(concat!("scripts/", $file))
        ))
    };
}

/// Every transition script, built once per engine.
#[derive(Debug, Clone)]
pub struct Scripts {
    pub enqueue: Script,
    pub fetch: Script,
    pub complete: Script,
    pub fail: Script,
    pub promote: Script,
    pub reclaim: Script,
    pub heartbeat: Script,
    pub progress: Script,
    pub cancel: Script,
    pub retry_dead: Script,
    pub trim: Script,
    pub purge: Script,
    pub lease: Script,
}

impl Scripts {
    /// Builds the scripts (hashing only; nothing is sent to Redis).
    pub fn new() -> Self {
        Self {
            enqueue: script!("enqueue.lua"),
            fetch: script!("fetch.lua"),
            complete: script!("complete.lua"),
            fail: script!("fail.lua"),
            promote: script!("promote.lua"),
            reclaim: script!("reclaim.lua"),
            heartbeat: script!("heartbeat.lua"),
            progress: script!("progress.lua"),
            cancel: script!("cancel.lua"),
            retry_dead: script!("retry_dead.lua"),
            trim: script!("trim.lua"),
            purge: script!("purge.lua"),
            lease: script!("lease.lua"),
        }
    }
}

impl Default for Scripts {
    fn default() -> Self {
        Self::new()
    }
}
