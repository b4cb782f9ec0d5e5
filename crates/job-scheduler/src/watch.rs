//! WatchJob: a snapshot, then the job's live events from the queue's pub/sub channel, ending after
//! the event that reports a terminal state.
//!
//! A job deleted while watched (DeleteJob) ends the stream with NOT_FOUND.
//!
//! Why this shape:
//! - One pub/sub connection per queue per scheduler instance (a [`Feed`]), shared by every watcher
//!   of that queue and routed by job id, however many WatchJob calls are open: a Redis connection per
//!   watcher would let a crowd of watchers exhaust the server's client limit.
//! - The feed exists only while someone watches. The scripts encode and publish live events only
//!   while the channel has a subscriber, so an idle feed would cost every job that work.
//! - A watcher is registered (and the feed subscribed) before the snapshot is read, so no event
//!   between the two is lost (an event already reflected in the snapshot may be repeated, which is
//!   harmless for a state feed).
//! - A watcher that does not read its stream is dropped with `RESOURCE_EXHAUSTED` rather than
//!   holding up the other watchers of the queue; a lost connection ends every watch of that feed
//!   with `UNAVAILABLE` (watch again), and the next watch opens a new one. So does the instance's
//!   drain, which would otherwise wait for every open watch until the grace period ran out.
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use ncy_proto::jobs::v1 as pb;
use ncy_queue::{Engine, JobEventMessage, JobState, QueueError};
use ncy_types::jobs::QueueName;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::convert;
use crate::error::SchedulerError;

/// Events buffered per watcher before it counts as not reading.
const WATCHER_BUFFER: usize = 64;
/// Longest wait for a new feed's pub/sub connection and subscription.
const OPEN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

type Watchers = HashMap<String, Vec<(u64, mpsc::Sender<Result<JobEventMessage, Status>>)>>;

/// The shared feeds of one scheduler instance.
#[derive(Debug, Default)]
pub struct WatchHub {
    feeds: tokio::sync::Mutex<HashMap<QueueName, Arc<Feed>>>,
    next_id: AtomicU64,
    /// Fires when the instance starts draining: every watch ends with UNAVAILABLE (watch again,
    /// on another instance) instead of holding the drain up to the grace period.
    draining: CancellationToken,
}

/// One queue's subscription and the watchers it serves.
#[derive(Debug, Default)]
struct Feed {
    watchers: Mutex<Watchers>,
    /// Woken when a watcher leaves: the feed ends once it has none.
    left: Notify,
}

/// A watcher's place in a feed; leaving the feed when dropped.
struct Registration {
    feed: Arc<Feed>,
    job_id: String,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut w) = self.feed.watchers.lock()
            && let Some(list) = w.get_mut(&self.job_id)
        {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                w.remove(&self.job_id);
            }
        }
        self.feed.left.notify_one();
    }
}

impl WatchHub {
    /// A hub whose watches end when `draining` fires.
    pub fn ending_on(draining: CancellationToken) -> Self {
        Self {
            draining,
            ..Self::default()
        }
    }

    /// Registers a watcher of `job_id` on `queue`'s feed, opening the feed if there is none. When
    /// this returns, every later event of the job reaches the receiver.
    async fn register(
        self: &Arc<Self>,
        engine: &Engine,
        queue: QueueName,
        job_id: &str,
    ) -> Result<
        (
            Registration,
            mpsc::Receiver<Result<JobEventMessage, Status>>,
        ),
        SchedulerError,
    > {
        let (tx, rx) = mpsc::channel(WATCHER_BUFFER + 1);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut feeds = self.feeds.lock().await;
        let feed = match feeds.get(&queue) {
            Some(feed) => feed.clone(),
            None => {
                // Bounded: the hub's lock is held meanwhile, so an unreachable Redis must not
                // hold up the watchers of the other queues for long.
                let feed = tokio::time::timeout(OPEN_TIMEOUT, self.open(engine, queue))
                    .await
                    .map_err(|_| SchedulerError::SubscribeTimedOut)??;
                feeds.insert(queue, feed.clone());
                feed
            }
        };
        feed.watchers
            .lock()
            .map_err(|_| SchedulerError::Internal("watch registry poisoned"))?
            .entry(job_id.to_owned())
            .or_default()
            .push((id, tx));
        drop(feeds);
        Ok((
            Registration {
                feed,
                job_id: job_id.to_owned(),
                id,
            },
            rx,
        ))
    }

    /// Subscribes a new feed for `queue` and starts the task that routes its events.
    async fn open(
        self: &Arc<Self>,
        engine: &Engine,
        queue: QueueName,
    ) -> Result<Arc<Feed>, SchedulerError> {
        let client = engine
            .dedicated_client(queue)
            .await?
            .ok_or(SchedulerError::NoPubSub)?;
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub
            .subscribe(engine.queue_keys(queue).events_channel())
            .await?;
        let feed = Arc::new(Feed::default());
        let hub = self.clone();
        let routed = feed.clone();
        tokio::spawn(async move {
            let mut messages = pubsub.into_on_message();
            let lost = loop {
                tokio::select! {
                    msg = messages.next() => {
                        let Some(msg) = msg else { break true };
                        let Ok(payload) = msg.get_payload::<String>() else { continue };
                        let Ok(ev) = serde_json::from_str::<JobEventMessage>(&payload) else { continue };
                        routed.route(ev);
                    }
                    () = routed.left.notified() => {
                        // Close only under the hub's lock, so a watcher that arrives meanwhile
                        // either finds this feed still open or opens a new one.
                        let mut feeds = hub.feeds.lock().await;
                        if routed.is_idle() {
                            remove_if_same(&mut feeds, queue, &routed);
                            break false;
                        }
                    }
                }
            };
            if lost {
                tracing::warn!(
                    queue = queue.as_str(),
                    "watch feed lost its redis connection"
                );
                remove_if_same(&mut *hub.feeds.lock().await, queue, &routed);
                routed.fail_all(SchedulerError::WatchLost.into());
            }
        });
        Ok(feed)
    }
}

