//! The gateway side of the bus: one dedicated pub/sub connection per instance.
//!
//! Why this shape (and what it fixes compared to the Socket.IO redis adapter):
//! - Only rooms with local members are subscribed (the gateway calls [`Subscriber::subscribe`] on a
//!   room's first local member and [`Subscriber::unsubscribe`] after the last), so an instance does
//!   not receive every message of the deployment.
//! - One task owns the connection and a cursor `(epoch, last offset)` per room. A room's channel
//!   carries its messages in offset order (the publish script serializes them), so a jump in offsets
//!   means messages were lost: the task reads the gap from history before delivering, and drops
//!   anything at or below the cursor. What it hands to [`Deliver`] is, per room, in order and
//!   without duplicates.
//! - When the connection drops, the task reconnects with backoff, resubscribes every room, and
//!   replays from history what was published while it was away — before reading new messages.
//! - A connection can also go silent (a proxy or failover that keeps the socket open). Every probe
//!   interval the task publishes a token on its instance-private probe channel through the normal
//!   pool and expects it back on the subscription; a missing token forces a reconnect.
use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use futures_util::StreamExt;
use ncy_runtime::RedisPool;
use ncy_types::KeySpace;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::{BusError, BusMessage, History};

/// Where the subscriber hands messages: per room in offset order, each once.
pub type Deliver = Arc<dyn Fn(BusMessage) + Send + Sync>;

/// How the subscriber behaves.
#[derive(Debug, Clone)]
pub struct SubscriberConfig {
    /// This instance's id (names its probe channel).
    pub instance_id: String,
    /// How often the liveness probe runs; a probe not seen back by the next one forces a reconnect.
    pub probe_interval: Duration,
}

enum Command {
    Subscribe(String, oneshot::Sender<()>),
    Unsubscribe(String),
}

/// Handle to the instance's subscription task. Cheap to clone.
#[derive(Clone)]
pub struct Subscriber {
    tx: mpsc::UnboundedSender<Command>,
    connected: Arc<AtomicBool>,
    reconnects: Arc<AtomicU64>,
}

#[derive(Default)]
struct Cursor {
    epoch: String,
    last: u64,
}

impl Subscriber {
    /// Starts the subscription task on the current runtime; it runs until `cancel` fires.
    pub fn start(
        client: redis::Client,
        pool: RedisPool,
        keys: KeySpace,
        config: SubscriberConfig,
        deliver: Deliver,
        cancel: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let connected = Arc::new(AtomicBool::new(false));
        let reconnects = Arc::new(AtomicU64::new(0));
        let task = Task {
            client,
            history: History::new(pool.clone(), keys.clone()),
            pool,
            probe_channel: keys.bus_probe(&config.instance_id),
            keys,
            config,
            deliver,
            rooms: HashMap::new(),
            channels: HashMap::new(),
            connected: connected.clone(),
            reconnects: reconnects.clone(),
        };
        let handle = tokio::spawn(task.run(rx, cancel));
        (
            Self {
                tx,
                connected,
                reconnects,
            },
            handle,
        )
    }

    /// Subscribes `room` (idempotent). The command is queued when this is called (so the order of
    /// subscribe/unsubscribe calls is the order applied); the returned future resolves once Redis
    /// confirmed the subscription, or at once while disconnected (the room is subscribed on
    /// reconnect).
    pub fn subscribe(
        &self,
        room: &str,
    ) -> impl std::future::Future<Output = Result<(), BusError>> + Send + 'static {
        let (ack, done) = oneshot::channel();
        let sent = self
            .tx
            .send(Command::Subscribe(room.to_owned(), ack))
            .is_ok();
        async move {
            if !sent {
                return Err(BusError::SubscriberStopped);
            }
            done.await.map_err(|_| BusError::SubscriberStopped)
        }
    }

    /// Unsubscribes `room`. Commands are applied in the order they are sent, so a caller that
    /// decides "first/last member" under its own lock and sends under it stays consistent.
    pub fn unsubscribe(&self, room: &str) {
        let _ = self.tx.send(Command::Unsubscribe(room.to_owned()));
    }

    /// Whether the subscription connection is up and its last probe came back.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// How many times the connection was re-established.
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }
}

