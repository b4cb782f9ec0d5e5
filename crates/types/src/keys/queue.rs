//! Keys of the job engine: one hash tag per queue, one for cron.
//!
//! Every key of queue `Q` starts with the tag `{<p>:q:Q}`, so each transition script (enqueue, fetch,
//! complete, fail, promote) touches a single Redis Cluster slot and never raises `CROSSSLOT`.
//! Cron schedules and their leases share `{<p>:cron}`; a tick then enqueues into its queue with the
//! idempotency key `cron:<name>:<tick-ms>`, a separate one-slot script, recorded under
//! [`QueueKeys::schedule_dedup`]: a namespace no client idempotency key ([`QueueKeys::dedup`])
//! can reach.

use std::fmt::Display;

use super::KeySpace;

/// What follows the queue's tag in each of its keys (a trailing `:` where an id or key follows): the
/// one definition of the layout, used by the builders of [`QueueKeys`] and, as Lua locals
/// `S_<NAME>` (`local S_DELAYED = ':delayed'`), by the job engine's scripts, which build keys as
/// `tag .. S_DELAYED` from the tag they receive.
pub const QUEUE_KEY_SUFFIXES: &[(&str, &str)] = &[
    ("READY", READY),
    ("JOB", JOB),
    ("DELAYED", DELAYED),
    ("DONE", DONE),
    ("FAILED", FAILED),
    ("DEAD", DEAD),
    ("DEDUP", DEDUP),
    ("CRON_DEDUP", CRON_DEDUP),
    ("PAUSED", PAUSED),
    ("LIMITER", LIMITER),
    ("PROMOTER_LEASE", PROMOTER_LEASE),
    ("WAKE", WAKE),
    ("EVENTS", EVENTS),
    ("EVENTS_LIVE", EVENTS_LIVE),
    ("CANCELLED", CANCELLED),
    ("GHOSTS", GHOSTS),
    ("WORKERS", WORKERS),
    ("HISTORY", HISTORY),
];

const READY: &str = ":ready:";
const JOB: &str = ":job:";
const DELAYED: &str = ":delayed";
const DONE: &str = ":done";
const FAILED: &str = ":failed";
const DEAD: &str = ":dead";
const DEDUP: &str = ":dedup:";
const CRON_DEDUP: &str = ":cron-dedup:";
const PAUSED: &str = ":paused";
const LIMITER: &str = ":limiter";
const PROMOTER_LEASE: &str = ":lease:promoter";
const WAKE: &str = ":wake";
const EVENTS: &str = ":events";
const EVENTS_LIVE: &str = ":events:live";
const CANCELLED: &str = ":cancelled";
const GHOSTS: &str = ":ghosts";
const WORKERS: &str = ":workers";
const HISTORY: &str = ":history:";

/// The keys of one job queue, all in one cluster slot.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueueKeys {
    name: String,
    tag: String,
}

impl KeySpace {
    /// The keys of queue `name`, tagged `{<p>:q:<name>}`.
    ///
    /// `name` should be a validated queue name (see `QueueName`); a name with braces would still
    /// keep the queue in one slot but could overlap another queue's keys.
    pub fn queue(&self, name: impl AsRef<str>) -> QueueKeys {
        let name = name.as_ref();
        QueueKeys {
            name: name.to_owned(),
            tag: format!("{{{}:q:{name}}}", self.prefix()),
        }
    }

    /// Hash of cron schedules (name → definition): `{<p>:cron}:schedules`.
    pub fn schedules(&self) -> String {
        format!("{}:schedules", self.cron_tag())
    }

    /// Hash of the last fired tick per schedule (name → ms), for the missed-tick policy:
    /// `{<p>:cron}:last_fired`.
    pub fn schedule_last_fired(&self) -> String {
        format!("{}:last_fired", self.cron_tag())
    }

    /// Lease held by the scheduler replica that evaluates schedule `name`:
    /// `{<p>:cron}:lease:<name>`.
    pub fn schedule_lease(&self, name: &str) -> String {
        format!("{}:lease:{name}", self.cron_tag())
    }

    fn cron_tag(&self) -> String {
        format!("{{{}:cron}}", self.prefix())
    }
}

impl QueueKeys {
    /// The queue name these keys belong to.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The hash tag shared by every key of this queue, braces included: `{<p>:q:<name>}`.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// Stream of ready jobs of one priority band (consumer group `workers`): `…:ready:<band>`.
    pub fn ready(&self, band: u8) -> String {
        format!("{}{READY}{band}", self.tag)
    }