fn remove_if_same(feeds: &mut HashMap<QueueName, Arc<Feed>>, queue: QueueName, feed: &Arc<Feed>) {
    if feeds.get(&queue).is_some_and(|f| Arc::ptr_eq(f, feed)) {
        feeds.remove(&queue);
    }
}

impl Feed {
    fn is_idle(&self) -> bool {
        self.watchers.lock().map(|w| w.is_empty()).unwrap_or(true)
    }

    /// Hands an event to the watchers of its job; a watcher whose buffer is full is dropped.
    fn route(&self, ev: JobEventMessage) {
        let Ok(mut w) = self.watchers.lock() else {
            return;
        };
        let Some(list) = w.get_mut(&ev.job_id) else {
            return;
        };
        // The last slot of a watcher's buffer is kept for the error that drops it.
        list.retain(|(_, tx)| {
            if tx.is_closed() {
                false
            } else if tx.capacity() > 1 {
                tx.try_send(Ok(ev.clone())).is_ok()
            } else {
                let _ = tx.try_send(Err(SchedulerError::WatcherTooSlow.into()));
                false
            }
        });
    }

    /// Ends every watch of this feed with `status`.
    fn fail_all(&self, status: Status) {
        let Ok(mut w) = self.watchers.lock() else {
            return;
        };
        for (_, list) in w.drain() {
            for (_, tx) in list {
                let _ = tx.try_send(Err(status.clone()));
            }
        }
    }
}

/// Starts watching `job_id`; the receiver yields the events.
pub async fn watch(
    hub: &Arc<WatchHub>,
    engine: Engine,
    job_id: String,
) -> Result<mpsc::Receiver<Result<pb::JobEvent, Status>>, SchedulerError> {
    let queue = ncy_queue::ids::parse_job_id(&job_id, "job_id")?;
    let (registration, mut events) = hub.register(&engine, queue, &job_id).await?;
    let rec = engine.get_job(&job_id).await?;
    let (tx, rx) = mpsc::channel(WATCHER_BUFFER);
    let snap = convert::job(&rec);
    let terminal = rec.state().map(|s| s.is_terminal()).unwrap_or(false);
    let first = pb::JobEvent {
        job_id: job_id.clone(),
        queue: snap.queue.clone(),
        r#type: pb::JobEventType::Snapshot as i32,
        state: snap.state,
        progress: snap.progress,
        at_ms: ncy_queue::now_ms(),
        message: snap.progress_message.clone(),
        attempts_made: snap.attempts_made,
        result_json: snap.result_json.clone(),
        due_at_ms: snap.due_at_ms,
        owner_user_id: snap.owner_user_id.clone(),
    };
    let draining = hub.draining.clone();
    tokio::spawn(async move {
        let _registration = registration;
        if tx.send(Ok(first)).await.is_err() || terminal {
            return;
        }
        loop {
            tokio::select! {
                () = tx.closed() => return,
                () = draining.cancelled() => {
                    let _ = tx.send(Err(SchedulerError::ShuttingDown.into())).await;
                    return;
                }
                ev = events.recv() => {
                    let ev = match ev {
                        Some(Ok(ev)) => ev,
                        Some(Err(status)) => {
                            let _ = tx.send(Err(status)).await;
                            return;
                        }
                        None => {
                            let _ = tx.send(Err(SchedulerError::WatchLost.into())).await;
                            return;
                        }
                    };
                    if ev.kind == "deleted" {
                        let gone = SchedulerError::Queue(QueueError::NotFound(format!(
                            "job {}",
                            ev.job_id
                        )));
                        let _ = tx.send(Err(gone.into())).await;
                        return;
                    }
                    let state = JobState::parse(&ev.state);
                    let done = state.is_some_and(JobState::is_terminal);
                    if tx.send(Ok(event(ev, state))).await.is_err() || done {
                        return;
                    }
                }
            }
        }
    });
    Ok(rx)
}

/// A routed event as the proto message.
fn event(ev: JobEventMessage, state: Option<JobState>) -> pb::JobEvent {
    pb::JobEvent {
        r#type: if ev.kind == "progress" {
            pb::JobEventType::Progress
        } else {
            pb::JobEventType::StateChanged
        } as i32,
        state: state
            .map(convert::state)
            .unwrap_or(pb::JobState::Unspecified) as i32,
        progress: i32::try_from(ev.progress).unwrap_or(0),
        at_ms: ev.at_ms,
        attempts_made: i32::try_from(ev.attempts_made).unwrap_or(0),
        due_at_ms: ev.due_at_ms,
        job_id: ev.job_id,
        queue: ev.queue,
        message: ev.message,
        result_json: ev.result_json,
        owner_user_id: ev.owner_user_id,
    }
}