/// A (un)subscribe confirmation that never comes means the connection went silent: give up on it
/// (and reconnect) instead of blocking the task forever.
async fn bounded(
    f: impl std::future::Future<Output = redis::RedisResult<()>>,
) -> Result<(), BusError> {
    match tokio::time::timeout(Duration::from_secs(5), f).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(BusError::SubscriptionTimedOut),
    }
}

struct Task {
    client: redis::Client,
    pool: RedisPool,
    history: History,
    keys: KeySpace,
    probe_channel: String,
    config: SubscriberConfig,
    deliver: Deliver,
    /// Subscribed rooms (wanted, whether or not the connection is up) and their cursors.
    rooms: HashMap<String, Cursor>,
    /// Channel name → room name.
    channels: HashMap<String, String>,
    connected: Arc<AtomicBool>,
    reconnects: Arc<AtomicU64>,
}

impl Task {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>, cancel: CancellationToken) {
        let mut backoff = Duration::from_millis(50);
        let mut first = true;
        loop {
            let pubsub = tokio::select! {
                () = cancel.cancelled() => return,
                r = tokio::time::timeout(Duration::from_secs(3), self.client.get_async_pubsub()) => r,
            };
            let pubsub = match pubsub {
                Ok(Ok(p)) => p,
                failed => {
                    let why = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => "connect timed out".to_owned(),
                    };
                    tracing::warn!(error = %why, "bus subscription: cannot connect; retrying");
                    if !self.wait_offline(&mut rx, &cancel, backoff).await {
                        return;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            };
            if !first {
                self.reconnects.fetch_add(1, Ordering::Relaxed);
            }
            first = false;
            match self.serve(pubsub, &mut rx, &cancel).await {
                Ok(()) => return,
                Err(e) => {
                    self.connected.store(false, Ordering::Relaxed);
                    tracing::warn!(error = %e, "bus subscription lost; reconnecting");
                    backoff = Duration::from_millis(50);
                    if !self.wait_offline(&mut rx, &cancel, backoff).await {
                        return;
                    }
                }
            }
        }
    }

    /// While disconnected: keep the wanted-room set up to date and answer subscribers at once.
    async fn wait_offline(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<Command>,
        cancel: &CancellationToken,
        wait: Duration,
    ) -> bool {
        let until = tokio::time::Instant::now() + wait;
        loop {
            tokio::select! {
                () = cancel.cancelled() => return false,
                () = tokio::time::sleep_until(until) => return true,
                cmd = rx.recv() => match cmd {
                    None => return false,
                    Some(Command::Subscribe(room, ack)) => {
                        self.want(&room);
                        let _ = ack.send(());
                    }
                    Some(Command::Unsubscribe(room)) => self.unwant(&room),
                }
            }
        }
    }

    fn want(&mut self, room: &str) -> bool {
        if self.rooms.contains_key(room) {
            return false;
        }
        self.rooms.insert(room.to_owned(), Cursor::default());
        self.channels
            .insert(self.keys.room(room).channel(), room.to_owned());
        true
    }

    fn unwant(&mut self, room: &str) {
        if self.rooms.remove(room).is_some() {
            self.channels.remove(&self.keys.room(room).channel());
        }
    }

