//! Presence writes of all the instance's sockets, batched: one task applies whatever joins and
//! leaves are waiting in one Redis pipeline, then the next batch.
//!
//! Why: a socket marks presence when it authenticates and on every join, and clears it when it
//! leaves; one pipeline per socket cost about 40% of the gateway's CPU when 10,000 clients connect
//! at once. Batching adds no delay when the instance is quiet (a lone change goes out at once) and
//! under a burst turns thousands of round trips into a few. Callers still wait for their change
//! to be applied, so presence is visible before the socket hears `authenticated` or `joined`.
//!
//! `broadcast` records no presence (see [`recorded`]): entries for it are dropped here, so no
//! caller can write them by mistake.
use ncy_bus::{Presence, PresenceChange};
use tokio::sync::{mpsc, oneshot};

/// Changes applied per pipeline at most.
const BATCH: usize = 512;

/// Whether presence is recorded (and answered) for `room`: every room but `broadcast`. Every
/// authenticated socket of every organization is in `broadcast`, so its presence would list anyone
/// online to anyone else; nobody needs it, so it is neither written nor read.
pub fn recorded(room: &str) -> bool {
    room != BROADCAST
}

/// The wire name of `ncy_types::Room::Broadcast` (compared per heartbeat entry, so not built each
/// time; a unit test keeps the two equal).
const BROADCAST: &str = "broadcast";

/// Whether a change puts the connection online or takes it offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Joined (or still there).
    Online,
    /// Left.
    Offline,
}

/// One socket's change: `(room, user, connection key)` entries of one kind.
struct Request {
    kind: Kind,
    entries: Vec<(String, String, String)>,
    done: oneshot::Sender<Result<(), String>>,
}

/// Handle to the batching task. Cheap to clone.
#[derive(Clone)]
pub struct PresenceWrites {
    tx: mpsc::UnboundedSender<Request>,
}

impl PresenceWrites {
    /// Starts the task on the current runtime; it ends when every handle is dropped.
    pub fn start(presence: Presence) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(presence, rx));
        Self { tx }
    }

    /// Applies `entries` (all of `kind`) with the next batch and waits for it; the error is Redis's.
    pub async fn apply(
        &self,
        kind: Kind,
        mut entries: Vec<(String, String, String)>,
    ) -> Result<(), String> {
        entries.retain(|(room, _, _)| recorded(room));
        if entries.is_empty() {
            return Ok(());
        }
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Request {
                kind,
                entries,
                done,
            })
            .map_err(|_| "presence writer stopped".to_owned())?;
        wait.await
            .unwrap_or_else(|_| Err("presence writer stopped".to_owned()))
    }
}

async fn run(presence: Presence, mut rx: mpsc::UnboundedReceiver<Request>) {
    let mut batch: Vec<Request> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut size = first.entries.len();
        batch.push(first);
        while size < BATCH {
            match rx.try_recv() {
                Ok(r) => {
                    size += r.entries.len();
                    batch.push(r);
                }
                Err(_) => break,
            }
        }
        let changes: Vec<PresenceChange<'_>> = batch
            .iter()
            .flat_map(|r| {
                r.entries
                    .iter()
                    .map(move |(room, user, conn)| match r.kind {
                        Kind::Online => PresenceChange::Online { room, user, conn },
                        Kind::Offline => PresenceChange::Offline { room, user, conn },
                    })
            })
            .collect();
        let result = presence.apply(&changes).await.map_err(|e| e.to_string());
        drop(changes);
        for r in batch.drain(..) {
            let _ = r.done.send(result.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_alone_records_no_presence() {
        assert!(!recorded(&ncy_types::Room::Broadcast.name()));
        let id = uuid::Uuid::new_v4();
        for room in [
            ncy_types::Room::user(id),
            ncy_types::Room::org(id),
            ncy_types::Room::project(id),
        ] {
            assert!(recorded(&room.name()), "{room}");
        }
    }
}
