//! Writing to one socket: the frames its outbox had queued, and on the way out the rest of them,
//! the close frame and the wait for the client's answer. The connection's task is the only writer;
//! nothing here waits on a client that stopped reading for longer than a limit allows.
use std::{collections::VecDeque, task::Poll, time::Duration};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::{
    SinkExt, StreamExt,
    stream::{SplitSink, SplitStream},
};

use crate::{error::CloseReason, gateway::Gateway, hub::Outbox};

/// Writes what the outbox had queued; false if the socket failed. Gives up (true) as soon as the
/// outbox closes or the instance stops, so a client that stopped reading cannot hold the
/// connection's only task in a write: its queue fills and it is closed as a slow consumer, or,
/// when nothing more is queued for it, the write is given up after the idle timeout (the peer
/// is gone or frozen) and it is closed as idle.
pub(super) async fn write(
    sink: &mut SplitSink<WebSocket, Message>,
    gw: &Gateway,
    outbox: &Outbox,
    ping: bool,
    frames: VecDeque<Utf8Bytes>,
) -> bool {
    let mut written = Box::pin(write_all(sink, ping, frames));
    // Nearly every write completes at once (the socket's send buffer has room): then no timer is
    // armed and no wake-up of the outbox is consumed, so none has to be handed back.
    if let Poll::Ready(r) = futures_util::poll!(written.as_mut()) {
        return r.is_ok();
    }
    let give_up = tokio::time::sleep(gw.limits.idle_timeout);
    tokio::pin!(give_up);
    let mut woken = false;
    let ok = loop {
        tokio::select! {
            r = &mut written => break r.is_ok(),
            () = outbox.ready() => {
                woken = true;
                if outbox.is_closed() { break true }
            }
            () = gw.stop.cancelled() => break true,
            () = &mut give_up => {
                outbox.close(CloseReason::Idle);
                break true;
            }
        }
    };
    // A wake-up consumed here may have been for a frame queued meanwhile. (Handing one back when
    // none was consumed would cost the task a second, empty turn per write.)
    if woken {
        outbox.rearm();
    }
    ok
}

/// Sends what is still queued (not to a slow consumer) and the close frame, then waits for the
/// client's close frame, all `within` (`NCY_WS_CLOSE_TIMEOUT_MS`).
///
/// The close frame goes out behind whatever the socket holds: a slow consumer gets the rest of the
/// frame in progress, then 4008, as soon as it reads again within that time. Waiting for the
/// client's answer (RFC 6455 §7.1.1) keeps the connection until the client has read the close
/// frame: a TCP connection dropped while the client's own frames are unread is reset, and a reset
/// can discard the close frame on its way. A draining instance keeps its listener (answering 503)
/// for as long as this lasts.
pub(super) async fn close(
    mut sink: SplitSink<WebSocket, Message>,
    mut stream: SplitStream<WebSocket>,
    outbox: &Outbox,
    within: Duration,
) {
    let reason = outbox.closing();
    let rest = outbox.finish();
    let flush = async {
        if reason != CloseReason::SlowConsumer && write_all(&mut sink, false, rest).await.is_err() {
            return;
        }
        if reason != CloseReason::ClientGone {
            // DisconnectUser's reason text, else the reason's own.
            let text = match reason {
                CloseReason::ServerDisconnect => outbox.disconnect_text(),
                _ => None,
            };
            let frame = CloseFrame {
                code: reason.code(),
                reason: text.unwrap_or_else(|| reason.text().to_owned()).into(),
            };
            if sink.send(Message::Close(Some(frame))).await.is_ok() {
                while let Some(Ok(m)) = stream.next().await {
                    if matches!(m, Message::Close(_)) {
                        break;
                    }
                }
            }
        }
        let _ = sink.close().await;
    };
    let _ = tokio::time::timeout(within, flush).await;
}

/// Writes `frames` with one flush at the end (the sink also flushes whenever its write buffer
/// fills), so a burst costs a few syscalls instead of one per frame.
async fn write_all(
    sink: &mut SplitSink<WebSocket, Message>,
    ping: bool,
    frames: VecDeque<Utf8Bytes>,
) -> Result<(), axum::Error> {
    if !ping && frames.is_empty() {
        return Ok(());
    }
    if ping {
        sink.feed(Message::Ping(Default::default())).await?;
    }
    for f in frames {
        sink.feed(Message::Text(f)).await?;
    }
    sink.flush().await
}
