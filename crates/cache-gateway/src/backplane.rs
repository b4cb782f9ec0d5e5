//! The invalidation backplane (docs/architecture.md#cache-gateway, "Coherence"): every Set, Delete
//! and invalidation publishes a small message (origin instance, keys, tag timestamps — never
//! values) on `<p>:cache:inval`; every other instance evicts its L1 copies.
//!
//! Trust rule: if the subscription drops, this instance may have missed evictions, so it empties
//! L1 (and its tag timestamps) when the loss is noticed and again when the subscription is back.
//! A dead TCP connection can look alive, so liveness is proven end to end: the instance publishes
//! a heartbeat on the channel every `NCY_CACHE_BACKPLANE_HEARTBEAT_MS` and treats the
//! subscription as lost when its own heartbeat has not come back within three periods.
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering},
    },
    time::Duration,
};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::{l1::L1, l2::L2, now_ms, tags::Tags};

/// One backplane message.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Message {
    /// Origin instance id.
    pub o: String,
    /// Full keys to evict.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub k: Vec<String>,
    /// Tags with their new invalidation timestamps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub t: Vec<(String, i64)>,
    /// Evict everything (pattern invalidation).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
    /// A heartbeat (only its origin cares).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hb: bool,
}

/// Shared backplane state.
pub struct Backplane {
    /// This instance's id.
    pub instance_id: String,
    channel: String,
    connected: AtomicBool,
    last_heartbeat_ms: AtomicI64,
    /// Bumped on every eviction received, so a reader that fetched from L2 before an eviction
    /// does not put the old value into L1 after it.
    evictions: AtomicU64,
}

impl Backplane {
    /// Backplane state for `channel`.
    pub fn new(instance_id: String, channel: String) -> Self {
        Self {
            instance_id,
            channel,
            connected: AtomicBool::new(false),
            last_heartbeat_ms: AtomicI64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    /// Whether the subscription is live.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// The eviction counter (see the field).
    pub fn epoch(&self) -> u64 {
        self.evictions.load(Ordering::Acquire)
    }

    /// Publishes a heartbeat on `conn`, a connection of the backplane's own (not the request
    /// pool, so a saturated pool cannot make a healthy subscription look dead).
    async fn heartbeat(&self, conn: &mut redis::aio::MultiplexedConnection, period: Duration) {
        let msg = Message {
            o: self.instance_id.clone(),
            hb: true,
            ..Message::default()
        };
        let Ok(payload) = serde_json::to_vec(&msg) else {
            return;
        };
        let cmd = redis::cmd("PUBLISH")
            .arg(&self.channel)
            .arg(payload)
            .to_owned();
        let _ = tokio::time::timeout(period, cmd.query_async::<i64>(conn)).await;
    }

    /// Publishes `msg` (origin filled in).
    pub async fn publish(&self, l2: &L2, mut msg: Message) {
        msg.o.clone_from(&self.instance_id);
        let Ok(payload) = serde_json::to_vec(&msg) else {
            return;
        };
        let cmd = redis::cmd("PUBLISH")
            .arg(&self.channel)
            .arg(payload)
            .to_owned();
        if let Err(e) = l2.cmd::<i64>(cmd).await {
            tracing::warn!(error = %e, "backplane publish failed; other instances' L1 heals by TTL");
        }
    }

    async fn handle(&self, payload: &[u8], l1: &L1, tags: &Tags) {
        let Ok(msg) = serde_json::from_slice::<Message>(payload) else {
            return;
        };
        if msg.o == self.instance_id {
            if msg.hb {
                self.last_heartbeat_ms.store(now_ms(), Ordering::Release);
            }
            return;
        }
        if msg.hb {
            return;
        }
        self.evictions.fetch_add(1, Ordering::AcqRel);
        for (tag, ts) in &msg.t {
            tags.apply(tag, *ts).await;
        }
        if msg.all {
            l1.clear();
        }
        for key in &msg.k {
            l1.remove(key).await;
        }
    }

    fn lost(&self, l1: &L1, tags: &Tags) {
        self.connected.store(false, Ordering::Release);
        self.evictions.fetch_add(1, Ordering::AcqRel);
        l1.clear();
        tags.clear();
    }
}

/// Runs the subscription until `cancel`, reconnecting with backoff.
pub async fn run(
    state: Arc<Backplane>,
    client: redis::Client,
    l1: L1,
    tags: Tags,
    heartbeat: Duration,
    cancel: CancellationToken,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let connect = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&state.channel).await?;
            let conn = client.get_multiplexed_async_connection().await?;
            Ok::<_, redis::RedisError>((pubsub, conn))
        };
        let pubsub = tokio::select! {
            () = cancel.cancelled() => return,
            r = tokio::time::timeout(Duration::from_secs(2), connect) => r,
        };
        let (mut pubsub, mut conn) = match pubsub {
            Ok(Ok(p)) => p,
            _ => {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        // Anything evicted while we were away was missed: start from an empty L1.
        state.lost(&l1, &tags);
        state.last_heartbeat_ms.store(now_ms(), Ordering::Release);
        state.connected.store(true, Ordering::Release);
        tracing::debug!(instance = %state.instance_id, "backplane subscribed");
        let mut ticker = tokio::time::interval(heartbeat);
        let limit = i64::try_from(heartbeat.as_millis() * 3).unwrap_or(i64::MAX);
        {
            let mut messages = pubsub.on_message();
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    msg = messages.next() => match msg {
                        Some(msg) => state.handle(msg.get_payload_bytes(), &l1, &tags).await,
                        None => break,
                    },
                    _ = ticker.tick() => {
                        if now_ms() - state.last_heartbeat_ms.load(Ordering::Acquire) > limit {
                            break;
                        }
                        state.heartbeat(&mut conn, heartbeat).await;
                    }
                }
            }
        }
        tracing::warn!(instance = %state.instance_id, "backplane lost; L1 emptied, reconnecting");
        state.lost(&l1, &tags);
    }
}
