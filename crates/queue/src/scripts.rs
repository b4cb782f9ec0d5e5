//! The Lua transition scripts, one per state change, each touching one queue's hash slot.
//!
//! Each script is the key layout's suffixes as Lua locals (`local S_DELAYED = ':delayed'`,
//! generated from `ncy_types::QUEUE_KEY_SUFFIXES`, so Rust and Lua build keys from one
//! definition), then `common.lua` (helpers: events, retention trim, dead-lettering, activation),
//! then its own file. `redis::Script` computes the SHA once and calls `EVALSHA`, loading the
//! script only when Redis answers `NOSCRIPT` (first use, or after a Redis restart).
use redis::Script;

const COMMON: &str = include_str!("scripts/common.lua");

/// One script's source: the suffix locals, `common.lua`, then `body`.
fn source(body: &str) -> String {
    let mut src = String::new();
    for (name, suffix) in ncy_types::QUEUE_KEY_SUFFIXES {
        src.push_str(&format!("local S_{name} = '{suffix}'\n"));
    }
    src.push_str(COMMON);
    src.push('\n');
    src.push_str(body);
    src
}

macro_rules! script {
    ($file:literal) => {
        Script::new(&source(include_str!(concat!("scripts/", $file))))
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
    pub run_now: Script,
    pub delete_job: Script,
    pub schedule_set: Script,
    pub dead_select: Script,
    pub search: Script,
    pub clean_job: Script,
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
            run_now: script!("run_now.lua"),
            delete_job: script!("delete_job.lua"),
            schedule_set: script!("schedule_set.lua"),
            dead_select: script!("dead_select.lua"),
            search: script!("search.lua"),
            clean_job: script!("clean_job.lua"),
        }
    }
}

impl Default for Scripts {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODIES: &[&str] = &[
        COMMON,
        include_str!("scripts/enqueue.lua"),
        include_str!("scripts/fetch.lua"),
        include_str!("scripts/complete.lua"),
        include_str!("scripts/fail.lua"),
        include_str!("scripts/promote.lua"),
        include_str!("scripts/reclaim.lua"),
        include_str!("scripts/heartbeat.lua"),
        include_str!("scripts/progress.lua"),
        include_str!("scripts/cancel.lua"),
        include_str!("scripts/retry_dead.lua"),
        include_str!("scripts/trim.lua"),
        include_str!("scripts/purge.lua"),
        include_str!("scripts/lease.lua"),
        include_str!("scripts/run_now.lua"),
        include_str!("scripts/delete_job.lua"),
        include_str!("scripts/schedule_set.lua"),
        include_str!("scripts/dead_select.lua"),
        include_str!("scripts/search.lua"),
        include_str!("scripts/clean_job.lua"),
    ];

    #[test]
    fn scripts_build_keys_only_from_the_shared_suffixes() {
        for body in BODIES {
            // A key suffix written as a literal after the tag would be a second definition.
            assert!(!body.contains("tag .. '"), "literal key suffix in:\n{body}");
            // Every suffix a script names exists (Redis would reject an unknown global at run time).
            for word in body.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if let Some(name) = word.strip_prefix("S_").filter(|n| !n.is_empty()) {
                    assert!(
                        ncy_types::QUEUE_KEY_SUFFIXES
                            .iter()
                            .any(|(n, _)| *n == name),
                        "unknown suffix {word}"
                    );
                }
            }
        }
        let src = source("");
        assert!(src.starts_with("local S_READY = ':ready:'\n"), "{src}");
        assert!(
            src.contains("local S_EVENTS_LIVE = ':events:live'\n"),
            "{src}"
        );
    }
}
