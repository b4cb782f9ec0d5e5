//! The HTTP side of the WebSocket listener: `GET /ws` upgrades (after the Origin check, the
//! connection cap and the drain check), `GET /client.js` serves the browser client, everything
//! else is 404.
//!
//! Drain: when shutdown is requested every socket is closed with 1012, and the listener stays
//! open until the last one is gone (or the grace period ends), answering upgrades with HTTP 503
//! and `Retry-After` — a client told "draining" retries elsewhere, where a refused TCP connection
//! would look like an outage.
//!
//! Origin: browsers always send one, and it must equal `FRONTEND_URL`; a request without Origin is a
//! non-browser client (service, load test) and is allowed — it still has to authenticate.
use std::{
    collections::HashMap,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use axum::{
    Json, Router,
    extract::{Query, State, WebSocketUpgrade},
    http::{
        HeaderMap, HeaderValue, StatusCode,
        header::{ORIGIN, RETRY_AFTER},
    },
    response::{IntoResponse, Response},
    routing::get,
    serve::ListenerExt,
};
use futures_util::FutureExt;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{connection, gateway::Gateway, metrics};

/// `Retry-After` (seconds) of an upgrade refused while draining: by then the load balancer has
/// usually taken this instance out, so the retry lands on another one.
const DRAIN_RETRY_AFTER_SECS: u64 = 1;

/// Serves `/ws` on `listener` until the drain is over: after shutdown is requested, until every
/// socket has closed or `grace` has passed (see the module docs).
pub async fn serve(listener: TcpListener, gw: Arc<Gateway>, grace: Duration) {
    // TCP_NODELAY on every socket: a frame is written as soon as it is ready. With Nagle's
    // algorithm a small frame written while the previous one is unacknowledged waits for that
    // ACK, which a client with nothing to send delays by up to 40 ms.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY on a websocket");
        }
    });
    let drained = CancellationToken::new();
    let drain = {
        let (gw, drained) = (gw.clone(), drained.clone());
        async move {
            gw.stop.cancelled().await;
            // Upgraded sockets are no HTTP requests the server would wait for: wait for them to
            // send 1012 and close.
            let deadline = tokio::time::Instant::now() + grace;
            loop {
                // Registered before the count is read, so a last close in between is not missed.
                let closed = gw.all_closed.notified();
                tokio::pin!(closed);
                closed.as_mut().enable();
                if gw.connections.load(Ordering::Relaxed) == 0
                    || tokio::time::timeout_at(deadline, closed).await.is_err()
                {
                    break;
                }
            }
            drained.cancel();
        }
    };
    let server =
        axum::serve(listener, router(gw)).with_graceful_shutdown(drained.cancelled_owned());
    let (served, ()) = tokio::join!(server.into_future(), drain);
    if let Err(e) = served {
        tracing::warn!(error = %e, "websocket listener stopped with an error");
    }
}

/// The router of the WebSocket listener.
pub fn router(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route("/ws", get(upgrade))
        .route("/client.js", get(client_js))
        .fallback(|| async { refuse(StatusCode::NOT_FOUND, "not_found", "use /ws") })
        .with_state(gw)
}

/// The browser client (clients/js), compiled in so every instance serves the matching version.
const CLIENT_JS: &str = include_str!("../../../clients/js/ncy-realtime.js");

/// The app's pages live on another origin (`FRONTEND_URL`), and browsers fetch module scripts with
/// CORS: without `Access-Control-Allow-Origin` the `import` fails. The file is public and fetched
/// without credentials, so any origin may load it; the WebSocket keeps its Origin check.
async fn client_js() -> Response {
    (
        [
            (
                axum::http::header::CONTENT_TYPE,
                "text/javascript; charset=utf-8",
            ),
            (axum::http::header::CACHE_CONTROL, "public, max-age=300"),
            (axum::http::header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        CLIENT_JS,
    )
        .into_response()
}

fn refuse(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"error": code, "message": message}))).into_response()
}

/// Decrements the connection count when the socket (or a failed upgrade) ends.
struct Slot(Arc<Gateway>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.churn.note();
        let n = self.0.connections.fetch_sub(1, Ordering::Relaxed);
        metrics::connections(n.saturating_sub(1));
        if n == 1 {
            self.0.all_closed.notify_waiters();
        }
    }
}

async fn upgrade(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Response {
    if gw.stop.is_cancelled() {
        let mut refused = refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "reconnect to another instance",
        );
        refused
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(DRAIN_RETRY_AFTER_SECS));
        return refused;
    }
    if let Some(origin) = headers.get(ORIGIN) {
        let ok = origin
            .to_str()
            .is_ok_and(|o| o.trim_end_matches('/') == gw.frontend_url);
        if !ok {
            return refuse(
                StatusCode::FORBIDDEN,
                "origin_not_allowed",
                "origin not allowed",
            );
        }
    }
    gw.churn.note();
    let n = gw.connections.fetch_add(1, Ordering::Relaxed);
    let slot = Slot(gw.clone());
    if n >= gw.limits.max_connections {
        drop(slot);
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_connections",
            "connection limit of this instance reached",
        );
    }
    metrics::connections(n + 1);
    let token = query.get("token").cloned();
    let max = gw.limits.max_frame_bytes;
    ws.max_frame_size(max)
        .max_message_size(max)
        .read_buffer_size(256)
        .write_buffer_size(16 * 1024)
        .on_upgrade(move |socket| {
            // A task of its own: axum's upgrade task keeps the handshake state (config, the
            // unsplit socket) beside the callback's future for as long as that runs, ~1 KB per
            // socket; this way it ends right after the handshake. The future is spawned as is
            // (with `map`, not inside an `async` block, which would hold it twice: as a captured
            // value and as the awaited one).
            let serve = connection::serve(gw, socket, token);
            tokio::spawn(serve.map(move |()| drop(slot)));
            std::future::ready(())
        })
}
