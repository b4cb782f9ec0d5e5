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
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use axum::extract::ws::Utf8Bytes;
use ncy_bus::{BusMessage, History, Subscriber};
use tokio::sync::Notify;

use crate::{control::Command, error::CloseReason, metrics, protocol::Position};

/// The sending side of one socket: its bounded queue and how to close it.
///
/// The queue is a `VecDeque` behind a mutex rather than a channel: an idle socket's queue holds no
/// allocation at all (a bounded tokio channel keeps a 32-slot block per socket, ~1 KiB), and the
/// writer takes everything queued in one swap.
pub struct Outbox {
    /// Connection id, unique in this instance.
    pub id: u64,
    /// The user, once authenticated.
    pub user: OnceLock<uuid::Uuid>,
    capacity: usize,
    state: Mutex<Queue>,
    /// Wakes the socket's task: something was queued, a ping is due, or the socket is closing.
    ready: Notify,
}

#[derive(Default)]
struct Queue {
    frames: VecDeque<Utf8Bytes>,
    /// A ping is due (sent before the frames queued with it).
    ping: bool,
    reason: Option<CloseReason>,
    /// The writer is gone: nothing queued from now on would be sent.
    done: bool,
    /// Server-side commands for the socket's task (revocation, `UnsubscribeUser`,
    /// `DisconnectUser`); unallocated while empty.
    commands: Vec<Command>,
}

