//! Local rooms of one gateway instance and the fan-out of bus messages to their members.
//!
//! Why this shape:
//! - Each socket has a bounded outbound queue ([`Outbox`]); fan-out only `try_send`s the message's
//!   shared bytes (encoded once, by the publisher) into it, under the rooms lock, and never
//!   touches a socket — the socket's own writer task does the I/O. A full queue closes that socket
//!   with 4008 and the others keep receiving.
//! - The first local member of a room subscribes it on the bus, the last one leaving unsubscribes
//!   it; both commands are queued while the lock is held, so their order is the decision order.
//! - A joining socket first gets a *buffering* membership: live messages that arrive while its
//!   history is read are kept aside. Then, under the lock, it is sent the history after its
//!   position, then the buffered messages newer than what it got — so nothing is doubled or
//!   reordered — and becomes live. Each member also remembers the last (epoch, offset) sent to it
//!   and skips anything not newer.
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use axum::extract::ws::Utf8Bytes;
use ncy_bus::{BusMessage, History, Subscriber};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{error::CloseReason, metrics, protocol::Position};

/// The sending side of one socket: its bounded queue and how to close it.
pub struct Outbox {
    /// Connection id, unique in this instance.
    pub id: u64,
    /// The user, once authenticated.
    pub user: OnceLock<String>,
    tx: mpsc::Sender<Utf8Bytes>,
    close: Mutex<Option<CloseReason>>,
    closed: CancellationToken,
}

impl Outbox {
    /// A new outbox and the receiving end its writer drains.
    pub fn new(id: u64, capacity: usize) -> (Arc<Self>, mpsc::Receiver<Utf8Bytes>) {
        let (tx, rx) = mpsc::channel(capacity);
        (
            Arc::new(Self {
                id,
                user: OnceLock::new(),
                tx,
                close: Mutex::new(None),
                closed: CancellationToken::new(),
            }),
            rx,
        )
    }

