//! Server-side control of sockets, as Centrifugo's server API offers it: `DisconnectUser` and
//! `UnsubscribeUser`, and the [`Command`]s a socket's task takes from outside (access revocation
//! uses them too).
//!
//! A socket's rooms belong to its own task, so nothing else edits them: a decision made elsewhere
//! is queued on the socket's outbox as a command and the task applies it (leaves the room, clears
//! its presence there, sends `left` with the reason). `DisconnectUser` also closes the outbox at
//! once, so the socket stops receiving before its task even runs.
//!
//! Across instances: the instance that takes the RPC applies it to its own sockets, then PUBLISHes
//! it on the deployment's control channel (`KeySpace::realtime_control_channel`, `<p>:bus:control`);
//! every instance subscribes that channel on a connection of its own and applies what the others
//! sent (its own messages, recognised by instance id, were applied already). Pub/sub is at most
//! once: an instance whose subscription is down at that moment misses the command; the RPC answers
//! how many instances it reached.
use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;
use ncy_types::{Room, ValidationError};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    error::{CloseReason, GatewayError},
    gateway::Gateway,
};

/// Longest reason text of a `DisconnectUser` close frame (a close frame carries at most 123 bytes).
pub const MAX_REASON_BYTES: usize = 120;

/// What a socket's task is told to do from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Leave `room` if in it, sending `left` with the reason.
    Leave {
        /// The room's wire name.
        room: String,
        /// Why (the `reason` of the `left` frame).
        reason: LeaveReason,
    },
    /// The socket is closed with 4010; this is the close frame's reason text.
    Disconnect {
        /// Reason text.
        reason: String,
    },
}

/// Why the server took a socket out of a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveReason {
    /// The socket may no longer see the room (membership removed, project deleted or moved,
    /// refreshed token for another organization).
    Revoked,
    /// `UnsubscribeUser`.
    Unsubscribed,
}

impl LeaveReason {
    /// The `reason` of the `left` frame.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Revoked => "revoked",
            Self::Unsubscribed => "unsubscribed",
        }
    }
}

/// A control request, as applied locally and sent to the other instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Control {
    /// Close every socket of `user`.
    DisconnectUser {
        /// The user.
        user: Uuid,
        /// Close frame reason text (validated).
        reason: String,
    },
    /// Take every socket of `user` out of `room`.
    UnsubscribeUser {
        /// The user.
        user: Uuid,
        /// The room's wire name (validated).
        room: String,
    },
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    /// The instance that applied it already.
    from: String,
    #[serde(flatten)]
    control: Control,
}

impl Control {
    /// `DisconnectUser` from the RPC's fields.
    pub fn disconnect_user(user_id: &str, reason: &str) -> Result<Self, ValidationError> {
        let user = ncy_types::parse_uuid("user_id", user_id)?;
        if reason.len() > MAX_REASON_BYTES {
            return Err(ValidationError::new(
                "reason",
                format!("at most {MAX_REASON_BYTES} bytes"),
            ));
        }
        if reason.chars().any(char::is_control) {
            return Err(ValidationError::new(
                "reason",
                "must not contain control characters",
            ));
        }
        let reason = match reason.trim() {
            "" => CloseReason::ServerDisconnect.text().to_owned(),
            r => r.to_owned(),
        };
        Ok(Self::DisconnectUser { user, reason })
    }

    /// `UnsubscribeUser` from the RPC's fields.
    pub fn unsubscribe_user(user_id: &str, room: &str) -> Result<Self, ValidationError> {
        let user = ncy_types::parse_uuid("user_id", user_id)?;
        let room: Room = room.parse()?;
        Ok(Self::UnsubscribeUser {
            user,
            room: room.name(),
        })
    }

    /// Applies this request to the sockets of this instance; how many it reached.
    pub fn apply(&self, gw: &Gateway) -> usize {
        match self {
            Self::DisconnectUser { user, reason } => {
                let mut closed = 0;
                for outbox in gw.sessions.of(*user) {
                    // The text is queued first: the task reads it when it writes the close frame.
                    let queued = outbox.command(Command::Disconnect {
                        reason: reason.clone(),
                    });
                    if queued && outbox.close(CloseReason::ServerDisconnect) {
                        closed += 1;
                    }
                }
                closed
            }
            Self::UnsubscribeUser { user, room } => {
                leave(gw, *user, room, LeaveReason::Unsubscribed)
            }
        }
    }
}

/// Takes every socket of `user` on this instance that is in `room` out of it, with `reason`; how
/// many were in it.
pub fn leave(gw: &Gateway, user: Uuid, room: &str, reason: LeaveReason) -> usize {
    let mut told = 0;
    for outbox in gw.sessions.of(user) {
        if gw.hub.is_member(room, outbox.id)
            && outbox.command(Command::Leave {
                room: room.to_owned(),
                reason,
            })
        {
            told += 1;
        }
    }
    told
}

/// Sends `control` to the other instances; the number of subscribers Redis delivered it to.
pub async fn publish(gw: &Gateway, control: Control) -> Result<u32, GatewayError> {
    let payload = serde_json::to_string(&Envelope {
        from: gw.instance_id.clone(),
        control,
    })
    .map_err(|e| ncy_bus::BusError::Protocol(e.to_string()))?;
    publish_raw(gw, payload).await
}

