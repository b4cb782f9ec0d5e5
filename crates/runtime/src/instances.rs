//! The instance registry: which instances of a service are live, each with the last snapshot it
//! reported, so that one instance can answer for all of them (the gateways'
//! `Stats(all_instances)`: an operator behind a Kubernetes Service reaches one replica per call).
//!
//! One Redis hash per service, `<p>:instances:<service>` (ncy-types' `KeySpace::instances`): field =
//! instance id, value = `<reported at, Unix ms>\n<snapshot bytes>`. Every operation names that one
//! key, so it runs unchanged on Redis Cluster.
//! - Each instance writes its field every report interval (`NCY_INSTANCE_REPORT_MS`, 5 s; `HSET`,
//!   and `PEXPIRE` of the hash to [`PRUNE_AFTER`] intervals, so a deployment whose instances all
//!   died leaves nothing behind), and deletes it when its drain starts (`HDEL`).
//! - Readers read at most [`MAX_FIELDS`] fields (`HSCAN`) and leave out snapshots older than
//!   [`STALE_AFTER`] intervals: an instance that died without draining drops out after 3 missed
//!   reports.
//! - Every [`PRUNE_EVERY`] reports (and at its first), each instance deletes fields older than
//!   [`PRUNE_AFTER`] intervals, so dead instances do not accumulate; a script re-checks each
//!   field's age as it deletes it, so a report landing meanwhile is never lost.
//!
//! A failed report is logged and tried again at the next interval; it never stops the service.
//! Ages compare the writer's clock with the reader's: clocks apart by more than a couple of
//! intervals would hide or keep instances wrongly.
use std::{collections::HashMap, future::Future, time::Duration};

use ncy_types::KeySpace;
use redis::Script;
use tokio_util::sync::CancellationToken;

use crate::{
    error::RuntimeError,
    redis::RedisPool,
    service::ServiceRuntime,
    settings::{ConfigError, Env},
};

/// A snapshot older than this many report intervals is not listed (its instance missed 3 reports).
pub const STALE_AFTER: u32 = 3;
/// A field older than this many report intervals is deleted by the next prune.
pub const PRUNE_AFTER: u32 = 10;
/// An instance prunes at its first report and then once every this many reports.
pub const PRUNE_EVERY: u64 = 10;
/// At most this many instances are listed (the caller's own always among them).
pub const MAX_INSTANCES: usize = 256;
/// At most this many fields are read from the hash, live or not.
pub const MAX_FIELDS: usize = 1024;
/// A snapshot larger than this is ignored (the gateways' are a few hundred bytes).
pub const MAX_SNAPSHOT_BYTES: usize = 64 * 1024;
/// `HSCAN … COUNT` of one read step.
const SCAN_COUNT: usize = 256;
/// Fields handed to one run of the prune script.
const PRUNE_BATCH: usize = 256;

/// Deletes each field in ARGV[2..] whose report is older than ARGV[1] (Unix ms) or unreadable,
/// reading it again first: a field rewritten since the caller read it is kept.
const PRUNE: &str = r"
local cutoff = tonumber(ARGV[1])
local removed = 0
for i = 2, #ARGV do
  local value = redis.call('HGET', KEYS[1], ARGV[i])
  if value then
    local at = tonumber(string.match(value, '^(%d+)\n'))
    if at == nil or at < cutoff then
      removed = removed + redis.call('HDEL', KEYS[1], ARGV[i])
    end
  end
end
return removed
";

/// `NCY_INSTANCE_REPORT_MS`: how often each instance reports (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistrySettings {
    /// The report interval: 5 s by default, 100 ms to 5 min.
    pub report_interval: Duration,
}

impl RegistrySettings {
    pub(crate) fn load(env: &Env) -> Result<Self, ConfigError> {
        let var = "NCY_INSTANCE_REPORT_MS";
        let ms: u64 = env.parse_or(var, 5000, "milliseconds")?;
        if !(100..=300_000).contains(&ms) {
            return Err(ConfigError::new(
                var,
                format!("must be between 100 and 300000 milliseconds, got {ms}"),
            ));
        }
        Ok(Self {
            report_interval: Duration::from_millis(ms),
        })
    }
}

/// One instance's last report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reported<T> {
    /// The instance's id (its field in the hash).
    pub instance_id: String,
    /// When it reported (Unix ms, its clock).
    pub reported_at_ms: i64,
    /// What it reported.
    pub snapshot: T,
}