    /// Queues a frame; a full queue closes the socket as a slow consumer. Returns false if not queued.
    pub fn send(&self, frame: Utf8Bytes) -> bool {
        match self.tx.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                if self.close(CloseReason::SlowConsumer) {
                    metrics::slow_consumer();
                }
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Queues a text frame.
    pub fn send_text(&self, frame: String) -> bool {
        self.send(Utf8Bytes::from(frame))
    }

    /// Asks the socket to close with `reason` (the first reason wins). True if this call set it.
    pub fn close(&self, reason: CloseReason) -> bool {
        let mut slot = self.close.lock().unwrap_or_else(|p| p.into_inner());
        let first = slot.is_none();
        if first {
            *slot = Some(reason);
        }
        drop(slot);
        self.closed.cancel();
        first
    }

    /// Why the socket is closing, if it is.
    pub fn close_reason(&self) -> Option<CloseReason> {
        *self.close.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fires when [`Outbox::close`] was called.
    pub fn closed(&self) -> &CancellationToken {
        &self.closed
    }
}

struct Member {
    outbox: Arc<Outbox>,
    /// Some while the member's history is being read: live messages wait here.
    buffer: Option<Vec<BusMessage>>,
    epoch: String,
    last: u64,
}

impl Member {
    fn push(&mut self, m: &BusMessage, frame: &Utf8Bytes) -> bool {
        if m.epoch == self.epoch && m.offset <= self.last {
            return false;
        }
        self.epoch.clone_from(&m.epoch);
        self.last = m.offset;
        self.outbox.send(frame.clone())
    }
}

/// The rooms with local members.
pub struct Hub {
    rooms: Mutex<HashMap<String, HashMap<u64, Member>>>,
    subscriber: OnceLock<Subscriber>,
    history: History,
    /// Frames sent to sockets.
    pub messages_out: AtomicU64,
    /// Recovery requests answered from history.
    pub recovery_hits: AtomicU64,
    /// Recovery requests whose gap was gone.
    pub recovery_misses: AtomicU64,
}

impl Hub {
    /// A hub reading history through `history`; [`Hub::set_subscriber`] completes it.
    pub fn new(history: History) -> Self {
        Self {
            rooms: Mutex::new(HashMap::new()),
            subscriber: OnceLock::new(),
            history,
            messages_out: AtomicU64::new(0),
            recovery_hits: AtomicU64::new(0),
            recovery_misses: AtomicU64::new(0),
        }
    }

    /// Attaches the bus subscriber (built after the hub, since it delivers into it).
    pub fn set_subscriber(&self, subscriber: Subscriber) {
        let _ = self.subscriber.set(subscriber);
    }

    /// The bus subscriber.
    pub fn subscriber(&self) -> Option<&Subscriber> {
        self.subscriber.get()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<u64, Member>>> {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rooms with at least one local member.
    pub fn room_count(&self) -> usize {
        self.lock().len()
    }

    /// Every (room, user, connection id) membership, for presence heartbeats.
    pub fn memberships(&self) -> Vec<(String, String, u64)> {
        let rooms = self.lock();
        let mut out = Vec::new();
        for (room, members) in rooms.iter() {
            for (id, m) in members {
                if let Some(user) = m.outbox.user.get() {
                    out.push((room.clone(), user.clone(), *id));
                }
            }
        }
        out
    }

    /// Fan-out of one bus message to the room's local members (called by the subscriber, in order).
    pub fn deliver(&self, m: BusMessage) {
        let started = Instant::now();
        let Ok(frame) = Utf8Bytes::try_from(m.payload.clone()) else {
            return;
        };
        let mut sent = 0u64;
        {
            let mut rooms = self.lock();
            let Some(members) = rooms.get_mut(&m.room) else {
                return;
            };
            for member in members.values_mut() {
                match &mut member.buffer {
                    Some(buffer) => buffer.push(m.clone()),
                    None => {
                        if member.push(&m, &frame) {
                            sent += 1;
                        }
                    }
                }
            }
        }
        self.messages_out.fetch_add(sent, Ordering::Relaxed);
        metrics::fanout(sent, started.elapsed());
    }

    /// Joins `outbox` to `room`, recovering from `since` when given; see the module docs.
    pub async fn join(
        &self,
        outbox: &Arc<Outbox>,
        room: &str,
        since: Option<&Position>,
    ) -> Result<(), ncy_bus::BusError> {
        let subscribed = {
            let mut rooms = self.lock();
            let members = rooms.entry(room.to_owned()).or_default();
            match members.entry(outbox.id) {
                std::collections::hash_map::Entry::Occupied(_) => None,
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(Member {
                        outbox: outbox.clone(),
                        buffer: Some(Vec::new()),
                        epoch: String::new(),
                        last: 0,
                    });
                    metrics::rooms(rooms.len());
                    self.subscriber.get().map(|s| s.subscribe(room))
                }
            }
        };
        let Some(subscribed) = subscribed else {
            let (epoch, offset) = self.history.position(room).await?;
            outbox.send_text(crate::protocol::joined(room, &epoch, offset, None));
            return Ok(());
        };
        let recovery = async {
            subscribed.await?;
            self.history
                .recover(room, since.map(|p| (p.offset, p.epoch.as_str())))
                .await
        }
        .await;
        let recovery = match recovery {
            Ok(r) => r,
            Err(e) => {
                self.leave(outbox.id, room);
                return Err(e);
            }
        };
        if since.is_some() {
            let counter = if recovery.recovered {
                &self.recovery_hits
            } else {
                &self.recovery_misses
            };
            counter.fetch_add(1, Ordering::Relaxed);
            metrics::recovery(recovery.recovered);
        }
        let recovered = since.map(|_| recovery.recovered);
        // The joined frame goes out under the lock, before any message of the room.
        let mut rooms = self.lock();
        let Some(member) = rooms.get_mut(room).and_then(|m| m.get_mut(&outbox.id)) else {
            return Ok(());
        };
        outbox.send_text(crate::protocol::joined(
            room,
            &recovery.epoch,
            recovery.offset,
            recovered,
        ));
        match (recovery.recovered, since) {
            (true, Some(p)) => {
                member.epoch.clone_from(&recovery.epoch);
                member.last = p.offset;
            }
            _ => {
                member.epoch.clone_from(&recovery.epoch);
                member.last = recovery.offset;
            }
        }
        let mut sent = 0;
        for m in recovery
            .messages
            .iter()
            .chain(member.buffer.take().unwrap_or_default().iter())
        {
            if let Ok(frame) = Utf8Bytes::try_from(m.payload.clone())
                && member.push(m, &frame)
            {
                sent += 1;
            }
        }
        drop(rooms);
        self.messages_out.fetch_add(sent, Ordering::Relaxed);
        Ok(())
    }

    /// Removes `conn` from `room`; unsubscribes the room after its last local member. True if it
    /// was a member.
    pub fn leave(&self, conn: u64, room: &str) -> bool {
        let mut rooms = self.lock();
        let Some(members) = rooms.get_mut(room) else {
            return false;
        };
        let was = members.remove(&conn).is_some();
        if members.is_empty() {
            rooms.remove(room);
            if let Some(s) = self.subscriber.get() {
                s.unsubscribe(room);
            }
            metrics::rooms(rooms.len());
        }
        was
    }
}