    /// Hash of one job: `…:job:<id>`.
    pub fn job(&self, id: impl Display) -> String {
        format!("{}{JOB}{id}", self.tag)
    }

    /// What precedes a job id in [`QueueKeys::job`], for scripts that build job keys from ids.
    pub fn job_prefix(&self) -> String {
        self.at(JOB)
    }

    /// Sorted set of delayed jobs and retries waiting for backoff, by due time (ms): `…:delayed`.
    pub fn delayed(&self) -> String {
        self.at(DELAYED)
    }

    /// Sorted set of completed jobs by finish time: `…:done`.
    pub fn done(&self) -> String {
        self.at(DONE)
    }

    /// Sorted set of failed jobs by finish time: `…:failed`.
    pub fn failed(&self) -> String {
        self.at(FAILED)
    }

    /// Stream of dead letters: `…:dead`.
    pub fn dead(&self) -> String {
        self.at(DEAD)
    }

    /// Idempotency record (with a TTL) for a client's `key`: `…:dedup:<key>`.
    pub fn dedup(&self, key: &str) -> String {
        format!("{}{DEDUP}{key}", self.tag)
    }

    /// Idempotency record (with a TTL) of a cron tick's `key`: `…:cron-dedup:<key>`. Apart from the
    /// clients' records: whatever a client sends as its key lands under `…:dedup:`, so it can
    /// never claim (and so suppress) a tick in advance.
    pub fn schedule_dedup(&self, key: &str) -> String {
        format!("{}{CRON_DEDUP}{key}", self.tag)
    }

    /// Flag set while the queue is paused: `…:paused`.
    pub fn paused(&self) -> String {
        self.at(PAUSED)
    }

    /// Rate limiter state shared by all workers of the queue: `…:limiter`.
    pub fn limiter(&self) -> String {
        self.at(LIMITER)
    }

    /// Lease of the single active delayed-job promoter: `…:lease:promoter`.
    pub fn promoter_lease(&self) -> String {
        self.at(PROMOTER_LEASE)
    }

    /// Pub/sub channel that wakes the promoter when an earlier delayed job arrives: `…:wake`.
    pub fn promoter_wake_channel(&self) -> String {
        self.at(WAKE)
    }

    /// Capped stream of job events (progress, state changes) for replay: `…:events`.
    pub fn events(&self) -> String {
        self.at(EVENTS)
    }

    /// Pub/sub channel of the same events for live listeners: `…:events:live`.
    pub fn events_channel(&self) -> String {
        self.at(EVENTS_LIVE)
    }

    /// Sorted set of CANCELLED jobs by finish time, for listing and retention: `…:cancelled`.
    pub fn cancelled(&self) -> String {
        self.at(CANCELLED)
    }

    /// Set of CANCELLED jobs whose stream entry is still in their band (enqueued without its entry
    /// id on the hash; dropped when a fetch passes it): `…:ghosts`.
    pub fn ghosts(&self) -> String {
        self.at(GHOSTS)
    }

    /// Sorted set of worker consumers by last heartbeat (ms): `…:workers`.
    pub fn workers(&self) -> String {
        self.at(WORKERS)
    }

    /// Hash of the jobs finished in one UTC day (`day` = days since the Unix epoch), a field per
    /// minute of the day and kind (`<minute>:c` completed, `<minute>:f` failed attempts), added to
    /// by the workers' periodic flushes and expiring a week after the last one: `…:history:<day>`.
    /// One key per day keeps a queue's history at a bounded number of keys however busy it is.
    pub fn history(&self, day: i64) -> String {
        format!("{}{HISTORY}{day}", self.tag)
    }

    /// Prefix of the dedup keys, for scripts that build them from idempotency keys.
    pub fn dedup_prefix(&self) -> String {
        self.at(DEDUP)
    }