    /// Runs one connection until it fails (Err) or the service stops (Ok).
    async fn serve(
        &mut self,
        pubsub: redis::aio::PubSub,
        rx: &mut mpsc::UnboundedReceiver<Command>,
        cancel: &CancellationToken,
    ) -> Result<(), BusError> {
        let (mut sink, mut stream) = pubsub.split();
        bounded(sink.subscribe(&self.probe_channel)).await?;
        let channels: Vec<String> = self.channels.keys().cloned().collect();
        for chunk in channels.chunks(500) {
            bounded(sink.subscribe(chunk)).await?;
        }
        // Replay what was published while we were away, before any new message is read.
        let rooms: Vec<String> = self.rooms.keys().cloned().collect();
        for room in rooms {
            self.fill(&room, u64::MAX).await?;
        }
        self.connected.store(true, Ordering::Relaxed);
        let mut probe = tokio::time::interval(self.config.probe_interval);
        probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        probe.tick().await;
        let mut outstanding: Option<String> = None;
        loop {
            tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                msg = stream.next() => {
                    let Some(msg) = msg else {
                        return Err(BusError::PubSubClosed);
                    };
                    let channel = msg.get_channel_name();
                    if channel == self.probe_channel {
                        let token: String = msg.get_payload().unwrap_or_default();
                        if outstanding.as_deref() == Some(token.as_str()) {
                            outstanding = None;
                            self.connected.store(true, Ordering::Relaxed);
                        }
                        continue;
                    }
                    let Some(room) = self.channels.get(channel).cloned() else { continue };
                    match BusMessage::parse(msg.get_payload_bytes().to_vec()) {
                        Ok(m) => self.accept(&room, m).await?,
                        Err(e) => tracing::warn!(error = %e, room, "dropping malformed bus message"),
                    }
                }
                cmd = rx.recv() => match cmd {
                    None => return Ok(()),
                    Some(Command::Subscribe(room, ack)) => {
                        if self.want(&room) {
                            // Position first, then SUBSCRIBE, then fill: anything published in
                            // between is read from history, anything after comes live and is
                            // de-duplicated by offset.
                            let (epoch, last) = self.history.position(&room).await?;
                            if let Some(c) = self.rooms.get_mut(&room) {
                                *c = Cursor { epoch, last };
                            }
                            bounded(sink.subscribe(self.keys.room(&room).channel())).await?;
                            self.fill(&room, u64::MAX).await?;
                        }
                        let _ = ack.send(());
                    }
                    Some(Command::Unsubscribe(room)) => {
                        if self.rooms.contains_key(&room) {
                            self.unwant(&room);
                            bounded(sink.unsubscribe(self.keys.room(&room).channel())).await?;
                        }
                    }
                },
                _ = probe.tick() => {
                    if outstanding.is_some() {
                        return Err(BusError::ProbeLost);
                    }
                    let token = uuid::Uuid::new_v4().simple().to_string();
                    if self.publish_probe(&token).await {
                        outstanding = Some(token);
                    }
                }
            }
        }
    }

    async fn publish_probe(&self, token: &str) -> bool {
        let Ok(mut conn) = self.pool.get().await else {
            return false;
        };
        redis::cmd("PUBLISH")
            .arg(&self.probe_channel)
            .arg(token)
            .query_async::<i64>(&mut conn)
            .await
            .is_ok()
    }

    /// Delivers `m` unless it is a duplicate, filling a gap before it from history.
    async fn accept(&mut self, room: &str, m: BusMessage) -> Result<(), BusError> {
        let Some(cursor) = self.rooms.get(room) else {
            return Ok(());
        };
        let same = cursor.epoch == m.epoch;
        if same && m.offset <= cursor.last {
            return Ok(());
        }
        if (same && m.offset > cursor.last + 1) || (!same && m.offset > 1) {
            self.fill(room, m.offset - 1).await?;
            // A new epoch's fill may already have delivered `m` itself.
            if let Some(c) = self.rooms.get(room)
                && c.epoch == m.epoch
                && m.offset <= c.last
            {
                return Ok(());
            }
        }
        if let Some(c) = self.rooms.get_mut(room) {
            c.epoch.clone_from(&m.epoch);
            c.last = m.offset;
        }
        (self.deliver)(m);
        Ok(())
    }

    /// Delivers the history of `room` after its cursor (all of a new epoch), up to offset `upto`
    /// (in the cursor's epoch).
    async fn fill(&mut self, room: &str, upto: u64) -> Result<(), BusError> {
        let Some(cursor) = self.rooms.get(room) else {
            return Ok(());
        };
        let (epoch, last) = (cursor.epoch.clone(), cursor.last);
        let Some(messages) = self.history.catch_up(room, &epoch, last).await? else {
            tracing::warn!(room, "messages lost: gap no longer in history");
            return Ok(());
        };
        for m in messages {
            if m.epoch == epoch && (m.offset <= last || m.offset > upto) {
                continue;
            }
            if let Some(c) = self.rooms.get_mut(room) {
                c.epoch.clone_from(&m.epoch);
                c.last = m.offset;
            }
            (self.deliver)(m);
        }
        Ok(())
    }
}
