//! The delayed-job promoter: moves due jobs (delays and retry backoffs) from `…:delayed` to their
//! band. One active promoter per queue (a lease renewed by its holder, any replica may hold it).
//!
//! Why not poll: the holder sleeps until the earliest due time (`ZRANGE delayed 0 0 WITHSCORES`,
//! returned by the promote script) or until a pub/sub note on `…:wake` says an earlier job arrived,
//! so a due job is promoted within a timer tick of its time and an idle queue costs nothing but the
//! lease renewal.
use std::time::Duration;

use futures_util::StreamExt;
use ncy_types::jobs::QueueName;
use redis::Value;
use tokio_util::sync::CancellationToken;

use crate::engine::Engine;
use crate::error::Result;
use crate::job::{int, now_ms};

/// Lease length; the holder renews it every third of it.
const LEASE_MS: u64 = 3_000;
/// Jobs moved per script call.
const BATCH: usize = 1_000;

impl Engine {
    /// Promotes due jobs of `queue` now; returns (moved, next due ms or None).
    pub async fn promote(&self, queue: QueueName) -> Result<(usize, Option<i64>)> {
        let q = self.queue_keys(queue);
        let mut conn = self.conn().await?;
        let reply: Vec<Value> = self
            .scripts
            .promote
            .key(q.delayed())
            .arg(q.tag())
            .arg(now_ms())
            .arg(BATCH)
            .invoke_async(&mut conn)
            .await?;
        let moved = usize::try_from(reply.first().map(int).unwrap_or(0)).unwrap_or(0);
        let next = reply.get(1).map(int).filter(|n| *n >= 0);
        Ok((moved, next))
    }

    async fn hold_lease(&self, queue: QueueName, holder: &str) -> Result<bool> {
        let q = self.queue_keys(queue);
        let mut conn = self.conn().await?;
        let held: i64 = self
            .scripts
            .lease
            .key(q.promoter_lease())
            .arg(q.tag())
            .arg(holder)
            .arg(LEASE_MS)
            .invoke_async(&mut conn)
            .await?;
        Ok(held == 1)
    }

    /// Runs the promoter of `queue` until `cancel`; survives Redis outages (retries with backoff).
    pub async fn run_promoter(self, queue: QueueName, holder: String, cancel: CancellationToken) {
        let channel = self.queue_keys(queue).promoter_wake_channel();
        let renew = Duration::from_millis(LEASE_MS / 3);
        let mut wake = None;
        let mut errors = 0u32;
        while !cancel.is_cancelled() {
            if wake.is_none()
                && let Ok(Some(client)) = self.dedicated_client(queue).await
            {
                match client.get_async_pubsub().await {
                    Ok(mut ps) => match ps.subscribe(&channel).await {
                        Ok(()) => wake = Some(ps.into_on_message()),
                        Err(e) => tracing::warn!(error = %e, "promoter cannot subscribe"),
                    },
                    Err(e) => tracing::warn!(error = %e, "promoter cannot open pub/sub"),
                }
            }
            let step = async {
                if !self.hold_lease(queue, &holder).await? {
                    return Ok::<_, crate::QueueError>(renew);
                }
                loop {
                    let (moved, next) = self.promote(queue).await?;
                    if moved < BATCH {
                        let wait = next
                            .map(|due| {
                                Duration::from_millis(u64::try_from(due - now_ms()).unwrap_or(0))
                            })
                            .unwrap_or(renew);
                        return Ok(wait.min(renew));
                    }
                }
            };
            let wait = match step.await {
                Ok(wait) => {
                    errors = 0;
                    wait
                }
                Err(e) => {
                    errors = errors.saturating_add(1);
                    if errors == 1 {
                        tracing::warn!(queue = queue.as_str(), error = %e, "promoter: redis error; retrying");
                    }
                    wake = None;
                    Duration::from_millis(100 * u64::from(errors.min(20)))
                }
            };
            if wait.is_zero() {
                continue;
            }
            match wake.as_mut() {
                Some(stream) => tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                    msg = stream.next() => if msg.is_none() { wake = None },
                },
                None => tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(wait.min(Duration::from_millis(50))) => {}
                },
            }
        }
    }
}
