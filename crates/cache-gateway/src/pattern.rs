//! InvalidatePattern, the operator tool: SCAN with MATCH and batched UNLINK (never KEYS), skipping
//! every reserved family (`validate.rs`): other services' keys such as the realtime gateway's
//! `realtime:user_status`, sessions and rate limits, and the gateway's own `cache:` keys (deleting a
//! tag timestamp would bring invalidated entries back). The pattern is applied under the
//! deployment prefix (`<p>:<pattern>`), so it never reaches another deployment's keys or the
//! hash-tagged ones (`{<p>:q:…}`, `{<p>:room:…}`, `{<p>:cron}`). Other instances empty their L1: matching a glob against every L1
//! key would cost more than refilling, and this is not a hot path.
//!
//! On Redis Cluster a SCAN sees one node's keys only, so the walk visits every primary (from
//! `CLUSTER NODES`) with its own cursor; UNLINK of keys in several slots is split per slot by the
//! cluster client. A resharding during the walk may move keys past the cursor: rerun to catch them.
use std::time::Instant;

use ncy_runtime::RedisNode;

use crate::{backplane::Message, cache::Core, error::CacheError, validate};

const SCAN_COUNT: usize = 1000;

/// The `grpc-timeout` of a request, if any.
pub fn deadline(metadata: &tonic::metadata::MetadataMap) -> Option<Instant> {
    let raw = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (num, unit) = raw.split_at(raw.len().checked_sub(1)?);
    let n: u64 = num.parse().ok()?;
    let d = match unit {
        "H" => std::time::Duration::from_secs(n * 3600),
        "M" => std::time::Duration::from_secs(n * 60),
        "S" => std::time::Duration::from_secs(n),
        "m" => std::time::Duration::from_millis(n),
        "u" => std::time::Duration::from_micros(n),
        "n" => std::time::Duration::from_nanos(n),
        _ => return None,
    };
    Instant::now().checked_add(d)
}

impl Core {
    /// Deletes (or counts, when `dry_run`) every key matching `pattern`, stopping at `deadline`.
    pub async fn invalidate_pattern(
        &self,
        pattern: &str,
        dry_run: bool,
        deadline: Option<Instant>,
    ) -> Result<u64, CacheError> {
        if pattern.is_empty() || pattern.len() > 1024 {
            return Err(CacheError::invalid("pattern", "must be 1 to 1024 bytes"));
        }
        // A pattern whose family is spelled out can only match that family: refuse a reserved one
        // outright. Any other pattern may still match reserved keys (`*`, `real*`); the walk skips
        // those key by key, which is what keeps them safe.
        if let Some(family) = pattern
            .split(':')
            .next()
            .filter(|f| !f.contains(['*', '?', '[', '\\']))
            .and_then(validate::reserved_family)
        {
            return Err(validate::reserved("pattern", family));
        }
        let full = self.keys.cache_key(pattern);
        let nodes: Vec<Option<RedisNode>> = match self
            .l2
            .with(|mut conn| async move { conn.primaries().await })
            .await?
        {
            None => vec![None],
            Some(primaries) => primaries.into_iter().map(Some).collect(),
        };
        let mut removed = 0u64;
        for node in &nodes {
            let walked = self
                .walk_node(node.as_ref(), &full, dry_run, deadline)
                .await;
            match walked {
                Ok(n) => removed += n,
                Err((n, e)) => {
                    removed += n;
                    self.after_pattern(removed, dry_run).await;
                    return Err(match e {
                        CacheError::DeadlineExceeded(_) => CacheError::DeadlineExceeded(removed),
                        other => other,
                    });
                }
            }
        }
        self.after_pattern(removed, dry_run).await;
        Ok(removed)
    }

    /// SCANs one node (`None`: the single server) to the end; the count removed so far on error.
    async fn walk_node(
        &self,
        node: Option<&RedisNode>,
        full: &str,
        dry_run: bool,
        deadline: Option<Instant>,
    ) -> Result<u64, (u64, CacheError)> {
        let mut cursor: u64 = 0;
        let mut removed = 0u64;
        loop {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err((removed, CacheError::DeadlineExceeded(removed)));
            }
            let scan = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(full)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .to_owned();
            let (next, keys): (u64, Vec<String>) = self
                .l2
                .with(|mut conn| async move { conn.query_on(node, &scan).await })
                .await
                .map_err(|e| (removed, e))?;
            let doomed: Vec<&String> = keys
                .iter()
                .filter(|k| {
                    self.keys
                        .logical(k)
                        .is_some_and(|l| !validate::is_reserved(l))
                })
                .collect();
            if !doomed.is_empty() {
                if dry_run {
                    removed += doomed.len() as u64;
                } else {
                    let n: u64 = self
                        .l2
                        .cmd(redis::cmd("UNLINK").arg(&doomed).to_owned())
                        .await
                        .map_err(|e| (removed, e))?;
                    removed += n;
                }
            }
            cursor = next;
            if cursor == 0 {
                return Ok(removed);
            }
        }
    }

    async fn after_pattern(&self, removed: u64, dry_run: bool) {
        if dry_run || removed == 0 {
            return;
        }
        self.l1.clear();
        let msg = Message {
            all: true,
            ..Message::default()
        };
        self.backplane.publish(&self.l2, msg).await;
    }
}