/// The registry of one service's instances. Cheap to clone.
#[derive(Clone)]
pub struct InstanceRegistry {
    redis: RedisPool,
    key: String,
    interval: Duration,
    prune: Script,
}

impl std::fmt::Debug for InstanceRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceRegistry")
            .field("key", &self.key)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

/// Now as Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `<reported at>\n<snapshot>`.
fn encode(reported_at_ms: i64, snapshot: &[u8]) -> Vec<u8> {
    let mut value = format!("{reported_at_ms}\n").into_bytes();
    value.extend_from_slice(snapshot);
    value
}

/// The report time and snapshot of a stored value; `None` for anything else.
fn decode(value: &[u8]) -> Option<(i64, &[u8])> {
    let newline = value.iter().position(|b| *b == b'\n')?;
    let (head, rest) = value.split_at(newline);
    let at = std::str::from_utf8(head).ok()?.parse::<i64>().ok()?;
    Some((at, &rest[1..]))
}

impl InstanceRegistry {
    /// The registry of `service`'s instances under `keys`, reported every `interval`.
    pub fn new(redis: RedisPool, keys: &KeySpace, service: &str, interval: Duration) -> Self {
        Self {
            redis,
            key: keys.instances(service),
            interval,
            prune: Script::new(PRUNE),
        }
    }

    /// The report interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The hash's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Writes `instance_id`'s snapshot as reported now.
    pub async fn report(&self, instance_id: &str, snapshot: &[u8]) -> Result<(), RuntimeError> {
        let mut conn = self.redis.get().await?;
        let ttl = millis(self.interval * PRUNE_AFTER);
        redis::pipe()
            .hset(&self.key, instance_id, encode(now_ms(), snapshot))
            .ignore()
            .pexpire(&self.key, ttl)
            .ignore()
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    /// Deletes `instance_id`'s field (its drain started).
    pub async fn remove(&self, instance_id: &str) -> Result<(), RuntimeError> {
        let mut conn = self.redis.get().await?;
        redis::cmd("HDEL")
            .arg(&self.key)
            .arg(instance_id)
            .query_async::<i64>(&mut conn)
            .await?;
        Ok(())
    }

    /// Every field of the hash, at most [`MAX_FIELDS`] of them (`HSCAN`, which may repeat a field).
    async fn fields(&self) -> Result<HashMap<String, Vec<u8>>, RuntimeError> {
        let mut conn = self.redis.get().await?;
        let mut fields = HashMap::new();
        let mut cursor = 0u64;
        loop {
            let (next, pairs): (u64, Vec<(String, Vec<u8>)>) = redis::cmd("HSCAN")
                .arg(&self.key)
                .arg(cursor)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query_async(&mut conn)
                .await?;
            for (field, value) in pairs {
                if fields.len() >= MAX_FIELDS {
                    return Ok(fields);
                }
                fields.insert(field, value);
            }
            if next == 0 {
                return Ok(fields);
            }
            cursor = next;
        }
    }

    /// The live instances' snapshots (reported within [`STALE_AFTER`] intervals, readable, at most
    /// [`MAX_SNAPSHOT_BYTES`]), sorted by instance id; at most [`MAX_INSTANCES`].
    pub async fn live(&self) -> Result<Vec<Reported<Vec<u8>>>, RuntimeError> {
        let cutoff = now_ms() - millis(self.interval * STALE_AFTER);
        let mut live: Vec<Reported<Vec<u8>>> = self
            .fields()
            .await?
            .into_iter()
            .filter_map(|(instance_id, value)| {
                let (at, snapshot) = decode(&value)?;
                (at >= cutoff && snapshot.len() <= MAX_SNAPSHOT_BYTES).then(|| Reported {
                    instance_id,
                    reported_at_ms: at,
                    snapshot: snapshot.to_vec(),
                })
            })
            .collect();
        live.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
        live.truncate(MAX_INSTANCES);
        Ok(live)
    }

    /// What an instance answers for all: its `own` report (taken now) and the other live
    /// instances' last reports turned into `T` by `decode` (those it cannot read are left out),
    /// sorted by instance id; at most [`MAX_INSTANCES`], `own` always among them.
    pub async fn view<T>(
        &self,
        own: Reported<T>,
        decode: impl Fn(&[u8]) -> Option<T>,
    ) -> Result<Vec<Reported<T>>, RuntimeError> {
        let mut all: Vec<Reported<T>> = self
            .live()
            .await?
            .into_iter()
            .filter(|r| r.instance_id != own.instance_id)
            .filter_map(|r| {
                Some(Reported {
                    snapshot: decode(&r.snapshot)?,
                    instance_id: r.instance_id,
                    reported_at_ms: r.reported_at_ms,
                })
            })
            .take(MAX_INSTANCES - 1)
            .collect();
        all.push(own);
        all.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
        Ok(all)
    }

    /// Deletes the fields older than [`PRUNE_AFTER`] intervals (and unreadable ones); returns how
    /// many went.
    pub async fn prune(&self) -> Result<u64, RuntimeError> {
        let cutoff = now_ms() - millis(self.interval * PRUNE_AFTER);
        let old: Vec<String> = self
            .fields()
            .await?
            .into_iter()
            .filter(|(_, value)| decode(value).is_none_or(|(at, _)| at < cutoff))
            .map(|(field, _)| field)
            .collect();
        let mut removed = 0;
        for batch in old.chunks(PRUNE_BATCH) {
            let mut call = self.prune.prepare_invoke();
            call.key(&self.key).arg(cutoff);
            for field in batch {
                call.arg(field);
            }
            let mut conn = self.redis.get().await?;
            removed += call.invoke_async::<u64>(&mut conn).await?;
        }
        Ok(removed)
    }
}

/// Reports `instance_id` to `registry` every interval (the first at once) with what `snapshot`
/// returns, pruning at the first report and every [`PRUNE_EVERY`] after, until `stop` fires; then
/// removes the instance. Redis errors are logged and the next interval tries again.
pub async fn report_until_stopped<F, Fut>(
    registry: InstanceRegistry,
    instance_id: String,
    mut snapshot: F,
    stop: CancellationToken,
) where
    F: FnMut() -> Fut + Send,
    Fut: Future<Output = Vec<u8>> + Send,
{
    let mut tick = tokio::time::interval(registry.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reports = 0u64;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let bytes = snapshot().await;
        if let Err(e) = registry.report(&instance_id, &bytes).await {
            tracing::warn!(error = %e, key = registry.key(), "instance report failed; retrying next interval");
        }
        if reports.is_multiple_of(PRUNE_EVERY) {
            match registry.prune().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    removed = n,
                    key = registry.key(),
                    "pruned instances that stopped reporting"
                ),
                Err(e) => tracing::warn!(error = %e, key = registry.key(), "instance prune failed"),
            }
        }
        reports = reports.wrapping_add(1);
    }
    if let Err(e) = registry.remove(&instance_id).await {
        tracing::warn!(error = %e, key = registry.key(), "could not remove this instance from the registry; it drops out when its report goes stale");
    }
}

