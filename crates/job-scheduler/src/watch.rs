//! WatchJob: a snapshot, then the job's live events from the queue's pub/sub channel, ending after
//! the event that reports a terminal state.
//!
//! The subscription starts before the snapshot is read, so no event between the two is lost (an
//! event already reflected in the snapshot may be repeated, which is harmless for a state feed).
use futures_util::StreamExt;
use ncy_proto::jobs::v1 as pb;
use ncy_queue::{Engine, JobEventMessage, JobState};
use tokio::sync::mpsc;
use tonic::Status;

use crate::{convert, error};

/// Starts watching `job_id`; the receiver yields the events.
pub async fn watch(
    engine: Engine,
    job_id: String,
) -> Result<mpsc::Receiver<Result<pb::JobEvent, Status>>, Status> {
    let queue = ncy_queue::ids::parse_job_id(&job_id, "job_id").map_err(error::invalid)?;
    let client = engine
        .dedicated_client(queue)
        .await
        .map_err(error::status)?
        .ok_or_else(|| Status::unavailable("watching needs a pub/sub connection"))?;
    let mut pubsub = client
        .get_async_pubsub()
        .await
        .map_err(|e| error::status(e.into()))?;
    pubsub
        .subscribe(engine.queue_keys(queue).events_channel())
        .await
        .map_err(|e| error::status(e.into()))?;
    let rec = engine.get_job(&job_id).await.map_err(error::status)?;
    let (tx, rx) = mpsc::channel(64);
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
    tokio::spawn(async move {
        if tx.send(Ok(first)).await.is_err() || terminal {
            return;
        }
        let mut messages = pubsub.into_on_message();
        loop {
            tokio::select! {
                () = tx.closed() => return,
                msg = messages.next() => {
                    let Some(msg) = msg else {
                        let _ = tx.send(Err(Status::unavailable("redis connection lost; watch again"))).await;
                        return;
                    };
                    let Ok(payload) = msg.get_payload::<String>() else { continue };
                    let Ok(ev) = serde_json::from_str::<JobEventMessage>(&payload) else { continue };
                    if ev.job_id != job_id {
                        continue;
                    }
                    let state = JobState::parse(&ev.state);
                    let event = pb::JobEvent {
                        job_id: ev.job_id.clone(),
                        queue: ev.queue.clone(),
                        r#type: if ev.kind == "progress" {
                            pb::JobEventType::Progress
                        } else {
                            pb::JobEventType::StateChanged
                        } as i32,
                        state: state.map(convert::state).unwrap_or(pb::JobState::Unspecified) as i32,
                        progress: i32::try_from(ev.progress).unwrap_or(0),
                        at_ms: ev.at_ms,
                        message: ev.message.clone(),
                        attempts_made: i32::try_from(ev.attempts_made).unwrap_or(0),
                        result_json: ev.result_json.clone(),
                        due_at_ms: ev.due_at_ms,
                        owner_user_id: ev.owner_user_id.clone(),
                    };
                    if tx.send(Ok(event)).await.is_err() {
                        return;
                    }
                    if state.is_some_and(JobState::is_terminal) {
                        return;
                    }
                }
            }
        }
    });
    Ok(rx)
}