    fn at(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.tag)
    }

    /// Every key of this queue that is not per job or per idempotency key.
    pub fn fixed_keys(&self) -> Vec<String> {
        vec![
            self.delayed(),
            self.done(),
            self.failed(),
            self.dead(),
            self.paused(),
            self.limiter(),
            self.promoter_lease(),
            self.events(),
            self.cancelled(),
            self.workers(),
            self.ghosts(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::super::hash_slot;
    use super::*;

    fn ks() -> KeySpace {
        KeySpace::new("ncy").expect("valid prefix")
    }

    #[test]
    fn queue_key_formats() {
        let q = ks().queue("email");
        assert_eq!(q.name(), "email");
        assert_eq!(q.tag(), "{ncy:q:email}");
        assert_eq!(q.ready(10), "{ncy:q:email}:ready:10");
        assert_eq!(q.job("j1"), "{ncy:q:email}:job:j1");
        assert_eq!(q.job_prefix(), "{ncy:q:email}:job:");
        assert_eq!(q.delayed(), "{ncy:q:email}:delayed");
        assert_eq!(q.done(), "{ncy:q:email}:done");
        assert_eq!(q.failed(), "{ncy:q:email}:failed");
        assert_eq!(q.dead(), "{ncy:q:email}:dead");
        assert_eq!(q.dedup("k"), "{ncy:q:email}:dedup:k");
        assert_eq!(
            q.schedule_dedup("cron:backup:1"),
            "{ncy:q:email}:cron-dedup:cron:backup:1"
        );
        assert_eq!(q.paused(), "{ncy:q:email}:paused");
        assert_eq!(q.limiter(), "{ncy:q:email}:limiter");
        assert_eq!(q.promoter_lease(), "{ncy:q:email}:lease:promoter");
        assert_eq!(q.promoter_wake_channel(), "{ncy:q:email}:wake");
        assert_eq!(q.cancelled(), "{ncy:q:email}:cancelled");
        assert_eq!(q.workers(), "{ncy:q:email}:workers");
        assert_eq!(q.ghosts(), "{ncy:q:email}:ghosts");
        assert_eq!(q.dedup_prefix(), "{ncy:q:email}:dedup:");
        assert_eq!(q.events(), "{ncy:q:email}:events");
        assert_eq!(q.events_channel(), "{ncy:q:email}:events:live");
        assert_eq!(q.history(20_000), "{ncy:q:email}:history:20000");
    }

    #[test]
    fn cron_key_formats() {
        let k = ks();
        assert_eq!(k.schedules(), "{ncy:cron}:schedules");
        assert_eq!(k.schedule_last_fired(), "{ncy:cron}:last_fired");
        assert_eq!(
            k.schedule_lease("cleanup-old-data"),
            "{ncy:cron}:lease:cleanup-old-data"
        );
    }

    #[test]
    fn all_keys_of_one_queue_share_a_slot() {
        for name in ["email", "notification", "report", "cleanup"] {
            let q = ks().queue(name);
            let slot = hash_slot(q.tag());
            let mut keys = q.fixed_keys();
            keys.extend((0..=10).map(|band| q.ready(band)));
            keys.push(q.job("0190a6f0-0000-7000-8000-000000000000"));
            keys.push(q.job("{weird}id"));
            keys.push(q.dedup("cron:cleanup:1700000000000"));
            keys.push(q.schedule_dedup("cron:cleanup:1700000000000"));
            keys.push(q.promoter_wake_channel());
            keys.push(q.events_channel());
            keys.push(q.history(20_000));
            for key in keys {
                assert_eq!(hash_slot(&key), slot, "{key}");
            }
        }
    }

    #[test]
    fn no_client_key_reaches_a_cron_tick_record() {
        let q = ks().queue("cleanup");
        let tick = q.schedule_dedup("cron:cleanup-old-data:1700000000000");
        for client in [
            "cron:cleanup-old-data:1700000000000",
            "../cron-dedup:cron:cleanup-old-data:1700000000000",
            "",
        ] {
            assert_ne!(q.dedup(client), tick, "{client}");
            assert!(q.dedup(client).starts_with(&q.dedup_prefix()));
        }
        assert!(!tick.starts_with(&q.dedup_prefix()));
    }

    #[test]
    fn different_queues_use_different_tags() {
        let k = ks();
        let names = ["email", "notification", "report", "cleanup"];
        let tags: std::collections::HashSet<String> =
            names.iter().map(|n| k.queue(n).tag().to_owned()).collect();
        assert_eq!(tags.len(), names.len());
        // The four seed queues also land on four distinct slots, spreading load over a cluster.
        let slots: std::collections::HashSet<u16> =
            names.iter().map(|n| hash_slot(k.queue(n).tag())).collect();
        assert_eq!(slots.len(), names.len());
    }

    #[test]
    fn cron_keys_share_a_slot() {
        let k = ks();
        let slot = hash_slot(&k.schedules());
        assert_eq!(hash_slot(&k.schedule_lease("a")), slot);
        assert_eq!(hash_slot(&k.schedule_lease("backup-database")), slot);
        assert_eq!(hash_slot(&k.schedule_last_fired()), slot);
    }
}