impl ServiceRuntime {
    /// The registry of this service's instances (named by `NCY_…` settings: the service, the key
    /// prefix, the report interval).
    pub fn instances(&self) -> InstanceRegistry {
        let settings = self.settings();
        InstanceRegistry::new(
            self.redis().clone(),
            &settings.redis.keys,
            settings.service,
            settings.instances.report_interval,
        )
    }

    /// Reports this instance as `instance_id` with what `snapshot` returns, every report interval
    /// until the drain starts, which removes it (see [`report_until_stopped`]).
    pub fn report_instance<F, Fut>(&self, instance_id: String, snapshot: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Vec<u8>> + Send + 'static,
    {
        self.spawn(report_until_stopped(
            self.instances(),
            instance_id,
            snapshot,
            self.shutdown_token(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_carry_their_report_time() {
        let value = encode(1_765_000_000_123, b"\x08\x01\nsnap");
        assert_eq!(
            decode(&value),
            Some((1_765_000_000_123, &b"\x08\x01\nsnap"[..]))
        );
        assert_eq!(decode(b"soon\nx"), None);
        assert_eq!(decode(b"123"), None);
        assert_eq!(decode(b""), None);
        assert_eq!(decode(b"\n"), None);
    }

    #[test]
    fn the_interval_is_bounded() {
        let load = |v: &'static str| {
            RegistrySettings::load(&Env::from_pairs([("NCY_INSTANCE_REPORT_MS", v)]))
        };
        assert_eq!(
            RegistrySettings::load(&Env::from_pairs::<&str, &str>([]))
                .expect("default")
                .report_interval,
            Duration::from_secs(5)
        );
        assert_eq!(
            load("250").expect("valid").report_interval,
            Duration::from_millis(250)
        );
        for bad in ["0", "99", "300001", "5s"] {
            assert_eq!(load(bad).expect_err(bad).var, "NCY_INSTANCE_REPORT_MS");
        }
    }
}
