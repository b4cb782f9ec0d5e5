//! Live pages over Server-Sent Events, at a cost to the services that does not grow with the
//! number of open tabs.
//!
//! `GET /events/overview`: ONE poller task per console instance calls QueueStats, and the
//! cache-gateway's and realtime-gateway's `Stats{all_instances}`, at most once per second each, and
//! only while at least one browser listens; it renders the overview table once and hands it to
//! every listener through a `watch` channel (a slow listener skips to the latest table instead of
//! queueing old ones). The poller keeps the realtime instances' previous snapshots, to show their
//! messages out per second. The poller stops when the last listener goes; a listener
//! arriving later starts it again (the once-per-second spacing holds across restarts). Each event
//! carries the poll's sequence number as its SSE `id`.
//!
//! `GET /events/jobs/{id}`: one WatchJob stream per open job page (a push stream, not polling),
//! each event rendered as the page's live fragment; after the job's terminal event the browser is
//! told `end` and reloads the page once to show the outcome.
//!
//! Every stream ends when the console drains, and when the viewer's session expires (an
//! `expired` event first, so the page reloads to the login form).
use std::{
    convert::Infallible,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use axum::{
    Extension,
    extract::{Path, State},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures_util::{Stream, StreamExt, stream};
use ncy_proto::jobs::v1::WatchJobRequest;
use tokio::{sync::watch, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::{
    AppState,
    access::CurrentUser,
    error::ConsoleError,
    pages::{self, instances::MessageRates, overview::Sources},
    session::now_secs,
    upstream::{CacheClient, JobsClient, RealtimeClient},
};

/// The shortest time between two polls of one console instance (each poll is one QueueStats call
/// and one Stats call per gateway).
pub const POLL_EVERY: Duration = Duration::from_secs(1);

/// How long a browser waits before reconnecting a dropped stream.
const RETRY: Duration = Duration::from_secs(3);

/// One rendered overview table.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The poll that made it (1, 2, … for this instance's lifetime).
    pub seq: u64,
    /// The table's HTML.
    pub html: Arc<str>,
}

/// The overview poller and its listeners.
pub struct OverviewHub {
    sources: Sources,
    cancel: CancellationToken,
    state: Mutex<HubState>,
}

struct HubState {
    /// The running poller's channel; `None` while nobody listens.
    sender: Option<watch::Sender<Option<Snapshot>>>,
    /// When the last poll started, so a restarted poller keeps the spacing.
    last_poll: Option<Instant>,
    /// Polls made so far.
    seq: u64,
}

/// A stream of SSE events.
type EventStream = Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>>;

impl OverviewHub {
    /// A hub polling the scheduler and the two gateways; its poller stops when `cancel` fires.
    pub fn new(
        jobs: JobsClient,
        cache: CacheClient,
        realtime: RealtimeClient,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            sources: Sources {
                jobs,
                cache,
                realtime,
            },
            cancel,
            state: Mutex::new(HubState {
                sender: None,
                last_poll: None,
                seq: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Polls made by this instance so far (each one QueueStats call and one Stats call per
    /// gateway).
    pub fn polls(&self) -> u64 {
        self.lock().seq
    }

    /// Whether the poller runs (someone listens).
    pub fn is_polling(&self) -> bool {
        self.lock().sender.is_some()
    }

    /// A listener: the latest table at once (if there is one yet), then each new one. Starts the
    /// poller when it is not running.
    pub fn subscribe(self: &Arc<Self>) -> watch::Receiver<Option<Snapshot>> {
        let mut state = self.lock();
        if let Some(sender) = &state.sender {
            return sender.subscribe();
        }
        let (sender, receiver) = watch::channel(None);
        state.sender = Some(sender.clone());
        tokio::spawn(self.clone().run(sender));
        receiver
    }

    /// Stops the poller when nobody listens; true when it must stop. Checked under the lock that
    /// [`Self::subscribe`] takes, so a listener arriving now is never left without a poller.
    fn stop_if_unwatched(&self, sender: &watch::Sender<Option<Snapshot>>) -> bool {
        let mut state = self.lock();
        if sender.receiver_count() == 0 || self.cancel.is_cancelled() {
            // Only this poller's own channel: a poller started since is left alone.
            if state
                .sender
                .as_ref()
                .is_some_and(|s| s.same_channel(sender))
            {
                state.sender = None;
            }
            return true;
        }
        false
    }

    async fn run(self: Arc<Self>, sender: watch::Sender<Option<Snapshot>>) {
        tracing::debug!("overview poller started");
        metrics::gauge!("console_overview_pollers").increment(1.0);
        let mut rates = MessageRates::default();
        loop {
            let due = self
                .lock()
                .last_poll
                .map_or_else(Instant::now, |t| t + POLL_EVERY);
            tokio::select! {
                () = self.cancel.cancelled() => {}
                () = sender.closed() => {}
                () = tokio::time::sleep_until(due) => {}
            }
            if self.stop_if_unwatched(&sender) {
                break;
            }
            if Instant::now() < due {
                continue; // woken by a listener leaving while others remain
            }
            let seq = {
                let mut state = self.lock();
                state.last_poll = Some(Instant::now());
                state.seq += 1;
                state.seq
            };
            metrics::counter!("console_overview_polls_total").increment(1);
            let html = tokio::select! {
                () = self.cancel.cancelled() => continue, // stops at the check above
                html = pages::overview::live_html(&self.sources, &mut rates) => html,
            };
            sender.send_replace(Some(Snapshot {
                seq,
                html: html.into(),
            }));
        }
        metrics::gauge!("console_overview_pollers").decrement(1.0);
        tracing::debug!("overview poller stopped");
    }
}

/// Counts a connected SSE client while it lives.
struct ClientGauge(&'static str);

impl ClientGauge {
    fn new(stream: &'static str) -> Self {
        metrics::gauge!("console_sse_clients", "stream" => stream).increment(1.0);
        Self(stream)
    }
}

impl Drop for ClientGauge {
    fn drop(&mut self) {
        metrics::gauge!("console_sse_clients", "stream" => self.0).decrement(1.0);
    }
}

/// What ends every stream: the drain, and the session's expiry (announced).
struct Ends {
    cancel: CancellationToken,
    expires: Instant,
    _gauge: ClientGauge,
}

impl Ends {
    fn new(app: &AppState, user: &CurrentUser, stream: &'static str) -> Self {
        let left = user.expires_at.saturating_sub(now_secs());
        Self {
            cancel: app.cancel.clone(),
            expires: Instant::now() + Duration::from_secs(left),
            _gauge: ClientGauge::new(stream),
        }
    }
}

fn expired() -> Event {
    Event::default().event("expired").data("session expired")
}

fn sse(stream: EventStream) -> Response {
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// `GET /events/overview`.
pub async fn overview_events(
    State(app): State<Arc<AppState>>,
    Extension(user): Extension<CurrentUser>,
) -> Response {
    let receiver = app.overview.subscribe();
    let ends = Ends::new(&app, &user, "overview");
    let events = stream::unfold(Some((receiver, ends, true)), |state| async move {
        let (mut receiver, ends, first) = state?;
        if !first {
            tokio::select! {
                () = ends.cancel.cancelled() => return None,
                () = tokio::time::sleep_until(ends.expires) => return Some((Ok(expired()), None)),
                changed = receiver.changed() => changed.ok()?,
            }
        }
        let snapshot = receiver.borrow_and_update().clone();
        let event = match snapshot {
            Some(s) => Event::default()
                .id(s.seq.to_string())
                .retry(RETRY)
                .data(&*s.html),
            None => Event::default().comment("waiting for the first poll"),
        };
        Some((Ok(event), Some((receiver, ends, false))))
    });
    sse(Box::pin(events))
}

/// `GET /events/jobs/{id}`.
pub async fn job_events(
    State(app): State<Arc<AppState>>,
    Extension(user): Extension<CurrentUser>,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let watch = crate::upstream::jobs(
        app.jobs
            .clone()
            .watch_job(WatchJobRequest { job_id: id.clone() })
            .await,
    )?;
    let ends = Ends::new(&app, &user, "job");
    let events = stream::unfold(Some((watch, ends)), |state| async move {
        let (mut watch, ends) = state?;
        let next = tokio::select! {
            () = ends.cancel.cancelled() => return None,
            () = tokio::time::sleep_until(ends.expires) => return Some((Ok(expired()), None)),
            next = watch.next() => next,
        };
        match next {
            Some(Ok(event)) => {
                let html = pages::job::live_html(&event);
                Some((
                    Ok(Event::default().retry(RETRY).data(html)),
                    Some((watch, ends)),
                ))
            }
            // The job reached a terminal state: the page reloads once to show the outcome.
            None => Some((Ok(Event::default().event("end").data("done")), None)),
            // The scheduler lost the watch: end; the browser reconnects and gets a new snapshot.
            Some(Err(status)) => {
                let _ = crate::upstream::failed(crate::upstream::JOB_SCHEDULER, status);
                None
            }
        }
    });
    Ok(sse(Box::pin(events)))
}