impl Outbox {
    /// A new outbox holding at most `capacity` unsent frames.
    pub fn new(id: u64, capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            id,
            user: OnceLock::new(),
            capacity: capacity.max(1),
            state: Mutex::new(Queue::default()),
            ready: Notify::new(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a frame; a full queue closes the socket as a slow consumer. Returns false if not queued.
    pub fn send(&self, frame: Utf8Bytes) -> bool {
        let mut q = self.state();
        if q.done {
            return false;
        }
        if q.frames.len() >= self.capacity {
            drop(q);
            if self.close(CloseReason::SlowConsumer) {
                metrics::slow_consumer();
            }
            return false;
        }
        q.frames.push_back(frame);
        drop(q);
        self.ready.notify_one();
        true
    }

    /// Queues a text frame.
    pub fn send_text(&self, frame: String) -> bool {
        self.send(Utf8Bytes::from(frame))
    }

    /// Asks the socket to close with `reason` (the first reason wins). True if this call set it.
    pub fn close(&self, reason: CloseReason) -> bool {
        let mut q = self.state();
        let first = q.reason.is_none();
        if first {
            q.reason = Some(reason);
        }
        drop(q);
        self.ready.notify_one();
        first
    }

    /// Whether [`Outbox::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.state().reason.is_some()
    }

    /// Why the socket is closing (a client that went away, if no reason was given).
    pub fn closing(&self) -> CloseReason {
        self.state().reason.unwrap_or(CloseReason::ClientGone)
    }

    /// Hands the socket's task a server-side command and wakes it; false if the socket is done.
    pub fn command(&self, command: Command) -> bool {
        let mut q = self.state();
        if q.done {
            return false;
        }
        q.commands.push(command);
        drop(q);
        self.ready.notify_one();
        true
    }

    /// Whether a command is waiting.
    pub fn has_commands(&self) -> bool {
        !self.state().commands.is_empty()
    }

    /// The commands waiting, oldest first.
    pub fn take_commands(&self) -> Vec<Command> {
        std::mem::take(&mut self.state().commands)
    }

    /// The reason text of a waiting [`Command::Disconnect`], for the close frame.
    pub fn disconnect_text(&self) -> Option<String> {
        self.state().commands.iter().find_map(|c| match c {
            Command::Disconnect { reason } => Some(reason.clone()),
            Command::Leave { .. } => None,
        })
    }

    /// Asks the writer to send a ping.
    pub fn ping(&self) {
        self.state().ping = true;
        self.ready.notify_one();
    }

    /// Waits until something was queued or the socket is closing (spurious wake-ups are possible).
    pub async fn ready(&self) {
        self.ready.notified().await;
    }

    /// Wakes [`Outbox::ready`] once more (after a wake-up was consumed elsewhere).
    pub fn rearm(&self) {
        self.ready.notify_one();
    }

    /// Whether a ping is due, and everything queued so far, oldest first; the queue is left empty
    /// (and unallocated).
    pub fn take(&self) -> (bool, VecDeque<Utf8Bytes>) {
        let mut q = self.state();
        (std::mem::take(&mut q.ping), std::mem::take(&mut q.frames))
    }

    /// The writer is done: later frames are refused. Returns what was still queued.
    pub fn finish(&self) -> VecDeque<Utf8Bytes> {
        let mut q = self.state();
        q.done = true;
        std::mem::take(&mut q.frames)
    }
}

/// One socket in one room. Kept small: a room of 10,000 sockets holds 10,000 of these.
struct Member {
    outbox: Arc<Outbox>,
    /// Some while the member's history is being read: live messages wait here. Boxed: the
    /// buffer is short-lived, and a member sits in a room map for as long as the socket lives, so
    /// 8 bytes here instead of 24 matters more than the extra allocation during a join.
    #[allow(clippy::box_collection)]
    buffer: Option<Box<Vec<BusMessage>>>,
    /// The epoch of the last message sent, shared with the room (not a string per member).
    epoch: Arc<str>,
    last: u64,
}

impl Member {
    /// Sends `frame`, message `offset` of `epoch`, unless this member already got it.
    fn push(&mut self, epoch: &Arc<str>, offset: u64, frame: &Utf8Bytes) -> bool {
        if self.epoch == *epoch && offset <= self.last {
            return false;
        }
        if !Arc::ptr_eq(&self.epoch, epoch) {
            self.epoch = epoch.clone();
        }
        self.last = offset;
        self.outbox.send(frame.clone())
    }
}

/// `epoch` as a shared string, reusing `current` when it is the same.
fn shared_epoch(current: &Arc<str>, epoch: &str) -> Arc<str> {
    if &**current == epoch {
        current.clone()
    } else {
        Arc::from(epoch)
    }
}

/// A room with local members.
#[derive(Default)]
struct LocalRoom {
    members: HashMap<u64, Member>,
    /// A position after which every message of the room reaches [`Hub::deliver`]: the last one
    /// delivered, or where the first member's recovery left off. None until one of those happened;
    /// while it is known, a member joining without a position needs no Redis read at all.
    live_at: Option<(Arc<str>, u64)>,
}

/// The rooms with local members.
pub struct Hub {
    rooms: Mutex<HashMap<String, LocalRoom>>,
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, LocalRoom>> {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rooms with at least one local member.
    pub fn room_count(&self) -> usize {
        self.lock().len()
    }

    /// Whether connection `conn` is a member of `room` (live or still joining).
    pub fn is_member(&self, room: &str, conn: u64) -> bool {
        self.lock()
            .get(room)
            .is_some_and(|local| local.members.contains_key(&conn))
    }

    /// Every (room, user, connection id) membership, for presence heartbeats.
    pub fn memberships(&self) -> Vec<(String, String, u64)> {
        let rooms = self.lock();
        let mut out = Vec::new();
        for (room, local) in rooms.iter() {
            for (id, m) in &local.members {
                if let Some(user) = m.outbox.user.get() {
                    out.push((room.clone(), user.to_string(), *id));
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
            let Some(local) = rooms.get_mut(&m.room) else {
                return;
            };
            let epoch = match &local.live_at {
                Some((current, _)) => shared_epoch(current, &m.epoch),
                None => Arc::from(m.epoch.as_str()),
            };
            local.live_at = Some((epoch.clone(), m.offset));
            for member in local.members.values_mut() {
                match &mut member.buffer {
                    Some(buffer) => buffer.push(m.clone()),
                    None => {
                        if member.push(&epoch, m.offset, &frame) {
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
            if !rooms.contains_key(room) {
                rooms.insert(room.to_owned(), LocalRoom::default());
                metrics::rooms(rooms.len());
            }
            let Some(local) = rooms.get_mut(room) else {
                return Ok(());
            };
            match local.members.entry(outbox.id) {
                std::collections::hash_map::Entry::Occupied(_) => None,
                std::collections::hash_map::Entry::Vacant(slot) => {
                    // Already live here and no position to recover from: join at the room's
                    // live position, under the lock, so the next delivery reaches this member.
                    if since.is_none()
                        && let Some((epoch, offset)) = &local.live_at
                    {
                        outbox.send_text(crate::protocol::joined(room, epoch, *offset, None));
                        slot.insert(Member {
                            outbox: outbox.clone(),
                            buffer: None,
                            epoch: epoch.clone(),
                            last: *offset,
                        });
                        return Ok(());
                    }
                    slot.insert(Member {
                        outbox: outbox.clone(),
                        buffer: Some(Box::default()),
                        epoch: Arc::from(""),
                        last: 0,
                    });
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
        let Some(local) = rooms.get_mut(room) else {
            return Ok(());
        };
        if local.live_at.is_none() && self.subscriber.get().is_some_and(Subscriber::connected) {
            // Read after the subscription was confirmed: everything later is delivered here.
            local.live_at = Some((Arc::from(recovery.epoch.as_str()), recovery.offset));
        }
        let mut epoch = match &local.live_at {
            Some((current, _)) => shared_epoch(current, &recovery.epoch),
            None => Arc::from(recovery.epoch.as_str()),
        };
        let Some(member) = local.members.get_mut(&outbox.id) else {
            return Ok(());
        };
        outbox.send_text(crate::protocol::joined(
            room,
            &recovery.epoch,
            recovery.offset,
            recovered,
        ));
        member.epoch = epoch.clone();
        member.last = match (recovery.recovered, since) {
            (true, Some(p)) => p.offset,
            _ => recovery.offset,
        };
        let mut sent = 0;
        for m in recovery
            .messages
            .iter()
            .chain(member.buffer.take().unwrap_or_default().iter())
        {
            epoch = shared_epoch(&epoch, &m.epoch);
            if let Ok(frame) = Utf8Bytes::try_from(m.payload.clone())
                && member.push(&epoch, m.offset, &frame)
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
        let Some(local) = rooms.get_mut(room) else {
            return false;
        };
        let was = local.members.remove(&conn).is_some();
        if local.members.is_empty() {
            rooms.remove(room);
            if let Some(s) = self.subscriber.get() {
                s.unsubscribe(room);
            }
            metrics::rooms(rooms.len());
        }
        was
    }
}