async fn publish_raw(gw: &Gateway, payload: String) -> Result<u32, GatewayError> {
    let mut c = gw.redis.get().await?;
    let reached: u32 = redis::cmd("PUBLISH")
        .arg(gw.keys.realtime_control_channel())
        .arg(payload)
        .query_async(&mut c)
        .await?;
    Ok(reached)
}

/// Applies what other instances publish on the control channel until the instance stops,
/// reconnecting with backoff. Like the bus, it probes its own subscription (`NCY_BUS_PROBE_MS`):
/// a connection that went silent (a proxy or failover keeping the socket open) would lose every
/// command without an error, so two probes not seen back force a reconnect.
pub async fn listen(gw: Arc<Gateway>, client: redis::Client) {
    let channel = gw.keys.realtime_control_channel();
    let mut backoff = Duration::from_millis(100);
    loop {
        let subscribed = tokio::select! {
            () = gw.stop.cancelled() => return,
            r = tokio::time::timeout(Duration::from_secs(3), subscribe(&client, &channel)) => r,
        };
        let mut pubsub = match subscribed {
            Ok(Ok(p)) => p,
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "connect timed out".to_owned(),
                };
                tracing::warn!(error = %why, "control subscription: cannot connect; retrying");
                tokio::select! {
                    () = gw.stop.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        let mut messages = pubsub.on_message();
        let probe_prefix = format!("probe:{}:", gw.instance_id);
        let mut probe = tokio::time::interval(gw.limits.bus_probe);
        probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut sent, mut seen) = (0u64, 0u64);
        loop {
            tokio::select! {
                () = gw.stop.cancelled() => return,
                _ = probe.tick() => {
                    if sent > seen + 1 {
                        tracing::warn!("control subscription silent; reconnecting");
                        break;
                    }
                    match publish_raw(&gw, format!("{probe_prefix}{}", sent + 1)).await {
                        Ok(_) => sent += 1,
                        Err(e) => tracing::debug!(error = %e, "control probe not sent"),
                    }
                }
                m = messages.next() => match m {
                    Some(m) => {
                        let payload = m.get_payload_bytes();
                        match payload.strip_prefix(probe_prefix.as_bytes()) {
                            Some(n) => {
                                let n = std::str::from_utf8(n).ok().and_then(|n| n.parse().ok());
                                seen = seen.max(n.unwrap_or(0));
                            }
                            // Other instances' probes.
                            None if payload.starts_with(b"probe:") => {}
                            None => receive(&gw, payload),
                        }
                    }
                    None => {
                        tracing::warn!("control subscription lost; reconnecting");
                        break;
                    }
                },
            }
        }
    }
}

async fn subscribe(
    client: &redis::Client,
    channel: &str,
) -> redis::RedisResult<redis::aio::PubSub> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    Ok(pubsub)
}

fn receive(gw: &Gateway, payload: &[u8]) {
    match serde_json::from_slice::<Envelope>(payload) {
        Ok(e) if e.from == gw.instance_id => {}
        Ok(e) => {
            let n = e.control.apply(gw);
            tracing::info!(control = ?e.control, from = %e.from, sockets = n, "control applied");
        }
        Err(e) => tracing::warn!(error = %e, "unreadable control message"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_validated_naming_the_field() {
        let u = "123e4567-e89b-12d3-a456-426614174000";
        assert_eq!(
            Control::disconnect_user("nope", "")
                .expect_err("uuid")
                .field,
            "user_id"
        );
        assert_eq!(
            Control::disconnect_user(u, &"x".repeat(121))
                .expect_err("long")
                .field,
            "reason"
        );
        assert_eq!(
            Control::disconnect_user(u, "a\nb").expect_err("ctl").field,
            "reason"
        );
        assert!(matches!(
            Control::disconnect_user(u, " ").expect("empty"),
            Control::DisconnectUser { reason, .. } if reason == "disconnected_by_server"
        ));
        assert_eq!(
            Control::unsubscribe_user(u, "project:nope")
                .expect_err("room")
                .field,
            "room"
        );
        let upper = "PROJECT:123E4567-E89B-12D3-A456-426614174000";
        assert!(Control::unsubscribe_user(u, upper).is_err());
        assert!(matches!(
            Control::unsubscribe_user(u, &format!("project:{}", u.to_uppercase())).expect("room"),
            Control::UnsubscribeUser { room, .. } if room == format!("project:{u}")
        ));
    }

    #[test]
    fn envelopes_round_trip() {
        let c = Control::UnsubscribeUser {
            user: Uuid::nil(),
            room: "broadcast".into(),
        };
        let text = serde_json::to_string(&Envelope {
            from: "i1".into(),
            control: c.clone(),
        })
        .expect("json");
        assert!(text.contains(r#""op":"unsubscribe_user""#), "{text}");
        let back: Envelope = serde_json::from_str(&text).expect("parse");
        assert_eq!((back.from.as_str(), back.control), ("i1", c));
    }
}
